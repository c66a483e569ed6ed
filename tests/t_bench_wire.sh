#!/usr/bin/env bash
# `bench wire` on tiny tensors (issue 14): with 1 float an int8 encoding is 5
# bytes (a 4-byte scale + 1), more than fp32's 4, so the encode buffer must be
# the largest encoding's size (under `make asan` a 4-byte buffer is a heap
# overflow) and there is no break-even link ("never", JSON null), not a
# negative rate. With 64 floats every encoding saves bytes: a rate > 0.
set -u
cd "$(dirname "$0")/.."
. tests/lib.sh t_bench_wire
export OPENBLAS_NUM_THREADS=1

"$P" bench wire --floats 1 --reps 1 >"$tmp/one" 2>&1; rc=$?
check "--floats 1: exit 0" "[ $rc -eq 0 ] || { cat $tmp/one; false; }"
check "--floats 1: int8 is 5 bytes a value, no break-even link" "grep -qE '^int8 .* 5\.0000 +never' $tmp/one"
check "--floats 1: no negative rate anywhere" "! grep -q -- '-[0-9.]* Gb/s' $tmp/one"
"$P" bench wire --floats 1 --reps 1 --json >"$tmp/one.json" 2>&1; rc=$?
check "--floats 1 --json: exit 0, int8's break_even_gbit_s is null" \
    "[ $rc -eq 0 ] && jq -e '.encodings[] | select(.enc == \"int8\") | .break_even_gbit_s == null' $tmp/one.json >/dev/null"
"$P" bench wire --floats 64 --reps 1 --json >"$tmp/b.json" 2>&1; rc=$?
check "--floats 64 --json: every encoding's break-even rate > 0" \
    "[ $rc -eq 0 ] && jq -e '[.encodings[] | select(.enc != \"fp32\") | .break_even_gbit_s > 0] | all' $tmp/b.json >/dev/null"
exit $fail
