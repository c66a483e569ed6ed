#!/usr/bin/env bash
# Issue 14, encryption: training with every frame sealed ("encrypt": true) is
# bitwise the training in clear ("encrypt": false), for a 2-stage pipeline
# (stage<->stage, stage<->coordinator, heartbeats), 2 stages x 2 replicas (the
# replicas' all-reduce over coll/) and parameter servers (stage/server*.c):
# the same exported weights and loss lines. The sealed runs say so in their
# log; "encrypt": false where a secret and a non-loopback address would turn it
# on is covered by test_topo (topo_encrypt).
set -u
cd "$(dirname "$0")/.."
. tests/lib.sh t_net_encrypt_train
base=$((20000 + (RANDOM % 120) * 100 + ($$ % 50)))
# (data.val_fraction 0.01: the last step evaluates every validation window, ~3 s a
# run at the file's 10 %)
COMMON=(--steps 4 --set model.n_layers=4 --set train.batch_size=8 --set train.micro_batches=4 --set train.eval_every=2
        --set train.eval_batches=1 --set checkpoint.every=0 --set coordinator.port=0 --set data.val_fraction=0.01)
lines() { sed -E 's/, "step_ms": [^,}]*//; s/, "tokens_per_s": [^,}]*//' "$1"; }
run() { # NAME TOPOLOGY ENCRYPT PORT-OPTIONS...
    local name=$1 topo=$2 enc=$3
    shift 3
    "$P" run "$topo" "${COMMON[@]}" --set encrypt=$enc "$@" --out "$tmp/$name" >"$tmp/$name.log" 2>&1
    local rc=$?
    check "$name: run exits 0" "[ $rc -eq 0 ] || { tail -n 8 $tmp/$name.log; false; }"
    "$P" export "$tmp/$name" --out "$tmp/$name/export" >/dev/null 2>&1
    lines "$tmp/$name/metrics.jsonl" >"$tmp/$name.lines"
}
pair() { # NAME TOPOLOGY PORT-OPTIONS...
    local name=$1 topo=$2
    shift 2
    run "$name-clear" "$topo" false "$@"
    run "$name-sealed" "$topo" true "$@"
    check "$name: the sealed run says so, the clear one does not" \
        "grep -q 'every frame is sealed with an AEAD' $tmp/$name-sealed.log && ! grep -q 'every frame is sealed' $tmp/$name-clear.log"
    check "$name: weights bitwise equal sealed and clear" \
        "cmp $tmp/$name-clear/export/model.safetensors $tmp/$name-sealed/export/model.safetensors"
    check "$name: loss lines equal sealed and clear ($(grep -c '"loss"' $tmp/$name-sealed.lines) lines)" \
        "[ -s $tmp/$name-clear.lines ] && diff $tmp/$name-clear.lines $tmp/$name-sealed.lines"
}
pair 2stage topologies/shakespeare-2stage.json --set stages.0.port=$base --set stages.1.port=$((base + 1))
pair 2x2 topologies/shakespeare-2x2.json --set stages.0.replicas.0.port=$((base + 10)) \
    --set stages.0.replicas.1.port=$((base + 11)) --set stages.1.replicas.0.port=$((base + 12)) \
    --set stages.1.replicas.1.port=$((base + 13))
pair ps topologies/shakespeare-ps.json --set stages.0.replicas.0.port=$((base + 20)) \
    --set stages.0.replicas.1.port=$((base + 21)) --set stages.1.replicas.0.port=$((base + 22)) \
    --set stages.1.replicas.1.port=$((base + 23)) --set parameter_servers.0.port=$((base + 24)) \
    --set parameter_servers.1.port=$((base + 25))
exit $fail
