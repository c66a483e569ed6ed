#!/usr/bin/env bash
# --resume across issue 14's settings: "encrypt" and "links" change no number
# (sealed training is bitwise training in clear; the run ignores "links"), and
# "wire" changes only the steps after the seam, never the saved state, so a
# 2-stage fp32 run's step-2 checkpoint resumes with encrypt true, a links
# section and int8/bf16 wire encodings (exit 0). With encrypt and links only,
# the weights end bitwise equal to the uninterrupted run's; with int8 wire they
# differ from it (the encoding is applied after the seam).
. "$(dirname "$0")/lib.sh" t_wire_resume
export OPENBLAS_NUM_THREADS=1
base=$((20000 + (RANDOM % 120) * 100 + 40 + ($$ % 10)))
T2=topologies/shakespeare-2stage.json
COMMON=(--steps 4 --set model.n_layers=4 --set train.batch_size=8 --set train.micro_batches=4 --set train.eval_every=2
        --set train.eval_batches=2 --set train.warmup_steps=1 --set checkpoint.every=2 --set checkpoint.keep=0
        --set coordinator.port=0 --set stages.0.port=$base --set stages.1.port=$((base + 1)) --peer-timeout-ms 5000)
export_cmp() { # A B: bitwise equal exported weights
    "$P" export "$1" --out "$1/export" >/dev/null 2>&1 && "$P" export "$2" --out "$2/export" >/dev/null 2>&1 &&
        cmp -s "$1/export/model.safetensors" "$2/export/model.safetensors"
}

"$P" run $T2 "${COMMON[@]}" --out "$tmp/ref" >"$tmp/ref.log" 2>&1
check "reference: 4 steps, fp32, in clear: exit 0" "[ $? -eq 0 ] || { tail -5 $tmp/ref.log; false; }"
[ -f "$tmp/ref/checkpoints/step-2/COMPLETE" ] || { echo "  FAIL no step-2 checkpoint"; exit 1; }

# a copy of the run as it was after step 2's checkpoint
from2() { # DIR
    cp -r "$tmp/ref" "$1"
    rm -rf "$1/checkpoints/step-4" "$1/export"
    echo step-2 >"$1/checkpoints/latest"
}

from2 "$tmp/enc"
"$P" run $T2 "${COMMON[@]}" --set encrypt=true --set links.bandwidth=20mbit --set links.burst=65536 \
    --out "$tmp/enc" --resume >"$tmp/enc.log" 2>&1; rc=$?
check "--resume with encrypt true and a links section: exit 0" "[ $rc -eq 0 ] || { tail -3 $tmp/enc.log; false; }"
check "  resumed from step 2, sealed" "grep -q 'resuming from .*step-2' $tmp/enc.log && grep -q 'sealed with an AEAD' $tmp/enc.log"
check "  weights bitwise equal to the uninterrupted run's" "export_cmp $tmp/ref $tmp/enc"

from2 "$tmp/int8"
"$P" run $T2 "${COMMON[@]}" --set wire.activations=int8 --set wire.gradients=bf16 --out "$tmp/int8" --resume \
    >"$tmp/int8.log" 2>&1; rc=$?
check "--resume with wire int8/bf16 from an fp32 checkpoint: exit 0" "[ $rc -eq 0 ] || { tail -3 $tmp/int8.log; false; }"
check "  resumed from step 2" "grep -q 'resuming from .*step-2' $tmp/int8.log"
check "  the weights differ from fp32's (the encoding is applied after the seam)" \
    "[ $rc -eq 0 ] && [ -f $tmp/int8/checkpoints/step-4/COMPLETE ] && ! export_cmp $tmp/ref $tmp/int8"

# what still may not change: the model
from2 "$tmp/bad"
"$P" run $T2 "${COMMON[@]}" --set model.dim=64 --out "$tmp/bad" --resume >"$tmp/bad.log" 2>&1; rc=$?
check "--resume with another model.dim: exit 2 naming it" "[ $rc -eq 2 ] && grep -q 'model.dim differs' $tmp/bad.log"
exit $fail
