#!/usr/bin/env bash
# t_sched_cli.sh — `pipetrain schedule` end to end: golden numbers, every output
# format, JSON/CSV files written and read back, a deadlocked file, a topology,
# bad usage (exit 2), --out never leaving a partial file, and --calibrate.
set -u
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
PT=("$BIN/pipetrain" schedule)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export XDG_CACHE_HOME="$tmp/xdg" # the sgemm measurement's cache: never the user's
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
# run EXPECTED_RC ARGS... : runs the command, keeps stdout/stderr in $tmp/out, $tmp/err
run() {
    local want=$1; shift
    "${PT[@]}" "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
    if [ "$rc" -ne "$want" ]; then
        fail "exit $rc (want $want): schedule $*"; sed 's/^/    /' "$tmp/err" | head -5
        return 1
    fi
    return 0
}
has() { grep -qF -- "$2" "$1" || fail "$1 lacks '$2' ($3)"; }

# Golden: P=4, M=8, F=1, B=2 fused: bubble 3/11 for gpipe and 1f1b.
for k in gpipe 1f1b; do
    run 0 --stages 4 --micro-batches 8 --kind "$k" --costs 1,2,0 &&
    { has "$tmp/out" "predicted step time: 33.0000 ms" "$k step"; has "$tmp/out" "bubble: 27.3% overall" "$k bubble"; }
done
run 0 --stages 4 --micro-batches 8 --kind 1f1b --costs 1,2,0 &&
    { grep -qE '^ +3 +24\.000 +27\.3% +1 ' "$tmp/out" || fail "1f1b stage 3 row (peak 1)"; }
run 0 --stages 4 --micro-batches 8 --kind zb-h1 --costs 1,1,1 && has "$tmp/out" "predicted step time: 27.0000 ms" "zb-h1"
run 0 --stages 4 --micro-batches 8 --schedule interleaved --chunks 2 --costs 1,2,0 &&
    has "$tmp/out" "predicted step time: 28.5000 ms" "interleaved v=2"
run 0 --stages 4 --micro-batches 8 && has "$tmp/out" "stage   3 |" "ascii grid"

# Every format; schedule files written and read back give the same prediction.
for k in gpipe 1f1b interleaved zb-h1; do
    for f in json csv; do
        run 0 --stages 3 --micro-batches 6 --kind "$k" --format "$f" --out "$tmp/s.$f" || continue
        want=$(grep "predicted step time" "$tmp/out")
        run 0 --schedule "$tmp/s.$f" && has "$tmp/out" "$want" "$k via $f"
    done
done
run 0 --stages 4 --micro-batches 8 --format json >/dev/null &&
    { head -c 1 "$tmp/out" | grep -q '{' || fail "json on stdout"; has "$tmp/err" "predicted step time" "summary on stderr"; }
# --format json carries the simulation, machine-readable (issue 10, defect 6)
if ! command -v python3 >/dev/null; then fail "python3 is needed to parse the json simulation"; fi
run 0 --stages 4 --micro-batches 8 --kind 1f1b --costs 1,2,0 --format json --out "$tmp/sim.json" &&
    python3 - "$tmp/sim.json" <<'PY' || fail "json simulation object"
import json, sys
d = json.load(open(sys.argv[1]))
sim = d["simulation"]
assert sim["unit"] == "ms" and abs(sim["step_time"] - 33.0) < 1e-9, sim
assert abs(sim["bubble"] - 9 / 33) < 1e-6 and sim["cost_source"] == "--costs", sim
assert len(sim["stages"]) == 4 and len(d["stages"]) == 4
for k, st in enumerate(sim["stages"]):
    assert st["stage"] == k and abs(st["busy"] - 24.0) < 1e-9 and abs(st["idle"] - 9.0) < 1e-9, st
    assert abs(st["bubble"] - 9 / 33) < 1e-6 and st["peak_in_flight"] == 4 - k, st
    assert st["peak_activation_bytes"] is None, st
PY
run 0 topologies/shakespeare-2stage.json --format json --out "$tmp/sim2.json" &&
    python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["simulation"]; assert s["step_time"] > 0 and "FLOP" in s["cost_source"]
assert all(st["peak_activation_bytes"] > 0 and st["peak_in_flight"] >= 1 and st["busy"] + st["idle"] - s["step_time"] < 1e-6 for st in s["stages"])' "$tmp/sim2.json" ||
    fail "json simulation of a topology (activation bytes, cost source)"
run 0 --schedule "$tmp/sim.json" --costs 1,2,0 && has "$tmp/out" "predicted step time: 33.0000 ms" "json with simulation reads back"
run 0 --stages 4 --micro-batches 8 --format svg --out "$tmp/t.svg" &&
    { head -c 4 "$tmp/t.svg" | grep -q '<svg' || fail "svg header"; has "$tmp/t.svg" "</svg>" "svg end"; }
run 0 --stages 4 --micro-batches 8 --format chrome --out "$tmp/t.json" && has "$tmp/t.json" '"traceEvents"' "chrome trace"
if command -v python3 >/dev/null; then
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert len(d['traceEvents']) == 64 + 8" "$tmp/t.json" ||
        fail "chrome trace is not the expected JSON"
fi
run 0 --schedule tests/data/sched/pytorch-style-2x4.csv
run 0 --schedule tests/data/sched/interleaved-4x8-v2.csv --costs 1,2,0 &&
    has "$tmp/out" "predicted step time: 28.5000 ms" "interleaved csv"
run 2 --schedule tests/data/sched/interleaved-4x8-v2.csv --chunks 3 && has "$tmp/err" "--chunks says 3" "chunks vs file"
run 2 --schedule tests/data/sched/1f1b-4x8.csv --stages 3 && has "$tmp/err" "expected 3" "stages vs file"

# A deadlocked hand-written schedule: exit 2 with the explanation.
run 2 --schedule tests/data/sched/deadlock-2x4.json --out "$tmp/never.svg" --format svg &&
    { has "$tmp/err" "stage 0 waits for B(2) from stage 1; stage 1 waits for F(3) from stage 0" "deadlock";
      has "$tmp/err" "[BW2]" "stuck marker"; }
[ -e "$tmp/never.svg" ] && fail "--out written for an invalid schedule"
ls "$tmp" | grep -q '\.tmp\.' && fail "temporary file left behind"

# A topology: costs from FLOPs, activation bytes per stage.
run 0 topologies/shakespeare-2stage.json && { has "$tmp/out" "from FLOPs" "topology costs"; has "$tmp/out" "MiB" "peak bytes"; }
# FLOP-derived costs default to this machine's sgemm at the model's shapes, measured
# once and cached (issue 10, defect 7); the note says so and where
run 0 topologies/shakespeare-2stage.json --kind zb-h1 &&
    { has "$tmp/out" "measured sgemm (this model's shapes) x 0.60 step efficiency;" "sgemm measured";
      has "$tmp/out" "cached in $tmp/xdg/pipetrain/sgemm.json" "cache path";
      grep -q 'threads=1|192x128x128,' "$tmp/xdg/pipetrain/sgemm.json" || fail "sgemm cache keyed by CPU, threads and shapes"; }
run 0 topologies/shakespeare-2stage.json --kind zb-h1 && has "$tmp/out" "x 0.60 step efficiency; cached in $tmp/xdg" "sgemm from the cache"
PIPETRAIN_NO_CACHE=1 "${PT[@]}" topologies/shakespeare-2stage.json --set stages.0.threads=2 >"$tmp/out" 2>&1 &&
    { has "$tmp/out" "at 2 threads" "one measurement per thread count"; has "$tmp/out" "not cached (PIPETRAIN_NO_CACHE=1" "no cache"; }
grep -q 'threads=2' "$tmp/xdg/pipetrain/sgemm.json" && fail "PIPETRAIN_NO_CACHE=1 wrote the cache"
run 0 topologies/shakespeare-2stage.json --gflops 20 && has "$tmp/out" "at 20 GFLOP/s per BLAS thread (--gflops)" "--gflops"
run 0 topologies/shakespeare-4stage.json --kind zb-h1 --latency 0.05 --bandwidth 1000 && has "$tmp/out" "links: latency" "links"
# --kind / --schedule KIND on a topology whose own schedule.kind (1f1b here) is not
# the layout's (a V, non-adjacent chunks) but the option's is: as check --schedule and
# run --schedule, the kind is the topology's for its validation (it was checked
# against 1f1b: "not one contiguous range", exit 2); a one-chunk layout still
# takes a multi-chunk kind, spread evenly
V=(--set 'stages.0.layers=embed,0,3,head' --set 'stages.1.layers=1|2')
I=(--set 'stages.0.layers=embed,0,2' --set 'stages.1.layers=1,3,head')
run 0 topologies/shakespeare-2x2.json "${V[@]}" --kind zb-v --gflops 20 && has "$tmp/out" "schedule zb-v: 2 stages" "V layout, --kind zb-v"
run 0 topologies/shakespeare-2x2.json "${V[@]}" --schedule zb-v --gflops 20 && has "$tmp/out" "schedule zb-v: 2 stages" "V layout, --schedule zb-v"
run 0 topologies/shakespeare-2x2.json "${I[@]}" --kind interleaved --gflops 20 &&
    has "$tmp/out" "schedule interleaved: 2 stages" "non-adjacent chunks, --kind interleaved"
run 0 topologies/shakespeare-2stage.json --kind interleaved --gflops 20 && has "$tmp/out" "schedule interleaved" "spread"
run 2 topologies/shakespeare-2x2.json "${V[@]}" --kind gpipe && has "$tmp/err" "not one contiguous range" "V layout, gpipe"
run 2 topologies/shakespeare-2stage.json --set train.micro_batches=x
run 2 topologies/shakespeare-2stage.json --stages 3

# Bad usage and bad input: exit 2 with a message.
run 2 --stages 4 && has "$tmp/err" "--micro-batches" "missing M"
run 2 --stages 4 --micro-batches 8 --kind pipedream && has "$tmp/err" "unknown schedule kind" "kind"
run 2 --stages 4 --micro-batches 8 --format png && has "$tmp/err" "--format" "format"
run 2 --stages 4 --micro-batches 8 --costs 1,2 && has "$tmp/err" "--costs" "costs"
run 2 --stages 4 --micro-batches 8 --bogus 1 && has "$tmp/err" "unknown option" "option"
run 2 --stages 4 --micro-batches 2 --kind 1f1b && has "$tmp/err" "2 micro-batches for 4 stages" "1f1b constraint"
run 2 --stages 4 --micro-batches 6 --kind interleaved && has "$tmp/err" "multiple of the number of stages" "interleaved"
run 2 --schedule "$tmp/missing.json" && has "$tmp/err" "missing.json" "missing file"
printf '0F0,0X1\n' >"$tmp/bad.csv"
run 2 --schedule "$tmp/bad.csv" && has "$tmp/err" "bad.csv: row 1, column 2" "csv position"
run 2 --stages 4 --micro-batches 8 --out "$tmp/no/such/dir/x.svg" --format svg && has "$tmp/err" "x.svg" "bad --out"
run 0 --help && has "$tmp/out" "usage: pipetrain schedule" "help"


# --calibrate: costs measured in a run (RUN/costs.json) drive the simulator.
# Uniform costs 1,2,0 with no latency must give the golden 33 ms again; a BW
# that sends after its B (bw_early, as the runtime does) starts the next stage
# earlier; a layout mismatch and --costs with --calibrate are usage errors.
mkdir -p "$tmp/run"
cat >"$tmp/run/costs.json" <<'JSON'
{"version": 1, "unit": "ms", "stages": 4, "chunks": 1, "steps": 5, "f": [1, 1, 1, 1], "b": [2, 2, 2, 2],
 "w": [0, 0, 0, 0], "latency": 0, "bandwidth": 0, "bw_early": false}
JSON
run 0 --stages 4 --micro-batches 8 --kind 1f1b --calibrate "$tmp/run" &&
    { has "$tmp/out" "predicted step time: 33.0000 ms" "calibrated step"; has "$tmp/out" "calibrated from $tmp/run/costs.json" "note"; }
sed 's/"w": \[0, 0, 0, 0\]/"w": [1, 1, 1, 1]/; s/"latency": 0/"latency": 0.5/' "$tmp/run/costs.json" >"$tmp/c2.json"
run 0 --stages 4 --micro-batches 8 --kind 1f1b --calibrate "$tmp/c2.json" && late=$(sed -n 's/predicted step time: \([0-9.]*\) ms/\1/p' "$tmp/out")
sed 's/"bw_early": false/"bw_early": true/' "$tmp/c2.json" >"$tmp/c3.json"
run 0 --stages 4 --micro-batches 8 --kind 1f1b --calibrate "$tmp/c3.json" && early=$(sed -n 's/predicted step time: \([0-9.]*\) ms/\1/p' "$tmp/out")
awk -v a="${late:-0}" -v b="${early:-0}" 'BEGIN { exit !(b > 0 && b < a) }' || fail "bw_early step ($early) not below the textbook one ($late)"
run 2 --stages 3 --micro-batches 8 --calibrate "$tmp/run" && has "$tmp/err" "measured on 4 stage(s) x 1 chunk(s); the schedule has 3 x 1" "layout"
run 2 --stages 4 --micro-batches 8 --calibrate "$tmp/run" --costs 1,1,1 && has "$tmp/err" "alternatives" "calibrate and costs"
run 2 --stages 4 --micro-batches 8 --calibrate "$tmp/nothere" && has "$tmp/err" "nothere/costs.json" "missing costs"

# --calibrate repeated (issue 13): the median of every cost over the runs. Runs
# 1 and 3 measure the golden costs (33 ms), run 2 was disturbed (every cost 3x):
# the median is the golden costs again, whatever the order. Two runs: the mean of
# the two (F 2, B 4: 66 ms).
mkdir -p "$tmp/r2" "$tmp/r3"
sed 's/"f": \[1, 1, 1, 1\], "b": \[2, 2, 2, 2\]/"f": [3, 3, 3, 3], "b": [6, 6, 6, 6]/' "$tmp/run/costs.json" >"$tmp/r2/costs.json"
cp "$tmp/run/costs.json" "$tmp/r3/costs.json"
run 0 --stages 4 --micro-batches 8 --kind 1f1b --calibrate "$tmp/r2" --calibrate "$tmp/run" --calibrate "$tmp/r3" &&
    { has "$tmp/out" "predicted step time: 33.0000 ms" "median of 3"; has "$tmp/out" "the median of 3 runs" "note: 3 runs"; }
run 0 --stages 4 --micro-batches 8 --kind 1f1b --calibrate "$tmp/run" --calibrate "$tmp/r2" &&
    { has "$tmp/out" "predicted step time: 66.0000 ms" "median of 2"; has "$tmp/out" "the median of 2 runs" "note: 2 runs"; }
# runs of another layout, another model, another split, or one run twice: exit 2 naming the file and the field
mkdir -p "$tmp/r5"
sed 's/"stages": 4/"stages": 5/; s/\[1, 1, 1, 1\]/[1, 1, 1, 1, 1]/; s/\[2, 2, 2, 2\]/[2, 2, 2, 2, 2]/; s/\[0, 0, 0, 0\]/[0, 0, 0, 0, 0]/' \
    "$tmp/run/costs.json" >"$tmp/r5/costs.json"
run 2 --stages 4 --micro-batches 8 --calibrate "$tmp/run" --calibrate "$tmp/r5" &&
    has "$tmp/err" "$tmp/r5/costs.json: \"stages\", \"chunks\": measured on 5 stage(s)" "another layout"
run 2 --stages 4 --micro-batches 8 --calibrate "$tmp/run" --calibrate "$tmp/run/costs.json" &&
    has "$tmp/err" "the same costs file" "one run twice"
for d in run r3; do
    echo '{"params": 1000, "stages": [{"stage": 0, "layers": "embed,0"}, {"stage": 1, "layers": "1"},
      {"stage": 2, "layers": "2"}, {"stage": 3, "layers": "3,head"}]}' >"$tmp/$d/summary.json"
done
run 0 --stages 4 --micro-batches 8 --calibrate "$tmp/run" --calibrate "$tmp/r3" && has "$tmp/out" "the median of 2 runs" "same model and split"
sed -i 's/"params": 1000/"params": 2000/' "$tmp/r3/summary.json"
run 2 --stages 4 --micro-batches 8 --calibrate "$tmp/run" --calibrate "$tmp/r3" &&
    has "$tmp/err" "$tmp/r3/summary.json: \"params\"" "another model"
echo '{"params": 1000, "stages": [{"stage": 0, "layers": "embed,0"}, {"stage": 1, "layers": "1"},
  {"stage": 2, "layers": "2,3"}, {"stage": 3, "layers": "head"}]}' >"$tmp/r3/summary.json"
run 2 --stages 4 --micro-batches 8 --calibrate "$tmp/run" --calibrate "$tmp/r3" &&
    has "$tmp/err" "$tmp/r3/summary.json: \"stages\"[2].\"layers\"" "another split"
rm -f "$tmp/run/summary.json" "$tmp/r3/summary.json"

# `check` builds and plays the very schedule `run` runs (issue 10, defect 4): a
# kind's constraints and a schedule file fail in check (exit 2, naming the file
# and the field), and check and run take --schedule KIND|FILE as schedule does.
PIPE=("$BIN/pipetrain")
pt() { local want=$1; shift; "${PIPE[@]}" "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
       [ "$rc" -eq "$want" ] || { fail "exit $rc (want $want): pipetrain $*"; sed 's/^/    /' "$tmp/err" | head -5; return 1; }; }
T2=topologies/shakespeare-2stage.json
pt 2 check topologies/shakespeare-4stage.json --set schedule.kind=zb-h1 --set train.micro_batches=2 &&
    { has "$tmp/err" "shakespeare-4stage.json: train.micro_batches" "zb-h1 M < P field"; has "$tmp/err" "zb-h1" "zb-h1 named"; }
pt 2 check $T2 --schedule interleaved --set stages.0.layers=embed,0,2 --set stages.1.layers=1,3,head \
    --set train.micro_batches=3 && has "$tmp/err" "train.micro_batches: interleaved" "interleaved M % P field"
pt 2 check $T2 --set train.micro_batches=2 --set schedule.file="$PWD/tests/bad/schedule/deadlock.json" &&
    { has "$tmp/err" "shakespeare-2stage.json: schedule.file: " "file field"; has "$tmp/err" "deadlock.json" "file named";
      has "$tmp/err" "waits for B(0) from stage 1" "deadlock found by check"; }
run 0 --stages 3 --micro-batches 4 --kind gpipe --format json --out "$tmp/gpipe-3x4.json"
pt 2 check $T2 --schedule "$tmp/gpipe-3x4.json" && { has "$tmp/err" "schedule.file: $tmp/gpipe-3x4.json" "file named";
    has "$tmp/err" "is for 3 stage(s)" "size mismatch"; }
pt 2 check $T2 --schedule "$tmp/absent.json" && has "$tmp/err" "absent.json" "missing file"
pt 0 check $T2 --schedule zb-h1 && has "$tmp/out" "schedule zb-h1: 2 stages x 4 micro-batches" "check --schedule kind"
run 0 --stages 2 --micro-batches 4 --kind gpipe --format json --out "$tmp/gpipe-2x4.json"
pt 0 check $T2 --schedule "$tmp/gpipe-2x4.json" && has "$tmp/out" "gpipe-2x4.json: 2 stages x 4 micro-batches" "check --schedule file"
pt 2 run $T2 --schedule zb-h1 --set train.micro_batches=1 --out "$tmp/never" && has "$tmp/err" "train.micro_batches" "run refuses"
pt 2 run $T2 --schedule tests/bad/schedule/deadlock.json --set train.micro_batches=2 --out "$tmp/never" &&
    has "$tmp/err" "deadlock.json" "run refuses a bad file before starting stages"
[ -e "$tmp/never" ] && fail "run left a run directory for a refused schedule"

# The data-parallel grid (issue 11, topology part): check prints every process
# (rank, stage, replica, address) and each replica group's all-reduce bytes; run
# and stage refuse replicas > 1 (exit 2) until the runtime exists, and stage
# resolves its identity from the first launcher rank variable set, saying which.
G=topologies/shakespeare-2x2.json
if pt 0 check $G; then
    has "$tmp/out" "grid: 2 stage(s) x 2 replica(s) = 4 processes (rank = replica x 2 + stage)" "check grid line"
    for row in "0     0     0       127.0.0.1:29551" "1     1     0       127.0.0.1:29552" \
               "2     0     1       127.0.0.1:29553" "3     1     1       127.0.0.1:29554"; do
        has "$tmp/out" "$row" "check grid row"
    done
    grep -qE '^1 +1 +[0-9.]+ MiB +[0-9.]+ MiB$' "$tmp/out" || fail "check: no all-reduce bytes for replica group 1"
fi
pt 0 check $T2 && ! grep -q '^grid:' "$tmp/out" || fail "check of a one-replica topology prints a grid"
# run on the grid: the launcher lists the P x R processes (rank order), each with --replica
if pt 0 run $G --print-commands --out "$tmp/grid-run"; then
    [ "$(grep -c '^# stage ' "$tmp/out")" -eq 4 ] || fail "run --print-commands on the grid: not 4 processes"
    n=0
    for sr in "0 0 29551" "1 0 29552" "0 1 29553" "1 1 29554"; do
        set -- $sr; n=$((n + 1))
        [ "$(grep '^# stage ' "$tmp/out" | sed -n "${n}p")" = "# stage $1 replica $2 on 127.0.0.1 (local)" ] ||
            fail "run --print-commands: process $n is not stage $1 replica $2"
        grep -q -- " stage $G --stage $1 --replica $2 --coordinator 127.0.0.1:29550 " "$tmp/out" ||
            fail "run --print-commands: no command for --stage $1 --replica $2"
    done
    ! grep -q "not implemented" "$tmp/err" || fail "run --print-commands on the grid still refuses R > 1"
fi
pt 0 run $T2 --print-commands --out "$tmp/t2-run" && ! grep -q -- "--replica" "$tmp/out" ||
    fail "run --print-commands with R = 1 passes --replica"
# a stage of the grid started alone: its identity from the launcher's rank, and
# its error (no coordinator, no neighbours) names it as (stage, replica)
for v in SLURM_PROCID=3:"stage 1, replica 1":"stage 1 replica 1 (127.0.0.1:29554)" \
         OMPI_COMM_WORLD_RANK=2:"stage 0, replica 1":"stage 0 replica 1 (127.0.0.1:29553)" \
         PMI_RANK=1:"stage 1, replica 0":"stage 1 replica 0 (127.0.0.1:29552)" \
         RANK=0:"stage 0, replica 0":"stage 0 replica 0 (127.0.0.1:29551)"; do
    var=${v%%:*} rest=${v#*:}; want=${rest%%:*} who=${rest#*:}
    if env -u SLURM_PROCID -u OMPI_COMM_WORLD_RANK -u PMI_RANK -u RANK "$var" "${PIPE[@]}" stage $G \
           --connect-timeout-ms 300 >"$tmp/out" 2>"$tmp/err"; then
        fail "stage under $var exited 0"
    else
        rc=$?
        [ "$rc" -eq 1 ] || fail "stage under $var: exit $rc, want 1"
        has "$tmp/err" "${var}: $want" "stage logs the identity from $var"
        has "$tmp/err" "$who at step 0: " "error under $var names the process"
    fi
done
# the order: SLURM_PROCID before RANK; a rank outside the grid names the variable
env -u OMPI_COMM_WORLD_RANK -u PMI_RANK SLURM_PROCID=1 RANK=2 "${PIPE[@]}" stage $G --connect-timeout-ms 300 >"$tmp/out" 2>"$tmp/err"
has "$tmp/err" "SLURM_PROCID=1: stage 1, replica 0" "SLURM_PROCID wins over RANK"
# mpirun inside a SLURM allocation: every process has the allocation's SLURM_PROCID
env -u PMI_RANK -u RANK SLURM_PROCID=0 OMPI_COMM_WORLD_RANK=3 "${PIPE[@]}" stage $G --connect-timeout-ms 300 >"$tmp/out" 2>"$tmp/err"
has "$tmp/err" "OMPI_COMM_WORLD_RANK=3: stage 1, replica 1" "OMPI_COMM_WORLD_RANK wins over SLURM_PROCID"
env -u SLURM_PROCID -u OMPI_COMM_WORLD_RANK -u PMI_RANK RANK=4 "${PIPE[@]}" stage $G >"$tmp/out" 2>"$tmp/err"
rc=$?; [ "$rc" -eq 2 ] || fail "stage under RANK=4: exit $rc, want 2"
has "$tmp/err" "RANK=4: rank 4 is outside the grid of 2 stage(s) x 2 replica(s)" "rank out of range"
pt 1 stage $G --stage 1 --replica 1 --connect-timeout-ms 300 && has "$tmp/err" "stage 1 replica 1 (127.0.0.1:29554) at step 0: " "--stage --replica"
pt 2 stage $G --stage 0 --replica 2 && has "$tmp/err" "--replica 2: $G has 2 replica(s) per stage (0..1)" "--replica range"
pt 2 stage $G --replica 1 && has "$tmp/err" "--replica R needs --stage K" "--replica alone"

# run --schedule: a file (GPipe order: stage 0 holds all 4 micro-batches, where the
# topology's 1F1B holds 2) and a kind; summary.json says what ran.
base=$((20000 + (RANDOM % 120) * 100 + ($$ % 50)))
TINY=(--steps 2 --set model.n_layers=2 --set model.dim=32 --set model.ffn_dim=64 --set stages.0.layers=embed,0
      --set stages.1.layers=1,head --set train.eval_batches=1 --set train.batch_size=4 --set coordinator.port=0
      --set stages.0.port=$base --set stages.1.port=$((base + 1)) --data ../shared/data/tinyshakespeare.txt)
if pt 0 run $T2 "${TINY[@]}" --schedule "$tmp/gpipe-2x4.json" --out "$tmp/r-file"; then
    has "$tmp/r-file/summary.json" '"schedule": "file"' "run --schedule FILE in summary.json"
    peak=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["stages"][0]["peak_in_flight"])' "$tmp/r-file/summary.json")
    [ "$peak" = 4 ] || fail "run --schedule FILE: stage 0 peak_in_flight $peak, want 4 (GPipe's, not 1F1B's 2)"
fi
pt 0 run $T2 "${TINY[@]}" --schedule zb-h1 --out "$tmp/r-kind" &&
    has "$tmp/r-kind/summary.json" '"schedule": "zb-h1"' "run --schedule KIND in summary.json"

# The replicas' all-reduce. GPipe, P=2, M=2, F=B=W=1 (BW = 2): compute ends at 9
# (stage 0's BW1 [7,9], stage 1's BW1 [5,7]). R=2, one 4000-byte bucket per stage,
# ready at its last W's end; a ring step moves 2000 B at 1 MB/s (2 ms) after 0.25 ms:
# 2 steps = 4.5 ms, so stage 0 reduces [9, 13.5], stage 1 [7, 11.5]: exposed 4.5 each.
AR=(--stages 2 --micro-batches 2 --kind gpipe --costs 1,1,1 --grad-bytes 4000 --allreduce-bandwidth 1
    --allreduce-latency 0.25)
run 0 "${AR[@]}" --replicas 2 && {
    has "$tmp/out" "predicted step time: 13.5000 ms" "all-reduce step time"
    has "$tmp/out" "step time without it 9.0000 ms" "all-reduce compute time"
    grep -qE '^ +0 +1 +4000 +4\.500 +4\.500$' "$tmp/out" || fail "all-reduce stage 0 row"
    has "$tmp/out" "s1 AR |" "ASCII all-reduce row"; }
run 0 "${AR[@]}" --replicas 1 && { has "$tmp/out" "predicted step time: 9.0000 ms" "R=1 unchanged";
    grep -q "all-reduce" "$tmp/out" && fail "R=1 printed an all-reduce"; }
run 0 "${AR[@]}" --replicas 2 --format json --out "$tmp/ar.json" &&
    python3 - "$tmp/ar.json" <<'PY' || fail "all-reduce in the JSON report"
import json, sys
sim = json.load(open(sys.argv[1]))["simulation"]
assert abs(sim["step_time"] - 13.5) < 1e-9 and abs(sim["compute_time"] - 9) < 1e-9, sim
for st, done in ((0, 13.5), (1, 11.5)):
    a = sim["stages"][st]["allreduce"]
    assert a["buckets"] == 1 and a["bytes"] == 4000 and abs(a["busy"] - 4.5) < 1e-9, a
    assert abs(a["exposed"] - 4.5) < 1e-9 and abs(a["optimizer_start"] - done) < 1e-9, a
PY
run 0 "${AR[@]}" --replicas 2 --format svg --out "$tmp/ar.svg" && has "$tmp/ar.svg" "all-reduce of bucket 0" "SVG lane"
run 0 "${AR[@]}" --replicas 2 --format chrome --out "$tmp/ar.trace" && has "$tmp/ar.trace" '"cat": "AR"' "trace"
run 2 --stages 2 --micro-batches 2 --replicas 2 && has "$tmp/err" "needs --grad-bytes" "--replicas alone"
run 2 topologies/shakespeare-2x2.json --grad-bytes 5 && has "$tmp/err" "come from the topology" "--grad-bytes"
run 2 --stages 2 --micro-batches 2 --replicas 2 --grad-bytes 1 --bucket-mb 1e-300 &&
    has "$tmp/err" "buckets of 1e-300 MiB (--bucket-mb): more than 10^7 buckets" "names --bucket-mb as given (it said 0 bytes)"
run 2 "${AR[@]}" --bucket-mb 0 && has "$tmp/err" "--bucket-mb" "--bucket-mb 0"
run 0 topologies/shakespeare-2x2.json --costs 1,1,1 && has "$tmp/out" "all-reduce: 2 replicas" "2x2 topology"
run 0 topologies/shakespeare-2stage.json --costs 1,1,1 && { grep -q "all-reduce" "$tmp/out" && fail "R=1 topology"; }
run 0 topologies/shakespeare-2stage.json --costs 1,1,1 --replicas 4 && has "$tmp/out" "all-reduce: 4 replicas" "--replicas"

[ "$fails" -eq 0 ] || { echo "t_sched_cli: $fails failure(s)"; exit 1; }
echo "t_sched_cli: ok (${PT[*]})"
