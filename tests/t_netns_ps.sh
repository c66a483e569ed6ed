#!/usr/bin/env bash
# Issue #12 "tests": parameter servers and workers in separate network
# namespaces. A 2 stages x 2 workers grid and 2 parameter servers, each
# process in its own namespace with its own address, every link shaped by tbf
# to 1 Gbit/s (tests/netns/grid.sh), train synchronously (ps.staleness 0) for
# a few steps. Checks: every process exits 0; the servers' rows in
# summary.json count every push and no refusal; the pushes and weights really
# crossed the servers' own links (bytes on their veths, through the tbf); and
# the final weights are bitwise those of the same model trained with the
# all-reduce on loopback (issue #12: "with R = 2 the weights are bitwise equal
# to #8's all-reduce run"), so nothing in the transport across hosts changes
# a bit; then the same grid with ps.staleness 2. Skips (exit 77) where namespaces cannot be created.
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
BIN=${BIN:-bin}
case $BIN in /*) ;; *) BIN=$ROOT/$BIN ;; esac
P=$BIN/pipetrain
CORPUS=$ROOT/../shared/data/tinyshakespeare.txt
export OPENBLAS_NUM_THREADS=1
set -u
[ -n "${PIPETRAIN_ASAN:-}" ] && GR_DEADLINE=120 || GR_DEADLINE=60
GR_SERVERS=2
GR_STALENESS=0
. tests/netns/lib.sh
. tests/netns/grid.sh
fail=0
check() { if eval "$2"; then echo "  ok   $1"; else echo "  FAIL $1"; fail=1; fi; }
show() { [ -f "$1" ] && { echo "  --- $1:"; tail -n 15 "$1" | sed 's/^/  | /'; }; }
[ -x "$P" ] || { echo "FAIL: $P is not built"; exit 1; }
T=$(mktemp -d /tmp/pt-netns-ps.XXXXXX) || exit 1
trap 'gr_cleanup; [ -n "${KEEP:-}" ] && echo "kept $T" || rm -rf "$T"' EXIT
trap 'echo interrupted; exit 130' INT TERM HUP
cp "$P" "$T/pipetrain" && P=$T/pipetrain
gr_init "$T"; rc=$?
if [ $rc -eq 2 ]; then echo "SKIP t_netns_ps: cannot create network namespaces here: $NN_WHY"; exit 77; fi
[ $rc -eq 0 ] || { echo "FAIL: namespace setup: $NN_WHY"; exit 1; }
RATE=1gbit
gr_shape_all $RATE || { echo "FAIL: tbf: $NN_WHY"; exit 1; }
STEPS=3
mkdir -p "$T/g"
gr_topo "$T/g/topo.json" $STEPS 4
echo "2x2 workers + 2 parameter servers in namespaces, links shaped to $RATE, $STEPS steps"
gr_start "$T/g"
gr_wait
set -- $GR_RCS
check "coordinator exits 0 (got $1)" "[ $1 -eq 0 ] || { show $T/g/coord.log; false; }"
shift
n=0
for rc in "$@"; do
    n=$((n + 1))
    check "process $n of 6 (4 stages, 2 servers) exits 0 (got $rc)" \
        "[ $rc -eq 0 ] || { show $T/g/coord.log; tail -n 5 $T/g/*.out; false; }"
done
check "6 processes were started from --print-commands" "[ $n -eq 6 ]"
S=$T/g/run/summary.json
check "metrics.jsonl has $STEPS loss lines" "[ \$(grep -c '\"loss\"' $T/g/run/metrics.jsonl 2>/dev/null) -eq $STEPS ]"
check "summary.json: sync ps, 2 server rows" \
    "[ \"\$(jq -c '[.sync, (.servers | length)]' $S 2>/dev/null)\" = '[\"ps\",2]' ] || { jq -c '.sync, .servers' $S; false; }"
for j in 0 1; do
    row=$(jq -c ".servers[$j] | [.pushes, .refused, .bytes_received, .bytes_sent]" $S 2>/dev/null)
    set -- $(tr -d '[]' <<<"${row:-[0,1,0,0]}" | tr ',' ' ')
    check "server $j: pushes $1 > 0, refused $2 = 0" "[ ${1:-0} -gt 0 ] && [ ${2:-1} -eq 0 ]"
    rx=$(nn_bytes "p$j" rx); tx=$(nn_bytes "p$j" tx)
    check "server $j's link carried what it received and sent (veth rx $rx >= $3, tx $tx >= $4)" \
        "[ $rx -ge ${3:-1} ] && [ $tx -ge ${4:-1} ] && [ ${3:-0} -gt 0 ]"
    q=$(timeout 10 tc -n "$(nn_ns "p$j")" -s qdisc show dev eth0 2>/dev/null | tr '\n' ' ')
    qsent=$(sed -n 's/.* Sent \([0-9]*\) bytes.*/\1/p' <<<"$q")
    check "server $j's weights went through its tbf (qdisc: ${q:0:80})" \
        "[[ \"\$q\" == *'tbf'* ]] && [ \"\${qsent:-0}\" -ge ${4:-1} ]"
done
# The reference: the same model, all-reduce, every process on loopback.
python3 - "$T/g/topo.json" "$T/ar.json" $((20000 + (RANDOM % 120) * 100 + ($$ % 50))) <<'PY' || { echo "FAIL: rewriting the topology"; exit 1; }
import json, sys
t = json.load(open(sys.argv[1]))
t.pop("parameter_servers"); t.pop("ps"); t["sync"] = "allreduce"; t.pop("secret_file", None)
t["coordinator"] = {"host": "127.0.0.1", "port": 0}
port = int(sys.argv[3])
for st in t["stages"]:
    for r in st["replicas"]:
        r["host"] = "127.0.0.1"; r["port"] = port; port += 1
json.dump(t, open(sys.argv[2], "w"), indent=1)
PY
timeout -k 5 $GR_DEADLINE "$P" run "$T/ar.json" --out "$T/ar" >"$T/ar.log" 2>&1
rc=$?
check "the loopback all-reduce reference exits 0 (got $rc)" "[ $rc -eq 0 ] || { show $T/ar.log; false; }"
for r in g/run ar; do "$P" export "$T/$r" --out "$T/$r/export" >"$T/export.log" 2>&1 || show "$T/export.log"; done
check "weights across namespaces (PS) bitwise equal to the loopback all-reduce" \
    "cmp $T/g/run/export/model.safetensors $T/ar/export/model.safetensors"
# Bounded staleness across the same namespaces: each worker goes at its own
# pace within the bound (ps.staleness 2); every worker-step is counted by
# every server's staleness histogram, none beyond the bound + 1.
GR_STALENESS=2
mkdir -p "$T/a"
gr_topo "$T/a/topo.json" $STEPS 4
echo "the same grid with ps.staleness 2"
gr_start "$T/a"
gr_wait
set -- $GR_RCS
n=0
for rc in "$@"; do
    n=$((n + 1))
    check "staleness 2: process $n of 7 (coordinator, 4 stages, 2 servers) exits 0 (got $rc)" \
        "[ $rc -eq 0 ] || { show $T/a/coord.log; tail -n 5 $T/a/*.out; false; }"
done
S=$T/a/run/summary.json
check "staleness 2: each server's histogram counts the $((2 * STEPS)) worker-steps, at most 3 stale" \
    "jq -e 'all(.servers[]; (.staleness | add) == $((2 * STEPS)) and .refused == 0) and (.staleness | length) <= 4' $S >/dev/null ||
     { jq -c '.servers, .staleness' $S; false; }"
[ $fail -eq 0 ] && echo "t_netns_ps: ok"
exit $fail
