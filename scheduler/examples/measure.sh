#!/usr/bin/env bash
# measure.sh — predicted against measured: trains the 2-stage Shakespeare
# topology (1 BLAS thread per stage) for a few steps under each schedule, and
# prints per schedule the measured step time (median compute span of the steps
# after the first), the prediction calibrated with the run's own mean F/B/W
# costs and transfer latency, and the measured and predicted bubbles, from each
# run's summary.json "timing". Benchmark, not a test: the machine's load is
# printed beside the numbers.
#   scheduler/examples/measure.sh [STEPS] [MICRO_BATCHES] [OUT_DIR]
set -u
cd "$(dirname "$0")/../.."
STEPS=${1:-40} M=${2:-4} OUT=${3:-$(mktemp -d /tmp/pipetrain-measure.XXXXXX)}
P=bin/pipetrain
mkdir -p "$OUT"
base=$((30000 + (RANDOM % 300) * 100))
printf 'machine: %s cores, load average before: %s\n' "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-12s %3s %10s %10s %7s %9s %9s  %s\n' schedule M measured predicted error bubble predicted "bubble per stage (measured)"
for kind in gpipe 1f1b zb-h1 interleaved; do
    extra=()
    [ "$kind" = interleaved ] && extra=(--set stages.0.layers=embed,0,2 --set stages.1.layers=1,3,head)
    d="$OUT/$kind-m$M"
    rm -rf "$d"
    if ! "$P" run topologies/shakespeare-2stage.json --steps "$STEPS" --set train.micro_batches="$M" \
        --set schedule.kind="$kind" --set train.eval_every=0 --set checkpoint.every=0 --set train.log_every=1000 \
        --set coordinator.port=0 --set stages.0.port=$base --set stages.1.port=$((base + 1)) "${extra[@]}" \
        --out "$d" >"$d.log" 2>&1; then
        echo "$kind: run failed, see $d.log"; continue
    fi
    python3 - "$d/summary.json" "$kind" "$M" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))["timing"]
m, p = t["measured_step_ms"], t["predicted_step_ms"]
print("%-12s %3s %8.2f ms %7.2f ms %+6.1f%% %8.1f%% %8.1f%%  %s" % (sys.argv[2], sys.argv[3], m, p, 100 * (p - m) / m,
      100 * t["measured_bubble"], 100 * t["predicted_bubble"], " ".join("%.1f%%" % (100 * b) for b in t["measured_bubble_stage"])))
PY
done
printf 'load average after: %s; runs in %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)" "$OUT"
