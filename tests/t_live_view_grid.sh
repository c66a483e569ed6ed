#!/usr/bin/env bash
# The live view (issue 16, `run --http`) of runs with replicas: every (stage,
# replica) process shows its busy/wait/bubble and its timeline, or the page
# says why not.
#  - asynchronous parameter servers (sync "ps", ps.staleness -1): each worker
#    sends its NORM (with the live trailer) at a step of its own; /api/status
#    has "async": true, all four processes reporting, each measured over its own
#    worker's latest step ("step", "span_ms"), a loss curve of increasing steps;
#    /metrics has a compute fraction per (stage, replica); the page (chromium,
#    when installed) shows four rows and says the workers are asynchronous;
#  - a 2 x 2 data-parallel run: all four processes report, "async": false;
#  - synchronous parameter servers (ps.staleness 0): the workers send the
#    coordinator no NORM, so no process reports; "note" says so, the loss curve
#    still grows.
set -u
cd "$(dirname "$0")/.."
. tests/lib.sh t_live_view_grid
export OPENBLAS_NUM_THREADS=1

base=$((20000 + (RANDOM % 120) * 100 + 40 + ($$ % 15)))
SMALL=(--set model.dim=64 --set model.ffn_dim=192 --set train.eval_every=20 --set train.eval_batches=2
       --set coordinator.port=0 --steps 100000)
ports() { # ports FIRST: the four processes' (and the two servers') ports
    echo --set stages.0.replicas.0.port=$1 --set stages.0.replicas.1.port=$(($1 + 1)) \
         --set stages.1.replicas.0.port=$(($1 + 2)) --set stages.1.replicas.1.port=$(($1 + 3))
}
sports() { echo --set parameter_servers.0.port=$(($1 + 4)) --set parameter_servers.1.port=$(($1 + 5)); }
get() { python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())' "$1" 2>/dev/null; }
stop() { kill -TERM "$1" 2>/dev/null; for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done; kill -KILL "$1" 2>/dev/null; wait "$1" 2>/dev/null; }
# wait_status URL PYCOND: up to 120 s for /api/status to satisfy PYCOND (a python expression of j)
wait_status() {
    local end=$((SECONDS + 120))
    while [ $SECONDS -lt $end ]; do
        get "$1/api/status" >"$tmp/st.json"
        python3 -c "import json,sys; j=json.load(open('$tmp/st.json')); sys.exit(not ($2))" 2>/dev/null && return 0
        sleep 0.2
    done
    return 1
}
# start NAME TOPOLOGY ARGS...: a run in the background, its pid in $run and its view's URL in $URL
start() {
    local name=$1 topo=$2; shift 2
    "$P" run "$topo" "${SMALL[@]}" "$@" --out "$tmp/$name" --http 127.0.0.1:0 >"$tmp/$name.log" 2>&1 &
    run=$!
    URL="http://127.0.0.1:$(live_port "$tmp/$name.log")"
}

# --- asynchronous parameter servers
start async topologies/shakespeare-ps.json $(ports $base) $(sports $base) --set ps.staleness=-1
ALL='len(j["processes"]) == 4 and all(p["reporting"] for p in j["processes"]) and j["step"] >= 4'
wait_status "$URL" "$ALL"; ok=$?
check "async ps: all four processes report (step $(python3 -c "import json; print(json.load(open('$tmp/st.json')).get('step'))" 2>/dev/null))" \
    "[ $ok -eq 0 ] || { tail -3 $tmp/async.log; cat $tmp/st.json | head -c 600; false; }"
cp "$tmp/st.json" "$tmp/async.json"
python3 - "$tmp/async.json" >"$tmp/async.check" 2>&1 <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
assert j["async"] is True and j["note"] is None, (j["async"], j["note"])
assert sorted((p["stage"], p["replica"]) for p in j["processes"]) == [(0, 0), (0, 1), (1, 0), (1, 1)]
for p in j["processes"]:
    assert p["step"] >= 1 and p["span_ms"] > 0 and 0 < p["busy"] <= 1.0001, p
    assert p["events"] and all(0 <= e[3] <= e[4] <= p["span_ms"] + 1e-6 for e in p["events"]), p["events"][:3]
    assert p["span_ms"] <= j["timeline_ms"] + 1e-9, (p["span_ms"], j["timeline_ms"])
# the two stages of one worker are at one step
for r in (0, 1):
    assert len({p["step"] for p in j["processes"] if p["replica"] == r}) == 1, j["processes"]
xs = [pt[0] for pt in j["losses"]]
assert len(xs) > 1 and xs == sorted(set(xs)), xs[:20]
print("ok steps", [p["step"] for p in j["processes"]], "curve", len(xs))
EOF
check "async ps: /api/status per (stage, replica) over its own worker's step ($(tail -1 $tmp/async.check))" "grep -q '^ok' $tmp/async.check"
get "$URL/metrics" >"$tmp/async.metrics"
check "async ps: /metrics has a compute fraction per (stage, replica)" \
    "[ \$(grep -cE '^pipetrain_stage_compute_fraction\{stage=\"[01]\",replica=\"[01]\"\} [0-9.e-]+$' $tmp/async.metrics) -eq 4 ]"
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
    echo "  SKIP browser check: chromium is not installed (t_live_view.sh installs it)"
else
    timeout 120 "$browser" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run \
        --user-data-dir="$tmp/chrome" --virtual-time-budget=4000 --dump-dom "$URL/" >"$tmp/dom.html" 2>/dev/null
    check "async ps: the page shows four rows and says the workers are asynchronous" \
        "[ \$(grep -o 'class=\"stage\" data-stage=\"[01]\" data-replica=\"[01]\"' $tmp/dom.html | sort -u | wc -l) -eq 4 ] && grep -q 'asynchronous workers' $tmp/dom.html"
fi
stop $run

# --- a 2 x 2 data-parallel run
start dp topologies/shakespeare-2x2.json $(ports $((base + 10)))
wait_status "$URL" "$ALL and j['async'] is False and j['note'] is None"; ok=$?
check "2x2: all four processes report, over one step" \
    "[ $ok -eq 0 ] && python3 -c \"import json,sys; j=json.load(open('$tmp/st.json')); sys.exit(len({p['step'] for p in j['processes']}) != 1)\" || { tail -3 $tmp/dp.log; false; }"
stop $run

# --- synchronous parameter servers: no process reports, and the page says why
start sync topologies/shakespeare-ps.json $(ports $((base + 20))) $(sports $((base + 20))) --set ps.staleness=0
wait_status "$URL" 'j["step"] >= 3 and len(j["losses"]) >= 3'; ok=$?
check "sync ps: the loss curve grows" "[ $ok -eq 0 ] || { tail -3 $tmp/sync.log; false; }"
check "sync ps: no process reports, and the note says why" \
    "python3 -c \"import json,sys; j=json.load(open('$tmp/st.json')); sys.exit(not (j['note'] and 'staleness 0' in j['note'] and not any(p['reporting'] for p in j['processes'])))\""
stop $run

[ $fail -eq 0 ] && echo "t_live_view_grid: ok" || echo "t_live_view_grid: FAILED"
exit $fail
