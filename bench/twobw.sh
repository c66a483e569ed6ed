#!/usr/bin/env bash
# bench/twobw.sh — the asynchronous pipeline (PipeDream-2BW, schedule.kind
# "2bw", issue #13) against 1f1b (README "PipeDream-2BW").
#
# throughput: for the shakespeare 2-stage and 4-stage topologies (1 BLAS thread
#   per stage), R rounds that alternate a 1f1b and a 2bw `pipetrain run` of
#   STEPS steps (paired runs: the machine is shared and noisy; no evaluation or
#   checkpoint before the last step, which flushes 2bw); the measured step time
#   is the median of metrics.jsonl's step_ms over steps WARM+1..last-1. Prints per
#   topology the median step times, the median over rounds of the paired ratio
#   tokens/s(2bw) / tokens/s(1f1b), the prediction of the same ratio
#   (`pipetrain schedule --calibrate` with the first 1f1b run's measured costs,
#   for both kinds: 2bw's steady-state step against 1f1b's flushed step), the
#   extra weight bytes per stage (summary.json) and predicted, and the load
#   average before and after. The 2bw runs start with the synchronous warm-up
#   (schedule.warmup_sync_steps) scaled to STEPS: the same share of the run as
#   pipetrain's default warm-up of the 2000-step recipe (--warmup-sync K: that
#   warm-up instead of the default); the steady state is measured after it, and
#   tokens/s over the whole run (every step, warm-up, fill and drain included:
#   tokens / the sum of step_ms) is printed for both kinds, with what the
#   warm-up costs the 2000-step recipe (K steps at 1f1b's step time instead of
#   2bw's, from the measured and from the predicted step times).
# convergence (--convergence N): the Shakespeare recipe (shakespeare-2stage's
#   model, batch and learning-rate schedule) for N steps (default 2000) under
#   1f1b and 2bw in one process (train.c: bitwise the 2-stage and 4-stage
#   pipelines' numbers, tests/t_2bw.sh), validation loss every 100 steps; prints
#   both curves and the largest relative gap, and writes one SVG,
#   docs/2bw-convergence.svg by default (--svg FILE): both validation curves
#   (y scaled to their range) and, below, the relative gap with the 3% line.
#   2bw runs with pipetrain's default warm-up (or --warmup-sync K).
# Asserts nothing.
#   --reuse DIR draws from DIR/conv-1f1b and DIR/conv-2bw (run directories of
#   earlier convergence runs, e.g. a kept tmp directory) instead of training.
# Usage: bench/twobw.sh [--rounds R (3)] [--steps S (40)] [--convergence N] [--svg FILE] [--no-throughput] [--reuse DIR]
#                       [--warmup-sync K (pipetrain's default for 2bw)]
set -u
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
R=3; STEPS=40; CONV=0; SVG=docs/2bw-convergence.svg; THR=1; REUSE=; WS=
while [ $# -gt 0 ]; do
    case "$1" in
    --rounds) R=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --convergence) CONV=$2; shift 2 ;;
    --svg) SVG=$2; shift 2 ;;
    --no-throughput) THR=0; shift ;;
    --reuse) REUSE=$2; shift 2 ;;
    --warmup-sync) WS=$2; shift 2 ;;
    *) echo "usage: bench/twobw.sh [--rounds R] [--steps S] [--convergence N] [--svg FILE] [--no-throughput] [--reuse DIR] [--warmup-sync K]" >&2
       exit 2 ;;
    esac
done
export OPENBLAS_NUM_THREADS=1
tmp=$(mktemp -d /tmp/bench_twobw.XXXXXX)
cp "$BIN/pipetrain" "$tmp/pipetrain" # a rebuild during the bench cannot mix two programs
P="$tmp/pipetrain"
trap 'pkill -KILL -f -- "--out $tmp/" 2>/dev/null; rm -rf "$tmp"' EXIT
WARM=5
RECIPE=2000 # the convergence recipe's steps, for the warm-up's cost
if [ -z "$WS" ]; then # pipetrain's default warm-up of a 2bw run (`check` prints it)
    WS=$("$P" check topologies/shakespeare-2stage.json --set schedule.kind=2bw 2>/dev/null |
         sed -n 's/^2bw synchronous warm-up (schedule.warmup_sync_steps \([0-9]*\)).*/\1/p')
    [ -n "$WS" ] || WS=$("$P" check topologies/shakespeare-2stage.json --set schedule.kind=2bw 2>/dev/null |
                         grep -q '2bw synchronous warm-up: none' && echo 0)
    [ -n "$WS" ] || { echo "bench/twobw.sh: cannot read 2bw's default warm-up from pipetrain check" >&2; exit 1; }
fi
case "$WS" in ''|*[!0-9]*) echo "bench/twobw.sh: --warmup-sync: expected a number of steps, found '$WS'" >&2; exit 2 ;; esac
WSR=$(( (WS * STEPS + RECIPE / 2) / RECIPE )) # the same share of a STEPS-step run
base=$((30000 + (RANDOM % 100) * 100))
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)"

if [ $THR -eq 1 ]; then
SETS=(--set train.steps=$STEPS --set train.eval_every=0 --set train.eval_batches=1 --set data.val_fraction=0.002
      --set checkpoint.every=0 --set train.warmup_steps=2)
for topo in topologies/shakespeare-2stage.json topologies/shakespeare-4stage.json; do
    name=$(basename "$topo" .json)
    n=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["stages"]))' "$topo")
    ports=(); for ((k = 0; k < n; k++)); do ports+=(--set "stages.$k.port=$((base + k))"); done
    for ((r = 0; r < R; r++)); do
        for kind in 1f1b 2bw; do
            out="$tmp/$name-$kind-$r"
            ws=(); [ $kind = 2bw ] && ws=(--set schedule.warmup_sync_steps=$WSR)
            "$P" run "$topo" "${SETS[@]}" --set coordinator.port=0 "${ports[@]}" --set schedule.kind=$kind "${ws[@]}" \
                --out "$out" >"$out.log" 2>&1 || { echo "run failed: $out.log"; tail -5 "$out.log"; exit 1; }
        done
    done
    for kind in 1f1b 2bw; do
        "$P" schedule "$topo" "${SETS[@]}" --kind $kind --calibrate "$tmp/$name-1f1b-0" --format json \
            2>"$tmp/pred-$kind.err" >"$tmp/pred-$kind.json" || { cat "$tmp/pred-$kind.err"; exit 1; }
    done
    python3 - "$tmp" "$name" "$R" "$WARM" "$topo" "$WSR" "$WS" "$RECIPE" <<'EOF'
import json, statistics, sys
tmp, name, R, warm, topo = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
wsr, ws, recipe = int(sys.argv[6]), int(sys.argv[7]), int(sys.argv[8])
def all_ms(d):
    return [json.loads(l)["step_ms"] for l in open(d + "/metrics.jsonl") if '"step_ms"' in l]
def step_ms(d, kind): # the steady state: 2bw's after its warm-up
    ms = all_ms(d)
    return statistics.median(ms[max(warm, wsr + 1 if kind == "2bw" else 0):-1])
def whole_ms(d): # every step: warm-up, fill and drain included
    return sum(all_ms(d))
runs = {k: ["%s/%s-%s-%d" % (tmp, name, k, r) for r in range(R)] for k in ("1f1b", "2bw")}
meas = {k: [step_ms(d, k) for d in runs[k]] for k in runs}
whole = statistics.median([whole_ms(a) / whole_ms(b) for a, b in zip(runs["1f1b"], runs["2bw"])])
n_steps = len(all_ms(runs["2bw"][0]))
pred = {k: json.load(open("%s/pred-%s.json" % (tmp, k)))["simulation"] for k in ("1f1b", "2bw")}
ratio = statistics.median([a / b for a, b in zip(meas["1f1b"], meas["2bw"])])
pr = pred["1f1b"]["step_time"] / pred["2bw"]["step_time"]
extra = [s["extra_weight_bytes"] for s in json.load(open("%s/%s-2bw-0/summary.json" % (tmp, name)))["stages"]]
pextra = [s.get("extra_weight_bytes") for s in pred["2bw"]["stages"]]
print("%s (%d rounds alternating 1f1b and 2bw, median step time over steps %d..last-1, 2bw's from step %d: after "
      "its warm-up)" % (topo, R, warm + 1, max(warm, wsr + 1) + 1))
print("  step ms 1f1b %.2f  2bw %.2f   tokens/s 2bw / 1f1b: measured %.3f (rounds: %s)  predicted %.3f" % (
    statistics.median(meas["1f1b"]), statistics.median(meas["2bw"]), ratio,
    " ".join("%.3f" % (a / b) for a, b in zip(meas["1f1b"], meas["2bw"])), pr))
print("  predicted step ms (calibrated): 1f1b %.2f  2bw %.2f   bubble 1f1b %.1f%%  2bw %.1f%%" % (
    pred["1f1b"]["step_time"], pred["2bw"]["step_time"], 100 * pred["1f1b"]["bubble"], 100 * pred["2bw"]["bubble"]))
print("  extra weight bytes per stage (2nd version + pending gradient): measured %s  predicted %s" % (extra, pextra))
print("  whole %d-step runs (2bw's first %d synchronous): tokens/s 2bw / 1f1b %.3f (tokens / sum of step_ms, median "
      "of the paired rounds)" % (n_steps, wsr, whole))
def recipe_cost(t1, t2): # warm-up steps at 1f1b's step time instead of 2bw's
    run = ws * t1 + (recipe - ws) * t2
    return recipe * t1 / run, ws * (t1 - t2) / 1e3, 100 * ws * (t1 - t2) / run
for what, t1, t2 in (("measured", statistics.median(meas["1f1b"]), statistics.median(meas["2bw"])),
                     ("predicted", pred["1f1b"]["step_time"], pred["2bw"]["step_time"])):
    r, cost, share = recipe_cost(t1, t2)
    print("  %d-step recipe with a %d-step warm-up (%s step times): tokens/s 2bw / 1f1b %.3f over the whole run "
          "(%.3f without warm-up); the warm-up costs %.2f s, %.1f%% of 2bw's run" % (recipe, ws, what, r, t1 / t2,
                                                                                 cost, share))
EOF
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
fi

if [ "$CONV" -gt 0 ]; then
    CS=(--set train.steps=$CONV --set train.eval_every=100 --set checkpoint.every=0 --set stages.0.threads=1
        --set train.micro_batches=4 --set train.batch_size=12)
    for kind in 1f1b 2bw; do
        if [ -n "$REUSE" ]; then cp -r "$REUSE/conv-$kind" "$tmp/conv-$kind" || exit 1; continue; fi
        ws=(); [ $kind = 2bw ] && ws=(--set schedule.warmup_sync_steps=$WS)
        "$P" run topologies/shakespeare-1stage.json "${CS[@]}" --set schedule.kind=$kind "${ws[@]}" --out "$tmp/conv-$kind" \
            >"$tmp/conv-$kind.log" 2>&1 || { echo "run failed: $tmp/conv-$kind.log"; tail -5 "$tmp/conv-$kind.log"; exit 1; }
    done
    mkdir -p "$(dirname "$SVG")"
    python3 - "$tmp" "$SVG" "$CONV" <<'EOF'
import json, sys
tmp, svg, N = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = {k: [json.loads(l) for l in open("%s/conv-%s/metrics.jsonl" % (tmp, k)) if '"loss"' in l] for k in ("1f1b", "2bw")}
val = {k: [(r["step"], r["val_loss"]) for r in v if r.get("val_loss") is not None] for k, v in rows.items()}
print("convergence: Shakespeare recipe (shakespeare-2stage's model and batch, M = 4), %d steps, one process" % N)
print("%8s %10s %10s %8s" % ("step", "1f1b val", "2bw val", "gap"))
worst = 0
for (s, a), (_, b) in zip(val["1f1b"], val["2bw"]):
    gap = (b - a) / a
    worst = max(worst, abs(gap))
    print("%8d %10.4f %10.4f %7.2f%%" % (s, a, b, 100 * gap))
print("largest |gap| of the validation loss: %.2f%%" % (100 * worst))
# the warm-up, from the runs themselves: 2bw's steps 0..K compute on 1f1b's
# weights (steps 0..K-1 are 1f1b's, step K on W(K)), so their losses are equal
K = 0
while K < min(len(rows["1f1b"]), len(rows["2bw"])) and rows["1f1b"][K]["loss"] == rows["2bw"][K]["loss"]:
    K += 1
K = max(K - 1, 0)
print("2bw's synchronous warm-up: %d steps (the first %d training losses equal 1f1b's)" % (K, K + 1))
# two panels: the validation curves (y scaled to their range, so both are
# visible), and the relative gap (2bw - 1f1b) / 1f1b with the 3% target line
W, L, Rm = 720, 60, 20
P1T, P1B, P2T, P2B, H = 40, 300, 340, 500, 540
v_all = [v for k in val for _, v in val[k]]
lo, hi = min(v_all), max(v_all)
pad = 0.04 * (hi - lo)
lo, hi = lo - pad, hi + pad
gaps = [(s, 100 * (b - a) / a) for (s, a), (_, b) in zip(val["1f1b"], val["2bw"])]
glo = min([0.0, -1.0] + [g for _, g in gaps])
ghi = max([4.0] + [g for _, g in gaps]) + 0.5
X = lambda s: L + (W - L - Rm) * s / N
Y = lambda y: P1T + (P1B - P1T) * (1 - (y - lo) / (hi - lo))
G = lambda g: P2T + (P2B - P2T) * (1 - (g - glo) / (ghi - glo))
col = {"1f1b": "#1f77b4", "2bw": "#d62728"}
out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">' % (W, H),
       '<rect width="100%" height="100%" fill="white"/>',
       '<text x="%d" y="18" font-size="14">Shakespeare recipe: 1f1b vs 2bw (PipeDream-2BW), validation loss by step</text>' % L]
for i in range(6):
    y = lo + (hi - lo) * i / 5
    out.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%d" y="%.1f" text-anchor="end">%.2f</text>'
               % (L, W - Rm, Y(y), Y(y), L - 4, Y(y) + 4, y))
step = 1 if ghi - glo <= 8 else 2
g = int(glo)
while g <= ghi:
    out.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%d" y="%.1f" text-anchor="end">%+d%%</text>'
               % (L, W - Rm, G(g), G(g), L - 4, G(g) + 4, g))
    g += step
out.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#2ca02c" stroke-dasharray="6,4"/><text x="%d" y="%.1f" fill="#2ca02c">target +3%%</text>'
           % (L, W - Rm, G(3), G(3), W - Rm - 70, G(3) - 4))
out.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#888"/>' % (L, W - Rm, G(0), G(0)))
for i in range(5):
    s = N * i / 4
    out.append('<text x="%.1f" y="%d" text-anchor="middle">%d</text>' % (X(s), P2B + 16, s))
out.append('<text x="%d" y="%d" text-anchor="middle">step</text>' % ((W + L) // 2, H - 6))
out.append('<text x="%d" y="%d">validation-loss gap (2bw - 1f1b) / 1f1b</text>' % (L, P2T - 8))
for k in ("1f1b", "2bw"):
    pts = " ".join("%.1f,%.1f" % (X(s), Y(v)) for s, v in val[k])
    out.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>' % (col[k], pts))
pts = " ".join("%.1f,%.1f" % (X(s), G(g)) for s, g in gaps)
out.append('<polyline fill="none" stroke="#333" stroke-width="2" points="%s"/>' % pts)
label = {"1f1b": "1f1b", "2bw": "2bw (first %d steps synchronous)" % K if K else "2bw"}
for i, k in enumerate(("1f1b", "2bw")):
    out.append('<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="%s" stroke-width="2"/><text x="%d" y="%d">%s validation loss</text>'
               % (W - 330, W - 305, 50 + 16 * i, 50 + 16 * i, col[k], W - 300, 54 + 16 * i, label[k]))
if K:
    out.append('<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#888" stroke-dasharray="3,3"/><text x="%.1f" y="%d" fill="#555">2bw from step %d</text>'
               % (X(K), X(K), P1T, P2B, X(K) + 4, P2B - 6, K + 1))
out.append('<text x="%d" y="%d" fill="#555">largest gap %.2f%%, at step %d: %+.2f%%</text>'
           % (W - 330, 54 + 32, 100 * worst, gaps[-1][0], gaps[-1][1]))
out.append("</svg>")
open(svg, "w").write("\n".join(out) + "\n")
print("wrote %s" % svg)
EOF
fi
