# lib.sh — sourced (from the repository root) by end-to-end scripts: BIN and P,
# the shared corpus (exit 1 when missing), a temp dir whose cleanup kills every
# process of the test (stopped ones are continued first) unless KEEP_TMP is set,
# and check NAME CONDITION.
# Usage: . tests/lib.sh NAME
BIN=${BIN:-bin}
P="$BIN/pipetrain"
CORPUS=../shared/data/tinyshakespeare.txt
[ -f "$CORPUS" ] || { echo "missing $CORPUS"; exit 1; }
tmp=$(mktemp -d "/tmp/$1.XXXXXX")
cleanup() {
    pkill -CONT -f -- "--out $tmp/" 2>/dev/null
    pkill -KILL -f -- "--out $tmp/" 2>/dev/null
    if [ -n "${KEEP_TMP:-}" ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
fail=0
check() { if eval "$2"; then echo "  ok   $1"; else echo "  FAIL $1"; fail=1; fi; }
# live_port LOG: the port of `run --http`'s live view once LOG names it (waits up
# to 60 s), else empty
live_port() {
    local p _
    for _ in $(seq 600); do
        p=$(grep -o 'live view on http://[^/]*:[0-9]*/' "$1" 2>/dev/null | grep -o '[0-9]*/$' | tr -d /)
        [ -n "$p" ] && { echo "$p"; return; }
        sleep 0.1
    done
}
