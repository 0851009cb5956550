#!/bin/sh
# Runs inside the freshly debootstrapped root file system (chroot), once per image build.
# Everything host-specific (keys, addresses, rule sets, users' authorized keys) is copied in
# per lab by `auditor lab up`; this only prepares what every lab host has in common.
set -eu

# Host keys are generated per host per lab: none may be baked into the shared image.
rm -f /etc/ssh/ssh_host_*

# The audit account and the data-transfer account. A '*' password: no password login is
# possible, yet the account is not "locked", so sshd accepts public keys without PAM.
useradd --create-home --uid 1001 --shell /bin/bash auditor
useradd --create-home --uid 1002 --shell /bin/bash xfer
usermod --password '*' auditor
usermod --password '*' xfer

# Containers cannot read the kernel log; rsyslog would complain about it every start.
sed -i 's/^module(load="imklog"/#&/' /etc/rsyslog.conf

# No systemd runs in the containers: the journald configuration is what an auditor reads.
mkdir -p /etc/systemd /var/log/journal /var/log/lab /run/sshd

# The VNC server is only for the remote-control scenario: a baseline host must not have
# remote-control software installed. debootstrap installed it (so its dependencies are in
# place); keep its .deb files for the scenario to install offline, then remove it.
mkdir -p /opt/lab/debs
for pkg in tigervnc-standalone-server tigervnc-common; do
    ls /var/cache/apt/archives/${pkg}_*.deb >/dev/null 2>&1 || { echo "no .deb of $pkg kept" >&2; exit 1; }
    cp /var/cache/apt/archives/${pkg}_*.deb /opt/lab/debs/
done
dpkg --purge tigervnc-standalone-server tigervnc-common

# The image carries no package lists and no caches.
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/* /var/log/dpkg.log
rm -f /etc/machine-id /var/lib/dbus/machine-id
: > /etc/machine-id
