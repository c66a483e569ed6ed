#!/usr/bin/env bash
# t_balance.sh — `pipetrain balance` end to end: the plan for an uneven model,
# --out written and loadable by `check`, the input never overwritten, the
# memory-limit error naming the layer, usage errors (exit 2), and `check`'s
# imbalance warning.
set -u
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
P="$BIN/pipetrain"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export XDG_CACHE_HOME="$tmp/xdg" OPENBLAS_NUM_THREADS=1
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
# run EXPECTED_RC ARGS...: stdout in $tmp/out, stderr in $tmp/err
run() {
    local want=$1; shift
    "$P" "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
    [ "$rc" -eq "$want" ] || { fail "exit $rc (want $want): $*"; sed 's/^/    /' "$tmp/err" | head -5; return 1; }
}
has() { grep -qF -- "$2" "$1" || fail "$1 lacks '$2' ($3)"; }

T=topologies/shakespeare-2stage.json
# the uneven model: vocab 8192, so the head dominates; the file keeps it
sed 's/"vocab_size": 256/"vocab_size": 8192/' "$T" >"$tmp/uneven.json"
sed -i 's|"path": "../../shared|"path": "/work/shared|' "$tmp/uneven.json"
G=(--gflops 10) # costs from FLOPs at a fixed rate: no sgemm measurement
BASE_PORT=$((20000 + (RANDOM % 120) * 100 + 90 + ($$ % 8))) # below the ephemeral range

run 0 balance "$tmp/uneven.json" --stages 2 "${G[@]}" &&
{ has "$tmp/out" "embed,0-3" "the blocks go with the embedding"; has "$tmp/out" "1     head" "the head alone";
  has "$tmp/out" "balanced is 22.6% faster" "against the even split"; }
[ -e "$tmp/NEW.json" ] && fail "no --out: nothing written"

run 2 balance "$tmp/uneven.json" --stages 2 "${G[@]}" --out "$tmp/sub/NEW.json" &&
has "$tmp/err" "cannot write" "--out in a missing directory"
mkdir -p "$tmp/sub"
run 0 balance "$tmp/uneven.json" --stages 2 "${G[@]}" --out "$tmp/sub/NEW.json" &&
{ has "$tmp/out" "wrote $tmp/sub/NEW.json" "written"; ls "$tmp/sub" | grep -q tmp && fail "a temporary file left"; }
run 0 check "$tmp/sub/NEW.json" && has "$tmp/out" "embed,0-3" "check loads the balanced split"
grep -q warning "$tmp/err" && fail "check warns about the balanced split: $(cat "$tmp/err")"
# the data path still resolves from another directory
python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert d['stages'][1]['layers']=='head'; assert d['data']['path'].startswith('/'), d['data']['path']" "$tmp/sub/NEW.json" || fail "NEW.json content"

# more stages than the file: new stages on fresh ports; loadable
run 0 balance "$T" --stages 3 "${G[@]}" --out "$tmp/three.json" && run 0 check "$tmp/three.json" &&
has "$tmp/out" "127.0.0.1:29513" "a third stage on a new port"

# never over the input
cp "$tmp/uneven.json" "$tmp/in.json"; sum=$(md5sum <"$tmp/in.json")
run 2 balance "$tmp/in.json" --stages 2 "${G[@]}" --out "$tmp/in.json" && has "$tmp/err" "is the input topology" "refused"
[ "$(md5sum <"$tmp/in.json")" = "$sum" ] || fail "the input was changed"

# a layer too large for any stage's memory limit: named, exit 2, nothing written
run 2 balance "$tmp/uneven.json" --stages 2 "${G[@]}" --memory-limit 10000000 --out "$tmp/m.json" &&
{ has "$tmp/err" "the embedding (embed) does not fit on any stage" "names the layer"; has "$tmp/err" "--memory-limit" "names the option"; }
[ -e "$tmp/m.json" ] && fail "memory error: file written"
# a limit the balanced split fits under (its stage 0 needs about 44 MiB)
run 0 balance "$tmp/uneven.json" --stages 2 "${G[@]}" --memory-limit 60000000 && has "$tmp/out" "embed,0-3" "fits"

# usage errors: exit 2 with a message
run 2 balance "$T" "${G[@]}" && has "$tmp/err" "--stages P is required" "no --stages"
run 2 balance --stages 2 && has "$tmp/err" "TOPOLOGY.json" "no topology"
run 2 balance "$T" --stages 0 && has "$tmp/err" "--stages" "bad count"
run 2 balance "$T" --stages 2 --bogus 1 && has "$tmp/err" "unknown option '--bogus'" "unknown option"
run 2 balance "$T" --stages 2 --schedule interleaved && has "$tmp/err" "--schedule" "two-chunk kind"
run 2 balance "$T" --stages 7 "${G[@]}" && has "$tmp/err" "6 units" "more stages than units"
run 2 balance "$T" --stages 5 "${G[@]}" && has "$tmp/err" "train.micro_batches" "1f1b needs M >= P"
run 2 balance "$T" --stages 2 --memory-limit x && has "$tmp/err" "--memory-limit" "bad limit"
run 2 balance "$T" --stages 2 --calibrate "$tmp/nowhere" && has "$tmp/err" "$tmp/nowhere/costs.json" "no costs.json"
run 0 balance --help && has "$tmp/out" "usage: pipetrain balance" "help"

# --calibrate: a costs file of the 2-stage run (stage 1 measured 3x slower)
cat >"$tmp/costs.json" <<'J'
{"version": 1, "unit": "ms", "stages": 2, "chunks": 1, "steps": 5, "f": [10, 30], "b": [10, 30], "w": [10, 30],
 "latency": 0, "bandwidth": 0, "bw_early": true, "w_in_order": true}
J
run 0 balance "$T" --stages 2 --calibrate "$tmp/costs.json" && has "$tmp/out" "measured in" "calibrated" &&
has "$tmp/out" "3,head" "the slow stage gets less"

# --calibrate with per-layer times (costs.json "units"): stage 1's 22 ms go to the
# head by its measured share (20 of 22), not by FLOPs (the vocab-256 head has few),
# so the blocks all move to stage 0 (by FLOPs the plan would be embed,0-2 | 3,head)
cat >"$tmp/ucosts.json" <<'J'
{"version": 1, "unit": "ms", "stages": 2, "chunks": 1, "steps": 5, "f": [2, 22], "b": [2, 22], "w": [2, 22],
 "latency": 0, "bandwidth": 0, "bw_early": true, "w_in_order": true,
 "units": {"f": [0, 1, 1, 1, 1, 20], "b": [0, 1, 1, 1, 1, 20], "w": [0, 1, 1, 1, 1, 20]}}
J
run 0 balance "$T" --stages 2 --calibrate "$tmp/ucosts.json" &&
{ has "$tmp/out" "by their measured times" "per-layer times used"; has "$tmp/out" "embed,0-3" "the blocks to stage 0";
  has "$tmp/out" "1     head" "the head alone"; }
sed 's/"units": {"f": \[0, 1, 1, 1, 1, 20\]/"units": {"f": [0, 1, 1, 20]/' "$tmp/ucosts.json" >"$tmp/ubad.json"
run 2 balance "$T" --stages 2 --calibrate "$tmp/ubad.json" &&
{ has "$tmp/err" "$tmp/ubad.json" "names the file"; has "$tmp/err" '"units"."f"' "names the field"; }
# two chunks per stage (interleaved, zb-v): refused, exit 2, saying which kinds it handles
run 2 balance "$T" --stages 2 "${G[@]}" --set schedule.kind=zb-v --set 'stages.0.layers=embed,0,3,head' \
    --set 'stages.1.layers=1|2' && has "$tmp/err" "balance handles one chunk per stage" "zb-v refused"

# a real run's costs.json carries every layer's measured F, B, W; balance uses them
R="$tmp/run"
"$P" run "$T" --steps 3 --set train.eval_every=0 --set checkpoint.every=0 --set coordinator.port=0 \
    --set stages.0.port=$((BASE_PORT + 1)) --set stages.1.port=$((BASE_PORT + 2)) --out "$R" >"$tmp/run.log" 2>&1 ||
    fail "the calibration run: $(tail -3 "$tmp/run.log")"
python3 - "$R/costs.json" <<'PY' || fail "costs.json has no per-layer times"
import json, sys
u = json.load(open(sys.argv[1]))["units"]
assert all(len(u[k]) == 6 and all(x >= 0 for x in u[k]) for k in "fbw"), u
assert all(u[k][i] > 0 for k in "fbw" for i in range(1, 5)), u  # the blocks take time
PY
run 0 balance "$T" --stages 2 --calibrate "$R" && has "$tmp/out" "by their measured times" "from a real run"

# --calibrate repeated (issue 13): runs of the real run's model and split (its
# summary.json) with synthetic costs. A and B put 20 of stage 1's 22 ms in the
# head; C was disturbed (stage 0 slow, the head fast): alone it would move the
# head's stage the other way. The median of the three is A's plan.
for d in A B C D E; do mkdir -p "$tmp/$d"; cp "$R/summary.json" "$tmp/$d/"; done
cp "$tmp/ucosts.json" "$tmp/A/costs.json"
python3 - "$tmp" <<'PY' || fail "synthetic runs"
import json, sys
t = sys.argv[1]
a = json.load(open(t + "/A/costs.json"))
b = dict(a, f=[x * 1.1 for x in a["f"]], b=[x * 1.1 for x in a["b"]], w=[x * 1.1 for x in a["w"]],
         units={k: [x * 1.1 for x in v] for k, v in a["units"].items()})
c = dict(a, f=[30, 3], b=[30, 3], w=[30, 3], units={k: [0, 7, 7, 7, 7, 1] for k in "fbw"})
for d, x in (("B", b), ("C", c), ("D", a), ("E", a)):
    json.dump(x, open(t + "/" + d + "/costs.json", "w"))
s = json.load(open(t + "/D/summary.json")); s["params"] += 1; json.dump(s, open(t + "/D/summary.json", "w"))
s = json.load(open(t + "/E/summary.json"))
s["stages"][0]["layers"], s["stages"][1]["layers"] = "embed,0-2", "3,head"
json.dump(s, open(t + "/E/summary.json", "w"))
PY
run 0 balance "$T" --stages 2 --calibrate "$tmp/C" && grep -q "1     head" "$tmp/out" && fail "run C alone gives A's plan: no test"
run 0 balance "$T" --stages 2 --calibrate "$tmp/A" --calibrate "$tmp/B" --calibrate "$tmp/C" &&
{ has "$tmp/out" "median of 3 runs" "says how many runs"; has "$tmp/out" "$tmp/C/costs.json" "names them";
  has "$tmp/out" "embed,0-3" "the median's plan"; has "$tmp/out" "1     head" "the head alone"; }
best=$(sed -n 's/^predicted step time: \([0-9.]*\) ms/\1/p' "$tmp/out")
# the runs' split places their costs, whatever the topology's: the balanced
# topology's own split, from the even runs, is predicted as the plan was
run 0 balance "$T" --stages 2 --set stages.0.layers=embed,0-3 --set stages.1.layers=head \
    --calibrate "$tmp/A" --calibrate "$tmp/B" --calibrate "$tmp/C" &&
{ has "$tmp/out" "the runs' split from $tmp/A/summary.json" "the runs' split";
  has "$tmp/out" "the topology's split: predicted step time ${best:-?} ms" "the same prediction for the same split"; }
# runs of another model or split, the same run twice: exit 2 naming the file and the field
run 2 balance "$T" --stages 2 --calibrate "$tmp/A" --calibrate "$tmp/D" &&
    has "$tmp/err" "$tmp/D/summary.json: \"params\"" "another model"
run 2 balance "$T" --stages 2 --calibrate "$tmp/A" --calibrate "$tmp/E" &&
    { has "$tmp/err" "$tmp/E/summary.json: \"stages\"[0].\"layers\"" "another split"; has "$tmp/err" "different splits" "says why"; }
run 2 balance "$tmp/uneven.json" --stages 2 --calibrate "$tmp/A" &&
    has "$tmp/err" "$tmp/A/summary.json: \"params\": the run's model has" "a run of another model than the topology's"
run 2 balance "$T" --stages 2 --calibrate "$tmp/A" --calibrate "$tmp/A/costs.json" && has "$tmp/err" "the same costs file" "twice"

# the uneven-model benchmark, in miniature: calibration, balance, one run of each split
run 2 bench schedule --uneven --repeat 99 && has "$tmp/err" "--repeat 99" "too many repetitions"
run 0 bench schedule --uneven --steps 3 --repeat 1 --json &&
python3 - "$tmp/out" <<'PY' || fail "bench schedule --uneven --json: $(cat "$tmp/out")"
import json, sys
d = json.load(open(sys.argv[1]))
even, bal = d["splits"]
assert even["layers"] == ["embed,0-1", "2-3,head"], even
assert bal["layers"] != even["layers"], bal           # balance moved layers
assert all(s["measured_median_ms"] > 0 and s["predicted_ms"] > 0 for s in d["splits"]), d
assert d["predicted_gain"] > 0, d                      # its own model says it helps
# the predictions from the median costs of the series' even runs (here 1), beside the calibration run's
assert d["prediction_runs"] == 1 and len(d["median_choice"]) == 2, d
assert all(s["predicted_1run_ms"] > 0 and s["predicted_ms"] != s["predicted_1run_ms"] for s in d["splits"]), d
# one even run: its median is its own costs, so the even split is predicted as the run predicted itself
assert abs(even["predicted_ms"] - even["own_prediction_median_ms"]) <= 0.005 * even["predicted_ms"], even
PY

# check's warning: on the uneven model's even split, not on the balanced one
run 0 check "$tmp/uneven.json" && has "$tmp/err" "imbalanced" "warns" && has "$tmp/err" "pipetrain balance" "suggests balance"
run 0 check "$T" && { grep -q warning "$tmp/err" && fail "warns about an even split: $(cat "$tmp/err")"; }
run 0 check topologies/shakespeare-3stage-uneven.json && { grep -q warning "$tmp/err" && fail "warns although no split of 4 blocks into 3 stages is better"; }

[ "$fails" -eq 0 ] || { echo "t_balance: $fails failure(s)"; exit 1; }
echo "t_balance: ok"
