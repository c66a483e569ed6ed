#!/usr/bin/env bash
# Failure basics of multi-stage runs (issue #4): a stage killed with SIGKILL
# mid-run, or stopped with SIGSTOP (found by the heartbeat), makes
# `pipetrain run` exit 1 within the peer timeout (plus a margin) with a message
# naming the stage, its host:port and the step, and leaves no stage process
# behind. Also: SIGINT to the launcher, --print-commands, "launch": "ssh"
# through a fake ssh, and stages started by hand from the commands run prints.
set -u
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
P="$BIN/pipetrain"
CORPUS=../shared/data/tinyshakespeare.txt
tmp=$(mktemp -d /tmp/t_pipeline_fail.XXXXXX)
cleanup() {
    pkill -CONT -f -- "--out $tmp/" 2>/dev/null
    pkill -KILL -f -- "--out $tmp/" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
fail=0
check() { if eval "$2"; then echo "  ok   $1"; else echo "  FAIL $1"; fail=1; fi; }
[ -f "$CORPUS" ] || { echo "missing $CORPUS"; exit 1; }
now_ms() { date +%s%3N; }

base=$((20000 + (RANDOM % 120) * 100 + 50 + ($$ % 50)))
TOPO=topologies/shakespeare-3stage-uneven.json
ARGS=(--steps 100000 --set coordinator.port=0 --set stages.0.port=$base --set stages.1.port=$((base + 1))
      --set stages.2.port=$((base + 2)) --set train.eval_every=0 --set train.log_every=1000)

# wait_steps DIR N: until DIR/metrics.jsonl has N lines (at most 30 s)
wait_steps() {
    for _ in $(seq 300); do
        [ -f "$1/metrics.jsonl" ] && [ "$(wc -l <"$1/metrics.jsonl")" -ge "$2" ] && return 0
        sleep 0.1
    done
    return 1
}

# fault NAME SIGNAL PEER_TIMEOUT_MS MARGIN_MS: signal stage 1 mid-run
fault() {
    local name=$1 sig=$2 pt=$3 margin=$4 out="$tmp/$1"
    timeout 90 "$P" run $TOPO "${ARGS[@]}" --peer-timeout-ms "$pt" --out "$out" >"$tmp/$name.out" 2>"$tmp/$name.err" &
    local run=$!
    check "$name: run reaches step 3" "wait_steps $out 3 || { tail -5 $tmp/$name.err; false; }"
    local pid
    pid=$(cat "$out/stage-1.pid" 2>/dev/null)
    check "$name: stage 1's pid file names a running stage" \
        "[ -n '$pid' ] && tr '\\0' ' ' </proc/$pid/cmdline | grep -q -- 'stage $TOPO --stage 1 '"
    local t0
    t0=$(now_ms)
    kill -"$sig" "$pid"
    wait $run
    local rc=$? dt=$(($(now_ms) - t0))
    check "$name: run exits 1 (got $rc)" "[ $rc -eq 1 ]"
    check "$name: within $pt ms + $margin ms (took $dt ms)" "[ $dt -le $((pt + margin)) ]"
    check "$name: message names stage 1, its address and the step" \
        "grep -qE '^pipetrain run: stage 1 \\(127\\.0\\.0\\.1:$((base + 1))\\) [a-z ]+ at step [0-9]+: ' $tmp/$name.err \
         || { cat $tmp/$name.err; false; }"
    check "$name: the log of stage 1 is shown" "grep -q 'last lines of $out/stage-1.log' $tmp/$name.err"
    check "$name: summary.json has the error and the steps taken" \
        "grep -q '\"error\": \"stage 1 (127.0.0.1:$((base + 1)))' $out/summary.json && grep -qE '\"steps\": ([3-9]|[1-9][0-9]+),' $out/summary.json"
    check "$name: no stage process left" "! pgrep -f -- '--out $out' >/dev/null || { pgrep -af -- '--out $out'; false; }"
}

fault kill KILL 3000 5000
check "kill: the cause is the signal" "grep -q 'killed by signal 9' $tmp/kill.err"
fault stop STOP 2000 8000

# --- SIGINT to the launcher: exit 1 naming the step, children stopped
out="$tmp/int"
timeout 90 "$P" run $TOPO "${ARGS[@]}" --out "$out" >/dev/null 2>"$tmp/int.err" &
run=$!
check "int: run reaches step 3" "wait_steps $out 3"
kill -INT $run
wait $run
rc=$?
check "int: run exits 1 (got $rc)" "[ $rc -eq 1 ]"
check "int: message says interrupted and the step" "grep -qE 'interrupted by signal 2 .* at step [0-9]+' $tmp/int.err"
check "int: no stage process left" "! pgrep -f -- '--out $out' >/dev/null"

# --- --print-commands: one command per stage, nothing started or created
"$P" run $TOPO --print-commands --run-id 42 --out "$tmp/pc" --set train.steps=7 >"$tmp/pc.out" 2>"$tmp/pc.err"
rc=$?
check "print-commands exits 0" "[ $rc -eq 0 ]"
for k in 0 1 2; do
    check "print-commands: stage $k's command" \
        "grep -qE -- 'pipetrain stage $TOPO --stage $k --coordinator 127\\.0\\.0\\.1:29540 --run-id 42 --out $tmp/pc --set train\\.steps=7 --peer-timeout-ms 10000' $tmp/pc.out"
done
check "print-commands starts nothing" "[ ! -e $tmp/pc ] && ! pgrep -f -- '--out $tmp/pc' >/dev/null"

# --- "launch": "ssh" through a fake ssh that runs the command here
mkdir -p "$tmp/fakebin"
cat >"$tmp/fakebin/ssh" <<EOF
#!/usr/bin/env bash
# fake ssh: skip options, note the host, run the command locally
while [ "\${1#-}" != "\$1" ]; do [ "\$1" = -o ] && shift; shift; done
echo "\$1" >>"$tmp/ssh-hosts"
shift
exec bash -c "\$*"
EOF
chmod +x "$tmp/fakebin/ssh"
PATH="$tmp/fakebin:$PATH" PIPETRAIN_SSH_ALL=1 timeout 60 "$P" run topologies/shakespeare-2stage.json --steps 3 \
    --set launch=ssh --set coordinator.port=0 --set stages.0.port=$((base + 10)) --set stages.1.port=$((base + 11)) \
    --set train.batch_size=4 --out "$tmp/ssh" >"$tmp/ssh.out" 2>&1
rc=$?
check "ssh launch: run exits 0" "[ $rc -eq 0 ] || { tail $tmp/ssh.out; false; }"
check "ssh launch: both stages went through ssh" "[ \$(grep -c '^127.0.0.1\$' $tmp/ssh-hosts) -eq 2 ]"
check "ssh launch: 3 metrics lines" "[ \$(wc -l <$tmp/ssh/metrics.jsonl) -eq 3 ]"
check "ssh launch: no stage process left" "! pgrep -f -- '--out $tmp/ssh' >/dev/null"

# --- stages started by hand with the commands run prints
PIPETRAIN_BY_HAND=1 timeout 60 "$P" run topologies/shakespeare-2stage.json --steps 3 --set coordinator.port=0 \
    --set stages.0.port=$((base + 20)) --set stages.1.port=$((base + 21)) --set train.batch_size=4 \
    --out "$tmp/hand" >"$tmp/hand.out" 2>"$tmp/hand.err" &
run=$!
for _ in $(seq 100); do [ "$(grep -c ' stage .* --stage ' "$tmp/hand.err")" -ge 2 ] && break; sleep 0.1; done
check "by hand: run prints 2 commands" "[ \$(grep -c ' stage .* --stage ' $tmp/hand.err) -eq 2 ]"
grep ' stage .* --stage ' "$tmp/hand.err" | while IFS= read -r cmd; do
    bash -c "$cmd" >>"$tmp/hand.stages" 2>&1 &
done
wait $run
rc=$?
check "by hand: run exits 0 with the stages started from its commands" "[ $rc -eq 0 ] || { tail $tmp/hand.err $tmp/hand.stages; false; }"
check "by hand: 3 metrics lines" "[ \$(wc -l <$tmp/hand/metrics.jsonl) -eq 3 ]"
for _ in $(seq 50); do pgrep -f -- "--out $tmp/hand" >/dev/null || break; sleep 0.1; done
check "by hand: the stages exited after DONE" "! pgrep -f -- '--out $tmp/hand' >/dev/null"

exit $fail
