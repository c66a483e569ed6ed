#!/usr/bin/env bash
# t_ps_cli.sh — parameter-server topologies at the command line (issue 12, the
# part without the network): `check` validates topologies/shakespeare-ps.json
# and prints the assignment (per server its pieces, or a summary by stage when
# there are many, and the bytes it receives and sends per step); every
# staleness is accepted; `stage --join` is refused unless the servers are
# asynchronous (exit 2 naming the field).
set -u
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
P="$BIN/pipetrain"
T=topologies/shakespeare-ps.json
tmp=$(mktemp -d /tmp/t_ps_cli.XXXXXX); trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
# run EXPECTED_RC ARGS...: stdout in $tmp/out, stderr in $tmp/err
run() {
    local want=$1; shift
    "$P" "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
    [ "$rc" -eq "$want" ] || { fail "exit $rc (want $want): $*"; sed 's/^/    /' "$tmp/err" | head -5; }
}
has() { grep -qF -- "$2" "$1" || fail "$1 lacks '$2' ($3)"; }

run 0 check "$T"
has "$tmp/out" "parameter servers: 2, 2 worker(s) (replicas), sync ps, staleness 0 (synchronous)" "header"
has "$tmp/out" "sync ps: each replica is a worker" "no all-reduce table"
# 918656 floats in 12 blocks (6 units with parameters x 2 replica segments, one bucket
# each), 459328 per server: x 4 bytes x 2 workers each way
has "$tmp/out" "918656 floats in 12 blocks (gradient bucket x replica segment, at most 106624 floats), 45 pieces" "blocks"
grep -qE '^0 +127\.0\.0\.1:29555 +31 +459328 +3\.5 MiB +3\.5 MiB$' "$tmp/out" || fail "server 0's row: $(grep -m1 '^0 ' "$tmp/out")"
grep -qE '^1 +127\.0\.0\.1:29556 +14 +459328 +3\.5 MiB +3\.5 MiB$' "$tmp/out" || fail "server 1's row"
has "$tmp/out" "stage 0  model.embed_tokens.weight" "pieces listed"
# server 0's 31 pieces are summarised by stage, server 1's 14 listed
grep -qE '^ +stage 0: 15 pieces, 229632 floats$' "$tmp/out" || fail "server 0's summary"
[ "$(grep -c '^ *stage [01]  model\.\|^ *stage [01]  lm_head' "$tmp/out")" -eq 14 ] || fail "not 14 pieces listed"
# many pieces: a summary by stage instead of the list
run 0 check "$T" --set model.n_layers=8 --set stages.0.layers=embed,0-3 --set stages.1.layers=4-7,head \
    --set ps.staleness=-1
has "$tmp/out" "staleness -1 (unbounded)" "unbounded"
grep -qE '^ +stage 0: [0-9]+ pieces, [0-9]+ floats$' "$tmp/out" || fail "no summary by stage"
# the same check twice prints the same assignment (deterministic)
run 0 check "$T"; cp "$tmp/out" "$tmp/out1"; run 0 check "$T"
cmp -s "$tmp/out" "$tmp/out1" || fail "check printed two assignments"

# every mode trains since the asynchronous ones: staleness 2 and -1 are accepted
for st in 2 -1; do
    run 0 run "$T" --print-commands --out "$tmp/p" --set ps.staleness=$st
    has "$tmp/out" "server topologies/shakespeare-ps.json --server 1" "run prints staleness $st's commands"
done
# --join is for workers of asynchronous servers only
run 2 stage "$T" --stage 0 --replica 1 --join
has "$tmp/err" "shakespeare-ps.json: --join: only a worker of asynchronous parameter servers" "--join when synchronous"
run 2 server "$T"
has "$tmp/err" "--server K is required" "server without --server"
run 2 server "$T" --server 2
has "$tmp/err" "--server 2: parameter_servers has 2 server(s) (0..1)" "server index out of range"
run 2 server "$T" --server x
has "$tmp/err" "--server" "server with a bad index"
run 2 server topologies/shakespeare-2stage.json --server 0
has "$tmp/err" "sync: parameter servers need \"sync\": \"ps\"" "server on an all-reduce topology"
# more servers than blocks: run refuses before anything starts, naming parameter_servers
sed 's#"port": 29556#"port": 29556 }, { "host": "127.0.0.1", "port": 29557 }, { "host": "127.0.0.1", "port": 29558 }, { "host": "127.0.0.1", "port": 29559 }, { "host": "127.0.0.1", "port": 29560 }, { "host": "127.0.0.1", "port": 29561 }, { "host": "127.0.0.1", "port": 29562 }, { "host": "127.0.0.1", "port": 29563 }, { "host": "127.0.0.1", "port": 29564 }, { "host": "127.0.0.1", "port": 29565 }, { "host": "127.0.0.1", "port": 29566 }, { "host": "127.0.0.1", "port": 29567#' \
    "$T" | sed 's#"path": "\.\./#"path": "'"$PWD"'/../#' >"$tmp/many.json"
run 2 run "$tmp/many.json" --out "$tmp/r"
has "$tmp/err" "parameter_servers: 13 servers but the model's gradients form only 12 blocks" "too many servers"
# --print-commands: the servers' commands beside the stages'
run 0 run "$T" --print-commands --out "$tmp/p"
has "$tmp/out" "# server 1 on 127.0.0.1 (local)" "server listed"
grep -q "server topologies/shakespeare-ps.json --server 1 --coordinator 127.0.0.1:29550" "$tmp/out" || fail "no server command"
[ ! -e "$tmp/r" ] || fail "run created its directory"
# servers without sync "ps" are refused
run 2 check "$T" --set sync=allreduce
has "$tmp/err" "parameter_servers: only allowed with \"sync\": \"ps\"" "allreduce with servers"

[ $fails -eq 0 ] && echo "t_ps_cli: ok" || { echo "t_ps_cli: $fails failure(s)"; exit 1; }
