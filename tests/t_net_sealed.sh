#!/usr/bin/env bash
# Issue 14, encryption: with every frame sealed (net_config.encrypt)
#  1. 1000 bits flipped in flight by tests/helpers/flip_proxy (in the sealed
#     header, the payload or its tag): every one fails the receive as an
#     authentication failure, none is delivered; a control frame arrives intact;
#  2. the transport suite (test_net) passes with both AEADs, less the tests that
#     speak clear frames by hand (replay and wrong keys: test_net_seal);
#  3. the collectives sealed (test_net_coll, test_coll): sealed frames carry no
#     payload CRC (net_wire.h), so the ring's forwarded chunks (net_op_crc 0)
#     must arrive bitwise right, and a bit flipped in flight in a reduce-scatter
#     or all-gather chunk must fail on the payload tag (test_coll's flip trials).
set -u
cd "$(dirname "$0")/.."
. tests/lib.sh t_net_sealed
out=$("$BIN/tests/flip_proxy" 1000 4096 sealed 2>"$tmp/flip.err")
rc=$?
check "1000 flips of sealed frames: all authentication failures ($out)" \
    "[ $rc -eq 0 ] && echo '$out' | grep -q 'sealed: control intact; flips 1000: detected 1000 ' || { head -5 $tmp/flip.err; false; }"
for aead in 1 2; do
    PIPETRAIN_TEST_ENCRYPT=$aead "$BIN/tests/test_net" >"$tmp/net.$aead" 2>&1
    rc=$?
    check "test_net with every frame sealed (AEAD $aead)" \
        "[ $rc -eq 0 ] && grep -qE 'tests +12 +12 +12 +0' $tmp/net.$aead || { grep -A3 FAILED $tmp/net.$aead | head; false; }"
done
for suite in test_net_coll test_coll; do
    PIPETRAIN_TEST_ENCRYPT=1 "$BIN/tests/$suite" >"$tmp/$suite" 2>&1
    rc=$?
    check "$suite with every frame sealed" \
        "[ $rc -eq 0 ] && grep -qE 'tests +[1-9][0-9]* +[1-9][0-9]* +[1-9][0-9]* +0 ' $tmp/$suite || { grep -A3 FAILED $tmp/$suite | head; false; }"
done
check "sealed ring chunks with a flipped bit fail on the payload tag" \
    "[ \$(grep -c 'flip in frame .*authentication failed on the payload' $tmp/test_coll) -ge 4 ]"
exit $fail
