#!/usr/bin/env bash
# The asynchronous pipeline (PipeDream-2BW, schedule.kind "2bw", issue #13):
# - 2 and 4 stages end bitwise equal (exported weights, loss lines, summary's
#   last losses) to the one-process 2bw run (train.c), with steps that overlap
#   the next step's forwards (no evaluation or checkpoint after steps 1, 2, 5, 7);
# - 2bw is not 1f1b: same first loss (W(0) both), different weights after;
# - the straggler hook (PIPETRAIN_STRAGGLE) pauses 2bw stages, bits unchanged;
# - exact resume: a 2-stage run's checkpoint resumed on 2 and on 4 stages ends
#   bitwise equal to the uninterrupted run; the checkpoint holds the previous
#   version ("<name>.2bw_prev", weight_versions 2);
# - a 1f1b run resumes from a 2bw checkpoint and a 2bw run from a 1f1b one;
# - the synchronous warm-up (schedule.warmup_sync_steps K): K = all steps is 1f1b
#   to the bit; K = 4 is 1f1b's losses up to the switch, and 2 and 4 stages
#   cross the switch bitwise equal to the one-process run, also resumed before
#   (step 3), at (step 3 with K = 3) and after (step 6) the switch;
#   (the other checks run without a warm-up: schedule.warmup_sync_steps 0)
# - extra_weight_bytes in summary.json (2 x the stage's parameters x 4 bytes) and
#   in `check`;
# - bad input: 2bw with replicas, parameter servers, split tied embeddings,
#   fewer micro-batches than stages, 2 chunks, CSV output, a negative or
#   fractional warm-up -> exit 2 naming it.
set -u
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
P="$BIN/pipetrain"
CORPUS=../shared/data/tinyshakespeare.txt
tmp=$(mktemp -d /tmp/t_2bw.XXXXXX)
cleanup() { pkill -KILL -f -- "--out $tmp/" 2>/dev/null; rm -rf "$tmp"; }
[ -n "${KEEP_TMP:-}" ] && cleanup() { echo "kept $tmp"; }
trap cleanup EXIT
fail=0
check() { if eval "$2"; then echo "  ok   $1"; else echo "  FAIL $1"; fail=1; fi; }
[ -f "$CORPUS" ] || { echo "missing $CORPUS"; exit 1; }
export OPENBLAS_NUM_THREADS=1

COMMON=(--steps 8 --set model.n_layers=4 --set train.batch_size=8 --set train.micro_batches=4
        --set train.eval_every=4 --set checkpoint.every=3 --set checkpoint.keep=0 --set train.eval_batches=2
        --set train.warmup_steps=2 --set data.val_fraction=0.01)
# (data.val_fraction 0.01: the last step evaluates every validation window, ~3 s a
# run at the file's 10 %)
# the asynchronous rule from step 1 (no synchronous warm-up), unless a check says otherwise
ASYNC=(--set schedule.kind=2bw --set schedule.warmup_sync_steps=0)
base=$((20000 + (RANDOM % 120) * 100 + ($$ % 50)))
ports() { local n=$1 k; for ((k = 0; k < n; k++)); do echo "--set stages.$k.port=$((base + k))"; done; }
lines() { grep '"loss"' "$1" | sed -E 's/, "step_ms": [^,}]*//; s/, "tokens_per_s": [^,}]*//'; }
export_of() { "$P" export "$1" --out "$1/export" >/dev/null 2>&1; }
same_as_one() { # NAME DIR [REFERENCE: a one-process run's name, default one]
    local ref=${3:-one}
    export_of "$2"
    check "$1: weights bitwise equal to the one-process 2bw run ($ref)" \
        "cmp $tmp/$ref/export/model.safetensors $2/export/model.safetensors"
    check "$1: loss lines equal to the one-process 2bw run ($ref)" "lines $2/metrics.jsonl | diff $tmp/$ref.lines -"
    check "$1: final_loss and val_loss equal to the last bit" \
        "diff <(grep -E '\"(final_loss|val_loss)\"' $tmp/$ref/summary.json) <(grep -E '\"(final_loss|val_loss)\"' $2/summary.json)"
}
pipe() { # NAME TOPOLOGY STAGES [OPTIONS]
    local name=$1 topo=$2 n=$3
    shift 3
    "$P" run "$topo" "${COMMON[@]}" --set coordinator.port=0 $(ports "$n") --no-trace --out "$tmp/$name" "$@" \
        >"$tmp/$name.log" 2>&1
    local rc=$?
    check "$name: run exits 0" "[ $rc -eq 0 ] || { tail -n 8 $tmp/$name.log $tmp/$name/stage-*.log; false; }"
}

"$P" run topologies/shakespeare-1stage.json "${COMMON[@]}" "${ASYNC[@]}" --set stages.0.threads=1 \
    --out "$tmp/one" >"$tmp/one.log" 2>&1
check "1 process 2bw: run exits 0" "[ $? -eq 0 ] || { tail -5 $tmp/one.log; false; }"
export_of "$tmp/one"
lines "$tmp/one/metrics.jsonl" >"$tmp/one.lines"
check "1 process 2bw: 8 loss lines" "[ \$(wc -l <$tmp/one.lines) -eq 8 ]"

"$P" run topologies/shakespeare-1stage.json "${COMMON[@]}" --set schedule.kind=1f1b --set stages.0.threads=1 \
    --out "$tmp/sync" >"$tmp/sync.log" 2>&1
export_of "$tmp/sync"
check "2bw is not 1f1b: the same first loss (W(0) both), other weights at the end" \
    "[ \"\$(lines $tmp/sync/metrics.jsonl | head -1)\" = \"\$(head -1 $tmp/one.lines)\" ] &&
     ! cmp -s $tmp/sync/export/model.safetensors $tmp/one/export/model.safetensors &&
     [ \"\$(lines $tmp/sync/metrics.jsonl | sed -n 2p)\" != \"\$(sed -n 2p $tmp/one.lines)\" ]"

pipe two topologies/shakespeare-2stage.json 2 "${ASYNC[@]}"
same_as_one "2 stages" "$tmp/two"
pipe four topologies/shakespeare-4stage.json 4 "${ASYNC[@]}"
same_as_one "4 stages" "$tmp/four"

# A compressed wire (issue 14) under 2bw: bf16 activations lose little, so every
# loss line stays within 0.5 % of the fp32 run's (2bw's own receives once
# ignored the wire buffers and decoded stale bytes: 1.3 % off by step 6).
pipe wire topologies/shakespeare-2stage.json 2 "${ASYNC[@]}" --set wire.activations=bf16 \
    --set wire.gradients=bf16
check "2 stages, bf16 wire: every loss within 0.5 % of the fp32 2bw run's" "python3 - $tmp/two/metrics.jsonl $tmp/wire/metrics.jsonl <<'EOF'
import json, sys
a, b = ([j['loss'] for j in map(json.loads, open(f)) if 'loss' in j] for f in sys.argv[1:])
bad = [(x, y) for x, y in zip(a, b) if abs(y - x) > 0.005 * x]
print(bad) if bad or len(a) != len(b) or not a else None
sys.exit(1 if bad or len(a) != len(b) or not a else 0)
EOF"

# the straggler hook (PIPETRAIN_STRAGGLE) pauses 2bw steps too; the numbers are unchanged
PIPETRAIN_STRAGGLE='*:1:0.2' pipe straggle topologies/shakespeare-2stage.json 2 "${ASYNC[@]}"
check "PIPETRAIN_STRAGGLE: every 2bw stage paused (7 of 8 steps: the first has no step time yet)" \
    "[ \$(cat $tmp/straggle/stage-*.log | grep -c 'PIPETRAIN_STRAGGLE: 7 pauses') -eq 2 ] ||
     { grep -h PIPETRAIN_STRAGGLE $tmp/straggle/stage-*.log; false; }"
same_as_one "2 stages with pauses" "$tmp/straggle"

# extra weight memory: the second version and the pending gradient
check "summary.json: extra_weight_bytes = 2 x 4 x parameters on every stage" "python3 - $tmp/four/summary.json <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))['stages']
params = [1968128 // 8, 1705984 // 8, 1705984 // 8, 1969152 // 8]
sys.exit(0 if [x['extra_weight_bytes'] for x in s] == [8 * p for p in params] else 1)
EOF"
check "check prints the extra weight memory of 2bw" \
    "$P check topologies/shakespeare-4stage.json --set schedule.kind=2bw 2>&1 | grep -q '2bw extra weight memory.*stage 3 1.9 MiB'"

# the checkpoint holds W(t) beside W(t+1)
check "the checkpoint's optim shard holds <name>.2bw_prev (weight_versions 2)" "python3 - $tmp/two/checkpoints/step-3/stage-1.optim.safetensors <<'EOF'
import json, struct, sys
f = open(sys.argv[1], 'rb'); h = json.loads(f.read(struct.unpack('<Q', f.read(8))[0]))
prev = [k for k in h if k.endswith('.2bw_prev')]
sys.exit(0 if h['__metadata__'].get('weight_versions') == '2' and 'lm_head.weight.2bw_prev' in prev
         and len(prev) == (len(h) - 1) // 3 else 1)
EOF"

# exact resume, on the same and on another split
resume_from() { # NAME SOURCE STEP TOPOLOGY STAGES [OPTIONS]
    local name=$1 src=$2 step=$3 topo=$4 n=$5
    shift 5
    cp -r "$src" "$tmp/$name"
    rm -rf "$tmp/$name/export"
    for d in "$tmp/$name"/checkpoints/step-*; do [ "${d##*step-}" -gt "$step" ] && rm -rf "$d"; done
    echo "step-$step" >"$tmp/$name/checkpoints/latest"
    "$P" run "$topo" "${COMMON[@]}" --set coordinator.port=0 $(ports "$n") --no-trace --out "$tmp/$name" --resume "$@" \
        >"$tmp/$name.log" 2>&1
    local rc=$?
    check "$name: --resume exits 0" "[ $rc -eq 0 ] || { tail -n 8 $tmp/$name.log $tmp/$name/stage-*.log; false; }"
    check "$name: resumed from step-$step" "grep -q 'resuming from .*step-$step' $tmp/$name.log"
}
resume_from re2 "$tmp/two" 3 topologies/shakespeare-2stage.json 2 "${ASYNC[@]}"
same_as_one "resumed at step 3 on 2 stages" "$tmp/re2"
resume_from re4 "$tmp/two" 6 topologies/shakespeare-4stage.json 4 "${ASYNC[@]}"
same_as_one "resumed at step 6 on 4 stages" "$tmp/re4"

# across kinds: sensible, documented (README PipeDream-2BW)
resume_from sync-from-2bw "$tmp/two" 3 topologies/shakespeare-2stage.json 2 --set schedule.kind=1f1b
check "1f1b from a 2bw checkpoint: the same first resumed step's loss as 1f1b from W(t+1)" \
    "[ \$(lines $tmp/sync-from-2bw/metrics.jsonl | wc -l) -eq 8 ]"
check "1f1b from a 2bw checkpoint: its own checkpoints hold one version" \
    "! grep -aq 2bw_prev $tmp/sync-from-2bw/checkpoints/step-8/stage-0.optim.safetensors"
pipe sync2 topologies/shakespeare-2stage.json 2 --set schedule.kind=1f1b
resume_from 2bw-from-sync "$tmp/sync2" 3 topologies/shakespeare-2stage.json 2 "${ASYNC[@]}"

# The synchronous warm-up (schedule.warmup_sync_steps K): steps 0..K-1 are 1f1b's
# arithmetic, the first asynchronous step K computes on W(K) (as step 0 on W(0)),
# AdamW switches to 2bw's rule there; the pipelines cross the switch bitwise.
one() { # NAME K: the one-process 2bw run with a warm-up of K steps
    "$P" run topologies/shakespeare-1stage.json "${COMMON[@]}" --set schedule.kind=2bw --set stages.0.threads=1 \
        --set schedule.warmup_sync_steps=$2 --out "$tmp/$1" >"$tmp/$1.log" 2>&1
    local rc=$?
    check "1 process 2bw, warm-up $2: run exits 0" "[ $rc -eq 0 ] || { tail -5 $tmp/$1.log; false; }"
    export_of "$tmp/$1"
    lines "$tmp/$1/metrics.jsonl" >"$tmp/$1.lines"
}
one onew 4
one onew3 3
one onew8 8
check "warm-up 8 of 8 steps: weights and loss lines bitwise 1f1b's (the sync run)" \
    "cmp $tmp/sync/export/model.safetensors $tmp/onew8/export/model.safetensors &&
     lines $tmp/sync/metrics.jsonl | diff $tmp/onew8.lines -"
check "warm-up 4: the first 5 loss lines are 1f1b's (step 5 computes on W(4) as 1f1b does), the 6th is not" \
    "diff <(head -5 $tmp/onew.lines) <(lines $tmp/sync/metrics.jsonl | head -5) &&
     [ \"\$(sed -n 6p $tmp/onew.lines)\" != \"\$(lines $tmp/sync/metrics.jsonl | sed -n 6p)\" ]"
check "warm-up 4: 2bw's rule after the switch (weights differ from 1f1b's and from warm-up 3's)" \
    "! cmp -s $tmp/sync/export/model.safetensors $tmp/onew/export/model.safetensors &&
     ! cmp -s $tmp/onew3/export/model.safetensors $tmp/onew/export/model.safetensors"
WARM=(--set schedule.kind=2bw --set schedule.warmup_sync_steps=4)
pipe two-w topologies/shakespeare-2stage.json 2 "${WARM[@]}"
same_as_one "2 stages, warm-up 4" "$tmp/two-w" onew
pipe four-w topologies/shakespeare-4stage.json 4 "${WARM[@]}"
same_as_one "4 stages, warm-up 4" "$tmp/four-w" onew
check "warm-up checkpoint (step 3): both weight versions equal" "python3 - $tmp/two-w/checkpoints/step-3 <<'EOF'
import json, struct, sys
def load(path):
    f = open(path, 'rb'); n = struct.unpack('<Q', f.read(8))[0]; h = json.loads(f.read(n)); d = f.read()
    return {k: d[v['data_offsets'][0]:v['data_offsets'][1]] for k, v in h.items() if k != '__metadata__'}
for s in (0, 1):
    w, o = load('%s/stage-%d.safetensors' % (sys.argv[1], s)), load('%s/stage-%d.optim.safetensors' % (sys.argv[1], s))
    if not w or any(o[k + '.2bw_prev'] != v for k, v in w.items()): sys.exit(1)
EOF"
resume_from re-w3 "$tmp/two-w" 3 topologies/shakespeare-4stage.json 4 "${WARM[@]}"
same_as_one "warm-up 4, resumed at step 3 (before the switch) on 4 stages" "$tmp/re-w3" onew
resume_from re-w6 "$tmp/two-w" 6 topologies/shakespeare-2stage.json 2 "${WARM[@]}"
same_as_one "warm-up 4, resumed at step 6 (after the switch) on 2 stages" "$tmp/re-w6" onew
resume_from re-w3s "$tmp/two-w" 3 topologies/shakespeare-2stage.json 2 --set schedule.kind=2bw \
    --set schedule.warmup_sync_steps=3
same_as_one "warm-up 3, resumed at step 3 (at the switch) on 2 stages" "$tmp/re-w3s" onew3
check "check prints the warm-up (default: train.warmup_steps, 100 in the file, 7 set)" \
    "$P check topologies/shakespeare-2stage.json --set schedule.kind=2bw 2>&1 |
         grep -q '2bw synchronous warm-up (schedule.warmup_sync_steps 100): steps 1-100 flush' &&
     $P check topologies/shakespeare-2stage.json --set schedule.kind=2bw --set train.warmup_steps=7 2>&1 |
         grep -q '2bw synchronous warm-up (schedule.warmup_sync_steps 7)' &&
     $P check topologies/shakespeare-2stage.json --set schedule.kind=2bw --set schedule.warmup_sync_steps=0 2>&1 |
         grep -q '2bw synchronous warm-up: none'"

# bad input: exit 2, naming the field
bad() { # NAME NEEDLE COMMAND...
    local name=$1 needle=$2
    shift 2
    "$@" >"$tmp/bad.out" 2>&1
    local rc=$? found=0
    grep -qF -- "$needle" "$tmp/bad.out" && found=1
    check "bad input: $name -> exit 2 naming '$needle'" "[ $rc -eq 2 ] && [ $found -eq 1 ] || { echo rc=$rc; cat $tmp/bad.out; false; }"
}
bad "2bw with replicas" "shakespeare-2x2.json: replicas: schedule \"2bw\"" \
    "$P" check topologies/shakespeare-2x2.json --set schedule.kind=2bw
bad "2bw with parameter servers" "sync: schedule \"2bw\"" \
    "$P" check topologies/shakespeare-ps.json --set schedule.kind=2bw
bad "2bw with tied embeddings across stages" "model.tie_embeddings: schedule \"2bw\"" \
    "$P" check topologies/shakespeare-4stage.json --set schedule.kind=2bw --set model.tie_embeddings=true
bad "2bw with fewer micro-batches than stages" "train.micro_batches: schedule \"2bw\" needs at least one" \
    "$P" check topologies/shakespeare-4stage.json --set schedule.kind=2bw --set train.micro_batches=2
bad "run refuses it too" "replicas: schedule \"2bw\"" \
    "$P" run topologies/shakespeare-2x2.json --set schedule.kind=2bw --steps 1 --out "$tmp/bad-run"
check "bad input: the refused run left no checkpoint" "[ ! -e $tmp/bad-run/checkpoints ]"
bad "a negative warm-up" "shakespeare-2stage.json: schedule.warmup_sync_steps: expected an integer in 0.." \
    "$P" check topologies/shakespeare-2stage.json --set schedule.kind=2bw --set schedule.warmup_sync_steps=-1
bad "a fractional warm-up" "schedule.warmup_sync_steps expects an integer" \
    "$P" run topologies/shakespeare-2stage.json --set schedule.kind=2bw --set schedule.warmup_sync_steps=2.5 \
    --steps 1 --out "$tmp/bad-run2"
check "bad input: the refused warm-up left no run" "[ ! -e $tmp/bad-run2/checkpoints ]"
bad "2bw with 2 chunks" "2bw: takes one chunk per stage" \
    "$P" schedule --stages 2 --micro-batches 4 --kind 2bw --chunks 2
bad "2bw as CSV" "--format csv: schedule 2bw" \
    "$P" schedule --stages 2 --micro-batches 4 --kind 2bw --format csv
exit $fail
