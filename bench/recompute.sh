#!/usr/bin/env bash
# bench/recompute.sh — activation recomputation measured beside the simulator's
# prediction (issue #13). For each topology (default: the shakespeare 2-stage
# and 4-stage ones, 1 BLAS thread per stage) and each mode none, selective,
# full (train.recompute, every stage): real `pipetrain run`s in R rounds that
# interleave the three modes (paired runs: this machine is shared and noisy),
# and per run stage 0's peak_act_bytes (summary.json) and the median step time
# (metrics.jsonl, skipping the warm-up steps and the last one, which evaluates
# and checkpoints). Prints per topology and mode: stage 0's peak bytes measured
# and predicted (`pipetrain schedule --format json`, FLOP-derived costs), the
# median measured step time and its median ratio to none over the rounds, and
# the predicted step time and its ratio to none, and stage 0's compute time per
# step (summary.json compute_s / steps: its F, B, W) with its median ratio.
# Asserts nothing.
# Usage: bench/recompute.sh [ROUNDS (5)] [STEPS (40)] [TOPOLOGY.json ...]
set -u
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
R=${1:-5}
STEPS=${2:-40}
shift 2 2>/dev/null
TOPOS=("$@")
[ ${#TOPOS[@]} -eq 0 ] && TOPOS=(topologies/shakespeare-2stage.json topologies/shakespeare-4stage.json)
export OPENBLAS_NUM_THREADS=1
tmp=$(mktemp -d /tmp/bench_recompute.XXXXXX)
cp "$BIN/pipetrain" "$tmp/pipetrain" # a rebuild during the bench cannot mix two programs
P="$tmp/pipetrain"
trap 'pkill -KILL -f -- "--out $tmp/" 2>/dev/null; rm -rf "$tmp"' EXIT
WARM=5
SETS=(--set train.steps=$STEPS --set train.eval_every=0 --set train.eval_batches=1 --set data.val_fraction=0.002
      --set checkpoint.every=0 --set train.warmup_steps=2)
MODES=(none selective full)
base=$((30000 + (RANDOM % 100) * 100))

for topo in "${TOPOS[@]}"; do
    n=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["stages"]))' "$topo")
    ports=(); for ((k = 0; k < n; k++)); do ports+=(--set "stages.$k.port=$((base + k))"); done
    for ((r = 0; r < R; r++)); do
        for m in "${MODES[@]}"; do
            out="$tmp/$(basename "$topo" .json)-$m-$r"
            "$P" run "$topo" "${SETS[@]}" --set coordinator.port=0 "${ports[@]}" --set train.recompute=$m \
                --no-trace --out "$out" >"$out.log" 2>&1 || { echo "run failed: $out.log"; tail -5 "$out.log"; exit 1; }
        done
    done
    for m in "${MODES[@]}"; do
        "$P" schedule "$topo" "${SETS[@]}" --set train.recompute=$m --format json 2>/dev/null >"$tmp/pred-$m.json"
    done
    python3 - "$tmp" "$(basename "$topo" .json)" "$R" "$WARM" "$topo" <<'EOF'
import json, statistics, sys
tmp, name, R, warm, topo = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
modes = ["none", "selective", "full"]
def step_ms(d):
    ms = [json.loads(l)["step_ms"] for l in open(d + "/metrics.jsonl") if '"step_ms"' in l]
    return statistics.median(ms[warm:-1])
meas = {m: [step_ms("%s/%s-%s-%d" % (tmp, name, m, r)) for r in range(R)] for m in modes}
def s0_compute_ms(d):
    s = json.load(open(d + "/summary.json"))["stages"][0]
    return 1e3 * s["compute_s"] / s["steps"]
comp = {m: [s0_compute_ms("%s/%s-%s-%d" % (tmp, name, m, r)) for r in range(R)] for m in modes}
peak = {m: json.load(open("%s/%s-%s-0/summary.json" % (tmp, name, m)))["stages"][0]["peak_act_bytes"] for m in modes}
pred = {m: json.load(open("%s/pred-%s.json" % (tmp, m)))["simulation"] for m in modes}
print("%s (%d rounds, median step time over steps %d..last-1, 1 BLAS thread per stage)" % (topo, R, warm + 1))
print("%-10s %14s %14s %8s %10s %8s %10s %8s %12s %8s" % ("mode", "s0 peak meas", "s0 peak pred", "cut", "step ms",
      "ratio", "pred ms", "ratio", "s0 comp ms", "ratio"))
for m in modes:
    ratio = statistics.median([a / b for a, b in zip(meas[m], meas["none"])])
    pm, p0 = pred[m]["step_time"], pred["none"]["step_time"]
    pp = pred[m]["stages"][0]["peak_activation_bytes"]
    cratio = statistics.median([a / b for a, b in zip(comp[m], comp["none"])])
    print("%-10s %14d %14d %7.1f%% %10.2f %8.3f %10.2f %8.3f %12.2f %8.3f" % (m, peak[m], pp,
          100 * (1 - peak[m] / peak["none"]), statistics.median(meas[m]), ratio, pm, pm / p0,
          statistics.median(comp[m]), cratio))
EOF
done
