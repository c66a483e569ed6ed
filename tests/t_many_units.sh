#!/usr/bin/env bash
# Sizes that come from the topology (issue #10, defect 2): nothing in a stage,
# the coordinator or the transport may be sized for the shipped examples.
#  - 1100 blocks split 550/550 over 2 stages (tiny dims, 1 step): every
#    per-unit buffer (the NORM message, the coordinator's slots, the transport's
#    payload limit) is sized from the topology; the stage used to crash with
#    SIGSEGV on a 512-unit stack buffer.
#  - 65 chunks per stage, interleaved (2 stages, one unit per virtual stage,
#    2 steps): the runtime used to refuse more than 64 chunks per stage. The
#    weights must equal a one-stage run's bit for bit.
set -u
cd "$(dirname "$0")/.."
. tests/lib.sh t_many_units
export OPENBLAS_NUM_THREADS=1

TINY=(--set model.dim=8 --set model.n_heads=2 --set model.n_kv_heads=2 --set model.ffn_dim=8
      --set model.seq_len=8 --set train.batch_size=2 --set train.micro_batches=2 --set train.eval_batches=1
      --set train.warmup_steps=0 --set checkpoint.keep=0)
# A 4 KB corpus: the final evaluation covers the whole validation split, which
# over 1100 blocks would take most of a minute on tinyshakespeare's 110 KB.
head -c 4000 "$CORPUS" >"$tmp/small.txt"
TINY+=(--data "$tmp/small.txt")
base=$((20000 + (RANDOM % 120) * 100 + ($$ % 50)))
PORTS=(--set coordinator.port=0 --set stages.0.port=$base --set stages.1.port=$((base + 1)))

# ---- 1100 blocks, 550 per stage ----
"$P" run topologies/shakespeare-2stage.json --steps 1 "${TINY[@]}" "${PORTS[@]}" --set model.n_layers=1100 \
    --set stages.0.layers=embed,0-549 --set stages.1.layers=550-1099,head --out "$tmp/big" >"$tmp/big.log" 2>&1
rc=$?
check "1100 blocks over 2 stages: run exits 0" \
    "[ $rc -eq 0 ] || { tail -n 6 $tmp/big.log $tmp/big/stage-*.log; false; }"
check "1100 blocks: one loss line, finite" "grep -qE '\"loss\": [0-9]' $tmp/big/metrics.jsonl"
check "1100 blocks: a complete checkpoint with 2 shards" \
    "[ -f $tmp/big/checkpoints/step-1/COMPLETE ] && [ -s $tmp/big/checkpoints/step-1/stage-1.safetensors ]"

# ---- 65 chunks per stage (interleaved), against one stage ----
# Virtual stage k is unit k (0 = embedding, 129 = head): stage 0 holds the even
# units, stage 1 the odd ones.
NL=128
s0="embed"; for ((b = 1; b < NL; b += 2)); do s0="$s0,$b"; done
s1="0"; for ((b = 2; b < NL; b += 2)); do s1="$s1,$b"; done; s1="$s1,head"
"$P" run topologies/shakespeare-1stage.json --steps 2 "${TINY[@]}" --set model.n_layers=$NL \
    --set stages.0.layers=embed,0-$((NL - 1)),head --set stages.0.threads=1 --out "$tmp/one" >"$tmp/one.log" 2>&1
check "128 blocks in 1 stage: run exits 0" "[ $? -eq 0 ] || { tail -n 6 $tmp/one.log; false; }"
"$P" run topologies/shakespeare-2stage.json --steps 2 "${TINY[@]}" "${PORTS[@]}" --set model.n_layers=$NL \
    --set schedule.kind=interleaved --set stages.0.layers=$s0 --set stages.1.layers=$s1 \
    --out "$tmp/v65" >"$tmp/v65.log" 2>&1
rc=$?
check "65 chunks per stage (interleaved): run exits 0" \
    "[ $rc -eq 0 ] || { tail -n 6 $tmp/v65.log $tmp/v65/stage-*.log; false; }"
check "65 chunks per stage: check reports 65 chunks" \
    "$P check topologies/shakespeare-2stage.json --set model.n_layers=$NL --set schedule.kind=interleaved \
     --set train.micro_batches=2 --set stages.0.layers=$s0 --set stages.1.layers=$s1 >/dev/null 2>&1"
"$P" export "$tmp/one" --out "$tmp/one/export" >/dev/null 2>&1
"$P" export "$tmp/v65" --out "$tmp/v65/export" >/dev/null 2>&1
check "65 chunks per stage: weights bitwise equal to 1 stage" \
    "[ -s $tmp/one/export/model.safetensors ] && cmp $tmp/one/export/model.safetensors $tmp/v65/export/model.safetensors"
exit $fail
