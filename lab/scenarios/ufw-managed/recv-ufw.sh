#!/bin/sh
# recv-srv's packet filter written with ufw (iptables-nft backend, Debian's default), carrying
# the baseline rule set's policy (lab/hosts/recv-srv/rootfs/etc/nftables.conf): it receives from
# hospital through wg-in and serves proc-srv over line-recv, and never opens a connection itself.
set -eu

# ufw's /etc/ufw/sysctl.conf cannot be applied here (a container's /proc/sys is read-only; the
# lab sets the host's sysctls when it creates the container) and changes no forwarding anyway.
sed -i 's|^IPT_SYSCTL=.*|IPT_SYSCTL=/dev/null|' /etc/default/ufw

# ufw's before rules admit more than the baseline does, whatever the user rules say; an
# administrator closes that in before.rules and before6.rules, the files ufw-framework(8) leaves
# administrators to customise:
# - pings from anywhere (ICMP and ICMPv6 echo requests are new connections to this host),
sed -i '/-A ufw-before-input -p icmp --icmp-type echo-request -j ACCEPT/d' /etc/ufw/before.rules
sed -i '/-A ufw6-before-input -p icmpv6 --icmpv6-type echo-request -j ACCEPT/d' /etc/ufw/before6.rules
# - IPv6 pings from this host to anywhere (an echo request out would be a new outward connection),
sed -i '/-A ufw6-before-output -p icmpv6 --icmpv6-type echo-request -j ACCEPT/d' /etc/ufw/before6.rules
# - DHCP client replies (UDP from port 67 or 547 to 68 or 546): the addresses are static.
sed -i '/--sport 67 --dport 68 -j ACCEPT/d' /etc/ufw/before.rules
sed -i '/--sport 547 .*--dport 546 -j ACCEPT/d' /etc/ufw/before6.rules
# lab up stops here if a ufw update reworded these lines and a deletion above found nothing.
if grep -E -e '-A ufw6?-before-(input|output) -p icmp(v6)? --icmp(v6)?-type echo-request' \
    -e '--dport (68|546) -j ACCEPT' /etc/ufw/before.rules /etc/ufw/before6.rules; then
    echo "ufw.sh: ufw's before rules still hold the admissions above" >&2
    exit 1
fi

ufw default deny incoming
ufw default deny outgoing
ufw default deny routed
# WireGuard wg-in from hospital only, on the carrier's IP-VPN.
ufw allow in on carrier-in from 10.98.10.10 to any port 51820 proto udp
ufw allow in on carrier-in from fd98:0:0:10::10 to any port 51820 proto udp
# SFTP from hospital inside the tunnel, and from proc-srv (and the auditor) on line-recv.
ufw allow in on wg-in from 10.98.100.10 to any port 22 proto tcp
ufw allow in on line-recv to any port 22 proto tcp
ufw --force enable
