#!/usr/bin/env bash
# tests/netns/run.sh — issue #4 "multi-host for real". Trains a 3-stage
# topology with every process on its own "host": one network namespace each for
# the coordinator (10.213.0.1) and stages 0-2 (10.213.0.2-4), joined by a bridge
# in a separate hub namespace (tests/netns/lib.sh). The coordinator runs
# `pipetrain run` (which finds no local stage and waits); each stage is started
# by hand in its namespace with the command `pipetrain run --print-commands`
# gives for it (`pipetrain stage ... --coordinator 10.213.0.1:PORT --run-id ID`).
# Then the same topology on loopback, launched by `pipetrain run` alone inside a
# namespace of its own (so its ports collide with nobody's), must give bitwise
# identical exported weights and identical loss lines.
#
# Traffic: only inside the test's namespaces (bridge or their own loopback);
# the root namespace is not connected to them and sends nothing. Cleans up
# (processes, namespaces, files) on any exit. Exit 0 with "SKIP" where
# namespaces cannot be created (not root, no ip(8), no CAP_SYS_ADMIN).
# Environment: BIN (default bin), PIPETRAIN_ASAN (fewer steps, longer deadlines),
# KEEP=1 (keep the temporary directory: topologies, logs, run directories).
set -u
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
BIN=${BIN:-bin}
case $BIN in /*) ;; *) BIN=$ROOT/$BIN ;; esac
P=$BIN/pipetrain
CORPUS=$ROOT/../shared/data/tinyshakespeare.txt
. "$ROOT/tests/netns/lib.sh"

STEPS=4
DEADLINE=40      # seconds per process
if [ -n "${PIPETRAIN_ASAN:-}" ]; then STEPS=2; DEADLINE=80; fi
RUN_ID=4242
COORD_PORT=29500
STAGE_PORT=29501 # the same on every host: each stage has its own address
NET=10.213.0

[ -x "$P" ] || { echo "FAIL: $P is not built"; exit 1; }
[ -f "$CORPUS" ] || { echo "FAIL: missing corpus $CORPUS"; exit 1; }

tmp=$(mktemp -d /tmp/pt-netns.XXXXXX) || exit 1
# A private copy of the binary: a rebuild in the shared checkout between the
# two runs would otherwise compare two different programs.
cp "$P" "$tmp/pipetrain" || exit 1
P=$tmp/pipetrain
pids=""
cleanup() {
    local p
    for p in $pids; do kill -TERM "$p" 2>/dev/null; done
    nn_cleanup
    for p in $pids; do wait "$p" 2>/dev/null; done
    if [ -n "${KEEP:-}" ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'echo "interrupted"; exit 130' INT TERM HUP

fail=0
check() { if eval "$2"; then echo "  ok   $1"; else echo "  FAIL $1"; fail=1; fi; }
# show FILE: the last lines of a log, indented, when something failed
show() { [ -f "$1" ] && { echo "  --- $1:"; tail -n 25 "$1" | sed 's/^/  | /'; }; }

nn_init "$$"; rc=$?
if [ $rc -eq 2 ]; then echo "SKIP netns: cannot create network namespaces here: $NN_WHY"; exit 0; fi
[ $rc -eq 0 ] || { echo "FAIL: namespace setup: $NN_WHY"; exit 1; }
nn_add c "$NET.1/24" && nn_add s0 "$NET.2/24" && nn_add s1 "$NET.3/24" && nn_add s2 "$NET.4/24" &&
    nn_add_lo lo || { echo "FAIL: namespace setup: $NN_WHY"; exit 1; }

# The secret: required off loopback, readable by its owner only.
(umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$tmp/secret") || exit 1

# write_topo FILE COORD_HOST COORD_PORT HOST0 PORT0 HOST1 PORT1 HOST2 PORT2:
# the shakespeare model in 3 uneven stages (1, 2 and 1 blocks), 1F1B over 4
# micro-batches, 1 BLAS thread each, a checkpoint at the end.
write_topo() {
    cat >"$1" <<EOF
{
  "description": "tests/netns: the shakespeare model in 3 stages",
  "model": { "dim": 128, "n_layers": 4, "n_heads": 4, "n_kv_heads": 4, "ffn_dim": 384,
             "vocab_size": 256, "seq_len": 64 },
  "data": { "path": "$CORPUS", "format": "text", "val_fraction": 0.02 },
  "train": { "steps": $STEPS, "batch_size": 12, "micro_batches": 4, "lr": 0.001, "min_lr": 0.0001,
             "warmup_steps": 2, "seed": 1337, "eval_every": 0, "eval_batches": 2, "log_every": 1 },
  "checkpoint": { "dir": "checkpoints", "every": 0, "keep": 0 },
  "schedule": { "kind": "1f1b" },
  "secret_file": "$tmp/secret",
  "coordinator": { "host": "$2", "port": $3 },
  "stages": [
    { "host": "$4", "port": $5, "layers": "embed,0", "threads": 1 },
    { "host": "$6", "port": $7, "layers": "1-2", "threads": 1 },
    { "host": "$8", "port": $9, "layers": "3,head", "threads": 1 }
  ]
}
EOF
}
mkdir -p "$tmp/net" "$tmp/lo"
write_topo "$tmp/net/topo.json" $NET.1 $COORD_PORT $NET.2 $STAGE_PORT $NET.3 $STAGE_PORT $NET.4 $STAGE_PORT
write_topo "$tmp/lo/topo.json" 127.0.0.1 0 127.0.0.1 29611 127.0.0.1 29612 127.0.0.1 29613

# bg LOG CMD...: start CMD in the background under a deadline, remember its PID.
bg() {
    local log=$1; shift
    timeout -k 5 "$DEADLINE" "$@" >"$log" 2>&1 &
    last=$!
    pids="$pids $last"
}

# listening NAME PORT: 0 once something in namespace NAME listens on PORT.
listening() { nn_exec "$1" ss -Htln "sport = :$2" 2>/dev/null | grep -q .; }

# --- the multi-host run
echo "multi-host: coordinator on $NET.1:$COORD_PORT, stages on $NET.2-4:$STAGE_PORT ($STEPS steps)"
bg "$tmp/net/coord.log" ip netns exec "$(nn_ns c)" "$P" run "$tmp/net/topo.json" --out "$tmp/net/run" \
    --run-id $RUN_ID --peer-timeout-ms 5000
coord=$last
for i in $(seq 50); do listening c $COORD_PORT && break; kill -0 $coord 2>/dev/null || break; sleep 0.1; done
# Each stage runs the very command `pipetrain run --print-commands` gives for it
# (asked in the coordinator's namespace, where no stage's address is local).
timeout 30 ip netns exec "$(nn_ns c)" "$P" run "$tmp/net/topo.json" --out "$tmp/net/run" --run-id $RUN_ID \
    --peer-timeout-ms 5000 --print-commands >"$tmp/net/commands" 2>&1
grep -v '^#' "$tmp/net/commands" | grep . >"$tmp/net/cmds"
check "--print-commands prints one command per stage, each to start by hand" \
    "[ \$(wc -l <$tmp/net/cmds) -eq 3 ] && [ \$(grep -c '(by hand)' $tmp/net/commands) -eq 3 ] || { show $tmp/net/commands; false; }"
stage_pids=""
for k in 0 1 2; do
    cmd=$(sed -n "$((k + 1))p" "$tmp/net/cmds")
    check "stage $k's command names it, the coordinator and the run id" \
        "case \"\$cmd\" in *' stage '*' --stage $k '*'--coordinator $NET.1:$COORD_PORT '*'--run-id $RUN_ID '*) true;; *) echo \"  got: \$cmd\"; false;; esac"
    bg "$tmp/net/stage-$k.log" ip netns exec "$(nn_ns s$k)" bash -c "$cmd"
    stage_pids="$stage_pids $last"
done
k=0
for p in $stage_pids; do
    wait "$p"; rc=$?
    check "stage $k (in its namespace) exits 0 (got $rc)" "[ $rc -eq 0 ] || { show $tmp/net/stage-$k.log; false; }"
    k=$((k + 1))
done
wait "$coord"; rc=$?
check "coordinator exits 0 (got $rc)" "[ $rc -eq 0 ] || { show $tmp/net/coord.log; false; }"
# Tensors really crossed the bridge: stage 0 sent every activation of every
# step (batch 12 x seq 64 x dim 128 floats per step) through its veth.
need=$((STEPS * 12 * 64 * 128 * 4))
tx0=$(nn_bytes s0 tx)
check "stage 0 sent >= $need bytes through its link (sent $tx0)" "[ $tx0 -ge $need ]"

# --- the same topology on loopback, launched by `pipetrain run` alone
echo "loopback: the same topology on 127.0.0.1, all stages started by pipetrain run"
bg "$tmp/lo/run.log" ip netns exec "$(nn_ns lo)" "$P" run "$tmp/lo/topo.json" --out "$tmp/lo/run" \
    --peer-timeout-ms 5000
wait "$last"; rc=$?
check "loopback run exits 0 (got $rc)" "[ $rc -eq 0 ] || { show $tmp/lo/run.log; false; }"
# the launcher's children: none may have crashed, not even after the run's end
crash='double free|free\(\)|corrupted|AddressSanitizer|runtime error:|Segmentation fault|Aborted'
for k in 0 1 2; do
    f=$tmp/lo/run/stage-$k.log
    check "loopback stage $k log shows no crash" "! grep -qE '$crash' $f 2>/dev/null || { show $f; false; }"
done

# --- same weights, same losses
for d in net lo; do
    timeout 60 "$P" export "$tmp/$d/run/checkpoints/step-$STEPS" --out "$tmp/$d/export" >"$tmp/$d/export.log" 2>&1
    check "export of the $d run" "[ -s $tmp/$d/export/model.safetensors ] || { show $tmp/$d/export.log; false; }"
    # the loss lines without their timings
    grep '"step"' "$tmp/$d/run/metrics.jsonl" 2>/dev/null |
        sed -e 's/, "step_ms": [^,}]*//' -e 's/, "tokens_per_s": [^,}]*//' >"$tmp/$d/losses"
done
check "metrics.jsonl has $STEPS loss lines" "[ \$(grep -c '\"loss\"' $tmp/net/losses) -eq $STEPS ]"
check "exported weights are bitwise equal" "cmp $tmp/net/export/model.safetensors $tmp/lo/export/model.safetensors"
check "loss lines are equal" "diff $tmp/net/losses $tmp/lo/losses"

[ $fail -eq 0 ] && echo "netns: ok"
exit $fail
