#!/usr/bin/env bash
# Stages started by hand (`run` with PIPETRAIN_BY_HAND prints their commands)
# where one host's secret file, at the same path as everyone's, holds another
# secret: the run's error must name that stage, not the innocent neighbour
# whose connection to it failed first (it used to say "stage 0 ... died at
# step 1: stage 0 ... closed the connection" when stage 1's secret was wrong).
# One host is emulated by rewriting the file between starts: the coordinator
# and stages 0 and 2 have read the good secret when stage 1 reads the other.
# A stage whose peer fails to authenticate says that the two ends hold
# different secrets (it cannot know which is wrong); one that stage 1 never
# answered (it exited first) gives up after its connect timeout. Then the same with
# $PIPETRAIN_SECRET wrong for the last stage of two.
set -u
cd "$(dirname "$0")/.."
. tests/lib.sh t_secret_mismatch
export OPENBLAS_NUM_THREADS=1
base=$((20000 + (RANDOM % 120) * 100 + ($$ % 50)))
S="$tmp/secret"
good='the good secret of more than sixteen bytes'
# listening PORT: waits up to 20 s for a listener on 127.0.0.1:PORT
listening() { local _; for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
# by_hand DIR N ARGS...: `run` in the background (pid in $run), waits for its N stage commands
by_hand() {
    local d=$1 n=$2 _; shift 2
    PIPETRAIN_BY_HAND=1 timeout 120 "$P" run "$@" --steps 4 --out "$d" >"$d.log" 2>&1 &
    run=$!
    for _ in $(seq 200); do [ "$(grep -c ' stage .* --stage ' "$d.log" 2>/dev/null)" -ge "$n" ] && break; sleep 0.1; done
}
# cmd_of DIR K: stage K's command (a stage waiting for a neighbour that never comes
# gives up after --connect-timeout-ms)
cmd_of() { echo "$(grep " stage .* --stage $2 " "$1.log" | head -1) --connect-timeout-ms 6000"; }

# --- 3 stages, stage 1's secret file holds another secret
d=$tmp/three
printf '%s\n' "$good" >"$S"; chmod 600 "$S"
by_hand "$d" 3 topologies/shakespeare-3stage-uneven.json --set model.n_layers=4 --set stages.0.layers=embed,0 \
    --set stages.1.layers=1-2 --set stages.2.layers=3,head --set train.eval_every=0 --set checkpoint.every=0 \
    --set coordinator.port=0 --set stages.0.port=$base --set stages.1.port=$((base + 1)) \
    --set stages.2.port=$((base + 2)) --set secret_file="$S"
timeout 90 bash -c "$(cmd_of "$d" 0)" >"$d.stage-0.log" 2>&1 & s0=$!
timeout 90 bash -c "$(cmd_of "$d" 2)" >"$d.stage-2.log" 2>&1 & s2=$!
# listening, then connected to the coordinator (otherwise a stage that fails on
# stage 1 before the coordinator knows it leaves the coordinator waiting for
# JOINs: the by-hand join timeout, 300 s, then a report per stage)
listening $base && listening $((base + 2)) && sleep 1
printf 'a WRONG secret of more than sixteen bytes\n' >"$S"
timeout 90 bash -c "$(cmd_of "$d" 1)" >"$d.stage-1.log" 2>&1 & s1=$!
wait $run; rc=$?
wait $s0 $s1 $s2
err=$(grep '^pipetrain run: ' "$d.log" | tail -1)
check "stage 1 with another secret: run exits 1 naming stage 1 ($err)" \
    "[ $rc -eq 1 ] && grep -q 'stage 1 (127.0.0.1:$((base + 1))) was refused at step 1: its shared secret .* differs from the coordinator' <<<\"\$err\""
check "... not an innocent neighbour" "! grep -q 'stage [02] (' <<<\"\$err\""
check "... a neighbour says the two ends hold different secrets, naming stage 1" \
    "cat $d.stage-0.log $d.stage-2.log | grep -q 'stage 1 (127.0.0.1:[0-9]*).*authentication failed: the two ends hold different shared secrets'"
check "... every stage exited" "! pgrep -f -- '--out $d' >/dev/null"

# --- 2 stages, $PIPETRAIN_SECRET wrong for stage 1 (the last)
d=$tmp/env
export PIPETRAIN_SECRET="$good"
by_hand "$d" 2 topologies/shakespeare-2stage.json --set train.eval_every=0 --set checkpoint.every=0 \
    --set coordinator.port=0 --set stages.0.port=$((base + 10)) --set stages.1.port=$((base + 11))
timeout 90 bash -c "$(cmd_of "$d" 0)" >"$d.stage-0.log" 2>&1 & s0=$!
listening $((base + 10)) && sleep 1
PIPETRAIN_SECRET='another secret of more than sixteen bytes' timeout 90 bash -c "$(cmd_of "$d" 1)" \
    >"$d.stage-1.log" 2>&1 & s1=$!
wait $run; rc=$?
wait $s0 $s1
err=$(grep '^pipetrain run: ' "$d.log" | tail -1)
check "stage 1 with another \$PIPETRAIN_SECRET: run exits 1 naming stage 1 ($err)" \
    "[ $rc -eq 1 ] && grep -q 'stage 1 (127.0.0.1:$((base + 11))) was refused at step 1: its shared secret' <<<\"\$err\""
check "... stage 1 names the coordinator's end" \
    "grep -q 'coordinator (127.0.0.1:[0-9]*): authentication failed: the two ends hold different shared secrets' $d.stage-1.log"
exit $fail
