#!/usr/bin/env bash
# tests/chaos/run.sh — the full fault matrix of issue #6 (`make chaos`):
# 20 SIGKILLs of a random stage at a random moment with restarts (final
# weights and loss lines bitwise equal to an uninterrupted run), SIGSTOP, the
# coordinator killed, a stage with another topology or secret refused at
# hello, 20 kills of a run checkpointing every step at random moments and 15
# at fixed points of the checkpoint writes (no complete checkpoint ever
# damaged, latest always complete, --resume exact), --insecure, 1000 bits
# flipped in flight by a proxy (all detected), and a link cut in network namespaces
# (tests/chaos/linkcut.sh; skipped where namespaces cannot be created), and a
# stage flooded with unauthenticated hellos and dripping connections while it
# trains (memory flat, step time within 20%).
# On a 2 x 2 grid (issue #11): 20 SIGKILLs of a random process (any stage, any
# replica) with restarts, bitwise equal to an uninterrupted 2 x 2 run; 10
# without restarts, each ending the run within the peer timeout (+ grace) with
# one line naming the killed process, nothing left running; SIGSTOP of a
# replica, named within the peer timeout.
# CHAOS_TRIALS=N changes the number of kill trials (GRID_TRIALS those on the
# grid; GRID_DEAD the kills without restarts). About 7 minutes on 2 cores.
set -u
cd "$(dirname "$0")/../.."
. tests/lib.sh chaos
. tests/chaos/lib.sh
N=${CHAOS_TRIALS:-20}

t0=$SECONDS
chaos_reference
chaos_kill_trials "$N"
chaos_grid_reference
chaos_kill_trials "${GRID_TRIALS:-$N}" grid
chaos_grid_dead "${GRID_DEAD:-10}"
chaos_grid_stop
chaos_stop_trial
chaos_coord_kill
chaos_hello_refusals
chaos_ckpt_kills "$N"
chaos_insecure
chaos_ckpt_fault_points $(seq 1 15)
chaos_flips 1000
echo "== strangers flooding a training stage (issue #17)"
chaos_flood
echo "== link cut (network namespaces)"
timeout -k 10 200 bash tests/chaos/linkcut.sh; rc=$?
[ $rc -eq 0 ] || [ $rc -eq 77 ] || fail=1   # 77: skipped (no namespaces here)
echo "chaos: $((SECONDS - t0)) s, $([ $fail -eq 0 ] && echo ok || echo FAILED)"
exit $fail
