#!/usr/bin/env bash
# Restarts resume only this run's own checkpoints. A run directory that already
# holds another run's checkpoint (same model and seed, train.steps 12: a
# checkpoint `run` would accept on --resume) and a stage SIGKILLed before the new
# run's first checkpoint:
#  - fresh run: the earlier run's checkpoints are moved aside untouched (a note
#    says where), the restart starts from step 0 and says so, and the run ends
#    bitwise equal to an uninterrupted run (before the fix it resumed the other
#    run's step 12 and exited 0 with other weights);
#  - a checkpoint of another run appearing in the checkpoint directory during the
#    run is not resumed either (a note names it; it is moved aside);
#  - --resume: a restart before the next checkpoint resumes the checkpoint the run
#    itself started from (not step 0).
. "$(dirname "$0")/lib_resume.sh" t_restart_foreign $((50 + $$ % 10))
# wait_pid FILE: until FILE holds a pid (at most 60 s)
wait_pid() { for _ in $(seq 1200); do [ -s "$1" ] && return 0; sleep 0.05; done; return 1; }

reference_run

# the other run: same model, data and seed, 12 steps (train.steps may change on
# --resume, so its checkpoints pass the topology check); latest is step-12
"$P" run topologies/shakespeare-2stage.json "${COMMON[@]}" "${PIPE[@]}" --steps 12 --out "$tmp/other" \
    >"$tmp/other.log" 2>&1
check "the other run (12 steps) exits 0" "[ $? -eq 0 ] && [ \"\$(cat $tmp/other/checkpoints/latest)\" = step-12 ]"
sha_other=$(sha256sum "$tmp/other/checkpoints/step-12/manifest.json" | cut -d' ' -f1)

# --- a fresh run into a directory holding the other run's checkpoints
out="$tmp/fresh"
mkdir -p "$out"
cp -r "$tmp/other/checkpoints" "$out/checkpoints"
"$P" run topologies/shakespeare-2stage.json "${COMMON[@]}" "${PIPE[@]}" --max-restarts 1 --out "$out" \
    >"$tmp/fresh.log" 2>&1 &
run=$!
wait_pid "$out/stage-1.pid"
kill -KILL "$(cat "$out/stage-1.pid")"
wait $run
rc=$?
check "fresh: killed stage 1, --max-restarts 1: run exits 0" "[ $rc -eq 0 ] || { tail -5 $tmp/fresh.log; false; }"
check "fresh: a note says the other run's checkpoints were moved aside" \
    "grep -q \"note: $out/checkpoints held checkpoints of another run .*moved to $out/checkpoints.set-aside-1\" $tmp/fresh.log"
check "fresh: the restart starts from step 0 and says so" \
    "grep -q 'restart 1 of 1 from step 0 (no checkpoint of this run yet)' $tmp/fresh.log && grep -q '\"from_step\":0' $out/metrics.jsonl"
check "fresh: nothing resumed the other run's checkpoint" "! grep -q 'resuming from' $tmp/fresh.log"
check "fresh: weights bitwise equal to the uninterrupted run" "export_cmp $out"
check "fresh: loss lines equal, each step once" "lines $out/metrics.jsonl | diff $tmp/ref.lines -"
check "fresh: the other run's checkpoints are kept as they were" \
    "[ \"\$(cat $out/checkpoints.set-aside-1/latest)\" = step-12 ] && [ \"\$(sha256sum < $out/checkpoints.set-aside-1/step-12/manifest.json | cut -d' ' -f1)\" = $sha_other ] && \"$P\" eval $out/checkpoints.set-aside-1 --data $CORPUS >/dev/null 2>&1"
# writers: the manifests' "writer" lines of a checkpoint directory, one per writer
writers() { cat "$1"/step-*/manifest.json | grep '"writer"' | sort -u; }
check "fresh: every checkpoint left in the run's directory is its own" \
    "[ \"\$(cat $out/checkpoints/latest)\" = step-30 ] && [ \$(writers $out/checkpoints | wc -l) -eq 1 ] && ! writers $out/checkpoints | grep -qF \"\$(writers $tmp/other/checkpoints)\""

# --- another run's checkpoint appearing during the run (after its start): stage 0
# is stopped so that no step (and no checkpoint of this run) is taken meanwhile
out="$tmp/intruder"
"$P" run topologies/shakespeare-2stage.json "${COMMON[@]}" "${PIPE[@]}" --max-restarts 1 --out "$out" \
    >"$tmp/intruder.log" 2>&1 &
run=$!
wait_pid "$out/stage-0.pid"
wait_pid "$out/stage-1.pid"
kill -STOP "$(cat "$out/stage-0.pid")"
mkdir -p "$out/checkpoints"
cp -r "$tmp/other/checkpoints/step-12" "$out/checkpoints/"
echo step-12 >"$out/checkpoints/latest"
kill -KILL "$(cat "$out/stage-1.pid")"
wait $run
rc=$?
check "intruder: killed stage 1, --max-restarts 1: run exits 0" "[ $rc -eq 0 ] || { tail -5 $tmp/intruder.log; false; }"
check "intruder: a note says the other run's checkpoint is not resumed" \
    "grep -q \"note: $out/checkpoints/step-12 was not written by this run.*not resumed\" $tmp/intruder.log"
check "intruder: the restart starts from step 0" "grep -q 'restart 1 of 1 from step 0' $tmp/intruder.log"
check "intruder: weights bitwise equal to the uninterrupted run" "export_cmp $out"
check "intruder: loss lines equal, each step once" "lines $out/metrics.jsonl | diff $tmp/ref.lines -"
check "intruder: the other run's checkpoint is moved aside, untouched" \
    "[ \"\$(sha256sum < $out/checkpoints.set-aside-1/step-12/manifest.json | cut -d' ' -f1)\" = $sha_other ]"

# --- --resume: a restart before the next checkpoint goes back to the checkpoint
# the run started from (written by another `run`), not to step 0
out="$tmp/resumed"
"$P" run topologies/shakespeare-2stage.json "${COMMON[@]}" "${PIPE[@]}" --out "$out" >"$tmp/resumed0.log" 2>&1 &
run=$!
wait_file "$out/checkpoints/step-6/COMPLETE"
kill -KILL "$(cat "$out/stage-1.pid")"
wait $run
rm -f "$out"/stage-*.pid
"$P" run topologies/shakespeare-2stage.json "${COMMON[@]}" "${PIPE[@]}" --resume --max-restarts 1 --out "$out" \
    >"$tmp/resumed.log" 2>&1 &
run=$!
wait_pid "$out/stage-0.pid"
wait_pid "$out/stage-1.pid"
kill -STOP "$(cat "$out/stage-0.pid")"
kill -KILL "$(cat "$out/stage-1.pid")"
wait $run
rc=$?
from=$(grep -o 'resuming from [^ ]*/step-[0-9]*' "$tmp/resumed.log" | head -1 | grep -o '[0-9]*$')
check "resume: killed stage 1 before the next checkpoint: run exits 0" "[ $rc -eq 0 ] || { tail -5 $tmp/resumed.log; false; }"
check "resume: the restart resumes the checkpoint the run started from" \
    "[ -n \"$from\" ] && [ \"$from\" -ge 6 ] && grep -q \"restart 1 of 1 from step $from after\" $tmp/resumed.log"
check "resume: weights bitwise equal to the uninterrupted run" "export_cmp $out"
check "resume: loss lines equal, each step once" "lines $out/metrics.jsonl | diff $tmp/ref.lines -"
check "no stage left running" "! pgrep -f -- '--out $tmp/' >/dev/null"
exit $fail
