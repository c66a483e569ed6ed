#!/usr/bin/env bash
# --insecure and encryption (issue 14): --insecure authenticates with a
# well-known secret, so it has nothing to key an AEAD with. Off loopback,
# `"encrypt"` absent then means frames in clear (as README says: "nothing is
# encrypted"), not frames "sealed" under a public key with the coordinator
# logging that every frame is sealed; `"encrypt": true` with --insecure and no
# secret is refused (exit 2 naming encrypt) by `run` and `stage` alike; and a
# stage that `run --insecure` starts does not claim that "a shared secret is
# configured" (the launcher's well-known one is not). The run part needs a
# non-loopback address on this machine (skipped otherwise, with a note).
. "$(dirname "$0")/lib.sh" t_net_insecure
export OPENBLAS_NUM_THREADS=1
unset PIPETRAIN_SECRET
base=$((20000 + (RANDOM % 120) * 100 + 30 + ($$ % 10)))
T2=topologies/shakespeare-2stage.json
SMALL=(--set model.n_layers=4 --set train.batch_size=8 --set train.eval_batches=1 --set train.eval_every=0)
far=(--set coordinator.host=192.0.2.76 --set stages.0.host=192.0.2.77 --set stages.1.host=192.0.2.78)

timeout 20 "$P" run $T2 "${SMALL[@]}" "${far[@]}" --set encrypt=true --insecure --steps 2 --out "$tmp/r" \
    >"$tmp/r.log" 2>&1; rc=$?
check "run --insecure with encrypt true, no secret: exit 2 naming encrypt" \
    "[ $rc -eq 2 ] && grep -q 'encrypt: true needs a shared secret' $tmp/r.log && [ ! -e $tmp/r/stage-0.log ]"
timeout 20 "$P" stage $T2 "${SMALL[@]}" "${far[@]}" --set encrypt=true --stage 1 --insecure --out "$tmp/s" \
    >"$tmp/s.log" 2>&1; rc=$?
check "stage --insecure with encrypt true, no secret: exit 2 naming encrypt" \
    "[ $rc -eq 2 ] && grep -q 'encrypt: true needs a shared secret' $tmp/s.log"
"$P" run $T2 "${SMALL[@]}" "${far[@]}" --insecure --print-commands --out "$tmp/p" >/dev/null 2>"$tmp/p.log"; rc=$?
check "run --insecure, encrypt absent: still accepted (exit 0, the warning)" \
    "[ $rc -eq 0 ] && grep -q 'WARNING: --insecure' $tmp/p.log"

# a secret in $PIPETRAIN_SECRET that is too short: named once, with its $
PIPETRAIN_SECRET=short timeout 20 "$P" run $T2 "${SMALL[@]}" --steps 2 --out "$tmp/e" >"$tmp/e.log" 2>&1; rc=$?
check "run, \$PIPETRAIN_SECRET too short: exit 2, named once ($(head -c 120 $tmp/e.log))" \
    "[ $rc -eq 2 ] && grep -q '2stage.json: \$PIPETRAIN_SECRET: the shared secret is 5 bytes' $tmp/e.log &&
     [ \$(grep -o 'PIPETRAIN_SECRET' $tmp/e.log | wc -l) -eq 1 ]"

ip=$(hostname -I 2>/dev/null | awk '{print $1}')
if [ -n "$ip" ] && ! python3 -c 'import ipaddress,sys; sys.exit(not ipaddress.ip_address(sys.argv[1]).is_loopback)' "$ip"; then
    here=(--set coordinator.host=$ip --set coordinator.port=0 --set stages.0.host=$ip --set stages.0.port=$base
          --set stages.1.host=$ip --set stages.1.port=$((base + 1)))
    timeout 120 "$P" run $T2 "${SMALL[@]}" "${here[@]}" --insecure --steps 2 --peer-timeout-ms 5000 --out "$tmp/ins" \
        >"$tmp/ins.log" 2>&1; rc=$?
    check "run --insecure on $ip: exit 0" "[ $rc -eq 0 ] || { tail -5 $tmp/ins.log; false; }"
    check "  frames in clear: no 'sealed with an AEAD'" \
        "! grep -q 'sealed with an AEAD' $tmp/ins.log $tmp/ins/stage-*.log"
    check "  the stages do not claim a configured secret" \
        "! grep -q 'a shared secret is configured' $tmp/ins/stage-*.log"
    printf 'a secret of more than sixteen bytes\n' >"$tmp/secret"; chmod 600 "$tmp/secret"
    timeout 120 "$P" run $T2 "${SMALL[@]}" "${here[@]}" --set secret_file="$tmp/secret" --steps 2 --peer-timeout-ms 5000 \
        --out "$tmp/sec" >"$tmp/sec.log" 2>&1; rc=$?
    check "with a secret_file on $ip: exit 0, every frame sealed, saying why (encrypt is absent)" \
        "[ $rc -eq 0 ] && grep -q 'sealed with an AEAD after the handshake (.*: a shared secret and a process off loopback' $tmp/sec.log"
else
    echo "  (no non-loopback address here: the runs off loopback are skipped)"
fi
exit $fail
