# lib_resume.sh — sourced by t_resume.sh and t_restart.sh: tests/lib.sh's set-up,
# the small model overrides both use, a 2-stage port block offset by $2, and helpers.
# Usage: . tests/lib_resume.sh NAME PORT_OFFSET
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. tests/lib.sh "$1"

STEPS=30
# data.val_fraction 0.01: the last step evaluates every validation window, ~3 s a
# run at the file's 10 %
COMMON=(--steps $STEPS --set model.n_layers=4 --set train.batch_size=8 --set train.micro_batches=4
        --set train.eval_every=4 --set checkpoint.every=3 --set train.eval_batches=2 --set train.warmup_steps=2
        --set data.val_fraction=0.01)
base=$((20000 + (RANDOM % 120) * 100 + $2))
PIPE=(--set coordinator.port=0 --set stages.0.port=$base --set stages.1.port=$((base + 1)) --peer-timeout-ms 2000)
# lines METRICS: the loss lines without timings
lines() { grep '"loss"' "$1" | sed -E 's/, "step_ms": [^,}]*//; s/, "tokens_per_s": [^,}]*//'; }
# wait_file PATH: until it exists (at most 60 s)
wait_file() { for _ in $(seq 1200); do [ -e "$1" ] && return 0; sleep 0.05; done; return 1; }

# export_cmp DIR: export it and compare the weights with the reference run's, bitwise
export_cmp() {
    "$P" export "$1" --out "$1/export" >/dev/null 2>&1 && cmp "$tmp/ref/export/model.safetensors" "$1/export/model.safetensors"
}

# The uninterrupted one-stage reference run, exported, and its loss lines.
reference_run() {
    "$P" run topologies/shakespeare-1stage.json "${COMMON[@]}" --set stages.0.threads=1 --out "$tmp/ref" >"$tmp/ref.log" 2>&1
    check "reference: uninterrupted 1-stage run exits 0" "[ $? -eq 0 ]"
    "$P" export "$tmp/ref" --out "$tmp/ref/export" >/dev/null 2>&1
    lines "$tmp/ref/metrics.jsonl" >"$tmp/ref.lines"
}
