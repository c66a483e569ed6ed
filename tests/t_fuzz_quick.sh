#!/usr/bin/env bash
# Issue #10: `make fuzz` is exercised by `make test`, so it cannot break
# silently again. Builds the libFuzzer targets of tests/fuzz/ with clang through
# `make fuzz` (objects and programs in build-fuzz-quick/, reused when up to
# date; unoptimised, FUZZ_OPT -O0 with line tables only: half the build time
# of make fuzz's -O1 -g, for 10-30 % fewer runs a second) and runs each for
# FUZZ_QUICK_SECONDS (default 3) on its corpus, two at a time; fails
# when a target does not build, crashes, leaks or hangs on an input (make fuzz's
# exit status), or when a target did not run. New inputs and logs go to a
# temporary folder (FUZZ_OUT), never into the shipped corpus.
# Exit 77 (skipped, with the reason) where clang's libFuzzer cannot be had: not
# installed and not root to install it (make fuzz-deps), or the install failed.
set -u
cd "$(dirname "$0")/.." || exit 1
SECONDS_EACH=${FUZZ_QUICK_SECONDS:-3}
QB=build-fuzz-quick
tmp=$(mktemp -d /tmp/t_fuzz_quick.XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT
# The test runs inside `make test`: a make of its own, not its parent's jobserver.
mk() { env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make --no-print-directory "$@"; }

# probe: can clang link a libFuzzer program (clang and libclang-rt-14-dev)?
probe() {
    printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' \
        >"$tmp/probe.c"
    command -v clang >/dev/null && timeout 120 clang -fsanitize=fuzzer -o "$tmp/probe" "$tmp/probe.c" >"$tmp/probe.log" 2>&1
}
if ! probe; then
    if [ "$(id -u)" = 0 ]; then
        echo "clang's libFuzzer is missing: make fuzz-deps"
        timeout 600 make --no-print-directory fuzz-deps >"$tmp/deps.log" 2>&1 || tail -n 5 "$tmp/deps.log"
    fi
    if ! probe; then
        why=$(command -v clang >/dev/null && head -n 3 "$tmp/probe.log" || echo "no clang")
        echo "SKIP t_fuzz_quick: cannot build a libFuzzer program with clang here ($(id -un), $why)"
        exit 77
    fi
fi

names=$(cd tests/fuzz && ls fuzz_*.c | sed 's/\.c$//')
[ -n "$names" ] || { echo "  FAIL no fuzz target in tests/fuzz/"; exit 1; }
t0=$(date +%s.%N)
timeout -k 10 900 env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make --no-print-directory -j2 fuzz \
    FUZZ_SECONDS="$SECONDS_EACH" FUZZ_OUT="$tmp/out" FUZZ_BUILD=$QB FUZZ_BIN=$QB/bin \
    FUZZ_OPT="-O0 -gline-tables-only" FUZZ_JOBS=2 >"$tmp/make.log" 2>&1
rc=$?
t1=$(date +%s.%N)
fail=0
if [ $rc -ne 0 ]; then
    echo "  FAIL make fuzz exited $rc:"
    grep -E 'error:|\*\*\*|make fuzz:' "$tmp/make.log" | head -n 20 | sed 's/^/  | /'
    fail=1
fi
for n in $names; do
    log=$tmp/out/$n.log
    if [ -f "$log" ] && runs=$(grep -o 'Done [0-9]* runs' "$log"); then
        echo "  ok   $n: ${runs#Done } in $SECONDS_EACH s, no crash"
    else
        echo "  FAIL $n did not run to its end"
        [ -f "$log" ] && grep -E 'ERROR|SUMMARY|runtime error|Test unit written|timeout' "$log" | head -n 10 | sed 's/^/  | /'
        fail=1
    fi
done
echo "  make fuzz: $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b - a}') s (build and $SECONDS_EACH s per target)"
exit $fail
