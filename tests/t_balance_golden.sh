#!/usr/bin/env bash
# t_balance_golden.sh — `pipetrain balance` prints the same plans, byte for
# byte, as when it kept every listed split (up to 20,000 of P + 1 cut points:
# 460 MB at 4096 stages) instead of the best --top of them: calibrated
# per-layer costs (seeded, with ties) of 300 and 1000 layers whose listings hit
# the 20,000 cap, with and without a memory limit, on gpipe, 1f1b and zb-h1. The
# expected files (tests/data/balance/) were printed by the balancer before.
set -u
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
P="$BIN/pipetrain"
D=tests/data/balance
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export XDG_CACHE_HOME="$tmp/xdg" OPENBLAS_NUM_THREADS=1
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# a topology of NL layers on one stage, and a costs file of per-layer times
# drawn from a seeded LCG in steps of 0.25 ms (ties in the bottleneck)
model() { # NL SEED
    local nl=$1 seed=$2
    sed -e "s/\"n_layers\": 4/\"n_layers\": $nl/" -e "s/\"layers\": \"embed,0-3,head\"/\"layers\": \"embed,0-$((nl - 1)),head\"/" \
        -e 's|"path": "../../shared|"path": "/work/shared|' topologies/shakespeare-1stage.json >"$tmp/t$nl.json"
    awk -v U=$((nl + 2)) -v seed="$seed" 'function r(k) { seed = (seed * 1103515245 + 12345) % 2147483648; return int(seed / 65536) % k }
    BEGIN { for (u = 0; u < U; u++) { f[u] = 1 + r(5) / 4; b[u] = 1 + r(9) / 4; w[u] = 0.5 + r(3) / 4; sf += f[u]; sb += b[u]; sw += w[u] }
        printf "{\"version\": 1, \"unit\": \"ms\", \"stages\": 1, \"chunks\": 1, \"steps\": 5, \"f\": [%.2f], \"b\": [%.2f], \"w\": [%.2f],", sf, sb, sw
        printf " \"latency\": 0.05, \"bandwidth\": 0, \"bw_early\": true, \"w_in_order\": true, \"units\": {"
        split("f b w", k, " ")
        for (i = 1; i <= 3; i++) { printf("%s\"%s\": [", (i > 1 ? ", " : ""), k[i])
            for (u = 0; u < U; u++) printf("%s%.2f", (u ? ", " : ""), (i == 1 ? f[u] : i == 2 ? b[u] : w[u]))
            printf "]" }
        print "}}" }' >"$tmp/c$nl.json"
}
model 300 7
model 1000 11
# case NAME ARGS...: the plan (the path of the temporary directory taken out) against $D/NAME.txt
case_() {
    local name=$1; shift
    "$P" balance "$@" >"$tmp/$name.out" 2>"$tmp/$name.err"; echo "rc=$?" >>"$tmp/$name.out"
    sed -i "s|$tmp/||g" "$tmp/$name.out"
    if [ -n "${GOLDEN_WRITE:-}" ]; then cp "$tmp/$name.out" "$D/$name.txt"; return; fi
    cmp -s "$tmp/$name.out" "$D/$name.txt" ||
        fail "$name: the plan differs from $D/$name.txt: $(diff "$D/$name.txt" "$tmp/$name.out" | head -8)"
    grep -q "20000 split(s) within 25% listed" "$tmp/$name.out" || fail "$name: the listing is not capped"
}
case_ g300x40 "$tmp/t300.json" --calibrate "$tmp/c300.json" --stages 40 --top 7
case_ g300x12zb "$tmp/t300.json" --calibrate "$tmp/c300.json" --stages 12 --schedule zb-h1 \
    --set train.micro_batches=12 --memory-limit 4e8 --top 64
case_ g300x12 "$tmp/t300.json" --calibrate "$tmp/c300.json" --stages 12 --schedule 1f1b \
    --set train.micro_batches=12 --memory-limit 3.6e8 --top 64
case_ g1000x90 "$tmp/t1000.json" --calibrate "$tmp/c1000.json" --stages 90 --top 300
case_ g1000x200 "$tmp/t1000.json" --calibrate "$tmp/c1000.json" --stages 200 --top 1 --memory-limit 8e7

[ "$fails" -eq 0 ] || { echo "t_balance_golden: $fails failure(s)"; exit 1; }
echo "t_balance_golden: ok"
