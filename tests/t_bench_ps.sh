#!/usr/bin/env bash
# bench ps (issue 12) as a functional check, figures not judged:
#  - `bench ps --quick --json` runs its 8 runs (baseline, transient and
#    persistent stragglers at staleness 0, 2, -1) and prints every field;
#    the straggler hook paused as asked (seeded: worker 1 of the persistent
#    runs pauses on every step after the first) and each pause is a "pause"
#    event in trace.json; the text table names the targets;
#  - `--convergence --quick --out DIR` writes the SVG with both runs' curves
#    and convergence.json;
#  - bad options and a bad PIPETRAIN_STRAGGLE are exit 2 with the reason.
set -u
cd "$(dirname "$0")/.."
. tests/lib.sh t_bench_ps
export OPENBLAS_NUM_THREADS=1

"$P" bench ps --quick --json --keep >"$tmp/q.json" 2>"$tmp/q.err"
check "bench ps --quick --json exits 0" "[ $? -eq 0 ] || cat $tmp/q.err"
check "bench ps --json: every field, 8 runs in order" "python3 -c '
import json, math, sys
j = json.load(open(\"$tmp/q.json\"))
top = [\"bench\", \"quick\", \"workers\", \"servers\", \"steps\", \"rounds\", \"model\", \"batch_size\", \"warmup_steps_skipped\",
       \"normal_step_ms\", \"comm_sync_ms\", \"comm_async_ms\", \"loadavg_before\", \"loadavg_after\", \"runs\", \"targets\"]
run = [\"scenario\", \"staleness\", \"straggle\", \"samples_per_s\", \"ratio_to_sync\", \"predicted_samples_per_s\",
       \"predicted_ratio_to_sync\", \"step_compute_ms\", \"comm_ms\", \"pauses\", \"paused_s\", \"wall_s\",
       \"staleness_max\", \"staleness_mean\", \"rounds_samples_per_s\", \"ratio_to_sync_equal_compute\", \"predicted_ratio_to_sync_equal_compute\"]
tg = [\"transient_s2_ratio\", \"transient_s2_met\", \"transient_s2_predicted\", \"persistent_async_ratio\",
      \"persistent_async_met\", \"persistent_async_predicted\", \"persistent_s2_ratio\", \"persistent_s2_predicted\",
      \"persistent_s2_long_run_predicted\", \"transient_s2_ratio_equal_compute\", \"transient_s2_met_equal_compute\", \"persistent_async_ratio_equal_compute\", \"persistent_async_met_equal_compute\"]
miss = [k for k in top if k not in j] + [k for k in tg if k not in j[\"targets\"]]
want = [(\"baseline\", 0), (\"baseline\", -1)] + [(s, b) for s in (\"transient\", \"persistent\") for b in (0, 2, -1)]
got = [(r[\"scenario\"], r[\"staleness\"]) for r in j[\"runs\"]]
for r in j[\"runs\"]:
    miss += [k for k in run if k not in r]
    for k in (\"samples_per_s\", \"predicted_samples_per_s\", \"step_compute_ms\"):
        if not (isinstance(r.get(k), float) and r[k] > 0 and math.isfinite(r[k])): miss.append(k + \" > 0\")
ok = j[\"bench\"] == \"ps\" and j[\"quick\"] is True and got == want and not miss
if not ok: print(miss, got)
sys.exit(0 if ok else 1)'"
check "the straggler hook paused as asked (none in the baselines; persistent: worker 1 every step after the first)" \
    "python3 -c '
import json, sys
r = json.load(open(\"$tmp/q.json\"))[\"runs\"]
n = json.load(open(\"$tmp/q.json\"))[\"steps\"]
ok = all(x[\"pauses\"] == [0, 0] for x in r[:2]) and all(sum(x[\"pauses\"]) > 0 for x in r[2:5]) and \
     all(x[\"pauses\"] == [0, n - 1] for x in r[5:])
sys.exit(0 if ok else 1)'"
kept=$(sed -n 's/^bench ps: run directories kept in //p' "$tmp/q.err")
check "each pause is a \"pause\" event in trace.json" "[ -n \"$kept\" ] && python3 -c '
import json, sys
ev = json.load(open(\"$kept/persistent-s0-0/trace.json\"))[\"traceEvents\"]
p = [e for e in ev if e.get(\"name\") == \"pause\"]
n = json.load(open(\"$tmp/q.json\"))[\"steps\"]
sys.exit(0 if len(p) == n - 1 and all(e[\"pid\"] == 1 and e[\"dur\"] > 0 for e in p) else 1)'"
[ -n "$kept" ] && rm -rf "$kept"

"$P" bench ps --quick --steps 4 >"$tmp/q.txt" 2>"$tmp/q.err"
check "bench ps --quick (table) exits 0 and names both targets" \
    "[ $? -eq 0 ] && grep -q 'target transient, s = 2' $tmp/q.txt && grep -q 'target persistent, unbounded' $tmp/q.txt &&
     grep -q 'load average' $tmp/q.txt && [ \$(grep -cE '^  (transient|persistent|baseline) ' $tmp/q.txt) -eq 8 ] ||
     cat $tmp/q.txt $tmp/q.err"

"$P" bench ps --convergence --quick --steps 4 --out "$tmp/conv" >"$tmp/c.txt" 2>"$tmp/c.err"
check "bench ps --convergence --quick exits 0" "[ $? -eq 0 ] || cat $tmp/c.err"
check "convergence.svg has both runs' training and validation curves" \
    "[ \$(grep -c '<polyline' $tmp/conv/convergence.svg) -eq 4 ] && grep -q 's=2 validation' $tmp/conv/convergence.svg"
check "convergence.json: both runs' final validation loss and the difference" "python3 -c '
import json, sys
j = json.load(open(\"$tmp/conv/convergence.json\"))
ok = [r[\"staleness\"] for r in j[\"runs\"]] == [0, 2] and all(r[\"final_val_loss\"] > 0 and r[\"val_loss\"] for r in j[\"runs\"]) \
     and \"val_loss_rel_diff\" in j and \"within_3_percent\" in j
sys.exit(0 if ok else 1)'"

"$P" bench ps --steps x >/dev/null 2>"$tmp/e1"
check "bench ps --steps x: exit 2 naming --steps" "[ $? -eq 2 ] && grep -q -- --steps $tmp/e1"
"$P" bench ps --convergence >/dev/null 2>"$tmp/e2"
check "bench ps --convergence without --out: exit 2" "[ $? -eq 2 ] && grep -q -- --out $tmp/e2"

# a bad hook spec: the stage names the variable and the offset, run exits 2
port=$((20000 + (RANDOM % 120) * 100 + ($$ % 50)))
cat >"$tmp/bad.json" <<JSON
{ "model": { "dim": 32, "n_layers": 2, "n_heads": 2, "ffn_dim": 96, "seq_len": 16 },
  "data": { "path": "$PWD/$CORPUS", "val_fraction": 0 },
  "train": { "steps": 2, "batch_size": 4, "micro_batches": 2, "lr": 0.001, "eval_every": 0 },
  "coordinator": { "host": "127.0.0.1", "port": 0 },
  "stages": [ { "layers": "embed,0-1,head", "replicas": [ { "host": "127.0.0.1", "port": $port },
                                                          { "host": "127.0.0.1", "port": $((port + 1)) } ] } ],
  "sync": "ps", "ps": { "staleness": -1 },
  "parameter_servers": [ { "host": "127.0.0.1", "port": $((port + 2)) } ] }
JSON
PIPETRAIN_STRAGGLE='1:0.5' "$P" run "$tmp/bad.json" --out "$tmp/bad" --no-trace >"$tmp/bad.log" 2>&1
rc=$?
check "PIPETRAIN_STRAGGLE=1:0.5: run exits 2, the stage names the variable and the offset" \
    "[ $rc -eq 2 ] && cat $tmp/bad.log $tmp/bad/*.log 2>/dev/null | grep -q 'PIPETRAIN_STRAGGLE at offset 5: expected'"
[ $rc -eq 2 ] || cat "$tmp/bad.log"
exit $fail
