"""The rule sets of the corpus, each written by a real tool inside the ``fw`` namespace.

Every builder runs in ``ip netns exec FW unshare -m``: the tool sees only the namespace's
netfilter, and ufw's state (/etc/ufw, /lib/ufw, /etc/default/ufw) is a private copy bind-mounted
over the host's in that private mount namespace, so the host's files and rules are never
touched and ufw is never enabled on the host.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.unit.topology.oracle.netlab import Netlab, NetlabError

EXAMPLES = Path("/usr/share/doc/nftables/examples")

#: Runs ufw with private copies of its state; the commands follow.
UFW_PRELUDE = r"""
set -e
state=$(mktemp -d /tmp/oracle-ufw.XXXXXX)
trap 'umount /etc/default/ufw /lib/ufw /etc/ufw 2>/dev/null; rm -rf "$state"' EXIT
mkdir -p "$state/etc" "$state/lib"
cp -a /etc/ufw "$state/etc/ufw"
cp -a /lib/ufw "$state/lib/ufw"
cp /etc/default/ufw "$state/default"
# The namespace's sysctls are fw's own; keep them as the probes need them.
sed -i 's|^IPT_SYSCTL=.*|IPT_SYSCTL=/dev/null|' "$state/default"
mount --bind "$state/etc/ufw" /etc/ufw
mount --bind "$state/lib/ufw" /lib/ufw
mount --bind "$state/default" /etc/default/ufw
ufw --force reset >/dev/null
"""

UFW_SERVER = """
ufw default deny incoming
ufw default allow outgoing
ufw allow from 10.98.10.0/24 to any port 22 proto tcp
ufw allow from fd98:0:0:10::/64 to any port 22 proto tcp
ufw allow 443
ufw limit ssh
ufw --force enable
"""

UFW_ROUTED = """
ufw default deny incoming
ufw default allow outgoing
ufw default deny routed
ufw allow 22/tcp
ufw route allow in on eth0 out on docker0 to 10.98.251.0/24 port 80 proto tcp
ufw route allow in on eth0 out on docker0 to fd98:0:0:251::/64 port 80 proto tcp
ufw route allow in on docker0 out on eth0
ufw route deny in on eth0 out on docker0 proto udp
ufw --force enable
"""

#: What dockerd (bridge driver, one container 172.17.0.2 publishing 8080 -> 80) writes, in
#: the order it writes it, through the iptables-nft backend; IPv6 as with "ip6tables": true.
DOCKER = r"""
set -e
for v in 4 6; do
  if [ $v = 4 ]; then ipt=iptables-$BACKEND; net=172.17.0.0/16; c=172.17.0.2; lo=127.0.0.0/8
  else ipt=ip6tables-$BACKEND; net=fd98:0:0:17::/64; c=fd98:0:0:17::2; lo=::1/128; fi
  $ipt -t nat -N DOCKER
  $ipt -t nat -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
  $ipt -t nat -A OUTPUT ! -d $lo -m addrtype --dst-type LOCAL -j DOCKER
  $ipt -t nat -A POSTROUTING -s $net ! -o docker0 -j MASQUERADE
  $ipt -t nat -A DOCKER -i docker0 -j RETURN
  $ipt -t filter -N DOCKER
  $ipt -t filter -N DOCKER-ISOLATION-STAGE-1
  $ipt -t filter -N DOCKER-ISOLATION-STAGE-2
  $ipt -t filter -N DOCKER-USER
  $ipt -t filter -P FORWARD DROP
  $ipt -t filter -A FORWARD -j DOCKER-USER
  $ipt -t filter -A FORWARD -j DOCKER-ISOLATION-STAGE-1
  $ipt -t filter -A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
  $ipt -t filter -A FORWARD -o docker0 -j DOCKER
  $ipt -t filter -A FORWARD -i docker0 ! -o docker0 -j ACCEPT
  $ipt -t filter -A FORWARD -i docker0 -o docker0 -j ACCEPT
  $ipt -t filter -A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
  $ipt -t filter -A DOCKER-ISOLATION-STAGE-1 -j RETURN
  $ipt -t filter -A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP
  $ipt -t filter -A DOCKER-ISOLATION-STAGE-2 -j RETURN
  $ipt -t filter -A DOCKER-USER -j RETURN
  # docker run -p 8080:80
  $ipt -t filter -A DOCKER -d $c ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT
  $ipt -t nat -A POSTROUTING -s $c -d $c -p tcp -m tcp --dport 80 -j MASQUERADE
  $ipt -t nat -A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination \
    $( [ $v = 4 ] && echo $c:80 || echo [$c]:80 )
  # An administrator's DOCKER-USER rule, as the Docker documentation suggests.
  if [ $v = 4 ]; then
    $ipt -t filter -I DOCKER-USER -i eth0 ! -s 10.98.20.0/24 -j DROP
  fi
done
"""

#: firewalld (nftables backend) with a private system bus: its configuration is a private copy
#: written with firewall-offline-cmd, /run and /var/log are private, and it is told to leave its
#: rules when stopped (CleanupOnExit=no), so the rule set outlives the daemon.
FIREWALLD = r"""
set -e
state=$(mktemp -d /tmp/oracle-firewalld.XXXXXX)
trap 'rm -rf "$state"' EXIT
cp -a /etc/firewalld "$state/etc"
mkdir -p "$state/log"
sed -i 's/^CleanupOnExit=.*/CleanupOnExit=no/' "$state/etc/firewalld.conf"
mount --bind "$state/etc" /etc/firewalld
mount -t tmpfs oracle-run /run
mount --bind "$state/log" /var/log
mkdir -p /run/dbus
offline() { firewall-offline-cmd "$@" >/dev/null; }
offline --zone=public --add-interface=eth0
offline --zone=trusted --add-interface=docker0
offline --zone=public --add-service=https
offline --zone=public --add-rich-rule='rule family="ipv4" source address="10.98.10.0/24" port port="8443" protocol="tcp" accept'
offline --zone=public --add-rich-rule='rule family="ipv6" source address="fd98:0:0:10::/64" service name="ssh" reject'
offline --zone=public --add-forward-port=port=8080:proto=tcp:toport=80:toaddr=10.98.250.2
dbus-daemon --system --nofork --nopidfile &
bus=$!
firewalld --nofork --nopid >"$state/firewalld.out" 2>&1 &
daemon=$!
ready=no
for _ in $(seq 1 120); do
  if firewall-cmd --state >/dev/null 2>&1; then ready=yes; break; fi
  sleep 0.25
done
kill $daemon; wait $daemon || true
kill $bus; wait $bus || true
[ $ready = yes ] || { cat "$state/firewalld.out" >&2; exit 1; }
"""

#: A host firewall kept with iptables-legacy: the nft listing of it is empty.
LEGACY = """
set -e
iptables-legacy -A INPUT -i lo -j ACCEPT
iptables-legacy -A INPUT -p tcp --dport 22 -s 10.98.249.0/24 -j ACCEPT
iptables-legacy -P INPUT DROP
ip6tables-legacy -A INPUT -p tcp --dport 22 -j ACCEPT
ip6tables-legacy -P INPUT DROP
"""


#: A legacy host firewall with an ipset blocklist (as fail2ban's or a hand-kept one): sets of
#: networks and of single addresses, v4 and v6, looked up by source and by destination.
IPSET_LEGACY = """
set -e
ipset create blocked hash:net
ipset add blocked 10.98.249.128/25
ipset add blocked 10.98.251.0/28
ipset create admins hash:ip
ipset add admins 10.98.249.1
ipset create blocked6 hash:net family inet6
ipset add blocked6 fd98:0:0:249::/126
iptables-legacy -A INPUT -i lo -j ACCEPT
iptables-legacy -A INPUT -m set --match-set blocked src -j DROP
iptables-legacy -A INPUT -p tcp --dport 22 -m set --match-set admins src -j ACCEPT
iptables-legacy -A INPUT -p udp -j ACCEPT
iptables-legacy -P INPUT DROP
iptables-legacy -A FORWARD -m set ! --match-set blocked dst -j ACCEPT
iptables-legacy -P FORWARD DROP
ip6tables-legacy -A INPUT -m set --match-set blocked6 src -j DROP
ip6tables-legacy -P INPUT ACCEPT
"""


@dataclass(frozen=True)
class Source:
    """One rule set of the corpus: how a real tool builds it in fw."""

    name: str
    tool: str
    build: Callable[[Netlab], None]
    legacy: bool = False  #: rules the nft listing cannot show (read from iptables-legacy-save)


def _shell(script: str) -> Callable[[Netlab], None]:
    def build(lab: Netlab) -> None:
        lab.run("fw", "unshare", "-m", "--propagation", "private", "sh", "-c", script)

    return build


def _example(path: Path) -> Callable[[Netlab], None]:
    def build(lab: Netlab) -> None:
        lab.run("fw", "nft", "-f", str(path))

    return build


def _loadable_examples(lab: Netlab) -> list[Source]:
    """Debian's examples that the kernel accepts in a namespace (a check load, then none)."""
    found = []
    for path in sorted(EXAMPLES.glob("*.nft")):
        lab.clear()
        try:
            lab.run("fw", "nft", "-c", "-f", str(path))
        except NetlabError:
            continue
        found.append(Source(f"nft-example-{path.stem}", "nftables example", _example(path)))
    return found


def sources(lab: Netlab) -> list[Source]:
    """Every rule set the tools on this machine can build (names are stable across runs)."""
    found = []
    if shutil.which("ufw"):
        found += [
            Source("ufw-server", "ufw", _shell(UFW_PRELUDE + UFW_SERVER)),
            Source("ufw-routed", "ufw", _shell(UFW_PRELUDE + UFW_ROUTED)),
        ]
    if shutil.which("firewalld") and shutil.which("dbus-daemon"):
        found.append(Source("firewalld-public", "firewalld", _shell(FIREWALLD)))
    if shutil.which("iptables-nft"):
        docker = _shell("BACKEND=nft\n" + DOCKER)
        found.append(Source("docker-iptables-nft", "iptables-nft", docker))
    if EXAMPLES.is_dir():
        found += _loadable_examples(lab)
    if shutil.which("iptables-legacy"):
        found.append(Source("iptables-legacy", "iptables-legacy", _shell(LEGACY), legacy=True))
        docker = _shell("BACKEND=legacy\n" + DOCKER)
        found.append(Source("docker-iptables-legacy", "iptables-legacy", docker, legacy=True))
        if shutil.which("ipset"):
            ipset = _shell(IPSET_LEGACY)
            found.append(Source("ipset-legacy", "iptables-legacy", ipset, legacy=True))
    return found
