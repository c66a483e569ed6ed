# tests/netns/cluster.sh — a 3-stage pipetrain cluster in network namespaces
# (sourced by tests/netns/*.sh after lib.sh; needs bash). Hosts: coordinator
# "c" at $NET.1, stages "s0".."s2" at $NET.2-4 on the hub's bridge, and "lo", a
# namespace with only its loopback (for the same topology on 127.0.0.1 without
# colliding with anybody's ports).
#
#   cluster_init         temp dir $CL_TMP (with a private copy of the binary in
#                        $P and the secret), the namespaces, the EXIT/INT/TERM
#                        traps. Skips the test (exit 77) where namespaces cannot
#                        be created; exits 1 on other setup failures.
#   cl_topo FILE CH CP H0 P0 H1 P1 H2 P2
#                        writes the 3-stage topology (coordinator CH:CP, stage k
#                        at Hk:Pk); $CL_STEPS steps, $CL_SCHEDULE
#   cl_bg LOG CMD...     CMD in the background under $CL_DEADLINE; PID in $last
#   cluster_start DIR    DIR/topo.json on the namespaced hosts: the coordinator
#                        (`pipetrain run`) in "c", then in "sk" each stage's
#                        command as `pipetrain run --print-commands` prints it.
#                        PIDs in $CL_COORD and $CL_STAGES (in stage order);
#                        logs DIR/coord.log, DIR/stage-K.log; run dir DIR/run
# A link-cut test (issue #6) would: cluster_start, wait for a step, `nn_cut s1`,
# then expect every process to exit 1 within the peer timeout, naming stage 1.

NET=10.213.0
CL_RUN_ID=4242
CL_COORD_PORT=29500
CL_STAGE_PORT=29501   # the same on every host: each stage has its own address
CL_STEPS=${CL_STEPS:-4}
CL_SCHEDULE=${CL_SCHEDULE:-1f1b}
CL_DEADLINE=${CL_DEADLINE:-40}
CL_PEER_TIMEOUT_MS=${CL_PEER_TIMEOUT_MS:-5000}
CL_TMP=""
CL_PIDS=""

cl_cleanup() {
    local p
    for p in $CL_PIDS; do kill -TERM "$p" 2>/dev/null; done
    nn_cleanup
    for p in $CL_PIDS; do wait "$p" 2>/dev/null; done
    [ -n "$CL_TMP" ] || return 0
    if [ -n "${KEEP:-}" ]; then echo "kept $CL_TMP"; else rm -rf "$CL_TMP"; fi
}

cluster_init() {
    local rc
    [ -x "$P" ] || { echo "FAIL: $P is not built"; exit 1; }
    [ -f "$CORPUS" ] || { echo "FAIL: missing corpus $CORPUS"; exit 1; }
    CL_TMP=$(mktemp -d /tmp/pt-netns.XXXXXX) || exit 1
    trap cl_cleanup EXIT
    trap 'echo "interrupted"; exit 130' INT TERM HUP
    # A private copy of the binary: a rebuild in the shared checkout between
    # two runs would otherwise compare two different programs.
    cp "$P" "$CL_TMP/pipetrain" || exit 1
    P=$CL_TMP/pipetrain
    # The secret: required off loopback, readable by its owner only.
    (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$CL_TMP/secret") || exit 1
    nn_init "$$"; rc=$?
    # 77: skipped, not passed (tests/run.sh counts it apart)
    if [ $rc -eq 2 ]; then echo "SKIP netns: cannot create network namespaces here: $NN_WHY"; exit 77; fi
    [ $rc -eq 0 ] || { echo "FAIL: namespace setup: $NN_WHY"; exit 1; }
    nn_add c "$NET.1/24" && nn_add s0 "$NET.2/24" && nn_add s1 "$NET.3/24" && nn_add s2 "$NET.4/24" &&
        nn_add_lo lo || { echo "FAIL: namespace setup: $NN_WHY"; exit 1; }
}

# The shakespeare model in 3 uneven stages (1, 2 and 1 blocks), 4 micro-batches,
# 1 BLAS thread each, a checkpoint at the end, a small validation split.
cl_topo() {
    cat >"$1" <<EOF
{
  "description": "tests/netns: the shakespeare model in 3 stages",
  "model": { "dim": 128, "n_layers": 4, "n_heads": 4, "n_kv_heads": 4, "ffn_dim": 384,
             "vocab_size": 256, "seq_len": 64 },
  "data": { "path": "$CORPUS", "format": "text", "val_fraction": 0.02 },
  "train": { "steps": $CL_STEPS, "batch_size": 12, "micro_batches": 4, "lr": 0.001, "min_lr": 0.0001,
             "warmup_steps": 2, "seed": 1337, "eval_every": 0, "eval_batches": 2, "log_every": 1 },
  "checkpoint": { "dir": "checkpoints", "every": 0, "keep": 0 },
  "schedule": { "kind": "$CL_SCHEDULE" },
  "secret_file": "$CL_TMP/secret",
  "coordinator": { "host": "$2", "port": $3 },
  "stages": [
    { "host": "$4", "port": $5, "layers": "embed,0", "threads": 1 },
    { "host": "$6", "port": $7, "layers": "1-2", "threads": 1 },
    { "host": "$8", "port": $9, "layers": "3,head", "threads": 1 }
  ]
}
EOF
}

cl_bg() {
    local log=$1; shift
    timeout -k 5 "$CL_DEADLINE" "$@" >"$log" 2>&1 &
    last=$!
    CL_PIDS="$CL_PIDS $last"
}

# _cl_listening NAME PORT: 0 once something in namespace NAME listens on PORT.
_cl_listening() { nn_exec "$1" ss -Htln "sport = :$2" 2>/dev/null | grep -q .; }

cluster_start() {
    local d=$1 k cmd i
    cl_bg "$d/coord.log" ip netns exec "$(nn_ns c)" "$P" run "$d/topo.json" --out "$d/run" \
        --run-id $CL_RUN_ID --peer-timeout-ms "$CL_PEER_TIMEOUT_MS"
    CL_COORD=$last
    for i in $(seq 50); do
        _cl_listening c $CL_COORD_PORT && break
        kill -0 "$CL_COORD" 2>/dev/null || break
        sleep 0.1
    done
    # Asked in the coordinator's namespace, where no stage's address is local.
    timeout 30 ip netns exec "$(nn_ns c)" "$P" run "$d/topo.json" --out "$d/run" --run-id $CL_RUN_ID \
        --peer-timeout-ms "$CL_PEER_TIMEOUT_MS" --print-commands >"$d/commands" 2>&1
    grep -v '^#' "$d/commands" | grep . >"$d/cmds"
    CL_STAGES=""
    for k in 0 1 2; do
        cmd=$(sed -n "$((k + 1))p" "$d/cmds")
        [ -n "$cmd" ] || cmd="echo 'no command printed for stage $k' >&2; exit 1"
        cl_bg "$d/stage-$k.log" ip netns exec "$(nn_ns s$k)" bash -c "$cmd"
        CL_STAGES="$CL_STAGES $last"
    done
}
