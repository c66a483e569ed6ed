#!/usr/bin/env bash
# bench/wire_quality.sh — training quality under wire compression (issue 14):
# the Shakespeare recipe (topologies/shakespeare-2stage.json, 2 stages, 1F1B)
# trained three times, activations and gradients both fp32, both bf16, both
# int8 (wire.activations / wire.gradients), the three runs side by side (their
# bits do not depend on timing). Writes OUT/quality.svg (validation loss, and
# the training loss faintly, against the step: one curve per setting) and
# OUT/quality.json (the final validation losses and their difference to fp32's),
# and prints the table. Targets: bf16 within 0.5 % of fp32's final validation
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
python3 - "$tmp" "$OUT" "$STEPS" <<'PY'
import json, sys
tmp, out, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
runs = {}
for enc in ("fp32", "bf16", "int8"):
    tr, va = [], []
    for line in open(f"{tmp}/{enc}/metrics.jsonl"):
        m = json.loads(line)
        if "loss" in m: tr.append((m["step"], m["loss"]))
        if m.get("val_loss") is not None: va.append((m["step"], m["val_loss"]))
    runs[enc] = (tr, va)
final = {e: runs[e][1][-1][1] for e in runs}
res = {"steps": steps, "topology": "topologies/shakespeare-2stage.json", "final_val_loss": final,
       "rel_diff_vs_fp32": {e: (final[e] - final["fp32"]) / final["fp32"] for e in final},
       "targets": {"bf16": 0.005, "int8": 0.02}}
json.dump(res, open(f"{out}/quality.json", "w"), indent=2)
print(f"{'setting':8} {'final val_loss':>15} {'vs fp32':>9} {'target':>8}")
for e in final:
    t = res["targets"].get(e)
    print(f"{e:8} {final[e]:15.6f} {100 * res['rel_diff_vs_fp32'][e]:+8.3f}% {('' if t is None else f'{100 * t:.1f}%'):>8}")
# the picture: validation loss (solid, dots) and training loss (faint, smoothed) against the step
W, H, L, R, T, B = 720, 420, 60, 20, 30, 50
ys = [v for e in runs for _, v in runs[e][1]]
sm = {}
for e, (tr, _) in runs.items():
    k, acc = 25, []
    for i in range(0, len(tr), k):
        seg = tr[i:i + k]
        acc.append((seg[-1][0], sum(v for _, v in seg) / len(seg)))
    sm[e] = acc
    ys += [v for _, v in acc[2:]]
y0, y1 = min(ys) * 0.98, max(ys) * 1.02
X = lambda s: L + (W - L - R) * s / steps
Y = lambda v: T + (H - T - B) * (1 - (v - y0) / (y1 - y0))
col = {"fp32": "#222222", "bf16": "#1f77b4", "int8": "#d62728"}
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
       f'<rect width="{W}" height="{H}" fill="white"/>',
       f'<text x="{W / 2}" y="18" text-anchor="middle" font-size="14">Shakespeare, 2 stages: loss by wire encoding (activations and gradients)</text>',
       f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="black"/><line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" stroke="black"/>']
for i in range(6):
    v = y0 + (y1 - y0) * i / 5
    svg.append(f'<text x="{L - 5}" y="{Y(v) + 4:.1f}" text-anchor="end">{v:.2f}</text>'
               f'<line x1="{L}" y1="{Y(v):.1f}" x2="{W - R}" y2="{Y(v):.1f}" stroke="#eee"/>')
for i in range(5):
    s = steps * i / 4
    svg.append(f'<text x="{X(s):.1f}" y="{H - B + 16}" text-anchor="middle">{int(s)}</text>')
svg.append(f'<text x="{W / 2}" y="{H - 12}" text-anchor="middle">step</text>')
svg.append(f'<text x="14" y="{H / 2}" transform="rotate(-90 14 {H / 2})" text-anchor="middle">loss</text>')
for j, e in enumerate(runs):
    pts = " ".join(f"{X(s):.1f},{Y(v):.1f}" for s, v in sm[e] if y0 <= v <= y1)
    svg.append(f'<polyline points="{pts}" fill="none" stroke="{col[e]}" stroke-opacity="0.3"/>')
    pts = " ".join(f"{X(s):.1f},{Y(v):.1f}" for s, v in runs[e][1])
    svg.append(f'<polyline points="{pts}" fill="none" stroke="{col[e]}" stroke-width="2"/>')
    svg.append(f'<text x="{W - R - 250}" y="{T + 20 + 18 * j}" fill="{col[e]}">{e}: final val_loss {final[e]:.4f} '
               f'({100 * res["rel_diff_vs_fp32"][e]:+.2f}%)</text>')
svg.append(f'<text x="{W - R - 250}" y="{T + 20 + 18 * 3}" fill="#666">solid: validation; faint: training (mean of 25 steps)</text>')
svg.append("</svg>")
open(f"{out}/quality.svg", "w").write("\n".join(svg) + "\n")
print(f"wrote {out}/quality.svg and {out}/quality.json")
PY
