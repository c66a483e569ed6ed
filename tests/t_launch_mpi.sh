#!/usr/bin/env bash
# Issue #11: Open MPI's launcher for real. Trains the topology (LX_TOPO, LX_NP
# processes: set in tests/helpers/launchers.sh) with the local launcher
# (`pipetrain run`) and with `mpirun --allow-run-as-root --oversubscribe -np NP
# pipetrain stage` (each process takes its stage from OMPI_COMM_WORLD_RANK)
# against `pipetrain run --no-launch`: bitwise-identical weights, checkpoint
# shards and loss lines. Exit 77 (skipped, with the reason) only where Debian's
# openmpi-bin cannot be installed or mpirun cannot start a process here.
set -u
cd "$(dirname "$0")/.."
. tests/lib.sh t_launch_mpi
. tests/helpers/launchers.sh
trap 'cleanup; launchers_down' EXIT
trap 'exit 143' TERM INT HUP   # so that the EXIT trap stops our daemons then too
export OPENBLAS_NUM_THREADS=1
# the rank must come from mpirun: not from a SLURM allocation this might run in
unset SLURM_PROCID PMI_RANK RANK

# a one-stage topology has no stage to wait for: refused, not waited on
"$P" run topologies/shakespeare-1stage.json --no-launch --out "$tmp/one" >"$tmp/one.log" 2>&1
check "run --no-launch on a one-stage topology: exit 2 naming it" \
    "[ $? -eq 2 ] && grep -q 'shakespeare-1stage.json has one stage' $tmp/one.log && [ ! -e $tmp/one ]"

launchers_install openmpi-bin
MPIRUN=(mpirun --allow-run-as-root --oversubscribe -np "$LX_NP")
# mpirun itself works here (no hwloc/ssh trouble): else skip, saying why
if ! timeout -k 5 30 "${MPIRUN[@]}" true >"$tmp/mpi-probe.log" 2>&1; then
    lx_log "$tmp/mpi-probe.log"
    skip "mpirun cannot start $LX_NP processes here (log above)"
fi
echo "  $(mpirun --version 2>/dev/null | head -n 1)"
lx_prepare
lx_local

lx_coord mpirun 9
lx_stage_args 9 mpirun
t0=$SECONDS
timeout -k 5 90 "${MPIRUN[@]}" "${LX_STAGE[@]}" >"$tmp/mpirun.stages.log" 2>&1 &
lx_watch $! "$LX_COORD"
check "mpirun -np $LX_NP pipetrain stage: exits 0 ($((SECONDS - t0)) s)" "[ $LX_RC -eq 0 ] || { tail -n 12 $tmp/mpirun.stages.log; false; }"
check "mpirun: the coordinator (run --no-launch) exits 0" "[ $LX_COORD_RC -eq 0 ] || { tail -n 8 $tmp/mpirun.coord.log; false; }"
check "mpirun: the coordinator started no stage and printed $LX_NP commands" \
    "[ \$(grep -c '^cd .* stage ' $tmp/mpirun.coord.log) -eq $LX_NP ] && [ ! -e $tmp/mpirun/stage-0.log ]"
check "mpirun: each process took its stage from OMPI_COMM_WORLD_RANK" \
    "[ \$(grep -c 'OMPI_COMM_WORLD_RANK=[0-9]*: stage' $tmp/mpirun.stages.log) -eq $LX_NP ]"
lx_same mpirun "mpirun"
check "no process of the test left" "! pgrep -f -- '--out $tmp/' >/dev/null"
exit $fail
