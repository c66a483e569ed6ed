#!/usr/bin/env bash
# tests/netns/run.sh — issue #4 "multi-host for real". Trains a 3-stage
# topology with every process on its own "host": one network namespace each for
# the coordinator (10.213.0.1) and stages 0-2 (10.213.0.2-4), joined by a bridge
# in a separate hub namespace (tests/netns/lib.sh, cluster.sh). The coordinator
# runs `pipetrain run` (which finds no local stage and waits); each stage is
# started by hand in its namespace with the command `pipetrain run
# --print-commands` gives for it (`pipetrain stage ... --coordinator
# 10.213.0.1:PORT --run-id ID`). Then the same topology on loopback, launched by
# `pipetrain run` alone inside a namespace of its own (so its ports collide with
# nobody's), must give bitwise identical exported weights and identical loss lines.
#
# Traffic: only inside the test's namespaces (bridge or their own loopback);
# the root namespace is not connected to them and sends nothing. Cleans up
# (processes, namespaces, files) on any exit. Exit 77 with "SKIP" where
# namespaces cannot be created (not root, no ip(8), no CAP_SYS_ADMIN).
# Environment: BIN (default bin), PIPETRAIN_ASAN (longer deadlines), KEEP=1
# (keep the temporary directory: topologies, logs, run directories).
set -u
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
BIN=${BIN:-bin}
case $BIN in /*) ;; *) BIN=$ROOT/$BIN ;; esac
P=$BIN/pipetrain
CORPUS=$ROOT/../shared/data/tinyshakespeare.txt
[ -n "${PIPETRAIN_ASAN:-}" ] && CL_DEADLINE=80
. "$ROOT/tests/netns/lib.sh"
. "$ROOT/tests/netns/cluster.sh"

fail=0
check() { if eval "$2"; then echo "  ok   $1"; else echo "  FAIL $1"; fail=1; fi; }
# show FILE: the last lines of a log, indented, when something failed
show() { [ -f "$1" ] && { echo "  --- $1:"; tail -n 25 "$1" | sed 's/^/  | /'; }; }

cluster_init
T=$CL_TMP
mkdir -p "$T/net" "$T/lo"
cl_topo "$T/net/topo.json" $NET.1 $CL_COORD_PORT $NET.2 $CL_STAGE_PORT $NET.3 $CL_STAGE_PORT $NET.4 $CL_STAGE_PORT
cl_topo "$T/lo/topo.json" 127.0.0.1 0 127.0.0.1 29611 127.0.0.1 29612 127.0.0.1 29613

# --- the multi-host run
echo "multi-host: coordinator on $NET.1:$CL_COORD_PORT, stages on $NET.2-4:$CL_STAGE_PORT ($CL_STEPS steps)"
cluster_start "$T/net"
check "--print-commands prints one command per stage, each to start by hand" \
    "[ \$(wc -l <$T/net/cmds) -eq 3 ] && [ \$(grep -c '(by hand)' $T/net/commands) -eq 3 ] || { show $T/net/commands; false; }"
k=0
while read -r cmd; do
    check "stage $k's command names it, the coordinator and the run id" \
        "case \"\$cmd\" in *' stage '*' --stage $k '*'--coordinator $NET.1:$CL_COORD_PORT '*'--run-id $CL_RUN_ID '*) true;; *) echo \"  got: \$cmd\"; false;; esac"
    k=$((k + 1))
done <"$T/net/cmds"
k=0
for p in $CL_STAGES; do
    wait "$p"; rc=$?
    check "stage $k (in its namespace) exits 0 (got $rc)" "[ $rc -eq 0 ] || { show $T/net/stage-$k.log; false; }"
    k=$((k + 1))
done
wait "$CL_COORD"; rc=$?
check "coordinator exits 0 (got $rc)" "[ $rc -eq 0 ] || { show $T/net/coord.log; false; }"
# Tensors really crossed the bridge: stage 0 sent every activation of every
# step (batch 12 x seq 64 x dim 128 floats per step) through its veth.
need=$((CL_STEPS * 12 * 64 * 128 * 4))
tx0=$(nn_bytes s0 tx)
check "stage 0 sent >= $need bytes through its link (sent $tx0)" "[ $tx0 -ge $need ]"

# --- the same topology on loopback, launched by `pipetrain run` alone
echo "loopback: the same topology on 127.0.0.1, all stages started by pipetrain run"
cl_bg "$T/lo/run.log" ip netns exec "$(nn_ns lo)" "$P" run "$T/lo/topo.json" --out "$T/lo/run" \
    --peer-timeout-ms "$CL_PEER_TIMEOUT_MS"
wait "$last"; rc=$?
check "loopback run exits 0 (got $rc)" "[ $rc -eq 0 ] || { show $T/lo/run.log; false; }"
# the launcher's children: none may have crashed, not even after the run's end
# (the launcher only warns about a stage that dies after DONE)
check "the launcher saw every stage exit cleanly" "! grep -q 'warning: stage' $T/lo/run.log || { show $T/lo/run.log; false; }"
crash='double free|free\(\)|corrupted|AddressSanitizer|runtime error:|Segmentation fault|Aborted'
for k in 0 1 2; do
    f=$T/lo/run/stage-$k.log
    check "loopback stage $k log shows no crash" "! grep -qE '$crash' $f 2>/dev/null || { show $f; false; }"
done

# --- same weights, same losses
for d in net lo; do
    timeout 60 "$P" export "$T/$d/run/checkpoints/step-$CL_STEPS" --out "$T/$d/export" >"$T/$d/export.log" 2>&1
    check "export of the $d run" "[ -s $T/$d/export/model.safetensors ] || { show $T/$d/export.log; false; }"
    # the loss lines without their timings
    grep '"step"' "$T/$d/run/metrics.jsonl" 2>/dev/null |
        sed -e 's/, "step_ms": [^,}]*//' -e 's/, "tokens_per_s": [^,}]*//' >"$T/$d/losses"
done
check "metrics.jsonl has $CL_STEPS loss lines" "[ \$(grep -c '\"loss\"' $T/net/losses) -eq $CL_STEPS ]"
check "exported weights are bitwise equal" "cmp $T/net/export/model.safetensors $T/lo/export/model.safetensors"
check "loss lines are equal" "diff $T/net/losses $T/lo/losses"

[ $fail -eq 0 ] && echo "netns: ok"
exit $fail
