#!/bin/sh
# send-srv's packet filter written with ufw (iptables-nft backend, Debian's default), carrying
# the baseline rule set's policy (lab/hosts/send-srv/rootfs/etc/nftables.conf): it accepts SFTP
# from proc-srv on line-send only, and sends to recipient through wg-out.
set -eu

# ufw's /etc/ufw/sysctl.conf cannot be applied here (a container's /proc/sys is read-only; the
# lab sets the host's sysctls when it creates the container) and changes no forwarding anyway.
sed -i 's|^IPT_SYSCTL=.*|IPT_SYSCTL=/dev/null|' /etc/default/ufw

# ufw's before rules admit more than the baseline does, whatever the user rules say; an
# administrator closes that in before.rules and before6.rules, the files ufw-framework(8) leaves
# administrators to customise:
# - pings from anywhere (ICMP and ICMPv6 echo requests are new connections from outside),
sed -i '/-A ufw-before-input -p icmp --icmp-type echo-request -j ACCEPT/d' /etc/ufw/before.rules
sed -i '/-A ufw6-before-input -p icmpv6 --icmpv6-type echo-request -j ACCEPT/d' /etc/ufw/before6.rules
# - IPv6 pings from this host to anywhere,
sed -i '/-A ufw6-before-output -p icmpv6 --icmpv6-type echo-request -j ACCEPT/d' /etc/ufw/before6.rules
# - DHCP client replies (UDP from port 67 to 68 is a new connection from the carrier's network to
#   the firewall, answered or not): the addresses are static.
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
# SFTP from proc-srv (and the auditor) on line-send.
ufw allow in on line-send to any port 22 proto tcp
# WireGuard wg-out to recipient's carrier-out address, and SFTP inside the tunnel.
ufw allow out on carrier-out to 10.98.11.10 port 51820 proto udp
ufw allow out on carrier-out to fd98:0:0:11::10 port 51820 proto udp
ufw allow out on wg-out to 10.98.101.10 port 22 proto tcp
ufw --force enable
