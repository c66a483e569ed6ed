#!/usr/bin/env bash
# t_zbv_shapes.sh — issue 13's V schedule and recomputation off the shipped
# shapes: zb-v on 2 stages trains a tiny model to weights bitwise equal to the
# one-process run, and each stage's measured peak_act_bytes equals
# `pipetrain schedule`'s prediction, with
#  - tied embeddings (zb-v's stage 0 holds both the embedding and the head: the
#    head's lm_head gradient must join the embedding's in that one process; it
#    was dropped, so the weights and the gradient norm differed from step 1);
#  - odd shapes at once: seq_len 13 (no multiple of the attention tile), GQA
#    (1 kv head for 2), dim 20 and ffn 36 (no multiple of 8 or 16), micro-batch 1,
#    stages in different recompute modes.
set -u
cd "$(dirname "$0")/.."
. tests/lib.sh t_zbv_shapes
export OPENBLAS_NUM_THREADS=1 XDG_CACHE_HOME="$tmp/xdg"

head -c 20000 "$CORPUS" >"$tmp/small.txt"
base=$((20000 + (RANDOM % 120) * 100 + ($$ % 50)))
COMMON=(--steps 2 --data "$tmp/small.txt" --set train.eval_batches=1 --set train.warmup_steps=1
        --set data.val_fraction=0.05 --set checkpoint.keep=0)
V2=(--set schedule.kind=zb-v --set stages.0.layers=embed,0,3,head --set 'stages.1.layers=1|2')
peak() { python3 -c 'import json,sys; print(" ".join(str(s["peak_act_bytes"]) for s in json.load(open(sys.argv[1]))["stages"]))' "$1/summary.json" 2>/dev/null; }
lines() { sed -E 's/, "step_ms": [^,}]*//; s/, "tokens_per_s": [^,}]*//' "$1"; }

# case NAME SHAPE-SETS...: one process (recompute none) against zb-v on 2 stages
# (with the extra sets in ZBV, a global array)
case_zbv() {
    local name=$1
    shift
    "$P" run topologies/shakespeare-1stage.json "${COMMON[@]}" "$@" --set stages.0.threads=1 \
        --set stages.0.layers=embed,0-3,head --out "$tmp/$name-one" >"$tmp/$name-one.log" 2>&1
    check "$name: one process exits 0" "[ $? -eq 0 ] || { tail -n 5 $tmp/$name-one.log; false; }"
    "$P" run topologies/shakespeare-2stage.json "${COMMON[@]}" "$@" "${V2[@]}" "${ZBV[@]}" \
        --set coordinator.port=0 --set stages.0.port=$base --set stages.1.port=$((base + 1)) \
        --no-trace --out "$tmp/$name" >"$tmp/$name.log" 2>&1
    check "$name: zb-v exits 0" "[ $? -eq 0 ] || { tail -n 8 $tmp/$name.log $tmp/$name/stage-*.log; false; }"
    base=$((base + 2))
    "$P" export "$tmp/$name-one" --out "$tmp/$name-one/export" >/dev/null 2>&1
    "$P" export "$tmp/$name" --out "$tmp/$name/export" >/dev/null 2>&1
    check "$name: weights bitwise equal to one process" \
        "[ -s $tmp/$name/export/model.safetensors ] && cmp $tmp/$name-one/export/model.safetensors $tmp/$name/export/model.safetensors"
    lines "$tmp/$name-one/metrics.jsonl" >"$tmp/$name-one.lines"
    lines "$tmp/$name/metrics.jsonl" >"$tmp/$name.lines"
    check "$name: loss and gradient-norm lines equal to one process" \
        "[ -s $tmp/$name.lines ] && diff $tmp/$name-one.lines $tmp/$name.lines"
    local have want
    have=$(peak "$tmp/$name")
    want=$("$P" schedule topologies/shakespeare-2stage.json "${COMMON[@]:4}" "$@" "${V2[@]}" "${ZBV[@]}" --gflops 1 \
        --format json 2>/dev/null | python3 -c 'import json,sys; print(" ".join("%d" % s["peak_activation_bytes"] for s in json.load(sys.stdin)["simulation"]["stages"]))')
    check "$name: measured peak activation bytes ($have) as predicted ($want)" "[ -n '$have' ] && [ '$have' = '$want' ]"
}

SMALL=(--set model.dim=32 --set model.n_heads=4 --set model.n_kv_heads=4 --set model.ffn_dim=64
       --set model.seq_len=16 --set train.batch_size=4 --set train.micro_batches=4)
ZBV=()
case_zbv tied "${SMALL[@]}" --set model.tie_embeddings=true
ODD=(--set model.dim=20 --set model.n_heads=2 --set model.n_kv_heads=1 --set model.ffn_dim=36
     --set model.seq_len=13 --set train.batch_size=4 --set train.micro_batches=4)
ZBV=(--set stages.0.recompute=selective --set stages.1.recompute=full)
case_zbv odd-mixed "${ODD[@]}" --set model.tie_embeddings=true

check "no stage process left" "! pgrep -f -- '--out $tmp/' >/dev/null"
exit $fail
