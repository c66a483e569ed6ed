#!/usr/bin/env bash
# t_run_lock.sh — one `pipetrain run` per run directory (OUT/run.lock, flock):
# a second run into an OUT in use is refused at once (exit 2, naming the
# holder's pid), one-stage and grid alike, before it writes anything there;
# --print-commands is not a run and is not refused; the lock goes with its
# process, even one killed with SIGKILL, and the next run resumes the
# directory. (Before, both runs trained into one OUT: interleaved
# metrics.jsonl, each other's checkpoints resumed or set aside.)
set -u
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
P="$BIN/pipetrain"
tmp=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill -9 $pid 2>/dev/null; [ -n "${KEEP_TMP:-}" ] && echo "kept $tmp" || rm -rf "$tmp"' EXIT
export OPENBLAS_NUM_THREADS=1 XDG_CACHE_HOME="$tmp/xdg"
fail=0
check() { if eval "$2"; then echo "  ok   $1"; else echo "  FAIL $1"; fail=1; fi; }
T1=topologies/shakespeare-1stage.json
T2=topologies/shakespeare-2stage.json
S=(--set checkpoint.every=5 --set train.log_every=1)

"$P" run $T1 "${S[@]}" --steps 100000 --out "$tmp/o" >"$tmp/first.log" 2>&1 &
pid=$!
for _ in $(seq 200); do [ -s "$tmp/o/metrics.jsonl" ] && break; sleep 0.1; done
check "the first run is training" "[ -s $tmp/o/metrics.jsonl ] && grep -qx $pid $tmp/o/run.lock"
lines=$(wc -l <"$tmp/o/metrics.jsonl")

"$P" run $T1 "${S[@]}" --steps 10 --out "$tmp/o" >"$tmp/second.log" 2>&1; rc=$?
check "a second one-stage run into it: exit 2 naming the holder" \
    "[ $rc -eq 2 ] && grep -q \"$tmp/o is in use by another pipetrain run (pid $pid, holding $tmp/o/run.lock)\" $tmp/second.log" ||
    cat "$tmp/second.log"
"$P" run $T2 --steps 10 --out "$tmp/o" >"$tmp/grid.log" 2>&1; rc=$?
check "a second grid run into it: exit 2, no stage log written" \
    "[ $rc -eq 2 ] && grep -q 'is in use by another pipetrain run' $tmp/grid.log && [ ! -e $tmp/o/stage-0.log ]"
"$P" run $T2 --out "$tmp/o" --print-commands >"$tmp/pc.log" 2>&1
check "--print-commands into it is not refused" "[ $? -eq 0 ] && grep -q 'pipetrain stage' $tmp/pc.log"
check "the first run went on meanwhile" "[ \$(wc -l <$tmp/o/metrics.jsonl) -gt $lines ] && kill -0 $pid"

for _ in $(seq 200); do [ -e "$tmp/o/checkpoints/latest" ] && break; sleep 0.1; done
kill -9 $pid
wait $pid 2>/dev/null
pid=
at=$(sed 's/^step-//' "$tmp/o/checkpoints/latest")
"$P" run $T1 "${S[@]}" --steps $((at + 3)) --out "$tmp/o" --resume >"$tmp/third.log" 2>&1; rc=$?
check "after a SIGKILL the lock is gone: --resume into it trains on from step $at" \
    "[ $rc -eq 0 ] && grep -q 'resuming from .*step-$at' $tmp/third.log && grep -q '\"step\": $((at + 3)),' $tmp/o/metrics.jsonl" ||
    tail -3 "$tmp/third.log"
[ $fail -eq 0 ] && echo "t_run_lock: ok"
exit $fail
