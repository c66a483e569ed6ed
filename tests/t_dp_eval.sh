#!/usr/bin/env bash
# Validation on a data-parallel grid: the evaluation's batches are split over the
# R replica pipelines (contiguous blocks), and the head stages add the per-batch
# losses in batch order along their ring, so the validation loss is bitwise what
# one pipeline computes.
#  - With lr 1e-30 every run keeps the initial weights (each update is far below
#    half an ulp of its weight), and with the same micro-batch
#    size (4) every run cuts the validation windows into the same batches: then the
#    val_loss of 2x2, 2x3 (three runs: no timing may move a bit), 1x3 with fewer
#    batches than replicas and a zb-v 2x2 grid is bitwise the in-process trainer's
#    (1x1) and the plain pipeline's (2x1): summary.json's val_loss (%.17g) and
#    every metrics line's.
#  - Every replica evaluates its own block (stage logs: "evaluated batches A..B
#    of N"), the blocks of coll_segment(N, R, r); before the split, replicas > 0
#    sat idle.
set -u
cd "$(dirname "$0")/.."
. tests/lib.sh t_dp_eval
. tests/lib_grid.sh
CORPUS=$PWD/$CORPUS # written into topologies under $tmp
export OPENBLAS_NUM_THREADS=1

port=$((20000 + (RANDOM % 120) * 100 + ($$ % 50) + 75))

# topo FILE R MICRO VALFRAC LAYERS...: a tiny model, lr 1e-30, global batch 24; R
# replicas of each stage (R 0: plain stages without "replicas"), every process on
# its own loopback port.
topo() {
    local f=$1 R=$2 m=$3 vf=$4
    shift 4
    {
        printf '{ "model": { "dim": 32, "n_layers": 4, "n_heads": 2, "ffn_dim": 64, "seq_len": 16 },\n'
        printf '  "data": { "path": "%s", "val_fraction": %s },\n' "$CORPUS" "$vf"
        printf '  "train": { "steps": 2, "batch_size": 24, "micro_batches": %d, "lr": 1e-30, "weight_decay": 0,\n' "$m"
        printf '             "eval_every": 1, "eval_batches": 2 },\n'
        printf '  "coordinator": { "host": "127.0.0.1", "port": 0 },\n'
        stages_json "$R" "$@"
        printf ' }\n'
    } >"$f"
}

# run NAME TOPOLOGY SCHEDULE: trains; keeps the validation lines and the final
# val_loss in full.
run() {
    local name=$1 t=$2 sched=$3
    "$P" run "$t" --set schedule.kind="$sched" --out "$tmp/$name" >"$tmp/$name.log" 2>&1
    local rc=$?
    check "$name: run exits 0" "[ $rc -eq 0 ] || { tail -n 12 $tmp/$name.log $tmp/$name/stage-*.log; false; }"
    grep -o '"val_loss": [^,}]*' "$tmp/$name/metrics.jsonl" >"$tmp/$name.val"
    grep -o '"val_loss": [^,}]*' "$tmp/$name/summary.json" >"$tmp/$name.final"
}
same_val() { # NAME REF: the validation losses bitwise equal
    check "$1: final val_loss bitwise $2's ($(cat $tmp/$2.final))" \
        "[ -s $tmp/$2.final ] && grep -q '[0-9]' $tmp/$2.final && cmp -s $tmp/$2.final $tmp/$1.final"
    check "$1: every evaluation's val_loss equal to $2's" \
        "[ \$(wc -l <$tmp/$2.val) -eq 2 ] && cmp -s $tmp/$2.val $tmp/$1.val"
}
# blocks NAME STAGE R N: stage STAGE's replica r logged the block coll_segment(N, R, r) at the last step
blocks() {
    local name=$1 k=$2 R=$3 n=$4 r lo=0 len
    for ((r = 0; r < R; r++)); do
        len=$((n / R + (r < n % R ? 1 : 0)))
        check "$name: stage $k replica $r evaluated batches $lo..$((lo + len)) of $n" \
            "grep -q 'stage $k replica $r: step 2: evaluated batches $lo\\.\\.$((lo + len)) of $n ' $tmp/$name/stage-$k-replica-$r.log"
        lo=$((lo + len))
    done
}

# val_fraction 0.001: 67 windows of 16 tokens, 17 batches of 4 (the last of 3)
topo "$tmp/1x1.json" 0 6 0.001 "embed,0-3,head"
topo "$tmp/2x1.json" 0 6 0.001 "embed,0-1" "2-3,head"
topo "$tmp/2x2.json" 2 3 0.001 "embed,0-1" "2-3,head"
topo "$tmp/2x3.json" 3 2 0.001 "embed,0-1" "2-3,head"
topo "$tmp/2x2v.json" 2 3 0.001 "embed,0,3,head" "1|2"
# 0.0001: 6 windows, 2 batches over 3 replicas (replica 2 scores none)
topo "$tmp/1x1s.json" 0 6 0.0001 "embed,0-3,head"
topo "$tmp/1x3s.json" 3 2 0.0001 "embed,0-3,head"

run 1x1 "$tmp/1x1.json" 1f1b
run 2x1 "$tmp/2x1.json" 1f1b
same_val 2x1 1x1
run 2x2 "$tmp/2x2.json" 1f1b
same_val 2x2 1x1
blocks 2x2 0 2 17
blocks 2x2 1 2 17
for i in 1 2 3; do
    run 2x3-$i "$tmp/2x3.json" gpipe
    same_val 2x3-$i 1x1
done
blocks 2x3-1 1 3 17
run 2x2v "$tmp/2x2v.json" zb-v
same_val 2x2v 1x1
blocks 2x2v 0 2 17
run 1x1s "$tmp/1x1s.json" 1f1b
run 1x3s "$tmp/1x3s.json" gpipe
same_val 1x3s 1x1s
blocks 1x3s 0 3 2

[ $fail -eq 0 ] && echo "t_dp_eval: ok" || echo "t_dp_eval: FAILED"
exit $fail
