#!/usr/bin/env bash
# Exact resume (issue #6): a run killed after a complete checkpoint and
# continued with `pipetrain run --resume` ends with weights bitwise equal to a
# run that was never interrupted, and metrics.jsonl holds every step exactly
# once with the same loss lines (step, loss, lr, grad_norm, val_loss). One
# stage (the in-process trainer, killed with SIGKILL) and two stages (stage 1
# killed via its pid file, the launcher exits 1, then --resume), and tied
# embeddings over 3 stages under GPipe; each also resumed on another split of
# the layers (2 -> 3 and 2 -> 1 stages, tied 3 -> 2). Also: a torn
# last metrics line is dropped, a checkpoint made with another topology and a
# run directory without a checkpoint are refused with exit 2.
. "$(dirname "$0")/lib_resume.sh" t_resume $((60 + $$ % 30))

reference_run
check "reference: $STEPS loss lines" "[ \$(wc -l <$tmp/ref.lines) -eq $STEPS ]"

# --- one stage: SIGKILL after step 6's checkpoint is complete
one="$tmp/one"
"$P" run topologies/shakespeare-1stage.json "${COMMON[@]}" --set stages.0.threads=1 --out "$one" >"$tmp/one.log" 2>&1 &
pid=$!
wait_file "$one/checkpoints/step-6/COMPLETE"
kill -KILL $pid 2>/dev/null
wait $pid 2>/dev/null
n_before=$(grep -c '"loss"' "$one/metrics.jsonl")
printf '{"step": 99, "loss": 1.0' >>"$one/metrics.jsonl" # a torn line, as a kill mid-write leaves
cp "$one/checkpoints/latest" "$one/checkpoints/latest.before"
echo "  (1 stage killed with $n_before steps logged, latest $(cat "$one/checkpoints/latest"))"
"$P" run topologies/shakespeare-1stage.json "${COMMON[@]}" --set stages.0.threads=1 --out "$one" --resume \
    >"$tmp/one.resume.log" 2>&1
check "1 stage: --resume exits 0" "[ $? -eq 0 ] || { tail -5 $tmp/one.resume.log; false; }"
check "1 stage: resumed from a checkpoint" "grep -q 'resuming from .*step-[0-9]' $tmp/one.resume.log"
check "1 stage: weights bitwise equal to the uninterrupted run" "export_cmp $one"
check "1 stage: loss lines equal, each step once" "lines $one/metrics.jsonl | diff $tmp/ref.lines -"
check "1 stage: one resume event line with the checkpoint's step" \
    "grep '\"event\":\"resume\"' $one/metrics.jsonl | grep -q \"from_step\\\":\$(sed 's/step-//' $one/checkpoints/latest.before)\""
check "1 stage: summary.json's first_step is the checkpoint's step, no restarts" \
    "grep -q \"\\\"first_step\\\": \$(sed 's/step-//' $one/checkpoints/latest.before),\" $one/summary.json && grep -q '\"restarts\": 0' $one/summary.json"

# --- two stages: stage 1 SIGKILLed after step 6's checkpoint, no restarts
two="$tmp/two"
"$P" run topologies/shakespeare-2stage.json "${COMMON[@]}" "${PIPE[@]}" --out "$two" >"$tmp/two.log" 2>&1 &
run=$!
wait_file "$two/checkpoints/step-6/COMPLETE"
kill -KILL "$(cat "$two/stage-1.pid")" 2>/dev/null
wait $run
rc=$?
check "2 stages: the killed run exits 1" "[ $rc -eq 1 ] || { echo rc=$rc; tail -3 $tmp/two.log; false; }"
check "2 stages: no stage left running" "! pgrep -f -- '--out $two' >/dev/null"
cp -r "$two" "$tmp/re3"; cp -r "$two" "$tmp/re1" # for resuming on other splits, below
"$P" run topologies/shakespeare-2stage.json "${COMMON[@]}" "${PIPE[@]}" --out "$two" --resume >"$tmp/two.resume.log" 2>&1
check "2 stages: --resume exits 0" "[ $? -eq 0 ] || { tail -5 $tmp/two.resume.log $two/stage-*.log; false; }"
check "2 stages: resumed from a checkpoint" "grep -q 'resuming from .*step-[0-9]' $tmp/two.resume.log"
check "2 stages: weights bitwise equal to the uninterrupted 1-stage run" "export_cmp $two"
check "2 stages: loss lines equal, each step once" "lines $two/metrics.jsonl | diff $tmp/ref.lines -"
check "2 stages: one resume event line" "[ \$(grep -c '\"event\":\"resume\"' $two/metrics.jsonl) -eq 1 ]"

# --- the same checkpoint resumed on other splits of the layers: 3 uneven stages, 1 stage
P3=(--set coordinator.port=0 --set stages.0.port=$((base + 2)) --set stages.1.port=$((base + 3))
    --set stages.2.port=$((base + 4)) --peer-timeout-ms 2000)
"$P" run topologies/shakespeare-3stage-uneven.json "${COMMON[@]}" "${P3[@]}" --out "$tmp/re3" --resume \
    >"$tmp/re3.log" 2>&1
check "re-split 2 -> 3 stages: --resume exits 0" "[ $? -eq 0 ] || { tail -5 $tmp/re3.log $tmp/re3/stage-*.log; false; }"
check "re-split 2 -> 3 stages: a note names both splits" \
    "grep -q 're-split into 3 (embed,0 | 1-2 | 3,head)' $tmp/re3.log"
check "re-split 2 -> 3 stages: weights bitwise equal to the uninterrupted run" "export_cmp $tmp/re3"
check "re-split 2 -> 3 stages: loss lines equal, each step once" "lines $tmp/re3/metrics.jsonl | diff $tmp/ref.lines -"
"$P" run topologies/shakespeare-1stage.json "${COMMON[@]}" --set stages.0.threads=1 --out "$tmp/re1" --resume \
    >"$tmp/re1.log" 2>&1
check "re-split 2 -> 1 stage: --resume exits 0" "[ $? -eq 0 ] || { tail -5 $tmp/re1.log; false; }"
check "re-split 2 -> 1 stage: weights bitwise equal to the uninterrupted run" "export_cmp $tmp/re1"
check "re-split 2 -> 1 stage: loss lines equal, each step once" "lines $tmp/re1/metrics.jsonl | diff $tmp/ref.lines -"
"$P" run topologies/shakespeare-1stage.json "${COMMON[@]}" --set stages.0.threads=2 --steps 31 --out "$tmp/re1" \
    --resume >"$tmp/re1t.log" 2>&1
check "other BLAS threads on --resume: runs, with a note that the bits will differ" \
    "[ $? -eq 0 ] && grep -q 'not bit for bit' $tmp/re1t.log"

# --- tied embeddings over 3 uneven stages under GPipe (the head stage's copy of
# the embedding comes from stage 0's shard): a run rolled back to its step-3
# checkpoint (latest moved back, later checkpoints removed) and resumed
TIED=(--steps 6 --set model.n_layers=4 --set model.tie_embeddings=true --set train.batch_size=8
      --set train.micro_batches=4 --set train.eval_every=3 --set train.eval_batches=2 --set train.warmup_steps=2
      --set checkpoint.every=3 --set data.val_fraction=0.01)
TP=(--set coordinator.port=0 --set stages.0.port=$((base + 2)) --set stages.1.port=$((base + 3))
    --set stages.2.port=$((base + 4)) --set schedule.kind=gpipe)
"$P" run topologies/shakespeare-1stage.json "${TIED[@]}" --set stages.0.threads=1 --out "$tmp/tref" >/dev/null 2>&1
"$P" run topologies/shakespeare-3stage-uneven.json "${TIED[@]}" "${TP[@]}" --out "$tmp/tied" >"$tmp/tied.log" 2>&1
check "tied, 3 stages: the run exits 0" "[ $? -eq 0 ]"
echo step-3 >"$tmp/tied/checkpoints/latest"
rm -r "$tmp/tied/checkpoints/step-6"
cp -r "$tmp/tied" "$tmp/tied2"
"$P" run topologies/shakespeare-3stage-uneven.json "${TIED[@]}" "${TP[@]}" --out "$tmp/tied" --resume \
    >"$tmp/tied.resume.log" 2>&1
check "tied, 3 stages: --resume from step 3 exits 0" "[ $? -eq 0 ] || { tail -5 $tmp/tied.resume.log; false; }"
"$P" export "$tmp/tref" --out "$tmp/tref/export" >/dev/null 2>&1
"$P" export "$tmp/tied" --out "$tmp/tied/export" >/dev/null 2>&1
check "tied, 3 stages: weights bitwise equal to the uninterrupted 1-stage run" \
    "cmp $tmp/tref/export/model.safetensors $tmp/tied/export/model.safetensors"
check "tied, 3 stages: loss lines equal, each step once" \
    "diff <(lines $tmp/tref/metrics.jsonl) <(lines $tmp/tied/metrics.jsonl)"
# the head's copy of the embedding moves to another stage: 3 stages' step-3 checkpoint on 2
"$P" run topologies/shakespeare-2stage.json "${TIED[@]}" --set coordinator.port=0 --set stages.0.port=$((base + 2)) \
    --set stages.1.port=$((base + 3)) --set schedule.kind=gpipe --out "$tmp/tied2" --resume >"$tmp/tied2.log" 2>&1
check "tied, re-split 3 -> 2 stages: --resume exits 0" "[ $? -eq 0 ] || { tail -5 $tmp/tied2.log; false; }"
"$P" export "$tmp/tied2" --out "$tmp/tied2/export" >/dev/null 2>&1
check "tied, re-split 3 -> 2 stages: weights bitwise equal to the uninterrupted run" \
    "cmp $tmp/tref/export/model.safetensors $tmp/tied2/export/model.safetensors"

# --- refusals
"$P" run topologies/shakespeare-1stage.json "${COMMON[@]}" --set stages.0.threads=1 --set train.lr=0.002 \
    --out "$one" --resume >"$tmp/bad.log" 2>&1
rc=$?
check "another topology (train.lr): exit 2 naming train.lr" "[ $rc -eq 2 ] && grep -q 'train.lr differs' $tmp/bad.log"
"$P" run topologies/shakespeare-2stage.json "${COMMON[@]}" "${PIPE[@]}" --set train.seed=7 --out "$two" --resume \
    >"$tmp/bad2.log" 2>&1
rc=$?
check "2 stages, another seed: exit 2 naming train.seed" "[ $rc -eq 2 ] && grep -q 'train.seed differs' $tmp/bad2.log"
"$P" run topologies/shakespeare-1stage.json "${COMMON[@]}" --set stages.0.threads=1 --out "$tmp/empty" --resume \
    >"$tmp/empty.log" 2>&1
rc=$?
check "no checkpoint: exit 2" "[ $rc -eq 2 ] && grep -q 'checkpoint' $tmp/empty.log"
"$P" run topologies/shakespeare-1stage.json "${COMMON[@]}" --set stages.0.threads=1 --steps 33 --out "$one" --resume \
    >"$tmp/more.log" 2>&1
rc=$?
check "--steps may change on --resume (33 steps, 33 loss lines)" \
    "[ $rc -eq 0 ] && [ \$(grep -c '\"loss\"' $one/metrics.jsonl) -eq 33 ]"
exit $fail
