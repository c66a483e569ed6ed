#!/usr/bin/env bash
# The quick subset of the fault matrix (issue #6; `make chaos` runs the full
# set, tests/chaos/run.sh): SIGKILL of a random stage at a random moment with
# restarts (3 trials), SIGSTOP of a stage, the coordinator killed, a stage with
# another topology or secret refused at hello, and kills during checkpoint
# writes (random moments, and fixed points: before each shard, manifest,
# COMPLETE and latest) never damaging a complete checkpoint, --insecure, and
# 50 bits flipped in flight, all detected. On a 2 x 2 grid (issue #11): one
# SIGKILL of a random process with restarts (bitwise equal to an uninterrupted
# 2 x 2 run) and one without (exit 1 within the peer timeout, naming it).
# Cases: tests/chaos/lib.sh.
set -u
cd "$(dirname "$0")/.."
. tests/lib.sh t_chaos_quick
. tests/chaos/lib.sh

chaos_reference
chaos_kill_trials 3
chaos_grid_reference
chaos_kill_trials 1 grid
chaos_grid_dead 1
chaos_stop_trial
chaos_coord_kill
chaos_hello_refusals
chaos_ckpt_kills 4
chaos_insecure
chaos_ckpt_fault_points 2 4 5
chaos_flips 50
exit $fail
