#!/usr/bin/env bash
# Automatic restarts (issue #6): with --max-restarts, a stage SIGKILLed after
# step 6's checkpoint is complete makes the launcher stop every stage and start
# them all again from the latest complete checkpoint; the run ends with exit 0,
# weights bitwise equal to an uninterrupted run, every step logged once, and
# one {"event": "restart"} line in metrics.jsonl naming the cause (stage 1,
# its address, the signal). A second kill with --max-restarts 1 ends the run
# with exit 1, and no stage outlives it. Stages started by hand
# (PIPETRAIN_BY_HAND=1): after a kill, the survivor rejoins by itself
# (--rejoin), the killed stage is started again by hand from the command the
# waiting coordinator prints, and the run finishes bitwise equal.
. "$(dirname "$0")/lib_resume.sh" t_restart $((90 + $$ % 10))
# wait_new_pid FILE OLD: until FILE names another pid than OLD (at most 60 s)
wait_new_pid() { for _ in $(seq 1200); do p=$(cat "$1" 2>/dev/null); [ -n "$p" ] && [ "$p" != "$2" ] && return 0; sleep 0.05; done; return 1; }

reference_run

# --- one kill, restarts allowed
out="$tmp/r1"
"$P" run topologies/shakespeare-2stage.json "${COMMON[@]}" "${PIPE[@]}" --max-restarts 2 --out "$out" \
    >"$tmp/r1.log" 2>&1 &
run=$!
wait_file "$out/checkpoints/step-6/COMPLETE"
old=$(cat "$out/stage-1.pid")
kill -KILL "$old"
wait $run
rc=$?
check "killed stage 1, --max-restarts 2: run exits 0" "[ $rc -eq 0 ] || { tail -5 $tmp/r1.log; false; }"
check "one restart event naming stage 1 and the signal" \
    "[ \$(grep -c '\"event\":\"restart\"' $out/metrics.jsonl) -eq 1 ] && grep '\"event\":\"restart\"' $out/metrics.jsonl | grep -q 'stage 1 (127.0.0.1:$((base + 1)))' && grep -q 'signal 9' $out/metrics.jsonl"
check "the restart is on the progress output" "grep -q 'restart 1 of 2 from step [0-9]' $tmp/r1.log"
check "summary.json counts the restart and the step it restarted from" \
    "grep -q '\"restarts\": 1' $out/summary.json && grep -q \"\\\"first_step\\\": \$(grep -o 'restart 1 of 2 from step [0-9]*' $tmp/r1.log | grep -o '[0-9]*\$'),\" $out/summary.json"
check "weights bitwise equal to the uninterrupted run" "export_cmp $out"
check "loss lines equal, each step once" "lines $out/metrics.jsonl | diff $tmp/ref.lines -"
check "no stage left running" "! pgrep -f -- '--out $out' >/dev/null"

# --- two kills, one restart allowed: the run fails, nothing left behind
# (the file's 10 % validation split: the restarted run's last step evaluates all
# of it, which keeps it running well past the second kill 0.5 s after it starts)
out="$tmp/r2"
"$P" run topologies/shakespeare-2stage.json "${COMMON[@]}" "${PIPE[@]}" --set data.val_fraction=0.1 --max-restarts 1 \
    --out "$out" >"$tmp/r2.log" 2>&1 &
run=$!
wait_file "$out/checkpoints/step-3/COMPLETE"
old=$(cat "$out/stage-0.pid")
kill -KILL "$old"
wait_new_pid "$out/stage-0.pid" "$old"
sleep 0.5
kill -KILL "$(cat "$out/stage-0.pid")" 2>/dev/null
wait $run
rc=$?
check "killed twice, --max-restarts 1: run exits 1 naming stage 0" \
    "[ $rc -eq 1 ] && tail -n 3 $tmp/r2.log | grep -q 'stage 0 (127.0.0.1:$base)'"
check "one restart event" "[ \$(grep -c '\"event\":\"restart\"' $out/metrics.jsonl) -eq 1 ]"
check "no stage left running" "! pgrep -f -- '--out $out' >/dev/null"
# --- stages started by hand: the commands carry --rejoin N (N = --max-restarts),
# so after stage 1 is killed, stage 0 rejoins by itself and only stage 1 is
# started again by hand, from the command the waiting coordinator prints again
out="$tmp/hand"
PIPETRAIN_BY_HAND=1 "$P" run topologies/shakespeare-2stage.json "${COMMON[@]}" --set coordinator.port=$((base + 5)) \
    --set stages.0.port=$((base + 6)) --set stages.1.port=$((base + 7)) --peer-timeout-ms 2000 --max-restarts 1 \
    --out "$out" >"$tmp/hand.out" 2>"$tmp/hand.err" &
run=$!
# start_cmds N PATTERN: once N stage commands are printed, starts those of the
# last two that match PATTERN; pids appended to $spids
spids=""
start_cmds() {
    for _ in $(seq 300); do [ "$(grep -c ' stage .* --stage ' "$tmp/hand.err")" -ge "$1" ] && break; sleep 0.1; done
    while IFS= read -r cmd; do
        bash -c "$cmd" >>"$tmp/hand.stages" 2>&1 &
        spids="$spids $!"
    done < <(grep ' stage .* --stage ' "$tmp/hand.err" | tail -n 2 | grep -- "$2")
}
start_cmds 2 ' --stage '
check "by hand: the printed commands carry --rejoin 1" "[ \$(grep -c -- '--rejoin 1' $tmp/hand.err) -eq 2 ]"
wait_file "$out/checkpoints/step-6/COMPLETE"
set -- $spids
kill -KILL "$2"
wait "$2" 2>/dev/null
start_cmds 4 ' --stage 1 '
wait $run
rc=$?
check "by hand: stage 1 killed and started again by hand, stage 0 rejoined: run exits 0" \
    "[ $rc -eq 0 ] || { tail -5 $tmp/hand.err $tmp/hand.stages; false; }"
check "by hand: stage 0 said it rejoins" "grep -q 'rejoining (1 of 1)' $tmp/hand.stages"
check "by hand: weights bitwise equal to the uninterrupted run" "export_cmp $out"
check "by hand: loss lines equal, each step once" "lines $out/metrics.jsonl | diff $tmp/ref.lines -"
for p in $spids; do wait "$p" 2>/dev/null; done
check "by hand: no stage left running" "! pgrep -f -- '--out $out' >/dev/null"
exit $fail
