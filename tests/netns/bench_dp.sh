#!/usr/bin/env bash
# tests/netns/bench_dp.sh — `make bench-netns` (issue #11, "measured, not
# assumed", bullets 2 and 4). Every process in its own network namespace, every
# link shaped by tbf (tests/netns/grid.sh: a tbf on both ends of each host's
# veth, so each ring link carries the rate in each direction). For each rate:
#  (a) ring bus bandwidth for R = 2, 3, 4 (`bench allreduce --rank r
#      --members ...`, one rank per namespace) against the link rate and
#      against plain TCP over the same shaped links in the same run;
#  (b) 2 stages x 2 replicas training runs for several train.bucket_mb: the
#      all-reduce cost per step without waits (per bucket its fastest
#      instance in trace.json, summed) beside the simulator's busy time, the
#      measured exposed all-reduce per step (trace.json: the stage's last
#      bucket end minus the slowest replica's last compute action end, and
#      minus its own, median over the steps
#      after the first; summary.json's exposed_s / steps beside it) and step
#      time (metrics.jsonl step_ms, median after the first) beside
#      `pipetrain schedule TOPO --calibrate RUN --replicas 2 --allreduce-latency L
#      --allreduce-bandwidth B`, with the compute costs from that run's own
#      costs.json, L the ring's per-step latency and B the plain TCP throughput
#      measured in (a) at the same rate: the comparison isolates the
#      all-reduce model.
# Prints two tables (markdown) and keeps the runs under the printed directory.
# Environment: RATES (default "200mbit 1gbit"), RANKS (default "2 3 4"),
# BUCKETS (default "0.25 1 4"; empty: no training runs), STEPS (default 10),
# AR_SIZES, AR_MIB, AR_TRIALS, AR_CHUNK (bench allreduce's --sizes, --mib,
# --trials, --chunk; defaults 4 and 16 MiB, 16, 3, 1 MiB), BIN. Needs root; exits 77
# with a message where namespaces cannot be created. Not part of `make test`
# (it measures time); tests/t_netns_dp.sh is its functional check.
set -u
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
BIN=${BIN:-bin}
case $BIN in /*) ;; *) BIN=$ROOT/$BIN ;; esac
P=$BIN/pipetrain
CORPUS=$ROOT/../shared/data/tinyshakespeare.txt
export OPENBLAS_NUM_THREADS=1
RATES=${RATES:-200mbit 1gbit}
RANKS=${RANKS:-2 3 4}
BUCKETS=${BUCKETS-0.25 1 4}
STEPS=${STEPS:-10}
AR_SIZES=${AR_SIZES:-4194304,16777216}
AR_MIB=${AR_MIB:-16}
AR_TRIALS=${AR_TRIALS:-3}
AR_CHUNK=${AR_CHUNK:-1048576}
GR_DEADLINE=${GR_DEADLINE:-300}
GR_EXTRA=""
for R in $RANKS; do [ "$R" -ge 2 ] && [ "$R" -le 8 ] || { echo "bench-netns: RANKS must be 2..8, got $R"; exit 2; }; done
maxR=$(printf "%s\n" $RANKS | sort -n | tail -1)
for ((i = 0; i < maxR; i++)); do GR_EXTRA="$GR_EXTRA b$i"; done
. tests/netns/lib.sh
. tests/netns/grid.sh
[ -x "$P" ] || { echo "bench-netns: $P is not built"; exit 1; }
T=$(mktemp -d /tmp/pt-bench-netns.XXXXXX) || exit 1
trap 'gr_cleanup; echo "runs kept in $T"' EXIT
trap 'echo interrupted; exit 130' INT TERM HUP
cp "$P" "$T/pipetrain" && P=$T/pipetrain
gr_init "$T"; rc=$?
if [ $rc -eq 2 ]; then echo "SKIP bench-netns: cannot create network namespaces here: $NN_WHY"; exit 77; fi
[ $rc -eq 0 ] || { echo "bench-netns: namespace setup: $NN_WHY"; exit 1; }

# rate in bytes per second from tc's syntax (mbit, gbit)
rate_Bps() { gr_rate_Bps "$1"; }
median() { sort -g | awk '{v[NR] = $1} END {if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

echo "bench-netns: load average $(cut -d' ' -f1-3 /proc/loadavg) before; runs in $T"
A=$T/busbw.md
B=$T/train.md
echo "| link | R | size | ring bus bandwidth MB/s | plain TCP MB/s | bus bw / link rate | ring / plain | ring step latency ms |" >"$A"
echo "|---|---|---|---|---|---|---|---|" >>"$A"
echo "| link | bucket_mb | stage | all-reduce ms/step, fastest per bucket | predicted busy ms | error | measured exposed ms/step after the slowest replica | after its own compute (trace; summary) | predicted exposed ms | error | measured step ms | predicted step ms | error |" >"$B"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|" >>"$B"
for rate in $RATES; do
    gr_shape_all "$rate" || { echo "bench-netns: tbf: $NN_WHY"; exit 1; }
    link=$(rate_Bps "$rate")
    # --- (a) the ring against the link and against plain TCP
    for R in $RANKS; do
        members=""
        for ((i = 0; i < R; i++)); do members="$members${members:+,}$GR_NET.$((100 + i)):29600"; done
        pids=""
        for ((i = 0; i < R; i++)); do
            timeout -k 5 600 ip netns exec "$(nn_ns b$i)" "$P" bench allreduce --rank $i --members "$members" \
                --sizes "$AR_SIZES" --mib "$AR_MIB" --trials "$AR_TRIALS" --chunk "$AR_CHUNK" >"$T/ar-$rate-$R-$i.json" 2>"$T/ar-$rate-$R-$i.err" &
            pids="$pids $!"
        done
        ok=1
        for p in $pids; do wait "$p" || ok=0; done
        [ $ok -eq 1 ] || { echo "bench-netns: bench allreduce R=$R at $rate failed:"; cat "$T"/ar-$rate-$R-*.err; exit 1; }
        while read -r line; do
            jq -r --argjson link "$link" --arg rate "$rate" \
                '"| \($rate) | \(.ranks) | \(.bytes / 1048576) MiB | \(.busbw_Bps / 1e6 | . * 10 | round / 10) | \(.plain_Bps / 1e6 | . * 10 | round / 10) | \(.busbw_Bps / $link | . * 1000 | round / 1000) | \(.ratio | . * 1000 | round / 1000) | \(.step_latency_ms | . * 1000 | round / 1000) |"' <<<"$line" >>"$A"
        done <"$T/ar-$rate-$R-0.json"
        [ "$R" -eq 2 ] && {
            lat=$(jq -s '.[0].step_latency_ms' "$T/ar-$rate-2-0.json")
            plain=$(jq -s '[.[].plain_Bps] | max / 1e6' "$T/ar-$rate-2-0.json")
        }
    done
    tail -n +3 "$A" | grep "^| $rate " | sed 's/^/  /'
    # --- (b) 2x2 training runs beside the simulator
    for bucket in $BUCKETS; do
        d=$T/train-$rate-$bucket
        mkdir -p "$d"
        gr_topo "$d/topo.json" "$STEPS" "$bucket"
        gr_start "$d"
        gr_wait
        # the qdiscs' counters (drops, overlimits) after the run, for the record
        for n in $NN_LIST; do
            timeout 10 tc -n "$n" -s qdisc show 2>/dev/null | sed "s|^|${n#"$NN_PREFIX"-}: |"
        done >"$d/tc.txt"
        set -- $GR_RCS
        for rc in "$@"; do [ "$rc" -eq 0 ] || { echo "bench-netns: a run at $rate bucket_mb $bucket failed"; tail -n 5 "$d"/*.log "$d"/*.out; exit 1; }; done
        "$P" schedule "$d/topo.json" --calibrate "$d/run" --replicas 2 --allreduce-latency "$lat" \
            --allreduce-bandwidth "$plain" --format json >"$d/predicted.json" 2>"$d/predicted.err" ||
            { echo "bench-netns: schedule failed:"; cat "$d/predicted.err"; exit 1; }
        mstep=$(jq -s '.[] | select(.step > 1) | .step_ms' "$d/run/metrics.jsonl" | median)
        pstep=$(jq '.simulation.step_time' "$d/predicted.json")
        for k in 0 1; do
            # per (process, step) of stage k: its last all-reduce end minus its own
            # last compute end ("own": what the step paid), and minus the slowest
            # replica's last compute end in that step ("slow": the ring cannot
            # start its last bucket before then; the simulator's replicas are
            # identical, so this is the figure that isolates its all-reduce model)
            jq -r --argjson k "$k" '
                (.traceEvents | map(select(.ph == "M" and .name == "process_name" and
                    (.args.name | startswith("stage \($k) replica")))) | map(.pid)) as $pids
                | .traceEvents | map(select(.ph == "X" and (.pid as $p | $pids | index($p)) and .args.step > 1
                    and (.tid == 0 or .tid == 3)))
                | group_by(.args.step)[]
                | (map(select(.tid == 0) | .ts + .dur) | max) as $slow
                | group_by(.pid)[]
                | ((map(select(.tid == 3) | .ts + .dur) | max) // 0) as $ar
                | (map(select(.tid == 0) | .ts + .dur) | max) as $c
                | "\([$ar - $c, 0] | max / 1000) \([$ar - $slow, 0] | max / 1000)"' "$d/run/trace.json" >"$d/exposed-$k.txt"
            # the all-reduce's cost without waits: per bucket of stage k its
            # fastest instance over the steps and replicas, summed over buckets
            # (a bucket that waited for a descheduled peer is slower, never faster)
            mbusy=$(jq --argjson k "$k" '
                (.traceEvents | map(select(.ph == "M" and .name == "process_name" and
                    (.args.name | startswith("stage \($k) replica")))) | map(.pid)) as $pids
                | [.traceEvents[] | select(.ph == "X" and .tid == 3 and (.pid as $p | $pids | index($p))
                    and .args.step > 1)] | group_by(.name) | map(map(.dur) | min) | add / 1000' "$d/run/trace.json")
            pbusy=$(jq --argjson k "$k" '.simulation.stages[$k].allreduce.busy' "$d/predicted.json")
            mexp=$(cut -d' ' -f1 "$d/exposed-$k.txt" | median)
            slexp=$(cut -d' ' -f2 "$d/exposed-$k.txt" | median)
            sexp=$(jq --argjson k "$k" --argjson n "$STEPS" \
                '[.stages[] | select(.stage == $k) | .exposed_s] | add / length / $n * 1000' "$d/run/summary.json")
            pexp=$(jq --argjson k "$k" '.simulation.stages[$k].allreduce.exposed' "$d/predicted.json")
            awk -v rate="$rate" -v b="$bucket" -v k="$k" -v me="$slexp" -v oe="$mexp" -v se="$sexp" -v pe="$pexp" \
                -v ms="$mstep" -v ps="$pstep" -v mb="$mbusy" -v pb="$pbusy" 'BEGIN {
                printf "| %s | %s | %d | %.1f | %.1f | %+.0f%% | %.1f | %.1f; %.1f | %.1f | %+.0f%% | %.1f | %.1f | %+.0f%% |\n",
                    rate, b, k, mb, pb, (mb > 0 ? (pb - mb) / mb * 100 : 0), me, oe, se, pe,
                    (me > 0 ? (pe - me) / me * 100 : 0), ms, ps, (ps - ms) / ms * 100 }' >>"$B"
        done
        tail -n 2 "$B" | sed 's/^/  /'
    done
done
echo "bench-netns: load average $(cut -d' ' -f1-3 /proc/loadavg) after"
echo
echo "ring bus bandwidth (target: bus bw / link rate >= 0.85):"
cat "$A"
echo
echo "2 stages x 2 replicas, $STEPS steps, 1f1b, 4 micro-batches of 12 sequences per replica; predicted with the run's own compute costs, --allreduce-latency = the ring step latency and --allreduce-bandwidth = the plain TCP throughput measured above at the same rate (target: exposed within 15%):"
cat "$B"
