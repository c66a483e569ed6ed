#!/usr/bin/env bash
# Issue #11: the SLURM launcher for real. Brings up a one-node SLURM cluster from
# Debian's packages (munged, slurmctld -D, slurmd -D; tests/helpers/launchers.sh)
# and trains the topology (LX_TOPO, LX_NP processes: set in launchers.sh) three
# ways: the local launcher (`pipetrain run`), `srun -n NP pipetrain stage` against
# `pipetrain run --no-launch`, and an sbatch job script doing the same inside its
# allocation. All three must end with bitwise-identical weights, checkpoint
# shards and loss lines. Exit 77 (skipped, with the reason) only where the
# packages cannot be installed or a daemon cannot start; the daemons are ours
# and are stopped on any exit.
set -u
cd "$(dirname "$0")/.."
. tests/lib.sh t_launch_slurm
. tests/helpers/launchers.sh
trap 'cleanup; launchers_down' EXIT
trap 'exit 143' TERM INT HUP   # so that the EXIT trap stops our daemons then too
export OPENBLAS_NUM_THREADS=1
ROOT=$PWD

launchers_install slurmctld slurmd slurm-client munge
munge_up
slurm_up
echo "  one-node SLURM up: $(sinfo -h -N -o '%N %T, %c CPUs')"
lx_prepare
lx_local

# --- srun: the coordinator waits (--no-launch), srun starts every process
lx_coord srun 7
lx_stage_args 7 srun
t0=$SECONDS
timeout -k 5 90 srun -n "$LX_NP" -t 2 -J pipetrain-srun "${LX_STAGE[@]}" >"$tmp/srun.stages.log" 2>&1 &
lx_watch $! "$LX_COORD"
check "srun -n $LX_NP pipetrain stage: exits 0 ($((SECONDS - t0)) s)" "[ $LX_RC -eq 0 ] || { tail -n 12 $tmp/srun.stages.log; false; }"
check "srun: the coordinator (run --no-launch) exits 0" "[ $LX_COORD_RC -eq 0 ] || { tail -n 8 $tmp/srun.coord.log; false; }"
check "srun: the coordinator started no stage and printed $LX_NP commands" \
    "[ \$(grep -c '^cd .* stage ' $tmp/srun.coord.log) -eq $LX_NP ] && [ ! -e $tmp/srun/stage-0.log ]"
check "srun: each process took its stage from SLURM_PROCID" \
    "[ \$(grep -c 'SLURM_PROCID=[0-9]*: stage' $tmp/srun.stages.log) -eq $LX_NP ]"
lx_same srun "srun"

# --- sbatch: a job script runs the coordinator and srun in its allocation
{
    echo '#!/bin/bash'
    echo "#SBATCH -n $LX_NP -t 2 -J pipetrain-sbatch -o $tmp/sbatch.out"
    printf 'cd %q || exit 1\n' "$ROOT"
    lx_stage_args 8 sbatch
    printf 'timeout -k 5 90 %q run %q' "$P" "$tmp/topo.json"; printf ' %q' "${LX_SETS[@]}"
    printf ' --no-launch --run-id 8 --out %q >%q 2>&1 &\n' "$tmp/sbatch" "$tmp/sbatch.coord.log"
    echo 'coord=$!'
    printf 'srun -n %d' "$LX_NP"; printf ' %q' "${LX_STAGE[@]}"; printf ' &\n'
    declare -f lx_watch
    echo 'lx_watch $! $coord; echo "job: srun exit $LX_RC, coordinator exit $LX_COORD_RC"; exit $((LX_RC || LX_COORD_RC))'
} >"$tmp/job.sh"
t0=$SECONDS
jid=$(timeout 30 sbatch --parsable "$tmp/job.sh" 2>"$tmp/sbatch.log")
rc=1; [ -n "$jid" ] && lx_job_wait "$jid" 120 && rc=0
check "sbatch job.sh: job ${jid:-(not submitted)} ends COMPLETED, exit 0 ($((SECONDS - t0)) s)" \
    "[ $rc -eq 0 ] || { echo \"    \$LX_JOB\"; cat $tmp/sbatch.log; tail -n 12 $tmp/sbatch.out $tmp/sbatch.coord.log; false; }"
lx_same sbatch "sbatch"
check "no process of the test left" "! pgrep -f -- '--out $tmp/' >/dev/null"
exit $fail
