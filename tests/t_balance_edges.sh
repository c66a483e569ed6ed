#!/usr/bin/env bash
# t_balance_edges.sh — `pipetrain balance` and `schedule` off the tested path
# (issue 13, as a new user): costs files whose times overflow the simulator
# (a value of 1e308 made `balance` blame a memory limit nobody gave and
# `schedule` print "inf ms" and "-nan%" with exit 0), a latency that is no
# number, `--costs` past the same bound, and `balance --out` naming a directory
# (exit 1 after the plan, "rename: Is a directory"). Each is exit 2 naming the
# file and the field, and nothing is written. And the memory balance counts for a
# tied head on its own stage (it counted none of the embedding copy it holds).
set -u
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
P="$BIN/pipetrain"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export XDG_CACHE_HOME="$tmp/xdg" OPENBLAS_NUM_THREADS=1
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
run() {
    local want=$1; shift
    "$P" "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
    [ "$rc" -eq "$want" ] || { fail "exit $rc (want $want): $*"; sed 's/^/    /' "$tmp/err" | head -5; return 1; }
}
has() { grep -qF -- "$2" "$1" || fail "$1 lacks '$2' ($3): $(head -c 300 "$1")"; }

T=topologies/shakespeare-2stage.json
costs() { # NAME F0 LATENCY [UNITS-F1]
    cat >"$tmp/$1.json" <<J
{"version": 1, "unit": "ms", "stages": 2, "chunks": 1, "steps": 5, "f": [$2, 3], "b": [3, 3], "w": [1, 1],
 "latency": $3, "bandwidth": 0, "bw_early": true, "w_in_order": true,
 "units": {"f": [0, ${4:-1}, 1, 1, 1, 1], "b": [0, 1, 1, 1, 1, 1], "w": [0, 1, 1, 1, 1, 1]}}
J
}
costs ok 3 0.1
run 0 balance "$T" --stages 2 --calibrate "$tmp/ok.json" && has "$tmp/out" "predicted step time" "a sane file balances"
costs hugef 1e308 0.1
run 2 balance "$T" --stages 2 --calibrate "$tmp/hugef.json" --out "$tmp/new.json" &&
{ has "$tmp/err" "$tmp/hugef.json: \"f\"[0]: expected a number >= 0 and at most 1e+09 (ms)" "names file and field";
  grep -q "memory limit" "$tmp/err" && fail "blames a memory limit: $(cat "$tmp/err")"; }
[ -e "$tmp/new.json" ] && fail "huge costs: a topology written"
run 2 schedule "$T" --calibrate "$tmp/hugef.json" && has "$tmp/err" "\"f\"[0]" "schedule names the field"
grep -q "nan\|inf ms" "$tmp/out" && fail "schedule printed nan/inf: $(head -5 "$tmp/out")"
costs hugeu 3 0.1 1e308
run 2 balance "$T" --stages 2 --calibrate "$tmp/hugeu.json" &&
    has "$tmp/err" "$tmp/hugeu.json: \"units\".\"f\"[1]: expected a number >= 0 and at most 1e+09 (ms)" "per-layer time"
costs hugelat 3 1e308
run 2 balance "$T" --stages 2 --calibrate "$tmp/hugelat.json" && has "$tmp/err" "$tmp/hugelat.json: \"latency\"" "latency"
costs strlat 3 '"fast"'
run 2 schedule "$T" --calibrate "$tmp/strlat.json" && has "$tmp/err" "$tmp/strlat.json: \"latency\"" "latency no number"
costs neglat 3 -1
run 2 schedule "$T" --calibrate "$tmp/neglat.json" && has "$tmp/err" "$tmp/neglat.json: \"latency\"" "negative latency"
run 2 schedule --stages 2 --micro-batches 4 --costs 1e308,1e308,1 && has "$tmp/err" "--costs" "--costs past the bound"
run 0 schedule --stages 2 --micro-batches 4 --costs 1e9,1e9,1 && has "$tmp/out" "predicted step time" "at the bound"

# --out naming a directory: exit 2 before anything is renamed, no temporary file left
mkdir -p "$tmp/dir"
run 2 balance "$T" --stages 2 --gflops 10 --out "$tmp/dir" && has "$tmp/err" "--out: $tmp/dir is a directory" "says so"
[ -z "$(ls -A "$tmp/dir")" ] || fail "--out DIR: something written into it: $(ls "$tmp/dir")"
ls "$tmp" | grep -q '\.tmp\.' && fail "a temporary file left: $(ls "$tmp")"
run 2 schedule --stages 2 --micro-batches 4 --kind zb-v --costs 1,1,1 --format csv --out "$tmp/dir" &&
    has "$tmp/err" "--out: $tmp/dir is a directory" "schedule says so"
[ -z "$(ls -A "$tmp/dir")" ] || fail "schedule --out DIR: something written into it: $(ls "$tmp/dir")"

# a schedule file with more rows (ranks) than the topology has stages: the counts
# named first (the actions of the extra row were checked and the message blamed
# them: "row 3: missing backward for micro-batch 0")
printf '0F0,0F1,0I0,0W0,0I1,0W1\n1F0,1I0,1W0,1F1,1I1,1W1\n2F0\n' >"$tmp/three.csv"
run 2 check "$T" --schedule "$tmp/three.csv" --set train.micro_batches=2 &&
{ has "$tmp/err" "$tmp/three.csv: 3 rows: is for 3 stage(s) (one row of actions per rank), expected 2" "row count";
  grep -q "missing backward" "$tmp/err" && fail "blames row 3's actions: $(cat "$tmp/err")"; }
run 2 schedule --stages 2 --micro-batches 2 --costs 1,1,1 --schedule "$tmp/three.csv" &&
    has "$tmp/err" "is for 3 stage(s)" "schedule --stages names the counts"
printf '{"stages": [["F0","F1","B0","W0","B1","W1"],["F0","B0","W0","F1","B1","W1"],["F0"]]}' >"$tmp/three.json"
run 2 check "$T" --schedule "$tmp/three.json" --set train.micro_batches=2 &&
    has "$tmp/err" "$tmp/three.json: \"stages\": is for 3 stage(s)" "JSON list count"

# a CSV saved by a spreadsheet starts with a UTF-8 byte-order mark: read past it
# (the first cell was refused as "found '\xef\xbb\xbf0F0'")
printf '\xef\xbb\xbf0F0,0F1,0I0,0W0,0I1,0W1\n1F0,1I0,1W0,1F1,1I1,1W1\n' >"$tmp/bom.csv"
run 0 schedule --stages 2 --micro-batches 2 --costs 1,1,1 --schedule "$tmp/bom.csv" &&
    has "$tmp/out" "predicted step time: 8.0000 ms" "the same schedule as without the mark"

# check's imbalance warning on a topology that runs a schedule file: the command
# it suggests must run (balance refuses a file without --schedule)
"$P" schedule --stages 2 --micro-batches 4 --kind 1f1b --costs 1,1,1 --format csv --out "$tmp/my.csv" >/dev/null 2>&1
sed "s|\"kind\": \"1f1b\"|\"file\": \"$tmp/my.csv\"|" "$T" >"$tmp/filetopo.json"
sed -i 's|"path": "../../shared|"path": "/work/shared|; s|"layers": "embed,0-1"|"layers": "embed"|; s|"layers": "2-3,head"|"layers": "0-3,head"|' "$tmp/filetopo.json"
run 0 check "$tmp/filetopo.json" && has "$tmp/err" "imbalanced" "the warning"
cmd=$(sed -n 's/.*`pipetrain \(balance [^`]*\)`.*/\1/p' "$tmp/err" | sed 's/NEW.json/$tmp\/sugg.json/')
[ -n "$cmd" ] && run 0 $(eval echo "$cmd") --gflops 10 && has "$tmp/out" "wrote $tmp/sugg.json" "the suggested command runs"

# a run directory without costs.json (a --no-trace or one-stage run): say where it
# comes from, not jansson's "unable to open ... (line -1)"
mkdir -p "$tmp/notrace"; echo '{}' >"$tmp/notrace/summary.json"
run 2 balance "$T" --stages 2 --calibrate "$tmp/notrace" &&
{ has "$tmp/err" "$tmp/notrace/costs.json: no such file" "names the file"; has "$tmp/err" "--no-trace" "says why";
  grep -q "line -1" "$tmp/err" && fail "jansson's line -1: $(cat "$tmp/err")"; }

# tied embeddings: the head's stage holds a copy of the embedding and lm_head's
# gradient (8·vocab·dim bytes, as `check` counts them); balance counted neither,
# so it accepted a split whose head stage needs more than --memory-limit
TIED=(--set model.vocab_size=8192 --set model.tie_embeddings=true --set model.dim=32 --set model.ffn_dim=64)
run 0 balance "$T" --stages 2 --gflops 10 "${TIED[@]}" &&
    has "$tmp/out" "1     head                    30.1990    120.796       2.00 MiB       8.05 MiB" "the head's static memory"
run 2 balance "$T" --stages 2 --gflops 10 "${TIED[@]}" --memory-limit 7200000 --out "$tmp/tied.json" &&
    has "$tmp/err" "the head (head) does not fit on any stage" "the tied head over the limit"
[ -e "$tmp/tied.json" ] && fail "tied head over the limit: a topology written"
run 0 balance "$T" --stages 1 --gflops 10 "${TIED[@]}" &&
    has "$tmp/out" "0     embed,0-3,head" "one stage: the head reads the embedding it holds"

# a stage in its own recompute mode: the plan models train.recompute's for every
# stage and said nothing; now a warning names the stage's field (exit 0)
run 0 balance "$T" --stages 2 --gflops 10 --set stages.0.recompute=full &&
    has "$tmp/err" "warning: $T: stages.0.recompute \"full\" differs from train.recompute \"none\"" "names the field"
run 0 balance "$T" --stages 2 --gflops 10 --set train.recompute=full && [ -s "$tmp/err" ] && fail "one mode: a warning"

# --stages past what a topology holds, with --out: refused before the search
# (it printed the plan, then failed: "does not load"); --top past the list's
# cap named --top (it said "balance: top_k 20001, max_list 20000")
run 2 balance "$T" --stages 1025 --gflops 10 --out "$tmp/big.json" &&
    has "$tmp/err" "--stages 1025 with --out: a topology holds at most 1024 stages" "names the limit"
[ -e "$tmp/big.json" ] && fail "1025 stages: a topology written"
[ -s "$tmp/out" ] && fail "1025 stages with --out: a plan printed before the refusal"
run 2 balance "$T" --stages 2 --top 20001 && has "$tmp/err" "--top expects an integer in 1..20000" "names --top"

[ "$fails" -eq 0 ] && echo "t_balance_edges: ok" || echo "t_balance_edges: $fails failure(s)"
[ "$fails" -eq 0 ]
