#!/usr/bin/env bash
# bench/wire_links.sh — `make bench-wire` (issue 14, "slow links, measured and
# predicted"). A 2-stage run (tests/netns/grid.sh with GR_R=1: the coordinator
# and each stage in its own network namespace, every link shaped by tbf on both
# ends) for each link RATE and each WIRE setting (the encoding of activations
# and gradients alike). Per run: the measured step time (metrics.jsonl step_ms,
# median of the steps after the first) beside the simulator's prediction,
#   pipetrain schedule TOPO --calibrate RUN --latency LAT_MS
# where TOPO carries "links": {"bandwidth": RATE} (the simulator's link model),
# RUN is the run itself (its measured F, B, W: compute and codec costs, which
# the link does not change; the machine's load does, run to run) and the
# transfer of a tensor takes
# LAT_MS + its encoded bytes / RATE. Targets: predicted within 15% of measured
# at every rate; at 20mbit int8 makes the step >= 2.5x faster than fp32.
# Environment: RATES (default "1gbit 100mbit 20mbit"), WIRES (default "fp32 bf16 int8"), STEPS (default 8), BATCH (default 48: 4 micro-batches of 12),
# LAT_MS (default 0.2), BIN. Needs root; exits 77 with a message where
# namespaces cannot be created. Not part of `make test` (it measures time).
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BIN=${BIN:-bin}
case $BIN in /*) ;; *) BIN=$ROOT/$BIN ;; esac
P=$BIN/pipetrain
CORPUS=$ROOT/../shared/data/tinyshakespeare.txt
export OPENBLAS_NUM_THREADS=1
RATES=${RATES:-1gbit 100mbit 20mbit}
WIRES=${WIRES:-fp32 bf16 int8}
STEPS=${STEPS:-8}
BATCH=${BATCH:-48}
LAT_MS=${LAT_MS:-0.2}
GR_R=1
GR_DEADLINE=${GR_DEADLINE:-300}
. tests/netns/lib.sh
. tests/netns/grid.sh
[ -x "$P" ] || { echo "bench-wire: $P is not built"; exit 1; }
command -v jq >/dev/null || { echo "SKIP bench-wire: needs jq"; exit 77; }
T=$(mktemp -d /tmp/pt-bench-wire.XXXXXX) || exit 1
trap 'gr_cleanup; echo "runs kept in $T"' EXIT
trap 'echo interrupted; exit 130' INT TERM HUP
cp "$P" "$T/pipetrain" && P=$T/pipetrain
gr_init "$T"; rc=$?
if [ $rc -eq 2 ]; then echo "SKIP bench-wire: cannot create network namespaces here: $NN_WHY"; exit 77; fi
[ $rc -eq 0 ] || { echo "bench-wire: namespace setup: $NN_WHY"; exit 1; }
# gr_start for one replica: a stage's command has no --replica then
wl_start() {
    local d=$1 cmd k i
    gr_bg "$d/coord.log" ip netns exec "$(nn_ns c)" "$P" run "$d/topo.json" --out "$d/run" --run-id $GR_RUN_ID
    GR_COORD=$last
    for i in $(seq 100); do
        nn_exec c ss -Htln "sport = :$GR_COORD_PORT" 2>/dev/null | grep -q . && break
        kill -0 "$GR_COORD" 2>/dev/null || break
        sleep 0.1
    done
    timeout 30 ip netns exec "$(nn_ns c)" "$P" run "$d/topo.json" --out "$d/run" --run-id $GR_RUN_ID \
        --print-commands >"$d/commands" 2>&1
    GR_PROCS=""
    while read -r cmd; do
        k=$(sed -n 's/.* --stage \([0-9]*\) .*/\1/p' <<<"$cmd")
        [ -n "$k" ] || continue
        gr_bg "$d/stage-$k.out" ip netns exec "$(nn_ns "s${k}r0")" bash -c "$cmd"
        GR_PROCS="$GR_PROCS $last"
    done < <(grep -v '^#' "$d/commands")
}
median() { sort -g | awk '{v[NR] = $1} END {if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

echo "bench-wire: load average $(cut -d' ' -f1-3 /proc/loadavg) before; runs in $T"
A=$T/wire_links.md
echo "| link | wire | bytes/micro-batch fwd | bwd | measured step ms | predicted step ms | error |" >"$A"
echo "|---|---|---|---|---|---|---|" >>"$A"
for rate in $RATES; do
    gr_shape_all "$rate" || { echo "bench-wire: tbf: $NN_WHY"; exit 1; }
    for wire in $WIRES; do
        d=$T/run-$rate-$wire
        mkdir -p "$d"
        gr_topo "$d/base.json" "$STEPS" 4
        # a narrow model (dim 64, 2 blocks) and 12 sequences per micro-batch: the
        # link, not the shared machine's compute, sets the step at 20mbit
        jq --arg w "$wire" --argjson b "$BATCH" '.wire = {"activations": $w, "gradients": $w}
            | .model.dim = 64 | .model.ffn_dim = 192 | .model.n_layers = 2 | .train.batch_size = $b
            | .stages[0].layers = "embed,0" | .stages[1].layers = "1,head"' "$d/base.json" >"$d/topo.json"
        jq --arg r "$rate" '.links = {"bandwidth": $r}' "$d/topo.json" >"$d/predict.json"
        wl_start "$d"
        gr_wait
        set -- $GR_RCS
        for rc in "$@"; do [ "$rc" -eq 0 ] || { echo "bench-wire: the run at $rate $wire failed"; tail -n 5 "$d"/*.log "$d"/*.out; exit 1; }; done
        "$P" schedule "$d/predict.json" --calibrate "$d/run" --latency "$LAT_MS" \
            --format json >"$d/predicted.json" 2>"$d/predicted.err" ||
            { echo "bench-wire: schedule failed:"; cat "$d/predicted.err"; exit 1; }
        "$P" schedule "$d/predict.json" --calibrate "$d/run" --latency "$LAT_MS" >"$d/predicted.txt" 2>&1
        bytes=$("$P" check "$d/topo.json" 2>/dev/null | sed -n 's/.*forward \([0-9]*\) B .*backward \([0-9]*\) B.*/\1 \2/p' | head -1)
        mstep=$(jq -s '[.[] | select(.step > 1) | .step_ms] | if length == 0 then empty else .[] end' "$d/run/metrics.jsonl" | median)
        pstep=$(jq '.simulation.step_time' "$d/predicted.json")
        echo "$mstep" >"$d/measured_ms"
        awk -v rate="$rate" -v w="$wire" -v b="$bytes" -v ms="$mstep" -v ps="$pstep" 'BEGIN {
            split(b, x, " ");
            printf "| %s | %s | %s | %s | %.1f | %.1f | %+.0f%% |\n", rate, w, x[1], x[2], ms, ps, (ps - ms) / ms * 100 }' >>"$A"
        tail -n 1 "$A" | sed 's/^/  /'
    done
done
echo "bench-wire: load average $(cut -d' ' -f1-3 /proc/loadavg) after"
echo
echo "2 stages, $STEPS steps, 1f1b, batch $BATCH in 4 micro-batches x 64 tokens, dim 64, 2 blocks; predicted = schedule --calibrate (the run's own compute costs) with links.bandwidth = the rate, latency $LAT_MS ms (target: within 15%):"
cat "$A"
last=${RATES##* }
if [ -f "$T/run-$last-fp32/measured_ms" ] && [ -f "$T/run-$last-int8/measured_ms" ]; then
    awk -v a="$(cat "$T/run-$last-fp32/measured_ms")" -v b="$(cat "$T/run-$last-int8/measured_ms")" -v r="$last" \
        'BEGIN { printf "at %s: int8 step %.2fx faster than fp32 (target >= 2.5x)\n", r, a / b }'
fi
