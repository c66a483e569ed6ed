#!/usr/bin/env bash
# Data parallelism off the tested path (issue 11 as a new user sees it):
#  - resuming a run of R >= 3 replicas with another train.bucket_mb continues,
#    but the ring's segments move with the buckets, so the result is not the
#    uninterrupted run's bits: the resume must say so (a note), as it does for
#    another R, another split or other BLAS threads.
set -u
cd "$(dirname "$0")/.."
. tests/lib.sh t_dp_edges
. tests/lib_grid.sh
CORPUS=$PWD/$CORPUS # written into topologies under $tmp
export OPENBLAS_NUM_THREADS=1

port=$((20000 + (RANDOM % 120) * 100 + ($$ % 50) + 50))

# topo FILE R LAYERS...: a tiny model, R replicas of each stage on loopback.
topo() {
    local f=$1 R=$2
    shift 2
    {
        printf '{ "model": { "dim": 32, "n_layers": 4, "n_heads": 2, "ffn_dim": 64, "seq_len": 16 },\n'
        printf '  "data": { "path": "%s" },\n' "$CORPUS"
        printf '  "train": { "steps": 4, "batch_size": 12, "micro_batches": 2, "lr": 0.003, "warmup_steps": 2,\n'
        printf '             "eval_every": 0 },\n'
        printf '  "checkpoint": { "every": 2 },\n'
        printf '  "coordinator": { "host": "127.0.0.1", "port": 0 },\n'
        stages_json "$R" "$@"
        printf ' }\n'
    } >"$f"
}

echo "resume at R = 3 with another train.bucket_mb"
topo "$tmp/r3.json" 3 "embed,0-1" "2-3,head"
"$P" run "$tmp/r3.json" --set train.steps=2 --out "$tmp/b" >"$tmp/b1.log" 2>&1
check "first 2 steps exit 0" "[ $? -eq 0 ] || { tail -n 8 $tmp/b1.log; false; }"
"$P" run "$tmp/r3.json" --set train.bucket_mb=0.0009765625 --resume --out "$tmp/b" >"$tmp/b2.log" 2>&1
check "resume with bucket_mb 1 KiB exits 0" "[ $? -eq 0 ] || { tail -n 8 $tmp/b2.log; false; }"
check "the resume notes that the bucket size changed (not bit for bit)" \
    "grep -q 'note:.*train.bucket_mb.*not bit for bit' $tmp/b2.log || { grep -i note $tmp/b2.log; false; }"
"$P" run "$tmp/r3.json" --set train.steps=2 --out "$tmp/s" >/dev/null 2>&1
"$P" run "$tmp/r3.json" --resume --out "$tmp/s" >"$tmp/s2.log" 2>&1
check "resume with the same bucket_mb exits 0 without a note" \
    "[ $? -eq 0 ] && ! grep -q 'note:' $tmp/s2.log || { tail -n 8 $tmp/s2.log; false; }"

echo "a stage in the one-process form beside replicated ones"
topo "$tmp/r2.json" 2 "embed,0-1" "2-3,head"
# stage 1 written as one process (host, port) while stage 0 lists 2 replicas
sed -E '0,/"layers": "2-3,head", "replicas": \[\{ "host": "127.0.0.1", "port": ([0-9]+) \}, [^]]*\] \}/s//"layers": "2-3,head", "host": "127.0.0.1", "port": \1 }/' \
    "$tmp/r2.json" >"$tmp/mixed.json"
"$P" check "$tmp/mixed.json" >"$tmp/mixed.log" 2>&1
rc=$?
check "check exits 2" "[ $rc -eq 2 ] || { cat $tmp/mixed.log; false; }"
check "the message names stages.1 (not a replicas array the file lacks) and its one-process form" \
    "grep -q 'mixed.json: stages.1: expected 2 replica(s)' $tmp/mixed.log && grep -q 'one process' $tmp/mixed.log || { cat $tmp/mixed.log; false; }"

echo "resume at R = 2 with another BLAS thread count on replica 1 only"
topo "$tmp/r2t.json" 2 "embed,0-1" "2-3,head"
"$P" run "$tmp/r2t.json" --set train.steps=2 --out "$tmp/t" >"$tmp/t1.log" 2>&1
check "first 2 steps exit 0" "[ $? -eq 0 ] || { tail -n 8 $tmp/t1.log; false; }"
"$P" run "$tmp/r2t.json" --set stages.1.replicas.1.threads=2 --resume --out "$tmp/t" >"$tmp/t2.log" 2>&1
check "resume exits 0" "[ $? -eq 0 ] || { tail -n 8 $tmp/t2.log; false; }"
check "the resume notes the other BLAS threads (not bit for bit)" \
    "grep -q 'note:.*BLAS threads.*not bit for bit' $tmp/t2.log || { grep -i note $tmp/t2.log; false; }"

echo "a launcher that starts fewer processes than the grid has"
# rank 0 of a 4-process launch on a 2 x 3 = 6 process grid: without the check
# it would wait for peers that never start (the connect timeout, 60 s)
topo "$tmp/g23.json" 3 "embed,0-1" "2-3,head"
for v in "RANK=0 WORLD_SIZE=4" "OMPI_COMM_WORLD_RANK=0 OMPI_COMM_WORLD_SIZE=4" "SLURM_PROCID=0 SLURM_STEP_NUM_TASKS=5" \
         "PMI_RANK=1 PMI_SIZE=5"; do
    env -u RANK -u OMPI_COMM_WORLD_RANK -u PMI_RANK -u SLURM_PROCID $v \
        timeout 20 "$P" stage "$tmp/g23.json" --coordinator 127.0.0.1:1 --run-id 1 --out "$tmp/w" >"$tmp/w.log" 2>&1
    rc=$?
    sz=${v#* }
    check "$v: exit 2 naming ${sz%%=*} and the grid's 6 processes" \
        "[ $rc -eq 2 ] && grep -q '${sz%%=*}=${sz#*=}.*2 stage(s) x 3 replica(s) = 6' $tmp/w.log || { echo rc=$rc; cat $tmp/w.log; false; }"
done
# the grid's size, or more (an MPMD launch with servers beside), is fine (the
# process then fails to reach the coordinator, exit 1)
for n in 6 8; do
    env -u OMPI_COMM_WORLD_RANK -u PMI_RANK -u SLURM_PROCID RANK=0 WORLD_SIZE=$n \
        timeout 20 "$P" stage "$tmp/g23.json" --coordinator 127.0.0.1:1 --run-id 1 --connect-timeout-ms 300 --out "$tmp/w" >"$tmp/w.log" 2>&1
    rc=$?
    check "RANK=0 WORLD_SIZE=$n: not refused (exit 1 at connect)" "[ $rc -eq 1 ] || { echo rc=$rc; cat $tmp/w.log; false; }"
done

echo "one endpoint written twice: 127.0.0.1 and its IPv4-mapped IPv6 form"
topo "$tmp/r2m.json" 2 "embed,0-1" "2-3,head"
p0=$(grep '"replicas"' "$tmp/r2m.json" | head -n 1 | grep -o '"port": [0-9]*' | head -n 1 | grep -o '[0-9]*$')
"$P" check "$tmp/r2m.json" --set 'stages.1.replicas.1.host=::ffff:127.0.0.1' --set "stages.1.replicas.1.port=$p0" \
    >"$tmp/m.log" 2>&1
rc=$?
check "check exits 2 naming stages.1.replicas.1 and stages.0.replicas.0" \
    "[ $rc -eq 2 ] && grep -q 'stages.1.replicas.1.port: .*also used by stages.0.replicas.0' $tmp/m.log || { echo rc=$rc; cat $tmp/m.log; false; }"

exit $fail
