#!/usr/bin/env bash
# Data parallelism (issue #8): stages replicated R times, weight gradients
# all-reduced in buckets over the replicas' ring.
#  - For a given R the weights are bitwise the same for every split of the
#    layers (1, 2, 4 stages x 2 replicas; 1 and 2 stages x 3) and every
#    schedule (gpipe, 1f1b, zb-h1), with and without tied embeddings, and with
#    ZeRO-1 (sharded AdamW state: bitwise the plain all-reduce, its state per
#    process halved).
#  - Against R = 1 with the same global batch: the loss lines agree to 1e-5.
#  - Resume: at the same R bitwise the uninterrupted run; R 2 -> 1 and 1 -> 2
#    work and say so.
#  - summary.json names every process by (stage, replica) with its all-reduce
#    time; a grid's stages log to stage-K-replica-R.log.
set -u
cd "$(dirname "$0")/.."
. tests/lib_grid.sh
BIN=${BIN:-bin}
P="$BIN/pipetrain"
CORPUS=$PWD/../shared/data/tinyshakespeare.txt
tmp=$(mktemp -d /tmp/t_data_parallel.XXXXXX)
cleanup() {
    pkill -KILL -f -- "--out $tmp/" 2>/dev/null
    rm -rf "$tmp"
}
[ -n "${KEEP_TMP:-}" ] && cleanup() { echo "kept $tmp"; }
trap cleanup EXIT
fail=0
check() { if eval "$2"; then echo "  ok   $1"; else echo "  FAIL $1"; fail=1; fi; }
[ -f "$CORPUS" ] || { echo "missing $CORPUS"; exit 1; }
export OPENBLAS_NUM_THREADS=1

base=$((20000 + (RANDOM % 120) * 100 + ($$ % 50)))
port=$base

# topo FILE R TIED BATCH LAYERS... : the shakespeare model (4 blocks), R
# replicas of each stage, every process on its own loopback port.
topo() {
    local f=$1 R=$2 tied=$3 batch=$4
    shift 4
    {
        printf '{ "model": { "dim": 64, "n_layers": 4, "n_heads": 4, "ffn_dim": 192, "seq_len": 32, "tie_embeddings": %s },\n' "$tied"
        # val_fraction 0.01: the last step evaluates every validation window
        printf '  "data": { "path": "%s", "val_fraction": 0.01 },\n' "$CORPUS"
        printf '  "train": { "steps": 6, "batch_size": %d, "micro_batches": 4, "lr": 0.003, "warmup_steps": 2,\n' "$batch"
        printf '             "eval_every": 3, "eval_batches": 2 },\n'
        printf '  "checkpoint": { "every": 3 },\n'
        printf '  "coordinator": { "host": "127.0.0.1", "port": 0 },\n'
        stages_json "$R" "$@"
        printf ' }\n'
    } >"$f"
}

# Loss lines without the timings (and without a resume's event line).
lines() { grep -v '"event"' "$1" | sed -E 's/, "step_ms": [^,}]*//; s/, "tokens_per_s": [^,}]*//'; }

# run NAME TOPOLOGY SCHEDULE [OPTIONS]: trains, exports, keeps the loss lines.
run() {
    local name=$1 t=$2 sched=$3
    shift 3
    "$P" run "$t" --set schedule.kind="$sched" --out "$tmp/$name" "$@" >"$tmp/$name.log" 2>&1
    local rc=$?
    check "$name: run exits 0" "[ $rc -eq 0 ] || { tail -n 12 $tmp/$name.log $tmp/$name/stage-*.log; false; }"
    "$P" export "$tmp/$name" --out "$tmp/$name/export" >/dev/null 2>&1
    lines "$tmp/$name/metrics.jsonl" >"$tmp/$name.lines"
}
same() { # NAME REF: bitwise weights and identical loss lines
    check "$1: weights bitwise equal to $2" "cmp $tmp/$2/export/model.safetensors $tmp/$1/export/model.safetensors"
    check "$1: loss lines equal to $2" "diff $tmp/$2.lines $tmp/$1.lines >/dev/null"
}

# --- R = 2: every split and schedule gives the same bits
topo "$tmp/1x2.json" 2 false 16 "embed,0-3,head"
topo "$tmp/2x2.json" 2 false 16 "embed,0-1" "2-3,head"
topo "$tmp/4x2.json" 2 false 16 "embed,0" "1" "2" "3,head"
run 1x2-gpipe "$tmp/1x2.json" gpipe
run 2x2-gpipe "$tmp/2x2.json" gpipe
same 2x2-gpipe 1x2-gpipe
run 2x2-1f1b "$tmp/2x2.json" 1f1b
same 2x2-1f1b 1x2-gpipe
run 2x2-zbh1 "$tmp/2x2.json" zb-h1
same 2x2-zbh1 1x2-gpipe
run 4x2-1f1b "$tmp/4x2.json" 1f1b
same 4x2-1f1b 1x2-gpipe
run 4x2-zbh1 "$tmp/4x2.json" zb-h1
same 4x2-zbh1 1x2-gpipe

# the run directory of a grid
d=$tmp/2x2-1f1b
for f in stage-0-replica-0.log stage-1-replica-1.log; do check "2x2 wrote $f" "[ -f $d/$f ]"; done
for f in checkpoints/step-6/stage-0.safetensors checkpoints/step-6/stage-1.safetensors \
         checkpoints/step-6/COMPLETE trace.json; do
    check "2x2 wrote $f" "[ -s $d/$f ]"
done
check "2x2: no shard per replica" "! ls $d/checkpoints/step-6 | grep -q replica"
check "summary.json: 4 processes by (stage, replica)" \
    "[ \$(grep -c '\"replica\": [01]' $d/summary.json) -eq 4 ] && grep -q '\"replicas\": 2' $d/summary.json"
check "summary.json: all-reduce time per process" "grep -Eq '\"allreduce_s\": 0\\.[0-9]*[1-9]' $d/summary.json"

# --- ZeRO-1: bitwise the plain all-reduce; half the AdamW state per process
run 2x2-zero "$tmp/2x2.json" 1f1b --set train.zero=1
same 2x2-zero 1x2-gpipe
opt() { grep -o '"optim_bytes": [0-9]*' "$1/summary.json" | head -1 | grep -o '[0-9]*$'; }
# (a bucket's segments differ by at most one float: within 1% of half)
check "ZeRO-1 halves the AdamW state of stage 0 (R = 2)" \
    "[ \$(( \$(opt $tmp/2x2-1f1b) * 101 / 200 )) -ge \$(opt $tmp/2x2-zero) ] && [ \$(( \$(opt $tmp/2x2-zero) * 2 )) -ge \$(opt $tmp/2x2-1f1b) ]"

# --- tied embeddings across stages and replicas
topo "$tmp/1x2t.json" 2 true 16 "embed,0-3,head"
topo "$tmp/2x2t.json" 2 true 16 "embed,0-1" "2-3,head"
run 1x2-tied "$tmp/1x2t.json" gpipe
run 2x2-tied "$tmp/2x2t.json" 1f1b --set train.zero=1
same 2x2-tied 1x2-tied

# --- R = 3: the reduction order does not depend on the split either
topo "$tmp/1x3.json" 3 false 24 "embed,0-3,head"
topo "$tmp/2x3.json" 3 false 24 "embed,0-1" "2-3,head"
run 1x3 "$tmp/1x3.json" gpipe --set train.bucket_mb=0.05
run 2x3 "$tmp/2x3.json" 1f1b --set train.bucket_mb=0.05
same 2x3 1x3
# default buckets (4 MiB: a unit each here), segments larger than the activations
run 1x3-big "$tmp/1x3.json" gpipe
run 2x3-big "$tmp/2x3.json" zb-h1 --set train.zero=1
same 2x3-big 1x3-big

# --- R = 1 with the same global batch (16 sequences in 4 micro-batches of 4):
# the same data per step, the loss within float rounding
topo "$tmp/2x1.json" 0 false 16 "embed,0-1" "2-3,head"
run 2x1 "$tmp/2x1.json" 1f1b
close() { # A B: every loss within 1e-5 relative
    paste <(grep -o '"loss": [-0-9.e]*' "$tmp/$1.lines" | cut -d' ' -f2) \
          <(grep -o '"loss": [-0-9.e]*' "$tmp/$2.lines" | cut -d' ' -f2) |
        awk 'NF != 2 { bad = 1 } { d = $1 - $2; if (d < 0) d = -d; if (d > 1e-5 * $1) bad = 1; n++ }
             END { exit (bad || n != 6) }'
}
check "R = 1 vs R = 2: loss lines within 1e-5 relative" "close 2x1 1x2-gpipe"

# --- resume: at the same R bitwise; across R it works and says so
resume_from() { # NAME SOURCE TOPOLOGY SCHEDULE: SOURCE's step-3 checkpoint, resumed to step 6
    local name=$1 src=$2 t=$3 sched=$4
    mkdir -p "$tmp/$name"
    cp -r "$tmp/$src/checkpoints" "$tmp/$src/metrics.jsonl" "$tmp/$name/"
    rm -rf "$tmp/$name/checkpoints/step-6"
    echo step-3 >"$tmp/$name/checkpoints/latest"
    "$P" run "$t" --set schedule.kind="$sched" --out "$tmp/$name" --resume >"$tmp/$name.log" 2>&1
    local rc=$?
    check "$name: resumed run exits 0" "[ $rc -eq 0 ] || { tail -n 12 $tmp/$name.log; false; }"
    "$P" export "$tmp/$name" --out "$tmp/$name/export" >/dev/null 2>&1
    lines "$tmp/$name/metrics.jsonl" >"$tmp/$name.lines"
}
resume_from resume-2x2 2x2-zero "$tmp/2x2.json" 1f1b
same resume-2x2 1x2-gpipe
resume_from resume-2to1 2x2-1f1b "$tmp/2x1.json" 1f1b
check "R 2 -> 1: says so" "grep -q 'made with 2 replica(s) per stage and the run goes on with 1' $tmp/resume-2to1.log"
check "R 2 -> 1: 6 loss lines" "[ \$(grep -c '\"loss\"' $tmp/resume-2to1/metrics.jsonl) -eq 6 ]"
resume_from resume-1to2 2x1 "$tmp/2x2.json" 1f1b
check "R 1 -> 2: says so" "grep -q 'made with 1 replica(s) per stage and the run goes on with 2' $tmp/resume-1to2.log"
check "R 1 -> 2: loss within 1e-5 of the R = 2 run" "close resume-1to2 1x2-gpipe"

# a bad ring receive knob is bad input: exit 2 naming the variable (was 1)
PIPETRAIN_RING_RX=bogus "$P" run "$tmp/2x2.json" --set train.steps=1 --out "$tmp/badrx" >"$tmp/badrx.log" 2>&1; rc=$?
check "PIPETRAIN_RING_RX=bogus: exit 2 naming it" "[ $rc -eq 2 ] && grep -q PIPETRAIN_RING_RX $tmp/badrx.log"

[ $fail -eq 0 ] && echo "t_data_parallel: ok" || echo "t_data_parallel: FAILED"
exit $fail
