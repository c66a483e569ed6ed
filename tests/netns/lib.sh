# tests/netns/lib.sh — network namespaces for multi-host tests (sourced by
# tests/netns/*.sh, not run on its own).
#
# One namespace per process ("host"), all joined by a Linux bridge that lives in
# its own "hub" namespace, each through a veth pair (hub side h-NAME, host side
# eth0). The root namespace is connected to none of them: there is no route from
# it to the test's addresses and nothing here sends a packet. Namespace names
# carry a tag (the caller's PID) so that parallel runs never collide.
# IPv6 is off inside them (no autoconfiguration chatter): the tests use IPv4.
#
#   nn_init TAG            create the hub namespace and its bridge. Returns 0;
#                          2 when namespaces cannot be created here at all (not
#                          root, no ip(8), no CAP_SYS_ADMIN: the caller skips);
#                          1 on any later failure. The reason is in NN_WHY.
#   nn_add NAME ADDR/LEN   a host namespace with lo up and eth0=ADDR on the bridge
#   nn_add_lo NAME         a namespace with only lo up (a private loopback)
#   nn_ns NAME             print NAME's full namespace name
#   nn_exec NAME CMD...    run CMD inside NAME (ip netns exec)
#   nn_cut NAME / nn_heal NAME
#                          take the hub side of NAME's link down / up again: the
#                          host stays up but its packets go nowhere (issue #6)
#   nn_bytes NAME tx|rx    bytes NAME's eth0 has sent / received
#   nn_cleanup             kill whatever still runs in our namespaces (by PID,
#                          from `ip netns pids`), then delete them; idempotent
# Requires bash. Every ip(8) call is under `timeout`, so nothing here can hang.

NN_PREFIX=""
NN_HUB=""
NN_LIST=""   # namespaces created, in order
NN_WHY=""

nn_ns() { printf '%s-%s' "$NN_PREFIX" "$1"; }

# _nn_ip ARGS...: ip(8) with a deadline; stderr kept in NN_WHY on failure.
_nn_ip() {
    local out
    if ! out=$(timeout 10 ip "$@" 2>&1); then NN_WHY="ip $*: ${out:-failed}"; return 1; fi
    return 0
}

nn_init() {
    NN_PREFIX="ptnn$1"
    NN_HUB=$(nn_ns hub)
    if [ "$(id -u)" != 0 ]; then NN_WHY="needs root (uid $(id -u))"; return 2; fi
    if ! command -v ip >/dev/null 2>&1; then NN_WHY="no ip(8) (iproute2 not installed)"; return 2; fi
    # Leftovers of a killed run that had our PID (names are per PID) go first.
    local ns
    for ns in $(timeout 10 ip netns list 2>/dev/null | awk '{print $1}'); do
        case $ns in "$NN_PREFIX"-*) timeout 10 ip netns del "$ns" 2>/dev/null ;; esac
    done
    _nn_ip netns add "$NN_HUB" || return 2
    NN_LIST="$NN_HUB"
    _nn_no_ipv6 "$NN_HUB"
    _nn_ip -n "$NN_HUB" link add br0 type bridge || return 1
    _nn_ip -n "$NN_HUB" link set br0 up || return 1
    _nn_ip -n "$NN_HUB" link set lo up || return 1
    return 0
}

# _nn_no_ipv6 NS: IPv6 off in NS (best effort), so that no interface sends
# autoconfiguration chatter (DAD, router solicitations); the tests use IPv4.
_nn_no_ipv6() {
    timeout 10 ip netns exec "$1" sh -c 'for f in default all; do
        echo 1 >/proc/sys/net/ipv6/conf/$f/disable_ipv6; done' 2>/dev/null
    return 0
}

nn_add_lo() {
    local ns
    ns=$(nn_ns "$1")
    _nn_ip netns add "$ns" || return 1
    NN_LIST="$NN_LIST $ns"
    _nn_no_ipv6 "$ns"
    _nn_ip -n "$ns" link set lo up
}

nn_add() {
    local name=$1 addr=$2 ns
    ns=$(nn_ns "$name")
    nn_add_lo "$name" || return 1
    # Both ends are created directly inside their namespaces: the pair never
    # exists in the root namespace, not even for a moment.
    _nn_ip link add "h-$name" netns "$NN_HUB" type veth peer name eth0 netns "$ns" || return 1
    _nn_ip -n "$NN_HUB" link set "h-$name" master br0 || return 1
    _nn_ip -n "$NN_HUB" link set "h-$name" up || return 1
    _nn_ip -n "$ns" addr add "$addr" dev eth0 || return 1
    _nn_ip -n "$ns" link set eth0 up
}

nn_exec() {
    local ns
    ns=$(nn_ns "$1"); shift
    ip netns exec "$ns" "$@"
}

nn_cut() { _nn_ip -n "$NN_HUB" link set "h-$1" down; }
nn_heal() { _nn_ip -n "$NN_HUB" link set "h-$1" up; }

nn_bytes() {
    local ns
    ns=$(nn_ns "$1")
    timeout 10 ip netns exec "$ns" cat "/sys/class/net/eth0/statistics/${2}_bytes" 2>/dev/null || echo 0
}

# _nn_kill_in NS SIGNAL: signal every process still inside NS.
_nn_kill_in() {
    local pid
    for pid in $(timeout 10 ip netns pids "$1" 2>/dev/null); do kill "-$2" "$pid" 2>/dev/null; done
}

nn_cleanup() {
    local ns left i
    [ -n "$NN_LIST" ] || return 0
    for ns in $NN_LIST; do _nn_kill_in "$ns" TERM; done
    for i in 1 2 3 4 5 6 7 8 9 10; do
        left=""
        for ns in $NN_LIST; do left="$left$(timeout 10 ip netns pids "$ns" 2>/dev/null)"; done
        [ -z "$left" ] && break
        sleep 0.2
    done
    for ns in $NN_LIST; do _nn_kill_in "$ns" KILL; done
    # Deleting a namespace destroys its veth ends, and with the hub the bridge.
    for ns in $NN_LIST; do timeout 10 ip netns del "$ns" 2>/dev/null; done
    NN_LIST=""
}
