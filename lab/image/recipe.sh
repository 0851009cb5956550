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

# The lab's own package repository (security-updates-applied): no host may reach a Debian
# mirror, so apt's only source is a file: repository in the image. A tiny package "labtool"
# 1.0-1 is installed; /opt/lab/apt has the suites "lab" (1.0-1) and "lab-security" (empty),
# /opt/lab/apt-pending the same with 1.0-2 in "lab-security" (the security-update-pending
# scenario points send-srv's sources there). Unsigned: [trusted=yes] in sources.list.
build_labtool() {
    dir=/tmp/labtool-$1
    mkdir -p "$dir/DEBIAN" "$dir/usr/share/doc/labtool"
    printf 'labtool %s: a package of the reference lab.\n' "$1" >"$dir/usr/share/doc/labtool/README"
    printf 'Package: labtool\nVersion: %s\nArchitecture: all\nMaintainer: Lab <lab@invalid>\nDescription: reference lab package\n' "$1" >"$dir/DEBIAN/control"
    dpkg-deb --root-owner-group --build "$dir" "/tmp/labtool_$1_all.deb" >/dev/null
    rm -rf "$dir"
}
lab_suite() {  # ROOT SUITE DEB...
    root=$1 suite=$2; shift 2
    mkdir -p "$root/pool" "$root/dists/$suite/main/binary-$arch"
    for deb in "$@"; do cp "$deb" "$root/pool/"; done
    (cd "$root" && for deb in "$@"; do apt-ftparchive packages "pool/$(basename "$deb")"; done) \
        >"$root/dists/$suite/main/binary-$arch/Packages"
    apt-ftparchive -o APT::FTPArchive::Release::Origin=Lab -o APT::FTPArchive::Release::Label=Lab \
        -o APT::FTPArchive::Release::Suite="$suite" -o APT::FTPArchive::Release::Codename="$suite" \
        -o APT::FTPArchive::Release::Architectures="$arch" -o APT::FTPArchive::Release::Components=main \
        release "$root/dists/$suite" >"$root/dists/$suite/Release.new"
    mv "$root/dists/$suite/Release.new" "$root/dists/$suite/Release"
}
arch=$(dpkg --print-architecture)
build_labtool 1.0-1
build_labtool 1.0-2
lab_suite /opt/lab/apt lab /tmp/labtool_1.0-1_all.deb
lab_suite /opt/lab/apt lab-security
lab_suite /opt/lab/apt-pending lab /tmp/labtool_1.0-1_all.deb
lab_suite /opt/lab/apt-pending lab-security /tmp/labtool_1.0-2_all.deb
dpkg -i /tmp/labtool_1.0-1_all.deb >/dev/null
rm -f /tmp/labtool_*.deb
rm -f /etc/apt/sources.list.d/*
printf 'deb [trusted=yes] file:/opt/lab/apt lab main\ndeb [trusted=yes] file:/opt/lab/apt lab-security main\n' >/etc/apt/sources.list

# AIDE's database of the image (unexpected-operation-detection): made here, with the same
# configuration lab hosts get, so that their scheduled check has something to compare with.
# Its postinst does not run aide; Debian's aide-common (aideinit) is not installed.
mkdir -p /etc/aide /var/lib/aide
cat >/tmp/aide-image.conf <<'AIDE'
database_out=file:/var/lib/aide/aide.db
gzip_dbout=no
Checked = p+i+n+u+g+s+m+c+sha256
/etc Checked
/usr/bin Checked
/usr/sbin Checked
/usr/local Checked
/root Checked
!/etc/machine-id$
!/etc/ld.so.cache$
AIDE
aide --config /tmp/aide-image.conf --init >/dev/null
rm -f /tmp/aide-image.conf
chmod 600 /var/lib/aide/aide.db

# The image carries no package lists and no caches.
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/* /var/log/dpkg.log
rm -f /etc/machine-id /var/lib/dbus/machine-id
: > /etc/machine-id
