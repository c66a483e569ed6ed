#!/usr/bin/env bash
# The simulator's link model (issue 14): the topology's "links" (bandwidth,
# latency_ms) with bad values refused naming the field (exit 2), absent
# "links" hashing as before the key existed, and `schedule` sending each
# direction's tensor with its wire encoding's bytes (activations int8,
# gradients fp32: 26112 B forward, 98304 B back for the 2-stage model) over a
# link of the topology's bandwidth, so int8 predicts a faster step than fp32
# at 20mbit.
set -u
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
P="$BIN/pipetrain"
tmp=$(mktemp -d /tmp/t_links.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "  ok   $1"; else echo "  FAIL $1"; fail=1; fi; }
export OPENBLAS_NUM_THREADS=1
T2=topologies/shakespeare-2stage.json

jq '.links = {"bandwidth": "20mbt"}' $T2 >"$tmp/bad1.json"
"$P" check "$tmp/bad1.json" >/dev/null 2>"$tmp/e1"; rc=$?
check "bad links.bandwidth: exit 2 naming file and field" '[ $rc -eq 2 ] && grep -q "bad1.json: links.bandwidth" "$tmp/e1"'
jq '.links = {"bandwidth": "0mbit"}' $T2 >"$tmp/bad2.json"
"$P" check "$tmp/bad2.json" >/dev/null 2>"$tmp/e2"; rc=$?
check "zero links.bandwidth: exit 2" '[ $rc -eq 2 ] && grep -q "links.bandwidth" "$tmp/e2"'
jq '.links = {"latency_ms": -1}' $T2 >"$tmp/bad3.json"
"$P" check "$tmp/bad3.json" >/dev/null 2>"$tmp/e3"; rc=$?
check "negative links.latency_ms: exit 2 naming it" '[ $rc -eq 2 ] && grep -q "links.latency_ms" "$tmp/e3"'
jq '.links = {"bandwidth": 5}' $T2 >"$tmp/bad4.json"
"$P" check "$tmp/bad4.json" >/dev/null 2>"$tmp/e4"; rc=$?
check "links.bandwidth as a bare number: exit 2 (a string is expected)" '[ $rc -eq 2 ] && grep -q "links.bandwidth" "$tmp/e4"'

jq '.links = {"bandwidth": "20mbit", "burst": -1}' $T2 >"$tmp/bad5.json"
"$P" check "$tmp/bad5.json" >/dev/null 2>"$tmp/e5"; rc=$?
check "negative links.burst: exit 2 naming file and field" '[ $rc -eq 2 ] && grep -q "bad5.json: links.burst" "$tmp/e5"'
jq '.links = {"bandwidth": "20mbit", "burst": "64k"}' $T2 >"$tmp/bad6.json"
"$P" check "$tmp/bad6.json" >/dev/null 2>"$tmp/e6"; rc=$?
check "links.burst as a string: exit 2 naming it" '[ $rc -eq 2 ] && grep -q "bad6.json: links.burst" "$tmp/e6"'
"$P" schedule $T2 --burst -5 >/dev/null 2>"$tmp/e7"; rc=$?
check "schedule --burst -5: exit 2" '[ $rc -eq 2 ] && grep -q -- "--burst" "$tmp/e7"'

h0=$("$P" check $T2 | grep -o 'topology hash [0-9a-f]*')
jq '.links = {}' $T2 >"$tmp/empty.json"
h1=$("$P" check "$tmp/empty.json" | grep -o 'topology hash [0-9a-f]*')
jq '.links = {"bandwidth": "1gbit"}' $T2 >"$tmp/g.json"
h2=$("$P" check "$tmp/g.json" | grep -o 'topology hash [0-9a-f]*')
check "empty links hashes as none; a bandwidth changes the hash" '[ -n "$h0" ] && [ "$h0" = "$h1" ] && [ "$h0" != "$h2" ]'

for w in fp32 int8; do
    jq --arg w $w '.links = {"bandwidth": "20mbit", "latency_ms": 0.5} | .wire = {"activations": $w, "gradients": "fp32"}' \
        $T2 >"$tmp/$w.json"
    "$P" schedule "$tmp/$w.json" --gflops 5 >"$tmp/$w.out" 2>&1 || { cat "$tmp/$w.out"; fail=1; }
done
check "links line: 20mbit = 2.5 MB/s, latency 0.5 ms" 'grep -q "links: latency 0.5 ms, 2.5 MB/s" "$tmp/int8.out"'
check "int8 activations: 26112 B forward, fp32 gradients: 98304 B back" \
    'grep -q "26112 bytes per transfer from stage 0, 98304 bytes per gradient back" "$tmp/int8.out"'
check "fp32: 98304 B each way" 'grep -q "98304 bytes per transfer from stage 0, 98304 bytes per gradient back" "$tmp/fp32.out"'
pf=$(sed -n 's/predicted step time: \([0-9.]*\) ms/\1/p' "$tmp/fp32.out")
pi=$(sed -n 's/predicted step time: \([0-9.]*\) ms/\1/p' "$tmp/int8.out")
check "int8 activations predict a faster step than fp32 at 20mbit ($pi < $pf ms)" \
    'awk -v a="$pi" -v b="$pf" "BEGIN { exit !(a > 0 && a < b) }"'
# the token bucket (links.burst or --burst): a 26112-byte int8 activation fits a
# 65536-byte burst, so the step is faster than the pure-rate model's
jq '.links.burst = 65536' "$tmp/int8.json" >"$tmp/int8b.json"
"$P" schedule "$tmp/int8b.json" --gflops 5 >"$tmp/int8b.out" 2>&1 || { cat "$tmp/int8b.out"; fail=1; }
"$P" schedule "$tmp/int8.json" --gflops 5 --burst 65536 >"$tmp/int8c.out" 2>&1 || { cat "$tmp/int8c.out"; fail=1; }
pb=$(sed -n 's/predicted step time: \([0-9.]*\) ms/\1/p' "$tmp/int8b.out")
pc=$(sed -n 's/predicted step time: \([0-9.]*\) ms/\1/p' "$tmp/int8c.out")
check "links line names the burst" 'grep -q "2.5 MB/s with a 65536-byte burst" "$tmp/int8b.out"'
check "a 64 KiB burst predicts a faster int8 step ($pb < $pi ms); --burst = links.burst ($pc)" \
    'awk -v a="$pb" -v b="$pi" -v c="$pc" "BEGIN { exit !(a > 0 && a < b && a == c) }"'
"$P" schedule "$tmp/int8b.json" --gflops 5 --burst 0 >"$tmp/int8z.out" 2>&1
check "--burst 0 overrides links.burst: the pure-rate step" 'grep -q "predicted step time: $pi ms" "$tmp/int8z.out"'
"$P" schedule "$tmp/int8.json" --gflops 5 --bandwidth 1000 >"$tmp/o.out" 2>&1
check "--bandwidth overrides the topology's links" 'grep -q "links: latency 0.5 ms, 1000 MB/s" "$tmp/o.out"'

# a burst without a rate is a token bucket that never refills: refused, not ignored
jq '.links = {"burst": 65536}' $T2 >"$tmp/bad7.json"
"$P" schedule "$tmp/bad7.json" --gflops 5 >/dev/null 2>"$tmp/e8"; rc=$?
check "links.burst without links.bandwidth: exit 2 naming file and field" \
    '[ $rc -eq 2 ] && grep -q "bad7.json: links.burst" "$tmp/e8"'
"$P" schedule --stages 2 --micro-batches 4 --costs 2,2,2 --bytes 52224 --burst 60000 >/dev/null 2>"$tmp/e9"; rc=$?
check "schedule --burst without --bandwidth: exit 2 naming --burst" '[ $rc -eq 2 ] && grep -q -- "--burst" "$tmp/e9"'
"$P" schedule $T2 --gflops 5 --burst 60000 >/dev/null 2>"$tmp/e10"; rc=$?
check "schedule TOPO --burst without any link rate: exit 2 naming --burst" \
    '[ $rc -eq 2 ] && grep -q -- "--burst" "$tmp/e10"'
"$P" schedule "$tmp/int8.json" --gflops 5 --burst 60000 >/dev/null 2>"$tmp/e11"; rc=$?
check "schedule --burst with the topology's links.bandwidth: exit 0" '[ $rc -eq 0 ]'

# --calibrate's note on the links a run's sends saw: comma-separated, and no
# "0 MB/s on link 3-0" for a V (or 1-chunk) run, whose last stage sends nothing
# to stage 0 (only an interleaved loop uses that link)
cat >"$tmp/v4costs.json" <<'JSON'
{"version": 1, "unit": "ms", "stages": 4, "chunks": 2, "steps": 2, "f": [1, 1, 1, 1, 1, 1, 1, 1],
 "b": [1, 1, 1, 1, 1, 1, 1, 1], "w": [1, 1, 1, 1, 1, 1, 1, 1], "latency": 0.5, "bandwidth": 0,
 "bw_early": true, "w_in_order": true, "link_bandwidth": [1000, 2000, 3000, 0]}
JSON
"$P" schedule --stages 4 --micro-batches 4 --kind zb-v --calibrate "$tmp/v4costs.json" >"$tmp/v4.out" 2>&1; rc=$?
check "calibrated V: the three links the run used, comma-separated, no link 3-0" \
    "[ $rc -eq 0 ] && grep -qF 'sends saw 1 MB/s on link 0-1, 2 MB/s on link 1-2, 3 MB/s on link 2-3;' $tmp/v4.out &&
     ! grep -q 'link 3-0' $tmp/v4.out"
jq '.link_bandwidth[3] = 4000' "$tmp/v4costs.json" >"$tmp/i4costs.json"
"$P" schedule --stages 4 --micro-batches 4 --kind interleaved --calibrate "$tmp/i4costs.json" >"$tmp/i4.out" 2>&1; rc=$?
check "calibrated interleaved: the wrap-around link 3-0 it used is reported" \
    "[ $rc -eq 0 ] && grep -qF '3 MB/s on link 2-3, 4 MB/s on link 3-0;' $tmp/i4.out"

# a run's costs.json records the bandwidth its sends saw on the link (not 0)
base=$((20000 + (RANDOM % 120) * 100 + 70 + ($$ % 20)))
"$P" run $T2 --steps 3 --set model.dim=16 --set model.ffn_dim=48 --set model.seq_len=16 --set train.batch_size=4 \
    --set coordinator.port=0 --set stages.0.port=$base --set stages.1.port=$((base + 1)) \
    --set data.val_fraction=0.01 --out "$tmp/run" >"$tmp/run.log" 2>&1 || { tail -5 "$tmp/run.log"; fail=1; }
check "costs.json: link_bandwidth[0] > 0 bytes/ms after a 2-stage run" \
    'jq -e ".link_bandwidth[0] > 0" "$tmp/run/costs.json" >/dev/null'
exit $fail
