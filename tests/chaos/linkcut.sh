#!/usr/bin/env bash
# tests/chaos/linkcut.sh — issue #6 fault matrix: a link cut. The 3-stage
# cluster of tests/netns (one network namespace per host), stage 1's link
# taken down mid-run (`ip link set ... down` on the hub side of its veth):
# every process must exit with a failure within the peer timeout plus a
# margin, the coordinator's last line naming a stage, its host:port and the
# step. Skips (exit 77) where namespaces cannot be created.
set -u
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
BIN=${BIN:-bin}
case $BIN in /*) ;; *) BIN=$ROOT/$BIN ;; esac
P=$BIN/pipetrain
CORPUS=$ROOT/../shared/data/tinyshakespeare.txt
CL_STEPS=100000
CL_PEER_TIMEOUT_MS=3000
CL_DEADLINE=120
. "$ROOT/tests/netns/lib.sh"
. "$ROOT/tests/netns/cluster.sh"
fail=0
check() { if eval "$2"; then echo "  ok   $1"; else echo "  FAIL $1"; fail=1; fi; }

cluster_init
T=$CL_TMP
mkdir -p "$T/net"
cl_topo "$T/net/topo.json" $NET.1 $CL_COORD_PORT $NET.2 $CL_STAGE_PORT $NET.3 $CL_STAGE_PORT $NET.4 $CL_STAGE_PORT
cluster_start "$T/net"
for _ in $(seq 600); do
    [ -f "$T/net/run/metrics.jsonl" ] && [ "$(wc -l <"$T/net/run/metrics.jsonl")" -ge 3 ] && break
    sleep 0.1
done
check "the cluster trains (3 steps logged)" "[ \$(wc -l <$T/net/run/metrics.jsonl 2>/dev/null || echo 0) -ge 3 ]"
t0=$(date +%s%3N)
nn_cut s1 || echo "  (nn_cut: $NN_WHY)"
rcs=""
for p in $CL_COORD $CL_STAGES; do wait "$p"; rcs="$rcs $?"; done
dt=$(( $(date +%s%3N) - t0 ))
limit=$((3 * CL_PEER_TIMEOUT_MS + 8000))
check "every process exited within $limit ms of the cut (took $dt ms)" "[ $dt -le $limit ]"
check "the coordinator names a stage, its address and the step" \
    "tail -n 4 $T/net/coord.log | grep -qE 'stage [0-9] \\($NET\\.[0-9]:$CL_STAGE_PORT\\) .* at step [0-9]+'"
set -- $rcs
check "the coordinator exited 1 (got $1)" "[ $1 -eq 1 ]"
shift
for k in 0 1 2; do
    check "stage $k exited with a failure (got $1; 124 would be the test's deadline)" "[ $1 -ne 0 ] && [ $1 -ne 124 ]"
    shift
done
echo "  coordinator: $(grep '^pipetrain run:' "$T/net/coord.log" | tail -1)"
[ $fail -eq 0 ] && echo "linkcut: ok"
exit $fail
