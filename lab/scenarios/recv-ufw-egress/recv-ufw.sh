#!/bin/sh
# recv-srv's packet filter written with ufw (iptables-nft backend), admitting what the baseline
# admits inbound but keeping ufw's own default for outgoing traffic: allow. Every new
# connection may leave this host.
set -eu

# ufw's /etc/ufw/sysctl.conf cannot be applied here (a container's /proc/sys is read-only; the
# lab sets the host's sysctls when it creates the container) and changes no forwarding anyway.
sed -i 's|^IPT_SYSCTL=.*|IPT_SYSCTL=/dev/null|' /etc/default/ufw

ufw default deny incoming
ufw default allow outgoing
ufw default deny routed
# WireGuard wg-in from hospital only, on the carrier's IP-VPN.
ufw allow in on carrier-in from 10.98.10.10 to any port 51820 proto udp
ufw allow in on carrier-in from fd98:0:0:10::10 to any port 51820 proto udp
# SFTP from hospital inside the tunnel, and from proc-srv (and the auditor) on line-recv.
ufw allow in on wg-in from 10.98.100.10 to any port 22 proto tcp
ufw allow in on line-recv to any port 22 proto tcp
ufw --force enable
