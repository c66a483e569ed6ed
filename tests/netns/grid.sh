# tests/netns/grid.sh — a data-parallel grid (2 stages x R replicas) in
# network namespaces with every link shaped by tbf (sourced after lib.sh by
# tests/t_netns_dp.sh and tests/netns/bench_dp.sh; needs bash).
#
# Hosts: the coordinator "c" at $GR_NET.1 and process (stage k, replica r) in
# "s<k>r<r>" at $GR_NET.(10 + k * R + r), all on the hub's bridge. Shaping
# (gr_shape): a tbf on both ends of every host's veth, the host's eth0
# (egress: what it sends) and the hub's h-NAME (egress: what it receives), at
# the same rate. A ring link A -> B crosses A's eth0 tbf and B's h-B tbf, so
# every ring link (and every pipeline link) is limited to the rate, and each
# direction of a host's link is shaped on its own: a host sends to its ring
# successor and receives from its predecessor at the full rate at once.
#
#   gr_init TMP            namespaces c and s<k>r<r> for k < 2, r < GR_R, and
#                          with GR_SERVERS=S > 0 parameter servers "p<j>" at
#                          $GR_NET.(50 + j) (gr_topo then writes sync "ps" with
#                          ps.staleness $GR_STALENESS, default 0)
#                          (and any extra names in GR_EXTRA: "b0 b1 ..." for
#                          the bench's ranks at $GR_NET.(100 + i)).
#                          Returns what nn_init returns (2: cannot create).
#   gr_shape NAME RATE     tbf at RATE (Nmbit or Ngbit) on both ends of NAME's link
#   gr_burst RATE          the tbf burst (bytes) gr_shape uses at RATE
#   gr_shape_all RATE      the same on every host's link
#   gr_topo FILE STEPS BUCKET_MB
#                          the grid's topology (the 2-stage shakespeare model,
#                          1 BLAS thread per process, 1f1b over 4 micro-batches)
#   gr_start DIR           DIR/topo.json: the coordinator in "c", then each
#                          process's command from --print-commands in its
#                          namespace. PIDs in GR_COORD, GR_PROCS; logs DIR/*.log
#   gr_wait                waits for them; GR_RCS holds the exit statuses
GR_NET=10.214.0
GR_R=${GR_R:-2}
GR_PORT=29501
GR_COORD_PORT=29500
GR_RUN_ID=4343
GR_DEADLINE=${GR_DEADLINE:-120}
GR_TMP=""
GR_PIDS=""
GR_EXTRA=${GR_EXTRA:-}
GR_SERVERS=${GR_SERVERS:-0}
GR_STALENESS=${GR_STALENESS:-0}

gr_addr() { echo "$GR_NET.$((10 + $1 * GR_R + $2))"; }

gr_init() {
    local rc k r i=0 n
    GR_TMP=$1
    nn_init "$$"; rc=$?
    [ $rc -eq 0 ] || return $rc
    nn_add c "$GR_NET.1/24" || return 1
    for k in 0 1; do
        for ((r = 0; r < GR_R; r++)); do nn_add "s${k}r$r" "$(gr_addr $k $r)/24" || return 1; done
    done
    for ((n = 0; n < GR_SERVERS; n++)); do nn_add "p$n" "$GR_NET.$((50 + n))/24" || return 1; done
    for n in $GR_EXTRA; do
        nn_add "$n" "$GR_NET.$((100 + i))/24" || return 1
        i=$((i + 1))
    done
    (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$GR_TMP/secret") || return 1
    return 0
}

# tbf: burst = 1 ms of data at the rate (at least 64 KiB): a larger bucket
# lets the first burst of each step's all-reduce through at veth speed after
# the link idled under compute (with 256 KiB at 200 Mbit/s that was 10 ms of
# a 75 ms all-reduce for free: the link no longer had the rate it claims;
# a smaller one (16 KiB) made the shaper depend on timer latency under load).
# Queue: 50 ms of data (TCP keeps the pipe full, nothing is dropped).
gr_shape() {
    local name=$1 rate=$2 burst
    burst=$(gr_burst "$rate")
    timeout 10 tc -n "$(nn_ns "$name")" qdisc replace dev eth0 root tbf rate "$rate" burst "$burst" latency 50ms ||
        { NN_WHY="tc on $name's eth0 failed"; return 1; }
    timeout 10 tc -n "$NN_HUB" qdisc replace dev "h-$name" root tbf rate "$rate" burst "$burst" latency 50ms ||
        { NN_WHY="tc on h-$name failed"; return 1; }
}

# gr_burst RATE: the tbf burst gr_shape gives a link of RATE, in bytes (what
# bench/wire_links.sh tells the simulator)
gr_burst() {
    local b=$(($(gr_rate_Bps "$1") / 1000))
    [ "$b" -ge 65536 ] || b=65536
    echo "$b"
}

# gr_rate_Bps RATE: bytes per second of a tc rate written as Nmbit or Ngbit
gr_rate_Bps() { case $1 in *gbit) echo $((${1%gbit} * 125000000)) ;; *mbit) echo $((${1%mbit} * 125000)) ;; *) echo 0 ;; esac; }

gr_shape_all() {
    local n
    for n in $NN_LIST; do
        n=${n#"$NN_PREFIX"-}
        case $n in hub|lo) continue ;; esac
        gr_shape "$n" "$1" || return 1
    done
}

gr_topo() {
    local f=$1 steps=$2 bucket=$3 k r
    {
        printf '{ "description": "tests/netns/grid.sh: 2 stages x %d replicas in namespaces",\n' "$GR_R"
        printf '  "model": { "dim": 128, "n_layers": 4, "n_heads": 4, "n_kv_heads": 4, "ffn_dim": 384, "vocab_size": 256, "seq_len": 64 },\n'
        printf '  "data": { "path": "%s", "format": "text", "val_fraction": 0.02 },\n' "$CORPUS"
        printf '  "train": { "steps": %d, "batch_size": %d, "micro_batches": 4, "lr": 0.001, "warmup_steps": 2,\n' "$steps" $((12 * GR_R))
        printf '             "seed": 1337, "eval_every": 0, "log_every": 1, "bucket_mb": %s },\n' "$bucket"
        printf '  "checkpoint": { "every": 0, "keep": 1 },\n'
        printf '  "schedule": { "kind": "1f1b" },\n'
        printf '  "secret_file": "%s/secret",\n' "$GR_TMP"
        printf '  "coordinator": { "host": "%s.1", "port": %d },\n' "$GR_NET" $GR_COORD_PORT
        printf '  "stages": [\n'
        for k in 0 1; do
            [ $k -eq 0 ] && printf '    { "layers": "embed,0-1", "replicas": [' || printf ',\n    { "layers": "2-3,head", "replicas": ['
            for ((r = 0; r < GR_R; r++)); do
                [ $r -gt 0 ] && printf ', '
                printf '{ "host": "%s", "port": %d, "threads": 1 }' "$(gr_addr $k $r)" $GR_PORT
            done
            printf '] }'
        done
        printf '\n  ]'
        if [ "$GR_SERVERS" -gt 0 ]; then
            printf ',\n  "sync": "ps", "ps": { "staleness": %d },\n  "parameter_servers": [' "$GR_STALENESS"
            for ((r = 0; r < GR_SERVERS; r++)); do
                [ $r -gt 0 ] && printf ', '
                printf '{ "host": "%s.%d", "port": %d }' "$GR_NET" $((50 + r)) $GR_PORT
            done
            printf ']'
        fi
        printf ' }\n'
    } >"$f"
}

gr_bg() {
    local log=$1; shift
    timeout -k 5 "$GR_DEADLINE" "$@" >"$log" 2>&1 &
    last=$!
    GR_PIDS="$GR_PIDS $last"
}

gr_start() {
    local d=$1 cmd k r i
    gr_bg "$d/coord.log" ip netns exec "$(nn_ns c)" "$P" run "$d/topo.json" --out "$d/run" --run-id $GR_RUN_ID
    GR_COORD=$last
    for i in $(seq 100); do
        nn_exec c ss -Htln "sport = :$GR_COORD_PORT" 2>/dev/null | grep -q . && break
        kill -0 "$GR_COORD" 2>/dev/null || break
        sleep 0.1
    done
    timeout 30 ip netns exec "$(nn_ns c)" "$P" run "$d/topo.json" --out "$d/run" --run-id $GR_RUN_ID \
        --print-commands >"$d/commands" 2>&1
    GR_PROCS=""
    while read -r cmd; do
        k=$(sed -n 's/.* --server \([0-9]*\) .*/\1/p' <<<"$cmd")
        if [ -n "$k" ]; then
            gr_bg "$d/server-$k.out" ip netns exec "$(nn_ns "p$k")" bash -c "$cmd"
            GR_PROCS="$GR_PROCS $last"
            continue
        fi
        k=$(sed -n 's/.* --stage \([0-9]*\) .*/\1/p' <<<"$cmd")
        r=$(sed -n 's/.* --replica \([0-9]*\) .*/\1/p' <<<"$cmd")
        [ -n "$k" ] && [ -n "$r" ] || continue
        gr_bg "$d/stage-$k-replica-$r.out" ip netns exec "$(nn_ns "s${k}r$r")" bash -c "$cmd"
        GR_PROCS="$GR_PROCS $last"
    done < <(grep -v '^#' "$d/commands")
}

gr_wait() {
    local p
    GR_RCS=""
    for p in $GR_COORD $GR_PROCS; do wait "$p"; GR_RCS="$GR_RCS $?"; done
}

gr_cleanup() {
    local p
    for p in $GR_PIDS; do kill -TERM "$p" 2>/dev/null; done
    nn_cleanup
    for p in $GR_PIDS; do wait "$p" 2>/dev/null; done
}
