#!/usr/bin/env bash
# The strongest test (issue #4): the same model trained for a few steps with the
# same seed and 1 BLAS thread per stage in one process (shakespeare-1stage), in
# 2 stages, 3 uneven stages (1, 2 and 1 blocks) and 4 stages, under GPipe and
# 1F1B, ends with bitwise-identical exported weights and identical loss lines
# (step, loss, lr, grad_norm, val_loss) in metrics.jsonl. Also: the run
# directory of a pipeline run, its trace.json (--trace, which must not change
# the numbers), and the activation memory each stage reports against what the
# schedule predicts (1F1B: P-K micro-batches in flight on stage K; GPipe: M).
set -u
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
P="$BIN/pipetrain"
CORPUS=../shared/data/tinyshakespeare.txt
tmp=$(mktemp -d /tmp/t_pipeline.XXXXXX)
cleanup() {
    # no stage of ours may outlive the test, whatever happened
    pkill -KILL -f -- "--out $tmp/" 2>/dev/null
    rm -rf "$tmp"
}
# KEEP_TMP=1 keeps the temporary directory for a post-mortem
[ -n "${KEEP_TMP:-}" ] && cleanup() { echo "kept $tmp"; }
trap cleanup EXIT
fail=0
check() { if eval "$2"; then echo "  ok   $1"; else echo "  FAIL $1"; fail=1; fi; }
[ -f "$CORPUS" ] || { echo "missing $CORPUS"; exit 1; }

M=4
# data.val_fraction 0.01: the last step evaluates every validation window, which at
# the file's 10 % (111k tokens) took ~3 of a run's ~4 s; 1 % is 174 windows
COMMON=(--steps 6 --set model.n_layers=4 --set train.batch_size=8 --set train.micro_batches=$M
        --set train.eval_every=3 --set checkpoint.every=3 --set train.eval_batches=2 --set train.warmup_steps=2
        --set data.val_fraction=0.01)
# Ports: the coordinator's is ephemeral; the stages' from a random base, so
# that concurrent runs on this machine do not collide.
base=$((20000 + (RANDOM % 120) * 100 + ($$ % 50)))
ports() { local n=$1 k; for ((k = 0; k < n; k++)); do echo "--set stages.$k.port=$((base + k))"; done; }

# Loss lines without the timings.
lines() { sed -E 's/, "step_ms": [^,}]*//; s/, "tokens_per_s": [^,}]*//' "$1"; }

"$P" run topologies/shakespeare-1stage.json "${COMMON[@]}" --set stages.0.threads=1 --out "$tmp/one" \
    >"$tmp/one.log" 2>&1
check "1 stage: run exits 0" "[ $? -eq 0 ] || { tail -5 $tmp/one.log; false; }"
"$P" export "$tmp/one" --out "$tmp/one/export" >/dev/null 2>&1
check "1 stage: export" "[ -s $tmp/one/export/model.safetensors ]"
lines "$tmp/one/metrics.jsonl" >"$tmp/one.lines"
check "1 stage: 6 loss lines, 2 with val_loss" \
    "[ \$(grep -c '\"loss\"' $tmp/one.lines) -eq 6 ] && [ \$(grep -c '\"val_loss\": [0-9]' $tmp/one.lines) -eq 2 ]"

run_pipe() { # NAME TOPOLOGY STAGES SCHEDULE [RUN OPTIONS]
    local name=$1 topo=$2 n=$3 sched=$4
    shift 4
    "$P" run "$topo" "${COMMON[@]}" --set schedule.kind="$sched" --set coordinator.port=0 $(ports "$n") \
        --out "$tmp/$name" "$@" >"$tmp/$name.log" 2>&1
    local rc=$?
    check "$name: run exits 0" "[ $rc -eq 0 ] || { tail -n 12 $tmp/$name.log $tmp/$name/stage-*.log; false; }"
    "$P" export "$tmp/$name" --out "$tmp/$name/export" >/dev/null 2>&1
    local ref=${REF:-one} # the one-stage run of the same model and micro-batches
    check "$name: weights bitwise equal to 1 stage" \
        "cmp $tmp/$ref/export/model.safetensors $tmp/$name/export/model.safetensors"
    lines "$tmp/$name/metrics.jsonl" >"$tmp/$name.lines"
    check "$name: loss lines equal to 1 stage" "diff $tmp/$ref.lines $tmp/$name.lines"
    # summary.json prints the last losses with all 17 digits
    check "$name: final_loss and val_loss equal to 1 stage to the last bit" \
        "diff <(grep -E '\"(final_loss|val_loss)\"' $tmp/$ref/summary.json) <(grep -E '\"(final_loss|val_loss)\"' $tmp/$name/summary.json)"
}

for sched in gpipe 1f1b; do
    run_pipe "2stage-$sched" topologies/shakespeare-2stage.json 2 $sched
    run_pipe "3stage-uneven-$sched" topologies/shakespeare-3stage-uneven.json 3 $sched --trace
    run_pipe "4stage-$sched" topologies/shakespeare-4stage.json 4 $sched
done

# --- the run directory of a pipeline run
d="$tmp/3stage-uneven-1f1b"
for f in metrics.jsonl summary.json loss.svg checkpoints/latest \
         checkpoints/step-3/COMPLETE checkpoints/step-6/COMPLETE checkpoints/step-6/manifest.json \
         checkpoints/step-6/stage-1.safetensors; do
    check "pipeline run wrote $f" "[ -s '$d/$f' ]"
done
for k in steps final_loss val_loss wall_s tokens_per_s stages peak_act_bytes peak_in_flight compute_s wait_s \
         optim_s bytes_sent; do
    check "summary.json has $k" "grep -q '\"$k\"' $d/summary.json"
done
check "stage logs exist" "[ -f $d/stage-0.log ] && [ -f $d/stage-2.log ]"
check "summary.json lists 3 stages with host and port" \
    "[ \$(grep -c '\"host\": \"127.0.0.1\"' $d/summary.json) -eq 3 ] && grep -q '\"port\": $((base + 2))' $d/summary.json"
check "final_loss equals the last metrics line's loss" \
    "awk -v a=\$(sed -n 's/.*\"final_loss\": \\([0-9.]*\\).*/\\1/p' $d/summary.json) \
         -v b=\$(tail -1 $d/metrics.jsonl | sed 's/.*\"loss\": \\([0-9.]*\\).*/\\1/') 'BEGIN{exit !((a-b)^2 < 1e-10)}'"
check "no stage process left" "! pgrep -f -- '--out $tmp/' >/dev/null"

# --- the trace (--trace): every stage's actions, waits and sends on one clock
t="$d/trace.json"
check "trace.json written" "[ -s $t ]"
for k in 0 1 2; do
    for op in F B W; do
        check "trace: stage $k has 6 steps x $M micro-batches of $op" \
            "[ \$(grep -c '\"cat\": \"$op\", \"ph\": \"X\", \"pid\": $k,' $t) -eq $((6 * M)) ]"
    done
done
check "trace: stage 1 waits for activations and gradients, $((2 * 6 * M)) waits" \
    "[ \$(grep -c '\"cat\": \"wait\", \"ph\": \"X\", \"pid\": 1,' $t) -eq $((2 * 6 * M)) ]"
if command -v python3 >/dev/null; then
    check "trace.json is valid JSON with named stages" \
        "python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert any(e.get(\"name\") == \"process_name\" for e in d[\"traceEvents\"])' $t"
fi

# --- memory: per stage K of P, peak in flight is min(P-K, M) under 1F1B and M
# under GPipe, and the peak activation bytes are what `pipetrain schedule`
# predicts: that many micro-batches' stash plus the backward's work.
field() { grep -o "\"$2\": [0-9]*" "$1/summary.json" | awk '{print $2}' | tr '\n' ' '; }
# the scheduler's prediction: the "peak micro-batches" column of `pipetrain schedule`
predicted() { # TOPOLOGY KIND
    "$P" schedule "$1" "${COMMON[@]:2}" --kind "$2" 2>&1 |
        awk '/peak micro-batches/ {t = 1; next} t && $1 ~ /^[0-9]+$/ && NF >= 4 {printf "%s ", $4; next} t {t = 0}'
}
predicted_bytes() { # TOPOLOGY KIND: per stage peak_activation_bytes of `pipetrain schedule`
    "$P" schedule "$1" "${COMMON[@]:2}" --kind "$2" --gflops 1 --format json 2>/dev/null |
        python3 -c 'import json,sys; print(" ".join("%d" % s["peak_activation_bytes"] for s in json.load(sys.stdin)["simulation"]["stages"]))'
}
for name in 2stage 3stage-uneven 4stage; do
    g="$tmp/$name-gpipe" f="$tmp/$name-1f1b"
    read -r -a gin <<<"$(field "$g" peak_in_flight)"; read -r -a fin <<<"$(field "$f" peak_in_flight)"
    read -r -a gb <<<"$(field "$g" peak_act_bytes)"; read -r -a fb <<<"$(field "$f" peak_act_bytes)"
    n=${#gin[@]}
    topo=topologies/shakespeare-$name.json
    check "$name: peak in flight as \`pipetrain schedule\` predicts (gpipe: $(predicted $topo gpipe), 1f1b: $(predicted $topo 1f1b))" \
        "[ '$(predicted $topo gpipe)' = '${gin[*]} ' ] && [ '$(predicted $topo 1f1b)' = '${fin[*]} ' ]"
    ok=1
    for ((k = 0; k < n; k++)); do
        want=$((n - k < M ? n - k : M))
        [ "${gin[$k]}" -eq $M ] && [ "${fin[$k]}" -eq $want ] || { ok=0; echo "    stage $k: in flight gpipe ${gin[$k]} (want $M), 1f1b ${fin[$k]} (want $want)"; }
    done
    check "$name: peak in flight matches the schedules" "[ $ok -eq 1 ]"
    check "$name: peak activation bytes as predicted (gpipe: ${gb[*]}, 1f1b: ${fb[*]})" \
        "[ '$(predicted_bytes $topo gpipe)' = '${gb[*]}' ] && [ '$(predicted_bytes $topo 1f1b)' = '${fb[*]}' ]"
    if [ $n -lt $M ]; then
        check "$name: stage 0's peak under 1F1B (${fb[0]}) below GPipe's (${gb[0]})" "[ ${fb[0]} -lt ${gb[0]} ]"
    fi
done


# --- issue #5: every schedule gives the one-stage weights, bit for bit: ZB-H1
# (B/W split), interleaved (2 stages x 2 chunks), and schedule files in both
# forms whose W run out of micro-batch order (the runtime defers such a W to its
# turn: weight gradients accumulate in micro-batch order, as in one process).
run_pipe "2stage-zb-h1" topologies/shakespeare-2stage.json 2 zb-h1
run_pipe "2stage-interleaved" topologies/shakespeare-2stage.json 2 interleaved \
    --set stages.0.layers=embed,0,2 --set stages.1.layers=1,3,head
for f in json csv; do
    run_pipe "2stage-file-$f" topologies/shakespeare-2stage.json 2 1f1b \
        --set schedule.file="$PWD/scheduler/examples/w-out-of-order.$f"
done
# --- issue #13: V-shaped schedules. zb-v places virtual stages in a V (stage s
# holds s and 2P-1-s of the model cut into 2P chunks): stage 0 holds the
# embedding and the head, and the turn of the V is a local hand-over on the last
# stage ('|' cuts its two touching chunks). PyTorch's own CSV files run as they
# are: a DualPipeV order (V placement recognised from the file, OVERLAP_F_B
# pairs run as their two actions) and the older ZB1P notation (B then W).
V2=(--set stages.0.layers=embed,0,3,head --set "stages.1.layers=1|2")
run_pipe "2stage-zb-v" topologies/shakespeare-2stage.json 2 zb-v "${V2[@]}"
check "2stage-zb-v: 4 (micro-batch, chunk) pairs in flight on each stage, as the golden test plays it" \
    "[ \"\$(grep -o '\"peak_in_flight\": [0-9]*' $tmp/2stage-zb-v/summary.json | awk '{print \$2}' | tr '\n' ' ')\" = '4 4 ' ]"
run_pipe "2stage-dualpipev-csv" topologies/shakespeare-2stage.json 2 1f1b "${V2[@]}" \
    --set schedule.file="$PWD/tests/data/sched/dualpipev-2x4.csv"
run_pipe "2stage-zb1p-style-csv" topologies/shakespeare-2stage.json 2 1f1b \
    --set stages.0.layers=embed,0,2 --set stages.1.layers=1,3,head --set schedule.file="$PWD/tests/data/sched/zb1p-style-2x4.csv"
check "the B-then-W file is accepted with a note" "grep -q 'read as the input gradient I, then W' $tmp/2stage-zb1p-style-csv.log"
# 4 stages need 8 chunks: 6 blocks, against the one-stage run of the same model
for m in 4 8; do
    "$P" run topologies/shakespeare-1stage.json "${COMMON[@]}" --set model.n_layers=6 --set stages.0.layers=embed,0-5,head \
        --set train.micro_batches=$m \
        --set stages.0.threads=1 --out "$tmp/one6m$m" >"$tmp/one6m$m.log" 2>&1
    check "1 stage, 6 blocks, M=$m: run exits 0" "[ $? -eq 0 ] || { tail -5 $tmp/one6m$m.log; false; }"
    "$P" export "$tmp/one6m$m" --out "$tmp/one6m$m/export" >/dev/null 2>&1
    lines "$tmp/one6m$m/metrics.jsonl" >"$tmp/one6m$m.lines"
done
V4=(--set model.n_layers=6 --set stages.0.layers=embed,head --set stages.1.layers=0,5 --set stages.2.layers=1,4
    --set "stages.3.layers=2|3")
REF=one6m4 run_pipe "4stage-zb-v" topologies/shakespeare-4stage.json 4 zb-v "${V4[@]}"
# the peak activation bytes each stage reports are what `pipetrain schedule` predicts
# for the V placement (the simulator's memory model once charged chunk 1 of stage s
# to virtual stage P+s, the loop's)
zbv_bytes() { # TOPOLOGY LAYOUT-SETS...: per stage predicted peak_activation_bytes under zb-v
    local topo=$1
    shift
    "$P" schedule "$topo" "${COMMON[@]:2}" "$@" --set schedule.kind=zb-v --gflops 1 --format json 2>/dev/null |
        python3 -c 'import json,sys; print(" ".join("%d" % s["peak_activation_bytes"] for s in json.load(sys.stdin)["simulation"]["stages"]))'
}
for run in 2stage-zb-v:shakespeare-2stage:V2 4stage-zb-v:shakespeare-4stage:V4; do
    IFS=: read -r name topo sets <<<"$run"
    eval "args=(\"\${$sets[@]}\")"
    got=$(field "$tmp/$name" peak_act_bytes)
    want=$(zbv_bytes topologies/$topo.json "${args[@]}")
    check "$name: peak activation bytes as predicted ($got)" "[ '$want' = '${got% }' ]"
done
REF=one6m8 run_pipe "4stage-dualpipev-csv" topologies/shakespeare-4stage.json 4 1f1b "${V4[@]}" \
    --set train.micro_batches=8 --set schedule.file="$PWD/tests/data/sched/dualpipev-4x8.csv"

# the W events of every step ran in micro-batch order (the file asks otherwise)
w_order() { # RUN STAGE: the micro-batches of its W events, in trace order, per step
    grep -o "\"name\": \"W[0-9]*\", \"cat\": \"W\", \"ph\": \"X\", \"pid\": $2," "$1/trace.json" |
        sed 's/^"name": "W\([0-9]*\)".*/\1/' | tr -d '\n'
}
check "file schedule: W ran in micro-batch order on both stages" \
    "[ \"\$(w_order $tmp/2stage-file-json 0)\" = 012301230123012301230123 ] && [ \"\$(w_order $tmp/2stage-file-json 1)\" = 012301230123012301230123 ]"
# the trace is on by default: timeline, costs and the summary's timing
d="$tmp/2stage-zb-h1"
for f in trace.json timeline.svg timeline-predicted.svg costs.json; do
    check "zb-h1 run wrote $f" "[ -s $d/$f ]"
done
for k in measured_step_ms predicted_step_ms measured_bubble measured_bubble_stage representative_step costs_ms; do
    check "summary.json timing has $k" "grep -q '\"$k\"' $d/summary.json"
done
check "timeline.svg names the representative step" "grep -q 'measured zb-h1, step [0-9]* (median of steps 2-6)' $d/timeline.svg"
check "costs.json has 2 virtual stages" "python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); assert len(c[\"f\"]) == 2 and min(c[\"f\"] + c[\"b\"] + c[\"w\"]) > 0' $d/costs.json"
check "interleaved costs.json has 4 virtual stages" \
    "python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); assert c[\"chunks\"] == 2 and len(c[\"f\"]) == 4' $tmp/2stage-interleaved/costs.json"

# --no-trace: no trace, no timeline, no timing; the same weights
run_pipe "2stage-no-trace" topologies/shakespeare-2stage.json 2 1f1b --no-trace
check "--no-trace writes no trace.json, timeline.svg or timing" \
    "[ ! -e $tmp/2stage-no-trace/trace.json ] && [ ! -e $tmp/2stage-no-trace/timeline.svg ] && grep -q '\"timing\": null' $tmp/2stage-no-trace/summary.json"

# One run lifecycle (issue #7): a one-stage run and a pipeline of the same
# topology write summary.json with the same keys, top level and per stage.
keys() { python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(sorted(j)); print(sorted(j["stages"][0]))' "$1"; }
check "summary.json: the same keys for 1 stage and 2 stages" \
    "diff <(keys $tmp/one/summary.json) <(keys $tmp/2stage-no-trace/summary.json)"
check "summary.json: the same keys for 1 stage and 2 stages with a trace" \
    "diff <(keys $tmp/one/summary.json) <(keys $tmp/2stage-1f1b/summary.json)"
check "summary.json of 1 stage names its schedule, micro-batches and no error" \
    "python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert j[\"schedule\"] and j[\"micro_batches\"] == $M and j[\"error\"] is None and j[\"stages\"][0][\"pid\"] > 0' $tmp/one/summary.json"
check "summary.json of 1 stage: replicas 1, zero 0, its AdamW state is 2 x params x 4 bytes" \
    "python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); s=j[\"stages\"][0]; assert j[\"replicas\"] == 1 and j[\"zero\"] == 0 and s[\"replica\"] == 0 and s[\"optim_bytes\"] == 8 * j[\"params\"], s' $tmp/one/summary.json"
check "summary.json of 2 stages: a row per process, stage and replica" \
    "python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert [(s[\"stage\"], s[\"replica\"]) for s in j[\"stages\"]] == [(0, 0), (1, 0)] and j[\"replicas\"] == 1' $tmp/2stage-1f1b/summary.json"

exit $fail
