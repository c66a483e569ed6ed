#!/usr/bin/env bash
# bench/wire_quality.sh — training quality under wire compression (issue 14):
# the Shakespeare recipe (topologies/shakespeare-2stage.json, 2 stages, 1F1B)
# trained three times, activations and gradients both fp32, both bf16, both
# int8 (wire.activations / wire.gradients), the three runs side by side (their
# bits do not depend on timing). Writes OUT/quality.svg (validation loss, and
# the training loss faintly, against the step: one curve per setting) and
# OUT/quality.json (the final validation losses, their difference to fp32's, the
# worst difference at any evaluation and the mean of the last 5), and prints the
# table (bench/wire_quality_plot.py draws and computes). Targets: bf16 within 0.5 % of fp32's final validation
# loss, int8 within 2 %. Asserts nothing (a benchmark); exit 1 if a run fails.
# Usage: bench/wire_quality.sh [STEPS (2000, the recipe's)] [OUT (docs/wire)] [EVAL_EVERY (100)]
set -u
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
STEPS=${1:-2000}
OUT=${2:-docs/wire}
EVERY=${3:-100}
export OPENBLAS_NUM_THREADS=1
tmp=$(mktemp -d /tmp/bench_wire_quality.XXXXXX)
cp "$BIN/pipetrain" "$tmp/pipetrain" # a rebuild during the bench cannot mix two programs
P="$tmp/pipetrain"
trap 'pkill -KILL -f -- "--out $tmp/" 2>/dev/null; rm -rf "$tmp"' EXIT
mkdir -p "$OUT"
base=$((21000 + (RANDOM % 100) * 100))
i=0
for enc in fp32 bf16 int8; do
    "$P" run topologies/shakespeare-2stage.json --set train.steps="$STEPS" --set train.eval_every="$EVERY" \
        --set wire.activations=$enc --set wire.gradients=$enc --set coordinator.port=0 \
        --set stages.0.port=$((base + 2 * i)) --set stages.1.port=$((base + 2 * i + 1)) \
        --out "$tmp/$enc" >"$tmp/$enc.log" 2>&1 &
    i=$((i + 1))
done
rc=0
for j in 1 2 3; do wait -n || rc=1; done
for enc in fp32 bf16 int8; do
    [ -s "$tmp/$enc/summary.json" ] || { echo "$enc: the run failed:"; tail -n 20 "$tmp/$enc.log"; rc=1; }
done
[ $rc -eq 0 ] || exit 1
python3 bench/wire_quality_plot.py "$tmp" "$OUT" "$STEPS"
