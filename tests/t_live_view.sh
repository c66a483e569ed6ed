#!/usr/bin/env bash
# The live view (issue 16, `run --http`): a running 2-stage run serves
# /metrics in the Prometheus text format (checked line by line by a strict
# parser below: promtool is not available), /api/status as JSON with the
# losses, the stages' busy/wait/bubble and the latest step's timeline, 404 for
# other paths, 405 for POST; the page loaded in a real browser (Debian's
# chromium, headless; installed on demand, skipped with a message only where
# the package is unavailable) shows both stages and a loss curve of more than
# one point. Refusals: off loopback without a secret (exit 2), a busy port
# (exit 2, "Address already in use"), and off loopback with a secret every
# request without the token is 401.
# LIVE_SCREENSHOT=FILE also saves a 1200x800 screenshot of the page (README).
set -u
cd "$(dirname "$0")/.."
. tests/lib.sh t_live_view
export OPENBLAS_NUM_THREADS=1

base=$((20000 + (RANDOM % 120) * 100 + 80 + ($$ % 15)))
TOPO=topologies/shakespeare-2stage.json
SMALL=(--set model.dim=64 --set model.ffn_dim=192 --set train.eval_every=20 --set train.eval_batches=2 --set coordinator.port=0)

# get URL [HEADER]: prints "CODE CONTENT-TYPE" then the body (python urllib: no curl here)
get() { python3 - "$@" 2>/dev/null <<'EOF'
import sys, urllib.request, urllib.error
req = urllib.request.Request(sys.argv[1], method=sys.argv[3] if len(sys.argv) > 3 else "GET")
if len(sys.argv) > 2 and sys.argv[2]: req.add_header("Authorization", sys.argv[2])
try:
    r = urllib.request.urlopen(req, timeout=10); code, ct, body = r.status, r.headers.get("Content-Type"), r.read()
except urllib.error.HTTPError as e:
    code, ct, body = e.code, e.headers.get("Content-Type"), e.read()
print(code, ct); sys.stdout.write(body.decode())
EOF
}
stop() { kill -TERM "$1" 2>/dev/null; for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done; kill -KILL "$1" 2>/dev/null; wait "$1" 2>/dev/null; }

# --- a running 2-stage run on loopback
out="$tmp/run"
"$P" run $TOPO "${SMALL[@]}" --set stages.0.port=$base --set stages.1.port=$((base + 1)) --steps 100000 \
    --out "$out" --http 127.0.0.1:0 >"$tmp/run.log" 2>&1 &
run=$!
port=$(live_port "$tmp/run.log")
check "the run prints where the live view is" "[ -n '$port' ] || { tail -5 $tmp/run.log; false; }"
URL="http://127.0.0.1:${port:-1}"
for _ in $(seq 1200); do # up to 120 s for 3 steps under load
    s=$(get "$URL/api/status" 2>/dev/null | sed 1d | python3 -c 'import json,sys; print(json.load(sys.stdin)["step"])' 2>/dev/null)
    [ "${s:-0}" -ge 3 ] && break
    kill -0 $run 2>/dev/null || break
    sleep 0.1
done
check "the run reaches step 3 with the view on (step ${s:-none})" "[ ${s:-0} -ge 3 ] || { tail -5 $tmp/run.log; false; }"

get "$URL/metrics" >"$tmp/metrics"
python3 - "$tmp/metrics" >"$tmp/metrics.check" 2>&1 <<'EOF'
# A strict checker of the Prometheus text exposition format (0.0.4) for what we emit.
import math, re, sys
lines = open(sys.argv[1]).read().split("\n")
status, body = lines[0], lines[1:]
assert status.startswith("200 text/plain; version=0.0.4"), "status/content type: " + status
assert body[-1] == "", "the body must end with a newline"
NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE = re.compile(r"^(%s)(\{%s(?:,%s)*\})? (\S+)$" % (NAME, LABEL, LABEL))
helps, types, seen, series, last_family = {}, {}, set(), set(), None
for n, line in enumerate(body[:-1], 2):
    where = "line %d: %r" % (n, line)
    assert line, "empty line: " + where
    if line.startswith("#"):
        m = re.match(r"^# (HELP|TYPE) (%s) (.+)$" % NAME, line)
        assert m, "bad comment: " + where
        kind, name, rest = m.groups()
        assert name.startswith("pipetrain_"), "unprefixed: " + where
        assert name not in seen, "HELP/TYPE after samples or family split: " + where
        d = helps if kind == "HELP" else types
        assert name not in d, "duplicate %s: %s" % (kind, where)
        if kind == "TYPE": assert rest in ("counter", "gauge", "untyped", "summary", "histogram"), where
        d[name] = rest
        continue
    m = SAMPLE.match(line)
    assert m, "bad sample: " + where
    name, labels, value = m.groups()
    assert name in types and name in helps, "sample before its HELP and TYPE: " + where
    if types[name] == "counter": assert name.endswith("_total"), "counter without _total: " + where
    if last_family != name: assert name not in seen, "family not contiguous: " + where
    seen.add(name); last_family = name
    assert (name, labels) not in series, "duplicate series: " + where
    series.add((name, labels))
    v = float(value) if value not in ("NaN", "+Inf", "-Inf") else None
    assert value in ("NaN", "+Inf", "-Inf") or not math.isnan(v), where
want = ["pipetrain_step", "pipetrain_loss", "pipetrain_learning_rate", "pipetrain_tokens_per_second",
        "pipetrain_restarts_total", "pipetrain_stage_compute_fraction", "pipetrain_stage_wait_fraction",
        "pipetrain_stage_bubble_fraction", "pipetrain_stage_sent_bytes_total", "pipetrain_stage_peak_activation_bytes"]
for w in want: assert w in seen, "missing metric " + w
for fam in ("pipetrain_stage_compute_fraction", "pipetrain_stage_bubble_fraction", "pipetrain_stage_sent_bytes_total"):
    for st in ("0", "1"):
        assert (fam, '{stage="%s",replica="0"}' % st) in series, "%s has no stage %s" % (fam, st)
print("ok %d series in %d families" % (len(series), len(seen)))
EOF
check "/metrics passes the strict exposition-format check ($(tail -1 $tmp/metrics.check))" "grep -q '^ok' $tmp/metrics.check"

get "$URL/api/status" >"$tmp/status"
python3 - "$tmp/status" >"$tmp/status.check" 2>&1 <<'EOF'
import json, sys
status, body = open(sys.argv[1]).read().split("\n", 1)
assert status == "200 application/json", status
j = json.loads(body)
for k in ("run_id", "topology", "step", "total_steps", "losses", "tokens_per_s", "processes", "timeline_ms"): assert k in j, k
assert j["topology"] == "shakespeare-2stage" and j["total_steps"] == 100000 and j["step"] >= 3, j
assert len(j["losses"]) > 1 and all(len(p) >= 2 for p in j["losses"]), j["losses"][:3]
assert j["tokens_per_s"] > 0 and j["timeline_ms"] > 0
ps = j["processes"]
assert [p["stage"] for p in ps] == [0, 1], ps
for p in ps:
    assert p["reporting"] and 0 < p["busy"] <= 1.0001 and 0 <= p["wait"] <= 1 and abs(p["bubble"] - (1 - p["busy"])) < 1e-9, p
    ops = {e[0] for e in p["events"]}
    assert {0, 1} <= ops or 3 in ops, "no F and B events: %r" % ops
    assert all(0 <= e[3] <= e[4] <= j["timeline_ms"] + 1e-6 for e in p["events"]), p["events"][:3]
print("ok step", j["step"], "losses", len(j["losses"]))
EOF
check "/api/status: run, losses, both stages' fractions and events ($(tail -1 $tmp/status.check))" "grep -q '^ok' $tmp/status.check"
check "a bad path is 404" "get $URL/nope | head -1 | grep -q '^404 '"
check "POST is 405" "get $URL/metrics '' POST | head -1 | grep -q '^405 '"
check "/ is one self-contained page (no external URL)" \
    "get $URL/ >$tmp/page && head -1 $tmp/page | grep -q '^200 text/html' && ! grep -Eq '(src|href)=\"?(https?:)?//' $tmp/page"

# --- the page in a real browser
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "  installing Debian's chromium for the browser test"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >"$tmp/apt.log" 2>&1 ||
        { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >"$tmp/apt.log" 2>&1; }
    browser=$(command -v chromium || true)
fi
CHROME=(--headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run --user-data-dir="$tmp/chrome")
if [ -z "$browser" ]; then
    echo "  SKIP browser test: Debian's chromium is not installed and cannot be installed here ($(tail -1 "$tmp/apt.log" 2>/dev/null))"
else
    timeout 120 "$browser" "${CHROME[@]}" --virtual-time-budget=4000 --dump-dom "$URL/" >"$tmp/dom.html" 2>"$tmp/chrome.log"
    python3 - "$tmp/dom.html" >"$tmp/dom.check" 2>&1 <<'EOF'
import re, sys
d = open(sys.argv[1]).read()
stages = sorted(set(re.findall(r'class="stage" data-stage="(\d+)"', d)))
assert stages == ["0", "1"], "stages in the DOM: %r" % stages
m = re.search(r'<polyline id="loss-line"[^>]*>', d)
assert m, "no loss curve in the DOM"
n = int(re.search(r'data-points="(\d+)"', m.group(0)).group(1))
pts = re.search(r' points="([^"]*)"', m.group(0))
assert n > 1 and pts and len(pts.group(1).split()) == n, "loss curve of %d points: %s" % (n, m.group(0)[:200])
assert 'class="ev-compute"' in d, "no timeline events drawn"
print("ok stages 0,1, loss curve of %d points" % n)
EOF
    check "chromium: the page shows both stages and a loss curve ($(tail -1 $tmp/dom.check))" "grep -q '^ok' $tmp/dom.check"
    if [ -n "${LIVE_SCREENSHOT:-}" ]; then
        sleep 5
        timeout 120 "$browser" "${CHROME[@]}" --virtual-time-budget=4000 --hide-scrollbars --window-size=1200,800 \
            --screenshot="$LIVE_SCREENSHOT" "$URL/" >/dev/null 2>&1
        echo "  screenshot: $LIVE_SCREENSHOT"
    fi
fi

# --- refusals
"$P" run $TOPO "${SMALL[@]}" --steps 5 --out "$tmp/busy" --http 127.0.0.1:${port:-1} >"$tmp/busy.log" 2>&1
rc=$?
check "--http on a busy port: exit 2 naming it ($(head -1 $tmp/busy.log))" \
    "[ $rc -eq 2 ] && grep -q \"127.0.0.1:${port:-1}: cannot listen: Address already in use\" $tmp/busy.log"
check "  and no stage was started" "[ ! -e $tmp/busy/stage-0.log ]"
stop $run

"$P" run $TOPO "${SMALL[@]}" --steps 5 --out "$tmp/open" --http 0.0.0.0:0 >"$tmp/open.log" 2>&1
rc=$?
check "--http off loopback without a secret: exit 2 ($(head -1 $tmp/open.log | cut -c1-90)...)" \
    "[ $rc -eq 2 ] && grep -q 'off loopback' $tmp/open.log"
# --insecure's well-known secret protects nothing: off loopback it does not count (a stage on
# another host makes --insecure take effect; the refusal comes before any process is started)
ip=$(hostname -I 2>/dev/null | awk '{print $1}')
if [ -n "$ip" ] && ! python3 -c 'import ipaddress,sys; sys.exit(not ipaddress.ip_address(sys.argv[1]).is_loopback)' "$ip"; then
    timeout 30 "$P" run $TOPO "${SMALL[@]}" --set coordinator.host=$ip --set stages.0.host=$ip --set stages.1.host=192.0.2.77 \
        --insecure --steps 2 --out "$tmp/insecure" --http 0.0.0.0:0 >"$tmp/insecure.log" 2>&1
    rc=$?
    check "--http off loopback with --insecure only: exit 2, no view (got $rc)" \
        "[ $rc -eq 2 ] && grep -q 'off loopback' $tmp/insecure.log && ! grep -q 'live view on' $tmp/insecure.log"
else
    echo "  SKIP --insecure check: this machine has no non-loopback address"
fi
check "--http with a bad port: exit 2" "$P run $TOPO --http 127.0.0.1:99999 --out $tmp/bad 2>&1 | grep -q 'not a number in 0..65535'; [ \${PIPESTATUS[0]} -eq 2 ]"

# --- off loopback with the run's secret: the token or 401
secret="live view test secret $$"
PIPETRAIN_SECRET="$secret" "$P" run $TOPO "${SMALL[@]}" --set stages.0.port=$((base + 2)) --set stages.1.port=$((base + 3)) \
    --steps 100000 --out "$tmp/auth" --http 0.0.0.0:0 >"$tmp/auth.log" 2>&1 &
run=$!
aport=$(live_port "$tmp/auth.log")
token=$(python3 -c 'import hmac,hashlib,sys; print(hmac.new(sys.argv[1].encode(), b"pipetrain live view", hashlib.sha256).hexdigest())' "$secret")
AURL="http://127.0.0.1:${aport:-1}"
check "the run prints the token (HMAC-SHA256 of the secret)" "grep -q 'Bearer $token' $tmp/auth.log"
check "off loopback: no token is 401" "get $AURL/metrics | head -1 | grep -q '^401 '"
check "off loopback: a wrong token is 401" "get $AURL/api/status 'Bearer $(printf %064d 0)' | head -1 | grep -q '^401 '"
check "off loopback: the token as Bearer is 200" "get $AURL/metrics 'Bearer $token' | head -1 | grep -q '^200 '"
check "off loopback: ?token= is 200" "get '$AURL/api/status?token=$token' | head -1 | grep -q '^200 '"
stop $run

# --- the view changes no number: the same 6 steps with and without --http
losses() { python3 -c 'import json,sys; [print(json.dumps({k: j.get(k) for k in ("step","loss","lr","grad_norm","val_loss")})) for j in map(json.loads, open(sys.argv[1])) if "loss" in j]' "$1/metrics.jsonl"; }
for v in plain http; do
    extra=(); [ $v = http ] && extra=(--http 127.0.0.1:0)
    "$P" run $TOPO "${SMALL[@]}" --set stages.0.port=$((base + 4)) --set stages.1.port=$((base + 5)) --steps 6 \
        --out "$tmp/b-$v" "${extra[@]}" >"$tmp/b-$v.log" 2>&1 || { echo "  run $v failed:"; tail -3 "$tmp/b-$v.log"; }
done
check "--http changes no loss line (bitwise, 6 steps)" "[ -s $tmp/b-plain/metrics.jsonl ] && [ \"\$(losses $tmp/b-plain)\" = \"\$(losses $tmp/b-http)\" ]"

[ $fail -eq 0 ] && echo "t_live_view: ok" || echo "t_live_view: FAILED"
exit $fail
