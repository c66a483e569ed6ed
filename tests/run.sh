#!/usr/bin/env bash
# Runs every CUnit suite in $BIN/tests/test_* and every tests/t_*.sh script, and
# ends with one line "tests: N passed, N failed, N skipped" (CUnit tests counted
# one by one, each script as one test). A script that exits 77 could not run here
# (it prints why): it counts as skipped, not passed, and its name is listed on a
# "skipped:" line. Exit status 1 when anything failed; skips alone are not failures.
# Before that it prints a table of every program's and script's wall time in
# seconds, slowest first, and the six slowest on one line.
set -u
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
export BIN
passed=0; failed=0; skipped=0; failed_names=""; skipped_names=""
log=$(mktemp); times=$(mktemp); trap 'rm -f "$log" "$times"' EXIT
t0=$SECONDS
for t in "$BIN"/tests/test_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    echo "== $name"
    s0=$SECONDS; timeout 600 "$t" >"$log" 2>&1; rc=$?
    echo "$((SECONDS - s0)) $name" >>"$times"
    cat "$log"
    # CUnit's summary row: "tests  <total> <ran> <passed> <failed> <inactive>"
    read -r ran ok bad < <(awk '$1=="tests" && NF>=5 {print $3, $4, $5}' "$log" | tail -n1)
    if [ -z "${ran:-}" ]; then ok=0; bad=1; fi
    if [ "$rc" -ne 0 ] && [ "${bad:-0}" -eq 0 ]; then bad=1; fi
    passed=$((passed + ok)); failed=$((failed + bad))
    [ "$bad" -gt 0 ] && failed_names="$failed_names $name"
    unset ran ok bad
done
for s in tests/t_*.sh; do
    [ -f "$s" ] || continue
    name=$(basename "$s")
    echo "== $name"
    s0=$SECONDS; timeout 600 bash "$s"; rc=$?
    echo "$((SECONDS - s0)) $name" >>"$times"
    if [ $rc -eq 0 ]; then passed=$((passed + 1)); echo "   $name: ok"
    elif [ $rc -eq 77 ]; then skipped=$((skipped + 1)); skipped_names="$skipped_names $name"; echo "   $name: SKIPPED"
    else failed=$((failed + 1)); failed_names="$failed_names $name"; echo "   $name: FAILED (exit $rc)"; fi
done
# where the time went: every program and script, slowest first, seconds each
echo "times (s, of $((SECONDS - t0)) s):"
sort -rn "$times" | awk '{printf "  %5d  %s\n", $1, $2}'
echo "slowest (s, of $((SECONDS - t0)) s):" $(sort -rn "$times" | head -n 6 | awk '{printf "%s %s; ", $2, $1}')
[ -n "$skipped_names" ] && echo "skipped:$skipped_names"
[ -n "$failed_names" ] && echo "failed:$failed_names"
echo "tests: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
