#!/bin/bash
# How the lab-org.*, lab-org-emptypw.*, lab-security-update-pending.* and lab-fail2ban.* outputs
# were recorded (authentication-hardening, security-updates-applied): in a throwaway container
# of the lab image (no network), with the organisation hosts' files and the scenarios' files
# mounted. lab-weak-authentication.* come from the running lab (weak-authentication scenario).
#
#   IMAGE=$(.venv/bin/python -c 'from lab.build import current_recipe as r; print(r().base_ref)')
#   apt-get download fail2ban   # into $PWD/debs, for the fail2ban status only
#   CONTAINERS_CONF=lab/containers.conf podman run --rm --network none \
#     -v $PWD/lab/hosts/_organisation/rootfs:/overlay:ro \
#     -v $PWD/lab/scenarios/security-update-pending:/scenario-pending:ro \
#     -v $PWD/debs:/debs:ro -v /tmp/out:/out -v $PWD/tests/data/recorded/record_lab_auth_apt.sh:/r.sh:ro \
#     --entrypoint /bin/bash "$IMAGE" /r.sh
set -u
cp -a /overlay/. /
ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key >/dev/null; mkdir -p /run/sshd
apt-get -qq update
/usr/sbin/sshd -T > /out/lab-org.sshd-T.txt
grep -RHn ^ /etc/ssh/sshd_config /etc/ssh/sshd_config.d > /out/lab-org.grep-sshd-config.txt
passwd -S -a > /out/lab-org.passwd-S-a.txt
cat /etc/security/faillock.conf > /out/lab-org.faillock.conf.txt
grep -RHn ^ /etc/pam.d > /out/lab-org.grep-pam.d.txt
su -s /bin/sh auditor -c "apt-get -s -o Debug::NoLocking=1 dist-upgrade" > /out/lab-org.apt-simulation.txt
su -s /bin/sh auditor -c "date -u +%s; find /var/lib/apt/lists -maxdepth 1 -name '*Release' -printf '%T@ %p\n'" > /out/lab-org.apt-lists-times.txt
cp /scenario-pending/sources.list /etc/apt/sources.list && apt-get -qq update
su -s /bin/sh auditor -c "apt-get -s -o Debug::NoLocking=1 dist-upgrade" > /out/lab-security-update-pending.apt-simulation.txt
useradd -M nopass && passwd -d nopass >/dev/null && passwd -S -a > /out/lab-org-emptypw.passwd-S-a.txt
# fail2ban 1.0.2 (bookworm), an sshd jail, its status and process line
dpkg -i /debs/fail2ban_*.deb >/dev/null 2>&1
touch /var/log/auth.log; rm -f /etc/fail2ban/jail.d/defaults-debian.conf; mkdir -p /run/fail2ban
printf '[sshd]\nenabled = true\nbackend = polling\nlogpath = /var/log/auth.log\nbanaction = nftables\n' > /etc/fail2ban/jail.d/lab.conf
fail2ban-client start >/dev/null 2>&1; sleep 3
fail2ban-client status sshd > /out/lab-fail2ban.fail2ban-client-status-sshd.txt
ps -eo pid=,user=,comm=,args= | grep '[f]ail2ban-server' > /out/lab-fail2ban.ps.txt
