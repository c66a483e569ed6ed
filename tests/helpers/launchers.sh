# tests/helpers/launchers.sh — sourced (from the repository root) by the tests
# of the real launchers (issue #11): tests/t_launch_slurm.sh, t_launch_mpi.sh.
#
#   launchers_install PKG...  installs the missing Debian packages (apt-get update
#                             only when one is missing; quiet); skips when it can't
#   munge_up                  a munged of our own, as the munge user, socket and
#                             logs under $LX (creates /etc/munge/munge.key if missing)
#   slurm_up                  a one-node SLURM (slurmctld -D, slurmd -D) from a
#                             slurm.conf in $LX (SLURM_CONF exported), then waits
#                             until sinfo shows the node idle
#   launchers_down            kills the daemons started here (by pid), cancels our
#                             jobs, removes $LX; call it from the test's EXIT trap
#   skip MESSAGE              prints "SKIP: MESSAGE" and exits 77 (tests/run.sh: skipped)
#
# Only what we started is stopped: daemons by the pids we recorded (each test
# brings up its own, beside any the machine runs: own socket, ports, state).
# Environment: LAUNCHERS_WAIT_S (default 30) bounds every wait for a daemon.

LX=$(mktemp -d /tmp/launchers.XXXXXX)
chmod 0711 "$LX"               # the munge user must reach its socket dir below
LX_PIDS=""                     # daemons we started, killed by launchers_down
LAUNCHERS_WAIT_S=${LAUNCHERS_WAIT_S:-30}

skip() { echo "SKIP: $*"; exit 77; }

# lx_log FILE: its last lines, indented (why a daemon did not come up)
lx_log() { [ -s "$1" ] && tail -n 8 "$1" | sed 's/^/    | /'; }

launchers_install() {
    local missing="" p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        sudo -n true 2>/dev/null || skip "packages$missing are missing and installing them needs root (no sudo without a password)"
        sudo="sudo -n"
    fi
    command -v apt-get >/dev/null || skip "packages$missing are missing and there is no apt-get"
    echo "  installing$missing (apt-get)"
    local t0=$SECONDS
    # -o DPkg::Lock::Timeout: wait for another apt-get (another test, make deps) to finish
    if ! { $sudo apt-get -o DPkg::Lock::Timeout=120 update -qq &&
           DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=120 install -y -qq \
               --no-install-recommends $missing; } >"$LX/apt.log" 2>&1; then
        lx_log "$LX/apt.log"
        skip "could not install$missing with apt-get (log above)"
    fi
    echo "  installed$missing in $((SECONDS - t0)) s"
}

# lx_wait SECONDS WHAT PID COMMAND...: polls COMMAND every 0.2 s while daemon PID
# lives; 1 on timeout or when PID died (message printed)
lx_wait() {
    local s=$1 what=$2 pid=$3 end=$((SECONDS + $1))
    shift 3
    until "$@" >/dev/null 2>&1; do
        if ! kill -0 "$pid" 2>/dev/null; then echo "  the daemon (pid $pid) exited while waiting for $what"; return 1; fi
        if [ $SECONDS -ge $end ]; then echo "  timed out after $s s waiting for $what"; return 1; fi
        sleep 0.2
    done
}

# lx_alive PID: the daemon is still running
lx_alive() { kill -0 "$1" 2>/dev/null; }

munge_up() {
    getent passwd munge >/dev/null || skip "no munge user (package munge not installed right)"
    if [ ! -s /etc/munge/munge.key ]; then
        mkdir -p /etc/munge 2>/dev/null && chown munge:munge /etc/munge 2>/dev/null && chmod 0700 /etc/munge ||
            skip "cannot create /etc/munge (not root?)"
        { command -v mungekey >/dev/null && mungekey --create --keyfile=/etc/munge/munge.key; } >/dev/null 2>&1 ||
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 2>/dev/null ||
            skip "cannot create /etc/munge/munge.key"
    fi
    # munged refuses a key it does not own or that others may read
    if [ "$(stat -c %U /etc/munge/munge.key)" != munge ] || [ $((0$(stat -c %a /etc/munge/munge.key) & 077)) -ne 0 ]; then
        chown munge:munge /etc/munge/munge.key 2>/dev/null && chmod 0400 /etc/munge/munge.key ||
            skip "cannot give /etc/munge/munge.key to the munge user with mode 0400 (not root?)"
    fi
    mkdir -p "$LX/munge" && chown munge:munge "$LX/munge" && chmod 0700 "$LX/munge" ||
        skip "cannot give $LX/munge to the munge user"
    MUNGE_SOCKET=$LX/munge/munge.socket
    local run_as
    # setpriv execs munged (its pid is $!); runuser would stay as its parent
    if command -v setpriv >/dev/null; then run_as=(setpriv --reuid=munge --regid=munge --init-groups)
    elif command -v runuser >/dev/null; then run_as=(runuser -u munge --)
    else skip "neither setpriv nor runuser to start munged as the munge user"; fi
    # --foreground: its pid is ours to kill; --force: this machine's /tmp may be a
    # sticky world-writable directory above the socket, which munged calls insecure
    "${run_as[@]}" munged --foreground --force --socket="$MUNGE_SOCKET" --key-file=/etc/munge/munge.key \
        --pid-file="$LX/munge/munged.pid" --log-file="$LX/munge/munged.log" --seed-file="$LX/munge/seed" \
        >"$LX/munged.out" 2>&1 &
    MUNGE_PID=$!
    LX_PIDS="$LX_PIDS $MUNGE_PID"
    if ! lx_wait "$LAUNCHERS_WAIT_S" "munged's socket $MUNGE_SOCKET" $MUNGE_PID test -S "$MUNGE_SOCKET" || ! lx_alive $MUNGE_PID; then
        lx_log "$LX/munged.out"; lx_log "$LX/munge/munged.log"
        skip "munged did not start (log above)"
    fi
    if ! munge -S "$MUNGE_SOCKET" -n 2>"$LX/munge.err" | unmunge -S "$MUNGE_SOCKET" >/dev/null 2>>"$LX/munge.err"; then
        lx_log "$LX/munge.err"
        skip "munged is up but a credential does not round-trip (log above)"
    fi
}

slurm_up() {
    local node base
    node=$(hostname -s)
    # ports off the well-known 6817/6818, different per run
    # (below the kernel's ephemeral range, above the pipetrain tests' 20000-31999)
    base=$((32000 + (RANDOM % 70) * 10))
    mkdir -p "$LX/slurm/state" "$LX/slurm/spool"
    export SLURM_CONF=$LX/slurm/slurm.conf
    cat >"$SLURM_CONF" <<EOF
ClusterName=pipetrain
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$base
SlurmdPort=$((base + 1))
SrunPortRange=$((base + 2))-$((base + 9))
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$LX/slurm/state
SlurmdSpoolDir=$LX/slurm/spool
SlurmctldPidFile=$LX/slurm/slurmctld.pid
SlurmdPidFile=$LX/slurm/slurmd.pid
SlurmctldLogFile=$LX/slurm/slurmctld.log
SlurmdLogFile=$LX/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
SlurmdTimeout=30
InactiveLimit=0
KillWait=2
NodeName=$node NodeAddr=127.0.0.1 CPUs=8 State=UNKNOWN
PartitionName=pt Nodes=$node Default=YES MaxTime=10 State=UP
EOF
    slurmctld -D -i >"$LX/slurm/slurmctld.out" 2>&1 &
    SLURMCTLD_PID=$!
    LX_PIDS="$LX_PIDS $SLURMCTLD_PID"
    if ! lx_wait "$LAUNCHERS_WAIT_S" "slurmctld to answer" $SLURMCTLD_PID scontrol ping || ! lx_alive $SLURMCTLD_PID; then
        lx_log "$LX/slurm/slurmctld.out"; lx_log "$LX/slurm/slurmctld.log"
        skip "slurmctld did not start (log above)"
    fi
    slurmd -D -N "$node" >"$LX/slurm/slurmd.out" 2>&1 &
    SLURMD_PID=$!
    LX_PIDS="$LX_PIDS $SLURMD_PID"
    # "idle": registered and schedulable (not "unknown", "down", "idle*": not responding)
    if ! lx_wait "$LAUNCHERS_WAIT_S" "node $node idle in sinfo" $SLURMD_PID lx_node_idle "$node" || ! lx_alive $SLURMD_PID; then
        echo "  sinfo: $(sinfo -h -N -o '%N %T' 2>&1 | head -n 3)"
        lx_log "$LX/slurm/slurmd.out"; lx_log "$LX/slurm/slurmd.log"
        skip "slurmd did not register its node (log above)"
    fi
}

# lx_job_wait JOBID SECONDS: polls the job every 0.3 s (sbatch --wait polls every
# few seconds) until it ended; 0 when it COMPLETED with exit code 0. On timeout:
# scancel, message. LX_JOB holds its last "JobState=... ExitCode=..." line.
lx_job_wait() {
    local end=$((SECONDS + $2)) st
    while :; do
        st=$(scontrol -o show job "$1" 2>&1)
        LX_JOB=$(echo "$st" | grep -o 'JobState=[A-Z_]* .*ExitCode=[0-9:]*' | sed 's/ Reason=[^ ]*//; s/ Dependency=[^ ]*//')
        case $st in
            *JobState=PENDING*|*JobState=RUNNING*|*JobState=CONFIGURING*|*JobState=COMPLETING*|*JobState=SUSPENDED*) ;;
            *JobState=COMPLETED*ExitCode=0:0*) return 0 ;;
            *JobState=*) return 1 ;;
            *) LX_JOB="scontrol: $st"; return 1 ;;
        esac
        if [ $SECONDS -ge $end ]; then
            scancel "$1" 2>/dev/null
            LX_JOB="timed out after $2 s ($LX_JOB): cancelled"
            return 1
        fi
        sleep 0.3
    done
}

lx_node_idle() { [ "$(sinfo -h -N -n "$1" -o %T 2>/dev/null)" = idle ]; }

launchers_down() {
    local p
    if [ -n "${SLURM_CONF:-}" ] && [ -n "${SLURMCTLD_PID:-}" ] && lx_alive "$SLURMCTLD_PID"; then
        scancel --user="$(id -un)" >/dev/null 2>&1
    fi
    # slurmd first (it kills its job steps), then slurmctld, then munged
    for p in $(echo $LX_PIDS | tr ' ' '\n' | tac); do kill -TERM "$p" 2>/dev/null; done
    local end=$((SECONDS + 10))
    for p in $LX_PIDS; do
        while lx_alive "$p" && [ $SECONDS -lt $end ]; do sleep 0.1; done
        kill -KILL "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    LX_PIDS=""
    if [ -n "${KEEP_TMP:-}" ]; then echo "kept $LX"; else rm -rf "$LX"; fi
}

# ---- the training half: one topology trained by the local launcher and by a
# real one, compared bit for bit. Needs tests/lib.sh sourced first (P, CORPUS,
# tmp, check).
#
# The data-parallel grid (2 stages x 2 replicas); LX_TOPO / LX_NP pick another
# topology and its process count.
LX_TOPO=${LX_TOPO:-topologies/shakespeare-2x2.json} LX_NP=${LX_NP:-4}

# lx_prepare: $tmp/topo.json (LX_TOPO with every port moved to a base of this
# run, so that concurrent tests do not collide), a 4 KB corpus, and LX_SETS,
# the options every process of every run gets (a few short steps, checkpoints).
lx_prepare() {
    # the 50-99 of a hundred the other tests leave free, below SLURM's 32000-32699
    local base=$((20000 + (RANDOM % 119) * 100 + ($$ % 45) + 50)) n
    n=$(python3 - "$LX_TOPO" "$tmp/topo.json" "$base" <<'PY'
import json, sys
t = json.load(open(sys.argv[1])); port = int(sys.argv[3]); n = 0
t["coordinator"]["port"] = port
for s in t["stages"]:
    for r in s.get("replicas", [s]):
        n += 1; r["port"] = port + n
print(n)
json.dump(t, open(sys.argv[2], "w"), indent=2)
PY
    ) || { echo "  cannot rewrite $LX_TOPO's ports"; exit 1; }
    [ "$n" = "$LX_NP" ] || { echo "  $LX_TOPO has $n processes, LX_NP says $LX_NP"; exit 1; }
    head -c 4000 "$CORPUS" >"$tmp/small.txt"
    LX_SETS=(--data "$tmp/small.txt" --set train.steps=4 --set train.batch_size=8 --set train.micro_batches=4
             --set train.eval_every=2 --set train.eval_batches=1 --set train.warmup_steps=2
             --set checkpoint.every=2 --set checkpoint.keep=0)
    echo "  $LX_TOPO: $LX_NP processes, coordinator port $base, 4 steps on a 4 KB corpus"
}

# lx_local: the reference, `pipetrain run` starting every stage itself ($tmp/local)
lx_local() {
    "$P" run "$tmp/topo.json" "${LX_SETS[@]}" --out "$tmp/local" >"$tmp/local.log" 2>&1
    local rc=$?
    check "local launcher: run exits 0" "[ $rc -eq 0 ] || { tail -n 8 $tmp/local.log; false; }"
    "$P" export "$tmp/local" --out "$tmp/local/export" >/dev/null 2>&1
    check "local launcher: exported weights" "[ -s $tmp/local/export/model.safetensors ]"
}

# lx_coord NAME ID: `pipetrain run --no-launch --run-id ID` in the background
# (pid in LX_COORD), its run directory $tmp/NAME, output $tmp/NAME.coord.log
lx_coord() {
    timeout -k 5 90 "$P" run "$tmp/topo.json" "${LX_SETS[@]}" --no-launch --run-id "$2" --out "$tmp/$1" \
        >"$tmp/$1.coord.log" 2>&1 &
    LX_COORD=$!
}

# lx_watch LAUNCHER_PID COORD_PID: waits for both; stops the launcher (SIGTERM,
# which srun and mpirun pass on to their processes) 2 s after the coordinator
# failed, rather than letting its stages wait out their connect timeout. Status:
# 0 when both exited 0; LX_RC, LX_COORD_RC hold each one's.
lx_watch() {
    LX_COORD_RC=
    while kill -0 "$1" 2>/dev/null; do
        if [ -z "$LX_COORD_RC" ] && ! kill -0 "$2" 2>/dev/null; then
            wait "$2"; LX_COORD_RC=$?
            [ "$LX_COORD_RC" -ne 0 ] && { sleep 2; kill -TERM "$1" 2>/dev/null; }
        fi
        sleep 0.2
    done
    wait "$1"; LX_RC=$?
    [ -z "$LX_COORD_RC" ] && { wait "$2"; LX_COORD_RC=$?; }
    [ "$LX_RC" -eq 0 ] && [ "$LX_COORD_RC" -eq 0 ]
}

# lx_stage_args ID: what each launched process runs after the launcher's own
# options (no --stage: the process comes from the launcher's rank)
lx_stage_args() { LX_STAGE=("$P" stage "$tmp/topo.json" "${LX_SETS[@]}" --run-id "$1" --out "$tmp/$2"); }

# lx_same NAME WHAT: run NAME ended well and equals the local run bit for bit
lx_same() {
    local d=$tmp/$1 k f
    "$P" export "$d" --out "$d/export" >/dev/null 2>&1
    check "$2: exported weights bitwise equal to the local launcher's" \
        "[ -s $d/export/model.safetensors ] && cmp $tmp/local/export/model.safetensors $d/export/model.safetensors"
    local ok=1 n=0
    for f in "$tmp"/local/checkpoints/step-4/*.safetensors; do
        n=$((n + 1))
        cmp -s "$f" "$d/checkpoints/step-4/${f##*/}" || { ok=0; echo "    differs: checkpoints/step-4/${f##*/}"; }
    done
    check "$2: the $n checkpoint shards of step 4 bitwise equal to the local launcher's" "[ $n -gt 0 ] && [ $ok -eq 1 ]"
    lines() { sed -E 's/, "step_ms": [^,}]*//; s/, "tokens_per_s": [^,}]*//' "$1"; }
    check "$2: the same loss lines as the local launcher" \
        "[ -s $d/metrics.jsonl ] && diff <(lines $tmp/local/metrics.jsonl) <(lines $d/metrics.jsonl)"
    check "$2: summary.json lists $LX_NP processes, no error" \
        "python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert j[\"error\"] is None and len(j[\"stages\"]) == $LX_NP' $d/summary.json 2>/dev/null"
}
