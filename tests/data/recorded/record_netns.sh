#!/bin/sh
# Records real outputs of the tools the SSH collector parses, from two throwaway network
# namespaces of our own (audrec-a, audrec-b) joined by a veth pair inside 10.98.250.0/24 and
# fd98:250::/64. Nothing is added to the host's own namespace except the namespaces themselves,
# and both are deleted at the end. Needs root, iproute2, nftables, wireguard-go, wireguard-tools.
# Usage: sh record_netns.sh OUTDIR
set -eu
umask 077
out=${1:?usage: record_netns.sh OUTDIR}
A=audrec-a
B=audrec-b
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
cleanup() {
    ip netns pids $A 2>/dev/null | xargs -r kill 2>/dev/null || true
    ip netns pids $B 2>/dev/null | xargs -r kill 2>/dev/null || true
    ip netns del $A 2>/dev/null || true
    ip netns del $B 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
inA() { ip netns exec $A "$@"; }
inB() { ip netns exec $B "$@"; }

ip netns add $A
ip netns add $B
ip link add audrec-va netns $A type veth peer name audrec-vb netns $B
inA ip link set lo up
inB ip link set lo up
inA ip link set audrec-va name eth0
inB ip link set audrec-vb name eth0
inA ip addr add 10.98.250.1/24 dev eth0
inA ip addr add fd98:250::1/64 dev eth0 nodad
inB ip addr add 10.98.250.2/24 dev eth0
inB ip addr add fd98:250::2/64 dev eth0 nodad
inA ip link set eth0 up
inB ip link set eth0 up
# A second link (this kernel has no dummy driver): another veth pair.
ip link add audrec-wa netns $A type veth peer name audrec-wb netns $B
inA ip link set audrec-wa name eth1
inB ip link set audrec-wb name eth1
inA ip addr add 10.98.251.1/24 dev eth1
inB ip addr add 10.98.251.2/24 dev eth1
inA ip link set eth1 up
inB ip link set eth1 up

# Routes of every type the parser must understand, in several tables, both families.
inA ip route add blackhole 10.98.252.0/24
inA ip route add unreachable 10.98.253.0/24
inA ip route add prohibit 10.98.254.0/24
inA ip route add 10.98.200.0/24 nexthop via 10.98.250.2 dev eth0 weight 1 nexthop via 10.98.251.2 dev eth1 weight 2
inA ip route add default via 10.98.250.2 dev eth0 table 100
inA ip route add 10.98.201.0/24 via 10.98.250.2 table 200 metric 50 src 10.98.250.1
inA ip -6 route add blackhole fd98:252::/64
inA ip -6 route add unreachable fd98:253::/64
inA ip -6 route add default via fd98:250::2 dev eth0 table 100
inA ip -6 route add fd98:200::/64 nexthop via fd98:250::2 dev eth0 nexthop via fe80::2 dev eth0

# Policy rules: selectors, actions, both families.
inA ip rule add from 10.98.250.0/24 lookup 100 priority 100
inA ip rule add fwmark 0x1/0xff lookup 200 priority 200
inA ip rule add not iif eth0 to 10.98.201.0/24 lookup main priority 300
inA ip rule add to 10.98.254.0/24 prohibit priority 400
inA ip -6 rule add from fd98:250::/64 lookup 100 priority 100
inA ip -6 rule add oif eth0 unreachable priority 500

# A real nftables rule set (the kind the lab's hosts use).
inA nft -f "$here/netns-nftables.conf"

# WireGuard (userspace) between the two namespaces. wireguard-go's control sockets live in
# /var/run/wireguard, which network namespaces share: the two interfaces get distinct names, and
# B's daemon is stopped before A's outputs are recorded so that A shows only its own.
wg genkey > "$tmp/a.key"; wg pubkey < "$tmp/a.key" > "$tmp/a.pub"
wg genkey > "$tmp/b.key"; wg pubkey < "$tmp/b.key" > "$tmp/b.pub"
inA env WG_PROCESS_FOREGROUND=1 wireguard-go wg0 >/dev/null 2>&1 &
inB env WG_PROCESS_FOREGROUND=1 wireguard-go wg1 >/dev/null 2>&1 &
for _ in 1 2 3 4 5 6 7 8 9 10; do
    inA ip link show wg0 >/dev/null 2>&1 && inB ip link show wg1 >/dev/null 2>&1 && break
    sleep 0.5
done
inA wg set wg0 listen-port 51820 private-key "$tmp/a.key" peer "$(cat "$tmp/b.pub")" \
    allowed-ips 10.98.102.2/32,fd98:102::2/128 endpoint 10.98.250.2:51820 persistent-keepalive 25
inB wg set wg1 listen-port 51820 private-key "$tmp/b.key" peer "$(cat "$tmp/a.pub")" \
    allowed-ips 10.98.102.1/32
inB wg set wg1 peer "$(wg genkey | wg pubkey)" allowed-ips 10.98.102.9/32
inA ip addr add 10.98.102.1/24 dev wg0
inA ip -6 addr add fd98:102::1/64 dev wg0
inB ip addr add 10.98.102.2/24 dev wg1
inA ip link set wg0 up
inB ip link set wg1 up
inA ping -c 1 -W 2 10.98.102.2 >/dev/null || true
ip netns pids $B | xargs -r kill 2>/dev/null || true
sleep 0.5

# Listeners: wildcard both families, a specific address, one bound to an interface, UDP.
inA python3 "$here/listeners.py" &
sleep 1

rec() { name=$1; shift; "$@" > "$out/$name" 2>/dev/null || true; }
for ns in $A $B; do
    short=${ns#audrec-}
    p="netns-$short"
    rec "$p.ip-addr.json" ip netns exec $ns ip -j addr show
    rec "$p.ip-route-v4.json" ip netns exec $ns ip -4 -j route show table all
    rec "$p.ip-route-v6.json" ip netns exec $ns ip -6 -j route show table all
    rec "$p.ip-rule-v4.json" ip netns exec $ns ip -j rule show
    rec "$p.ip-rule-v6.json" ip netns exec $ns ip -6 -j rule show
    rec "$p.nft-ruleset.json" ip netns exec $ns nft -j list ruleset
    rec "$p.ss-tulnp.txt" ip netns exec $ns ss -H -t -u -l -n -p
done
rec netns-a.wg-interfaces.txt inA wg show interfaces
for f in public-key listen-port peers endpoints allowed-ips latest-handshakes persistent-keepalive; do
    rec "netns-a.wg-$f.txt" inA wg show all $f
done
