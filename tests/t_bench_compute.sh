#!/usr/bin/env bash
# bench compute (issue 15) as a functional check, figures not judged (--quick
# ceilings, tiny models: a few seconds):
#  - --json: one run per preset and thread count, in order, each with every
#    field (the ceilings at N and 1 thread, tokens/s, FLOP/s, ratios, the
#    model's peak activation bytes, phase times and shares summing to 1);
#    --set reaches the model (seq_len, batch, n_layers, recompute) and the
#    peak bytes follow it; a step-shape set smaller than its weights (N below
#    dim) runs (it overran its buffers once);
#  - --markdown: the README table's header and one row per run;
#  - bad options and --set values: exit 2 naming the option or key, nothing
#    on stdout.
set -u
cd "$(dirname "$0")/.."
. tests/lib.sh t_bench_compute
export OPENBLAS_NUM_THREADS=1
small="--quick --steps 2 --warmup 1 --set n_layers=1 --set seq_len=16 --set batch=2"

"$P" bench compute $small --preset all --threads 2,1 --json >"$tmp/a.json" 2>"$tmp/a.err"
check "bench compute --preset all --threads 2,1 --json exits 0" "[ $? -eq 0 ] || cat $tmp/a.err"
check "--json: 6 runs in order, every field, shares sum to 1, peak bytes > 0" "python3 -c '
import json, math, sys
j = json.load(open(\"$tmp/a.json\"))
keys = [\"preset\", \"threads\", \"dim\", \"n_layers\", \"n_heads\", \"seq_len\", \"batch\", \"recompute\", \"params\",
        \"sgemm_gflops\", \"sgemm_gflops_1t\", \"shape_sgemm_gflops\", \"step_ms\", \"step_ms_median\", \"tokens_per_s\",
        \"flops_per_step\", \"achieved_gflops\", \"ratio\", \"paired_sgemm_gflops\", \"ratio_paired\",
        \"step_cpu_ms_median\", \"paired_sgemm_gflops_per_cpu_s\", \"ratio_cpu\", \"peak_act_bytes\", \"peak_act_bytes_storing_probs\", \"bench_act_bytes\", \"phases_ms\", \"phases_share\", \"loadavg_1m\"]
runs = j[\"runs\"]
got = [(r[\"preset\"], r[\"threads\"], r[\"dim\"], r[\"seq_len\"], r[\"n_layers\"]) for r in runs]
want = [(p, t, d, 16, 1) for p, d in ((\"recipe\", 128), (\"15m\", 288), (\"42m\", 512)) for t in (2, 1)]
assert got == want, got
for r in runs:
    miss = [k for k in keys if k not in r]
    assert not miss, miss
    for k in (\"sgemm_gflops\", \"sgemm_gflops_1t\", \"tokens_per_s\", \"achieved_gflops\", \"ratio_paired\", \"ratio_cpu\"):
        assert math.isfinite(r[k]) and r[k] > 0, (k, r[k])
    assert r[\"peak_act_bytes\"] > 0 and r[\"peak_act_bytes_storing_probs\"] > r[\"peak_act_bytes\"] and r[\"bench_act_bytes\"] >= r[\"peak_act_bytes\"], r
    s = sum(r[\"phases_share\"].values())
    assert abs(s - 1) < 0.01 and len(r[\"phases_share\"]) == 4, r[\"phases_share\"]
    if r[\"threads\"] == 1: assert r[\"sgemm_gflops\"] == r[\"sgemm_gflops_1t\"], r
'"

# the peak bytes are the model's: longer sequences and recomputation move them
"$P" bench compute $small --preset recipe --threads 1 --set seq_len=32 --json >"$tmp/b.json" 2>&1
"$P" bench compute $small --preset recipe --threads 1 --set seq_len=32 --set recompute=full --json >"$tmp/c.json" 2>&1
check "peak activation bytes follow seq_len and recompute" "python3 -c '
import json
a, b, c = (json.load(open(\"$tmp/\" + f))[\"runs\"] for f in (\"a.json\", \"b.json\", \"c.json\"))
assert b[0][\"peak_act_bytes\"] > a[0][\"peak_act_bytes\"], (a[0][\"peak_act_bytes\"], b[0][\"peak_act_bytes\"])
assert c[0][\"recompute\"] == \"full\" and c[0][\"peak_act_bytes\"] < b[0][\"peak_act_bytes\"]
assert c[0][\"flops_per_step\"] > b[0][\"flops_per_step\"]
'"

"$P" bench compute $small --preset 15m --threads 1 --markdown >"$tmp/m.md" 2>&1
check "--markdown: header and one row" "grep -q '^| preset | BLAS threads | tokens/s' $tmp/m.md && [ \$(grep -c '^| 15m | 1 |' $tmp/m.md) -eq 1 ]"

bad() { # NAME EXPECTED-TEXT ARGS...
    local name=$1 want=$2; shift 2
    "$P" bench compute "$@" >"$tmp/bad.out" 2>"$tmp/bad.err"; local rc=$?
    printf '%s\n' "$want" >"$tmp/bad.want"
    check "$name: exit 2 naming it" "[ $rc -eq 2 ] && grep -qF -f $tmp/bad.want $tmp/bad.err && [ ! -s $tmp/bad.out ] || { echo rc=$rc; cat $tmp/bad.err; false; }"
}
bad "--set dim=abc" "--set dim: expected an integer" --set dim=abc
bad "--set n_heads=5" "model.n_heads (5) must divide model.dim" --preset recipe --set n_heads=5
bad "--set unknown key" "unknown key 'colour'" --set model.colour=1
bad "--set without =" "expected KEY=VALUE" --set dim
bad "--set recompute=some" "--set recompute: expected one of" --set recompute=some
bad "--preset 99m" "unknown preset '99m'" --preset 99m
bad "--threads 0" "--threads: expected" --threads 0
bad "--steps 0" "--steps: expected a count" --steps 0
bad "--json --markdown" "choose one" --json --markdown
bad "unknown option" "unknown option '--fast'" --fast
exit $fail
