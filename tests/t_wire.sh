#!/usr/bin/env bash
# Compression on the wire (issue 14): `check` prints the encoded bytes per
# micro-batch each way and an all-fp32 "wire" hashes as no "wire"; with each
# encoding (bf16, fp16, int8 both ways) a 2-stage run is bitwise reproducible
# run to run and changes the numbers (the encoding is really applied); for a
# given split of the model into virtual stages the bits do not depend on the
# schedule (GPipe = 1F1B) nor on where the virtual stages run: 4 stages (1F1B),
# 2 stages interleaved and 2 stages in a V (whose turn is a local hand-over)
# give the same weights with int8 activations and bf16 gradients.
set -u
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
P="$BIN/pipetrain"
CORPUS=../shared/data/tinyshakespeare.txt
tmp=$(mktemp -d /tmp/t_wire.XXXXXX)
cleanup() {
    pkill -KILL -f -- "--out $tmp/" 2>/dev/null # no stage of ours outlives the test
    rm -rf "$tmp"
}
[ -n "${KEEP_TMP:-}" ] && cleanup() { echo "kept $tmp"; }
trap cleanup EXIT
fail=0
check() { if eval "$2"; then echo "  ok   $1"; else echo "  FAIL $1"; fail=1; fi; }
[ -f "$CORPUS" ] || { echo "missing $CORPUS"; exit 1; }
export OPENBLAS_NUM_THREADS=1

T2=topologies/shakespeare-2stage.json
# --- check: bytes per micro-batch (Bm 2 x T 64 x C 128 = 16384 floats)
out=$("$P" check $T2 --set train.batch_size=8 --set wire.activations=int8 --set wire.gradients=bf16)
check "check: int8 forward 16384 + 4 x 256 scales, bf16 backward 2 bytes a value" \
    "grep -qF 'virtual stage 0 -> 1 (stage 0 -> 1): forward 17408 B int8, backward 32768 B bf16 (fp32 65536 B each way)' <<<\"\$out\""
check "check: the stage table's sends/mb is the encoded size" "grep -qE '^0 .* 17.0 KiB\$' <<<\"\$out\""
out=$("$P" check topologies/shakespeare-1stage.json --set wire.activations=int8)
check "check, one stage: says the wire setting has no effect" "grep -qF 'no boundary, nothing is encoded' <<<\"\$out\""
h0=$("$P" check $T2 | grep 'topology hash')
h1=$("$P" check $T2 --set wire.activations=fp32 --set wire.gradients=fp32 | grep 'topology hash')
h2=$("$P" check $T2 --set wire.activations=bf16 | grep 'topology hash')
check "an all-fp32 wire hashes as no wire; bf16 differs" "[ '$h0' = '$h1' ] && [ '$h0' != '$h2' ]"
"$P" check $T2 --set wire.gradients=fp8 >/dev/null 2>"$tmp/err"; rc=$?
check "--set wire.gradients=fp8: exit 2 naming the file and the field" \
    "[ $rc -eq 2 ] && grep -qF 'shakespeare-2stage.json: wire.gradients: expected one of' $tmp/err"

# data.val_fraction 0.01: the last step evaluates every validation window (~3 s a
# run at the file's 10 %)
COMMON=(--steps 3 --set model.n_layers=4 --set train.batch_size=8 --set train.micro_batches=4
        --set train.eval_every=2 --set train.eval_batches=2 --set train.warmup_steps=1 --set data.val_fraction=0.01)
base=$((20000 + (RANDOM % 120) * 100 + ($$ % 50) + 50))
ports() { local n=$1 k; for ((k = 0; k < n; k++)); do echo "--set stages.$k.port=$((base + k))"; done; }
lines() { sed -E 's/, "step_ms": [^,}]*//; s/, "tokens_per_s": [^,}]*//' "$1"; }

run() { # NAME TOPOLOGY STAGES SCHEDULE [OPTIONS]
    local name=$1 topo=$2 n=$3 sched=$4
    shift 4
    "$P" run "$topo" "${COMMON[@]}" --set schedule.kind="$sched" --set coordinator.port=0 $(ports "$n") \
        --out "$tmp/$name" "$@" >"$tmp/$name.log" 2>&1
    local rc=$?
    check "$name: run exits 0" "[ $rc -eq 0 ] || { tail -n 12 $tmp/$name.log $tmp/$name/stage-*.log; false; }"
    "$P" export "$tmp/$name" --out "$tmp/$name/export" >/dev/null 2>&1
    lines "$tmp/$name/metrics.jsonl" >"$tmp/$name.lines"
}
sent() { grep -o '"bytes_sent": [0-9]*' "$tmp/$1/summary.json" | sed -n 2p | awk '{print $2}'; }
same() { # A B: bitwise equal weights and loss lines (val_loss included)
    check "$2 = $1: weights bitwise equal" "cmp -s $tmp/$1/export/model.safetensors $tmp/$2/export/model.safetensors"
    check "$2 = $1: loss lines equal" "diff $tmp/$1.lines $tmp/$2.lines >/dev/null"
}

run fp32 $T2 2 1f1b
check "fp32: 3 loss lines, 2 with val_loss" \
    "[ \$(grep -c '\"loss\"' $tmp/fp32.lines) -eq 3 ] && [ \$(grep -c '\"val_loss\": [0-9]' $tmp/fp32.lines) -eq 2 ]"
for enc in bf16 fp16 int8; do
    W=(--set wire.activations=$enc --set wire.gradients=$enc)
    run "$enc-a" $T2 2 1f1b "${W[@]}"
    run "$enc-b" $T2 2 1f1b "${W[@]}"
    same "$enc-a" "$enc-b"
    check "$enc: the numbers differ from fp32's (the encoding is applied)" \
        "! cmp -s $tmp/fp32/export/model.safetensors $tmp/$enc-a/export/model.safetensors"
    # stage 1 sends only the gradients (and a few small control messages)
    check "$enc: stage 1 sent about the encoded share of fp32's bytes ($(sent $enc-a) vs $(sent fp32))" \
        "[ \$(( $(sent $enc-a) * 100 / $(sent fp32) )) -le $([ $enc = int8 ] && echo 30 || echo 55) ]"
done
run int8-gpipe $T2 2 gpipe --set wire.activations=int8 --set wire.gradients=int8
same int8-a int8-gpipe

# one split into 4 virtual stages (embed+0 | 1 | 2 | 3+head), three placements
MIX=(--set wire.activations=int8 --set wire.gradients=bf16)
run mix-4stage topologies/shakespeare-4stage.json 4 1f1b "${MIX[@]}"
run mix-interleaved $T2 2 interleaved "${MIX[@]}" --set stages.0.layers=embed,0,2 --set stages.1.layers=1,3,head
run mix-zb-v $T2 2 zb-v "${MIX[@]}" --set stages.0.layers=embed,0,3,head --set "stages.1.layers=1|2"
same mix-4stage mix-interleaved
same mix-4stage mix-zb-v
check "mix: differs from int8 both ways" \
    "! cmp -s $tmp/mix-4stage/export/model.safetensors $tmp/int8-a/export/model.safetensors"
exit $fail
