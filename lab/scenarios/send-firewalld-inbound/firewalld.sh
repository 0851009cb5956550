#!/bin/sh
# send-srv's packet filter kept by firewalld (nftables backend), zones as an administrator would
# set them: line-send in a zone admitting SSH (SFTP from proc-srv), carrier-out and wg-out in
# the drop zone, but carrier-out's zone also opens 8443/tcp (the violation). firewalld filters
# nothing outbound by default. It runs on a system bus of its own (no systemd in the lab).
set -eu

offline() { firewall-offline-cmd "$@" >/dev/null; }
offline --set-default-zone=drop
offline --new-zone=lab-line-send
offline --zone=lab-line-send --set-target=DROP
offline --zone=lab-line-send --add-interface=line-send
offline --zone=lab-line-send --add-service=ssh
offline --zone=drop --add-interface=carrier-out
offline --zone=drop --add-interface=wg-out
offline --zone=drop --add-port=8443/tcp

mkdir -p /run/dbus
dbus-daemon --system --fork
setsid -f firewalld --nofork --nopid >/var/log/lab/firewalld.log 2>&1
for _ in $(seq 100); do
    if firewall-cmd --state >/dev/null 2>&1; then
        exit 0
    fi
    sleep 0.1
done
echo "firewalld.sh: firewalld did not come up" >&2
cat /var/log/lab/firewalld.log >&2
exit 1
