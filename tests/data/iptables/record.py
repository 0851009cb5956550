"""Re-make the iptables samples of this directory from the real tools (run as root).

    .venv/bin/python tests/data/iptables/record.py

Everything happens in throwaway network namespaces named ``t-ipt-<pid>-…`` (deleted after),
so the host's own rule sets are never read or touched; ufw runs with private copies of its
state (the technique of tests/unit/topology/oracle/corpus.py, whose scripts are reused).

What is written, per rule set NAME:
  NAME.v4.legacy-save / NAME.v6.legacy-save   ``iptables-legacy-save`` / ``ip6tables-…``
  NAME.v4.nft-save / NAME.v6.nft-save         ``iptables-nft-save`` / ``ip6tables-nft-save``
  NAME.nft.json                                ``nft -j list ruleset`` of the iptables-nft side
and for the construct lists, ``constructs.json``: every ``-A`` line as iptables-nft-save printed
it, the text ``iptables-translate`` gives for it, and the expressions ``nft -j`` lists once that
text is loaded natively (null where the tool cannot translate the line).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import pairwise
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from tests.unit.topology.oracle.corpus import (  # noqa: E402
    DOCKER,
    LEGACY,
    UFW_PRELUDE,
    UFW_ROUTED,
    UFW_SERVER,
)

#: (table, rule) for iptables: every construct the translation reads.
CONSTRUCTS4 = [
    ("filter", "-N LOGDROP"),
    ("filter", "-N SUB"),
    ("filter", "-A INPUT -s 10.98.0.0/16 -d 10.98.1.2 -j ACCEPT"),
    ("filter", "-A INPUT ! -s 10.98.0.0/16 ! -d 10.98.1.2/32 -j DROP"),
    ("filter", "-A INPUT -i eth+ -j ACCEPT"),
    ("filter", "-A INPUT ! -i eth0 -j ACCEPT"),
    ("filter", "-A FORWARD -i eth0 ! -o lo+ -j ACCEPT"),
    ("filter", "-A INPUT -p tcp -j ACCEPT"),
    ("filter", "-A INPUT ! -p udp -j ACCEPT"),
    ("filter", "-A INPUT -p 47 -j ACCEPT"),
    ("filter", "-A INPUT -p 253 -j ACCEPT"),
    ("filter", "-A INPUT -p all -j ACCEPT"),
    ("filter", "-A INPUT -i eth0 -s 10.98.3.4 -p tcp -j ACCEPT"),
    ("filter", "-A INPUT -p tcp --sport 1000:2000 --dport 22 -j ACCEPT"),
    ("filter", "-A INPUT -p tcp ! --dport :1023 -j ACCEPT"),
    ("filter", "-A INPUT -p udp --dport 1024: -j ACCEPT"),
    ("filter", "-A INPUT -p udp ! --sport 53 -j ACCEPT"),
    ("filter", "-A INPUT -p sctp -m sctp --dport 99 -j ACCEPT"),
    ("filter", "-A INPUT -p tcp --syn -j DROP"),
    ("filter", "-A INPUT -p tcp ! --syn -m conntrack --ctstate NEW -j DROP"),
    ("filter", "-A INPUT -p tcp --tcp-flags SYN,RST,ACK SYN -j DROP"),
    ("filter", "-A INPUT -p tcp --tcp-flags ALL NONE -j DROP"),
    ("filter", "-A INPUT -p tcp --tcp-flags FIN,SYN FIN,SYN -j DROP"),
    ("filter", "-A INPUT -p tcp -m multiport --dports 22,80,1000:2000 -j ACCEPT"),
    ("filter", "-A INPUT -p tcp -m multiport ! --sports 22,80 -j ACCEPT"),
    ("filter", "-A INPUT -p udp -m multiport --dports 53 -j ACCEPT"),
    ("filter", "-A INPUT -p udp -m multiport --ports 53,67:68 -j ACCEPT"),
    ("filter", "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"),
    ("filter", "-A INPUT -m conntrack ! --ctstate INVALID -j ACCEPT"),
    ("filter", "-A INPUT -m conntrack --ctstate NEW,UNTRACKED -j ACCEPT"),
    ("filter", "-A INPUT -m conntrack --ctstate DNAT -j ACCEPT"),
    ("filter", "-A INPUT -m state --state NEW -j ACCEPT"),
    ("filter", "-A INPUT -p icmp -j ACCEPT"),
    ("filter", "-A INPUT -p icmp --icmp-type echo-request -j ACCEPT"),
    ("filter", "-A INPUT -p icmp --icmp-type 11 -j ACCEPT"),
    ("filter", "-A INPUT -p icmp --icmp-type 3/4 -j ACCEPT"),
    ("filter", "-A INPUT -p icmp --icmp-type any -j ACCEPT"),
    ("filter", "-A INPUT -m addrtype --dst-type LOCAL -j ACCEPT"),
    ("filter", "-A INPUT -m addrtype --src-type BROADCAST --limit-iface-in -j DROP"),
    ("filter", "-A INPUT -m addrtype ! --dst-type MULTICAST -j DROP"),
    ("filter", "-A OUTPUT -m addrtype --src-type LOCAL --limit-iface-out -j ACCEPT"),
    ("filter", "-A INPUT -m ttl --ttl-eq 64 -j ACCEPT"),
    ("filter", "-A INPUT -m ttl --ttl-lt 5 -j ACCEPT"),
    ("filter", "-A INPUT -m ttl --ttl-gt 5 -j ACCEPT"),
    ("filter", "-A INPUT -m iprange --src-range 10.98.0.1-10.98.0.9 -j ACCEPT"),
    ("filter", "-A INPUT -m iprange ! --dst-range 10.98.0.1-10.98.0.9 -j ACCEPT"),
    ("filter", '-A INPUT -p tcp --dport 22 -m comment --comment "a b \\"c\\"" -j ACCEPT'),
    ("filter", "-A INPUT -m limit --limit 3/min --limit-burst 7 -j ACCEPT"),
    ("filter", "-A INPUT -m limit --limit 10/sec -j ACCEPT"),
    ("filter", "-A INPUT -m mark --mark 0x1 -j ACCEPT"),
    ("filter", "-A INPUT -m mark --mark 0x1/0xff -j ACCEPT"),
    ("filter", "-A INPUT -m pkttype --pkt-type broadcast -j DROP"),
    ("filter", "-A INPUT -m recent --set --name seen -j ACCEPT"),
    ("filter", "-A INPUT -m recent --update --seconds 60 --hitcount 4 --name seen -j DROP"),
    ("filter", "-A INPUT -m recent --rcheck --name seen -j DROP"),
    ("filter", "-A INPUT -m hashlimit --hashlimit-name h --hashlimit-above 5/sec -j DROP"),
    ("filter", "-A INPUT -f -j DROP"),
    ("filter", "-A INPUT -j REJECT --reject-with icmp-port-unreachable"),
    ("filter", "-A INPUT -p tcp -j REJECT --reject-with tcp-reset"),
    ("filter", "-A INPUT -j REJECT --reject-with icmp-host-prohibited"),
    ("filter", "-A INPUT -j REJECT --reject-with icmp-admin-prohibited"),
    ("filter", "-A INPUT -j REJECT --reject-with icmp-net-unreachable"),
    ("filter", "-A INPUT -j REJECT"),
    ("filter", '-A INPUT -j LOG --log-prefix "[UFW BLOCK] " --log-level 4'),
    ("filter", "-A INPUT -j LOG"),
    ("filter", "-A INPUT -j NFLOG --nflog-group 2 --nflog-prefix x"),
    ("filter", "-A INPUT -j RETURN"),
    ("filter", "-A INPUT -j SUB"),
    ("filter", "-A INPUT -g LOGDROP"),
    ("filter", "-A INPUT -j NFQUEUE --queue-num 3"),
    ("filter", "-A INPUT -j NFQUEUE --queue-num 3 --queue-bypass"),
    ("filter", "-A SUB -s 10.98.5.0/24 -j RETURN"),
    ("filter", "-A LOGDROP -j LOG --log-prefix dropped"),
    ("filter", "-A LOGDROP -j DROP"),
    ("mangle", "-A PREROUTING -j MARK --set-mark 0x5"),
    ("mangle", "-A PREROUTING -j MARK --set-xmark 0x5/0xff"),
    ("mangle", "-A PREROUTING -j CONNMARK --set-mark 0x5"),
    ("mangle", "-A PREROUTING -j CONNMARK --save-mark"),
    ("mangle", "-A POSTROUTING -j CLASSIFY --set-class 1:1"),
    ("mangle", "-A FORWARD -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu"),
    ("mangle", "-A FORWARD -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1400"),
    ("nat", "-A PREROUTING -p tcp --dport 80 -j DNAT --to-destination 10.98.0.2:8080"),
    ("nat", "-A PREROUTING -p tcp --dport 81 -j DNAT --to-destination 10.98.0.2"),
    (
        "nat",
        "-A PREROUTING -p tcp --dport 82 -j DNAT --to-destination 10.98.0.2-10.98.0.5:8000-8010",
    ),
    ("nat", "-A PREROUTING -p tcp --dport 83 -j REDIRECT --to-ports 8080"),
    ("nat", "-A POSTROUTING -o eth0 -j MASQUERADE"),
    ("nat", "-A POSTROUTING -o eth1 -p tcp -j MASQUERADE --to-ports 1024-2000"),
    ("nat", "-A POSTROUTING -o eth2 -j SNAT --to-source 10.98.9.9"),
    ("nat", "-A POSTROUTING -o eth3 -p udp -j SNAT --to-source 10.98.9.9:1000-2000"),
    ("raw", "-A PREROUTING -p udp --dport 123 -j NOTRACK"),
    ("raw", "-A OUTPUT -p udp --sport 123 -j CT --notrack"),
    ("security", "-A INPUT -j ACCEPT"),
    ("filter", "-P INPUT DROP"),
    ("filter", "-P FORWARD DROP"),
]

CONSTRUCTS6 = [
    ("filter", "-A INPUT -s fd98::/16 ! -d ::1 -p ipv6-icmp -j ACCEPT"),
    ("filter", "-A INPUT -p ipv6-icmp --icmpv6-type echo-request -j ACCEPT"),
    ("filter", "-A INPUT -p ipv6-icmp --icmpv6-type 135 -j ACCEPT"),
    ("filter", "-A INPUT -p ipv6-icmp --icmpv6-type 1/3 -j ACCEPT"),
    ("filter", "-A INPUT -m rt --rt-type 0 -j DROP"),
    ("filter", "-A INPUT -m hl --hl-eq 255 -j ACCEPT"),
    ("filter", "-A INPUT -m hl --hl-lt 5 -j ACCEPT"),
    ("filter", "-A INPUT -m hl --hl-gt 5 -j ACCEPT"),
    ("filter", "-A INPUT -m addrtype --dst-type LOCAL --limit-iface-in -j ACCEPT"),
    ("filter", "-A INPUT -p tcp --dport 22 -m conntrack --ctstate NEW -j ACCEPT"),
    ("filter", "-A INPUT -p tcp -j ACCEPT"),
    ("filter", "-A INPUT -p udp -m multiport --dports 53,547 -j ACCEPT"),
    ("filter", "-A INPUT -j REJECT --reject-with icmp6-adm-prohibited"),
    ("filter", "-A INPUT -j REJECT --reject-with icmp6-port-unreachable"),
    ("filter", "-A INPUT -p tcp -j REJECT --reject-with tcp-reset"),
    ("nat", "-A PREROUTING -p tcp --dport 80 -j DNAT --to-destination [fd98::2]:8080"),
    ("nat", "-A POSTROUTING -o eth0 -j MASQUERADE"),
    ("filter", "-P INPUT DROP"),
]


def run(*argv: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)}: {done.stderr.strip()}")
    return done.stdout


@contextmanager
def namespace(tag: str) -> Iterator[str]:
    name = f"t-ipt-{os.getpid()}-{tag}"
    run("ip", "netns", "add", name)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=60, check=False)


def in_ns(ns: str, *argv: str, stdin: str | None = None) -> str:
    return run("ip", "netns", "exec", ns, *argv, stdin=stdin)


def script_in(ns: str, script: str) -> None:
    in_ns(ns, "unshare", "-m", "--propagation", "private", "sh", "-c", script)


def without_dates(text: str) -> str:
    """The save tools' header and footer carry the time: kept, but fixed, so that re-making
    the samples changes nothing that did not change."""
    lines = []
    for line in text.splitlines():
        dated = line.startswith(("# Generated by ", "# Completed on "))
        lines.append(line.split(" on ")[0] + " on Thu Jan  1 00:00:00 1970" if dated else line)
    return "\n".join(lines) + "\n"


def save_both(ns: str, backend: str) -> dict[str, str]:
    return {
        "v4": without_dates(in_ns(ns, f"iptables-{backend}-save")),
        "v6": without_dates(in_ns(ns, f"ip6tables-{backend}-save")),
    }


def record_script(name: str, nft_script: str, legacy_script: str | None) -> None:
    """One rule set written by the same commands through both backends."""
    with namespace("n") as ns:
        script_in(ns, nft_script)
        for version, text in save_both(ns, "nft").items():
            (HERE / f"{name}.{version}.nft-save").write_text(text)
        listing = json.loads(in_ns(ns, "nft", "-j", "list", "ruleset"))
        (HERE / f"{name}.nft.json").write_text(json.dumps(listing, indent=1) + "\n")
    if legacy_script is None:
        return
    with namespace("l") as ns:
        script_in(ns, legacy_script)
        for version, text in save_both(ns, "legacy").items():
            (HERE / f"{name}.{version}.legacy-save").write_text(text)


def commands(tool: str, constructs: list[tuple[str, str]]) -> str:
    return "set -e\n" + "\n".join(f"{tool} -t {t} {rule}" for t, rule in constructs) + "\n"


def translate(family: str, table: str, line: str) -> str | None:
    """``iptables-translate``'s nft text for one saved line; None when it cannot."""
    tool = "iptables-translate" if family == "ip" else "ip6tables-translate"
    done = subprocess.run(
        [tool, "-t", table, *shlex.split(line)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    text = done.stdout.strip()
    if done.returncode != 0 or not text.startswith("nft 'add rule") or not text.endswith("'"):
        return None
    return text.removeprefix("nft '").removesuffix("'")


def native_exprs(family: str, table: str, chain: str, nft_text: str) -> list[Any] | None:
    """The expressions ``nft -j`` lists for the translated rule, loaded natively; None when
    nft refuses the translation (iptables-translate does not escape quotes in comments)."""
    chains = {chain, *(w for v, w in pairwise(nft_text.split()) if v in JUMPS)}
    script = f"add table {family} {table}\n"
    script += "".join(f"add chain {family} {table} {name}\n" for name in sorted(chains))
    script += nft_text + "\n"
    with namespace("x") as ns:
        try:
            in_ns(ns, "nft", "-f", "-", stdin=script)
        except RuntimeError:
            return None
        listing = json.loads(in_ns(ns, "nft", "-j", "list", "ruleset"))
    rules = [o["rule"] for o in listing["nftables"] if "rule" in o]
    assert len(rules) == 1, nft_text
    exprs: list[Any] = rules[0]["expr"]
    return exprs


JUMPS = ("jump", "goto")

#: Native rules for what iptables-translate cannot write (icmp codes), and the names nft
#: lists for every icmp type and the flag forms, loaded as they are: (family, nft rule).
NATIVE = [
    ("ip", "icmp type 3 icmp code 4 accept"),
    ("ip6", "icmpv6 type 1 icmpv6 code 3 accept"),
    ("ip", "icmp type { 0, 3, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 30 } accept"),
    (
        "ip6",
        "icmpv6 type { 1, 2, 3, 4, 128, 129, 130, 131, 132, 133, 134, 135, 136, 137, 138, 141,"
        " 142, 143, 200 } accept",
    ),
    ("ip", "tcp flags & syn == syn accept"),
    ("ip", "tcp flags & (fin|syn) != 0x0 accept"),
    ("ip", "tcp flags & (fin|syn) != fin|syn accept"),
    ("ip", "fib daddr type { local, broadcast } accept"),
    ("ip", "ct status { dnat, snat } accept"),
    ("ip", "pkttype host accept"),
    ("ip", "log level info accept"),
    ("ip", "redirect"),
    ("ip", "ct status snat,dnat accept"),
    ("ip", "ct state ! invalid,new accept"),
    ("ip", "mark != 0x1 accept"),
    ("ip", "meta mark set mark or 0x10"),
    ("ip", "meta mark set mark and 0xffffff00"),
    ("ip", "meta mark set mark and 0xffffff00 xor 0x5"),
    ("ip", "meta mark set mark and 0xffffff0f xor 0x30"),
    ("ip", "log group 0"),
    ("ip", "ip ttl != 5 accept"),
    ("ip", "tcp flags & (fin|syn) == 0x0 accept"),
]


def record_native() -> list[dict[str, Any]]:
    cases = []
    for family, text in NATIVE:
        exprs = native_exprs(family, "filter", "INPUT", f"add rule {family} filter INPUT {text}")
        cases.append({"family": family, "native": text, "expr": exprs})
    return cases


def record_constructs() -> None:
    cases = []
    for family, tool_suffix, constructs in (
        ("ip", "v4", CONSTRUCTS4),
        ("ip6", "v6", CONSTRUCTS6),
    ):
        tool = "iptables-nft" if family == "ip" else "ip6tables-nft"
        with namespace("c") as ns:
            script_in(ns, commands(tool, constructs))
            saved = in_ns(ns, f"{tool}-save")
        table = ""
        for line in saved.splitlines():
            if line.startswith("*"):
                table = line[1:]
            if not line.startswith("-A "):
                continue
            chain = shlex.split(line)[1]
            text = translate(family, table, line)
            exprs = native_exprs(family, table, chain, text) if text is not None else None
            cases.append(
                {"family": family, "table": table, "line": line, "nft": text, "expr": exprs}
            )
        print(f"{tool_suffix}: {sum(c['family'] == family for c in cases)} lines")
    cases += record_native()
    (HERE / "constructs.json").write_text(json.dumps(cases, indent=1) + "\n")
    legacy4 = commands("iptables-legacy", CONSTRUCTS4)
    legacy6 = commands("ip6tables-legacy", CONSTRUCTS6)
    nft4, nft6 = commands("iptables-nft", CONSTRUCTS4), commands("ip6tables-nft", CONSTRUCTS6)
    record_script("constructs", nft4 + nft6, legacy4 + legacy6)


#: Each built-in chain of every table, as iptables-nft registers it once used.
BUILTINS = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "raw": ("PREROUTING", "OUTPUT"),
    "security": ("INPUT", "FORWARD", "OUTPUT"),
}


def record_builtins() -> None:
    lines = ["set -e"]
    for tool in ("iptables-nft", "ip6tables-nft"):
        for table, chains in BUILTINS.items():
            lines += [f"{tool} -t {table} -A {chain} -j ACCEPT" for chain in chains]
    with namespace("b") as ns:
        script_in(ns, "\n".join(lines) + "\n")
        listing = json.loads(in_ns(ns, "nft", "-j", "list", "chains"))
    bodies: list[dict[str, Any]] = [o["chain"] for o in listing["nftables"] if "chain" in o]
    for body in bodies:
        body.pop("handle", None)
    (HERE / "builtin-chains.json").write_text(json.dumps(bodies, indent=1) + "\n")


#: Tables nft-native rules were added to: "filter" gets a rule iptables cannot show (saved as
#: "is incompatible"), "mangle" a base chain of its own ("contains incompatible base-chains"),
#: and "raw" a set lookup that iptables-nft-save 1.8.9 prints without the lookup (a broader
#: rule than the kernel runs: why only ``xt`` rules may be taken from the save listing).
INCOMPATIBLE = """
set -e
iptables-nft -A INPUT -s 10.98.1.0/24 -j ACCEPT
nft add rule ip filter INPUT meta l4proto tcp ct count over 5 drop
iptables-nft -t mangle -A PREROUTING -j ACCEPT
nft add chain ip mangle own '{ type filter hook input priority 5; }'
iptables-nft -t raw -A PREROUTING -j ACCEPT
nft add rule ip raw PREROUTING ip saddr '{ 10.98.1.1, 10.98.1.2 }' notrack
"""


def docker_script(backend: str) -> str:
    """corpus.DOCKER for one backend (it names the backend in $BACKEND; older copies of it
    named iptables-nft)."""
    if "$BACKEND" in DOCKER:
        return f"BACKEND={backend}\n{DOCKER}"
    return DOCKER.replace("tables-nft", f"tables-{backend}")


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("run as root: the samples are recorded in throwaway network namespaces")
    record_builtins()
    record_constructs()
    record_script("docker", docker_script("nft"), docker_script("legacy"))
    record_script("ufw-server", UFW_PRELUDE + UFW_SERVER, None)
    record_script("ufw-routed", UFW_PRELUDE + UFW_ROUTED, None)
    record_script("legacy-host", LEGACY.replace("-legacy", "-nft"), LEGACY)
    record_script("incompatible", INCOMPATIBLE, None)


if __name__ == "__main__":
    main()
