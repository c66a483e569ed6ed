#!/usr/bin/env bash
# Parameter servers over the network (issue 12, synchronous): `run` on a
# "sync": "ps" topology starts the servers beside the stages.
#  - R = 2 workers on a 2-stage grid, staleness 0: the weights (and the
#    checkpoint's AdamW state) are bitwise those of the same topology with
#    "sync": "allreduce", with 1 and with 2 servers, tied embeddings too.
#    The only server computes the norm itself (checked against the
#    coordinator's reply every step) and sends each piece's weights as soon
#    as its AdamW is done.
#  - R = 1: a PS run is bitwise the plain pipeline.
#  - Checkpoints are by tensor name: a PS checkpoint resumes under all-reduce
#    and an all-reduce one under PS, bitwise the uninterrupted run.
#  - summary.json has a row per server (pushes, bytes, staleness) and per
#    worker; servers log to server-K.log.
#  - A killed server fails the run within the dead-peer timeout, naming
#    "server K (host:port)"; with --max-restarts everything restarts from the
#    last checkpoint and the run completes.
#  - A server refuses a connection claiming a worker the topology lacks,
#    with the reason in its log.
# (Refused pushes: tests/test_ps_proto.c; the command line: t_ps_cli.sh.)
set -u
cd "$(dirname "$0")/.."
. tests/lib.sh t_ps
. tests/lib_grid.sh
CORPUS=$PWD/$CORPUS
export OPENBLAS_NUM_THREADS=1

base=$((20000 + (RANDOM % 120) * 100 + ($$ % 50) + 50))
port=$base

# topo FILE R SYNC SERVERS TIED STEPS LAYERS...: the shakespeare model (4
# blocks), R replicas of each stage, batch 16 in 4 micro-batches per replica,
# a checkpoint every 3 steps, every process on its own loopback port.
topo() {
    local f=$1 R=$2 sync=$3 S=$4 tied=$5 steps=$6 r
    shift 6
    {
        printf '{ "model": { "dim": 64, "n_layers": 4, "n_heads": 4, "ffn_dim": 192, "seq_len": 32, "tie_embeddings": %s },\n' "$tied"
        # val_fraction 0.01: the last step evaluates every validation window
        printf '  "data": { "path": "%s", "val_fraction": 0.01 },\n' "$CORPUS"
        printf '  "train": { "steps": %d, "batch_size": 16, "micro_batches": 4, "lr": 0.003, "warmup_steps": 2,\n' "$steps"
        printf '             "eval_every": 3, "eval_batches": 2 },\n'
        printf '  "checkpoint": { "every": 3 },\n'
        printf '  "coordinator": { "host": "127.0.0.1", "port": 0 },\n'
        stages_json "$R" "$@"
        if [ "$sync" = ps ]; then
            printf ',\n  "sync": "ps", "ps": { "staleness": 0 },\n  "parameter_servers": ['
            for ((r = 0; r < S; r++)); do
                [ $r -gt 0 ] && printf ', '
                printf '{ "host": "127.0.0.1", "port": %d }' $port
                port=$((port + 1))
            done
            printf ']'
        fi
        printf ' }\n'
    } >"$f"
}

# Loss lines without the timings (and without a resume's event line).
lines() { grep -v '"event"' "$1" | sed -E 's/, "step_ms": [^,}]*//; s/, "tokens_per_s": [^,}]*//'; }

# run NAME TOPOLOGY [OPTIONS]: trains, exports, keeps the loss lines.
run() {
    local name=$1 t=$2
    shift 2
    "$P" run "$t" --set schedule.kind=1f1b --out "$tmp/$name" --peer-timeout-ms 2000 "$@" >"$tmp/$name.log" 2>&1
    local rc=$?
    check "$name: run exits 0" "[ $rc -eq 0 ] || { tail -n 12 $tmp/$name.log $tmp/$name/s*.log; false; }"
    "$P" export "$tmp/$name" --out "$tmp/$name/export" >/dev/null 2>&1
    lines "$tmp/$name/metrics.jsonl" >"$tmp/$name.lines"
}
same() { # NAME REF: bitwise weights, AdamW state and identical loss lines
    check "$1: weights bitwise equal to $2" "cmp $tmp/$2/export/model.safetensors $tmp/$1/export/model.safetensors"
    check "$1: AdamW state bitwise equal to $2" \
        "cmp $tmp/$2/checkpoints/step-6/stage-0.optim.safetensors $tmp/$1/checkpoints/step-6/stage-0.optim.safetensors &&
         cmp $tmp/$2/checkpoints/step-6/stage-1.optim.safetensors $tmp/$1/checkpoints/step-6/stage-1.optim.safetensors"
    check "$1: loss lines equal to $2" "diff $tmp/$2.lines $tmp/$1.lines >/dev/null"
}

# --- R = 2: bitwise the all-reduce, with 2 servers and with 1
topo "$tmp/ar.json" 2 allreduce 0 false 6 "embed,0-1" "2-3,head"
topo "$tmp/ps2.json" 2 ps 2 false 6 "embed,0-1" "2-3,head"
topo "$tmp/ps1.json" 2 ps 1 false 6 "embed,0-1" "2-3,head"
run ar "$tmp/ar.json"
run ps2 "$tmp/ps2.json"
same ps2 ar
run ps1 "$tmp/ps1.json"
same ps1 ar
check "ps1: the only server computed every step's norm itself, bit for bit the coordinator's reply" \
    "grep -q 'server 0: the norm of 6 step(s) was computed here (the only server), without waiting for the coordinator, and matched its reply bit for bit' $tmp/ps1/server-0.log"
check "ps2: with 2 servers each waits for the coordinator's norm" "! grep -q 'was computed here' $tmp/ps2/server-*.log"

# the run directory and summary.json of a PS run
d=$tmp/ps2
for f in server-0.log server-1.log stage-1-replica-1.log checkpoints/step-6/COMPLETE; do
    check "ps2 wrote $f" "[ -f $d/$f ]"
done
check "ps2: no shard per server or replica" "! ls $d/checkpoints/step-6 | grep -q 'server\|replica'"
check "summary.json: sync ps, a row per server with pushes, bytes and staleness" \
    "jq -e '.sync == \"ps\" and (.servers | length) == 2 and all(.servers[]; .pushes > 0 and .bytes_received > 0
            and .bytes_sent > 0 and .steps == 6 and .refused == 0 and .staleness == [12])' $d/summary.json >/dev/null"
check "summary.json: per-worker step rates" \
    "jq -e '(.workers | length) == 2 and all(.workers[]; .steps_taken == 6 and .steps_per_s > 0)' $d/summary.json >/dev/null"
check "summary.json: every piece pushed by both workers each step" \
    "[ \$(jq '[.servers[].pushes] | add' $d/summary.json) -eq \$(( 2 * 6 * \$($P check $tmp/ps2.json | grep -o '[0-9]* pieces (blocks' | cut -d' ' -f1) )) ]"
check "summary.json of an all-reduce run: sync allreduce, no servers" \
    "jq -e '.sync == \"allreduce\" and .servers == []' $tmp/ar/summary.json >/dev/null"

# --- tied embeddings (the head's gradient joins the embedding before its push)
topo "$tmp/art.json" 2 allreduce 0 true 6 "embed,0-1" "2-3,head"
topo "$tmp/pst.json" 2 ps 2 true 6 "embed,0-1" "2-3,head"
run ar-tied "$tmp/art.json"
run ps-tied "$tmp/pst.json"
same ps-tied ar-tied

# --- R = 1: bitwise the plain pipeline
topo "$tmp/plain.json" 1 allreduce 0 false 6 "embed,0-1" "2-3,head"
topo "$tmp/ps-r1.json" 1 ps 2 false 6 "embed,0-1" "2-3,head"
run plain "$tmp/plain.json"
run ps-r1 "$tmp/ps-r1.json"
same ps-r1 plain

# --- checkpoints by tensor name: PS -> all-reduce and all-reduce -> PS
resume_from() { # NAME SOURCE TOPOLOGY: SOURCE's step-3 checkpoint, resumed to step 6
    local name=$1 src=$2 t=$3
    mkdir -p "$tmp/$name"
    cp -r "$tmp/$src/checkpoints" "$tmp/$src/metrics.jsonl" "$tmp/$name/"
    rm -rf "$tmp/$name/checkpoints/step-6"
    echo step-3 >"$tmp/$name/checkpoints/latest"
    run "$name" "$t" --resume
}
resume_from ps-to-ar ps2 "$tmp/ar.json"
same ps-to-ar ar
resume_from ar-to-ps ar "$tmp/ps1.json"
same ar-to-ps ar

# --- a dead server is fatal, named, within the dead-peer timeout
topo "$tmp/long.json" 2 ps 2 false 100000 "embed,0-1" "2-3,head"
"$P" run "$tmp/long.json" --out "$tmp/kill" --peer-timeout-ms 2000 --no-trace >"$tmp/kill.log" 2>&1 &
runpid=$!
for _ in $(seq 600); do grep -q '"step": 5,' "$tmp/kill/metrics.jsonl" 2>/dev/null && break; sleep 0.05; done
# a stranger that knows the (public loopback) secret, claiming a worker the topology lacks: refused, logged
s0port=$(jq '.parameter_servers[0].port' "$tmp/long.json")
NET_TEST_SECRET="pipetrain loopback default secret: not for networks" \
    "$BIN/tests/net_intruder" auth 127.0.0.1 "$s0port" 6 >"$tmp/intruder.out" 2>&1
check "a server refuses a worker the topology lacks, with the reason logged" \
    "grep -q 'claiming stage 6: refused: stage 6 replica 0 is not in the topology' $tmp/kill/server-0.log &&
     grep -q 'stage 6 replica 0 is not in the topology' $tmp/intruder.out"
t0=$SECONDS
kill -9 "$(cat "$tmp/kill/server-1.pid")"
wait $runpid
rc=$?
check "killed server: run exits 1 within 10 s" "[ $rc -eq 1 ] && [ $((SECONDS - t0)) -le 10 ]"
check "killed server: the message names server 1 and its address" \
    "grep -Eq 'server 1 \\(127\\.0\\.0\\.1:[0-9]+\\) died at step [0-9]+: process killed by signal 9' $tmp/kill.log ||
     { tail -n 5 $tmp/kill.log; false; }"

# --- ... and --max-restarts starts everything again from the last checkpoint
topo "$tmp/restart.json" 2 ps 2 false 60 "embed,0-1" "2-3,head"
"$P" run "$tmp/restart.json" --out "$tmp/restart" --peer-timeout-ms 2000 --no-trace --max-restarts 1 \
    --set checkpoint.every=10 >"$tmp/restart.log" 2>&1 &
runpid=$!
for _ in $(seq 600); do [ -f "$tmp/restart/checkpoints/step-10/COMPLETE" ] && break; sleep 0.05; done
kill -9 "$(cat "$tmp/restart/server-0.pid")"
wait $runpid
rc=$?
check "restart after a killed server: run exits 0" "[ $rc -eq 0 ] || { tail -n 8 $tmp/restart.log; false; }"
check "restart: an event naming server 0" "grep '\"event\": *\"restart\"' $tmp/restart/metrics.jsonl | grep -q 'server 0'"
check "restart: 60 steps logged" "[ \$(jq -s '[.[] | select(.loss)] | last | .step' $tmp/restart/metrics.jsonl) -eq 60 ]"

[ $fail -eq 0 ] && echo "t_ps: ok" || echo "t_ps: FAILED"
exit $fail
