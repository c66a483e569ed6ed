#!/usr/bin/env python3
"""bench/wire_quality_plot.py — the picture and numbers of bench/wire_quality.sh.

Usage: wire_quality_plot.py RUNS_DIR OUT_DIR STEPS
RUNS_DIR holds fp32/, bf16/ and int8/, each with the metrics.jsonl of a run.
Writes OUT_DIR/quality.svg (top: validation loss, solid, and training loss,
faint, mean of 25 steps, per setting; bottom: each setting's validation loss
relative to fp32's at every evaluation, with the targets as dashed lines) and
OUT_DIR/quality.json, and prints the table."""
import json
import sys

runs_dir, out, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
ENCS = ("fp32", "bf16", "int8")
TARGET = {"bf16": 0.005, "int8": 0.02}
COL = {"fp32": "#222222", "bf16": "#1f77b4", "int8": "#d62728"}
runs = {}
for enc in ENCS:
    tr, va = [], []
    for line in open(f"{runs_dir}/{enc}/metrics.jsonl"):
        m = json.loads(line)
        if "loss" in m:
            tr.append((m["step"], m["loss"]))
        if m.get("val_loss") is not None:
            va.append((m["step"], m["val_loss"]))
    runs[enc] = (tr, va)
final = {e: runs[e][1][-1][1] for e in ENCS}
rel = {e: (final[e] - final["fp32"]) / final["fp32"] for e in ENCS}
ref = dict(runs["fp32"][1])
rel_curve = {e: [(s, 100 * (v - ref[s]) / ref[s]) for s, v in runs[e][1] if s in ref] for e in ("bf16", "int8")}
res = {"steps": steps, "topology": "topologies/shakespeare-2stage.json", "final_val_loss": final,
       "rel_diff_vs_fp32": rel, "targets": TARGET,
       "max_abs_rel_diff_any_eval_pct": {e: max(abs(d) for _, d in c) for e, c in rel_curve.items()},
       # the last 5 evaluations' mean difference: one evaluation is a single draw of a chaotic trajectory
       "mean_rel_diff_last5_evals_pct": {e: sum(d for _, d in c[-5:]) / len(c[-5:]) for e, c in rel_curve.items()}}
json.dump(res, open(f"{out}/quality.json", "w"), indent=2)
print(f"{'setting':8} {'final val_loss':>15} {'vs fp32':>9} {'target':>8} {'worst eval':>11} {'last 5 evals':>13}")
for e in ENCS:
    t = TARGET.get(e)
    worst = res["max_abs_rel_diff_any_eval_pct"].get(e)
    m5 = res["mean_rel_diff_last5_evals_pct"].get(e)
    print(f"{e:8} {final[e]:15.6f} {100 * rel[e]:+8.3f}% {('' if t is None else f'{100 * t:.1f}%'):>8}"
          f" {('' if worst is None else f'{worst:.3f}%'):>11} {('' if m5 is None else f'{m5:+.3f}%'):>13}")

W, H, L, R = 760, 640, 70, 20
P1 = (40, 380)   # top panel: y from, to
P2 = (440, 590)  # bottom panel
X = lambda s: L + (W - L - R) * s / steps
smooth = {}
ys = [v for e in ENCS for _, v in runs[e][1]]
for e, (tr, _) in runs.items():
    k, acc = 25, []
    for i in range(0, len(tr), k):
        seg = tr[i:i + k]
        acc.append((seg[-1][0], sum(v for _, v in seg) / len(seg)))
    smooth[e] = acc
    ys += [v for _, v in acc[4:]]
y0, y1 = min(ys) * 0.98, max(ys) * 1.02
Y1 = lambda v: P1[0] + (P1[1] - P1[0]) * (1 - (v - y0) / (y1 - y0))
lim = max(2.5, max(abs(d) for c in rel_curve.values() for _, d in c) * 1.1)
Y2 = lambda d: P2[0] + (P2[1] - P2[0]) * (1 - (d + lim) / (2 * lim))
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
       f'<rect width="{W}" height="{H}" fill="white"/>',
       f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="14">Shakespeare recipe, 2 stages: loss by wire '
       f'encoding of activations and gradients ({steps} steps)</text>']
for (a, b) in (P1, P2):
    svg.append(f'<line x1="{L}" y1="{b}" x2="{W - R}" y2="{b}" stroke="black"/>'
               f'<line x1="{L}" y1="{a}" x2="{L}" y2="{b}" stroke="black"/>')
for i in range(6):
    v = y0 + (y1 - y0) * i / 5
    svg.append(f'<line x1="{L}" y1="{Y1(v):.1f}" x2="{W - R}" y2="{Y1(v):.1f}" stroke="#eee"/>'
               f'<text x="{L - 5}" y="{Y1(v) + 4:.1f}" text-anchor="end">{v:.2f}</text>')
for d in (-2, -0.5, 0, 0.5, 2):
    c = "#999" if d == 0 else COL["int8" if abs(d) == 2 else "bf16"]
    dash = "" if d == 0 else ' stroke-dasharray="4,3"'
    svg.append(f'<line x1="{L}" y1="{Y2(d):.1f}" x2="{W - R}" y2="{Y2(d):.1f}" stroke="{c}"{dash}/>'
               f'<text x="{L - 5}" y="{Y2(d) + 4:.1f}" text-anchor="end">{d:+g}%</text>')
for i in range(5):
    s = steps * i / 4
    for b in (P1[1], P2[1]):
        svg.append(f'<text x="{X(s):.1f}" y="{b + 16}" text-anchor="middle">{int(s)}</text>')
svg.append(f'<text x="{W / 2}" y="{P2[1] + 34}" text-anchor="middle">step</text>')
svg.append(f'<text x="16" y="{(P1[0] + P1[1]) / 2}" transform="rotate(-90 16 {(P1[0] + P1[1]) / 2})" '
           f'text-anchor="middle">loss</text>')
svg.append(f'<text x="16" y="{(P2[0] + P2[1]) / 2}" transform="rotate(-90 16 {(P2[0] + P2[1]) / 2})" '
           f'text-anchor="middle">val_loss vs fp32</text>')
svg.append(f'<text x="{L + 10}" y="{P2[0] - 8}">validation loss relative to fp32 at each evaluation; dashed: '
           f'the targets (bf16 0.5 %, int8 2 %)</text>')
for j, e in enumerate(ENCS):
    pts = " ".join(f"{X(s):.1f},{Y1(v):.1f}" for s, v in smooth[e] if y0 <= v <= y1)
    svg.append(f'<polyline points="{pts}" fill="none" stroke="{COL[e]}" stroke-opacity="0.3"/>')
    pts = " ".join(f"{X(s):.1f},{Y1(v):.1f}" for s, v in runs[e][1])
    svg.append(f'<polyline points="{pts}" fill="none" stroke="{COL[e]}" stroke-width="2"/>')
    svg.append(f'<text x="{W - R - 300}" y="{P1[0] + 20 + 18 * j}" fill="{COL[e]}">{e}: final val_loss '
               f'{final[e]:.4f} ({100 * rel[e]:+.2f}% vs fp32)</text>')
    if e in rel_curve:
        pts = " ".join(f"{X(s):.1f},{Y2(d):.1f}" for s, d in rel_curve[e])
        svg.append(f'<polyline points="{pts}" fill="none" stroke="{COL[e]}" stroke-width="2"/>')
svg.append(f'<text x="{W - R - 300}" y="{P1[0] + 20 + 18 * 3}" fill="#666">solid: validation; faint: training '
           f'(mean of 25 steps)</text>')
svg.append("</svg>")
open(f"{out}/quality.svg", "w").write("\n".join(svg) + "\n")
print(f"wrote {out}/quality.svg and {out}/quality.json")
