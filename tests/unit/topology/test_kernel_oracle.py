"""The engine against the Linux kernel: one new-connection packet, one rule, both asked.

Two throwaway namespaces joined by a veth pair (``cl`` sends, ``fw`` receives; only
10.98.248.0/24 and fd98:0:0:248::/64, reserved for these tests, and nothing leaves the pair).
Each case loads a small rule set with ``nft -f`` into one namespace (``fw`` for the input
hook, ``cl`` for output), sends one packet (a TCP SYN, a UDP datagram or an echo request)
and reads two counters: one before the rule under test (the packet reached the hook) and a
sentinel after it (the packet went on: the rule did not match). The engine, given the same
rule set as the kernel lists it (``nft -j``) and the same packet, must agree where it is
certain, and must be uncertain where the case says the construct cannot be decided.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from topology.firewall import Firewall, Hook, Verdict
from topology.space import Packet

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "nft")),
    reason="needs root, iproute2 and nftables",
)

CL4, FW4 = "10.98.248.1", "10.98.248.2"
CL6, FW6 = "fd98:0:0:248::1", "fd98:0:0:248::2"
SPORT = 40000
DPORT = {"tcp": 22, "udp": 53}

#: Sends one packet from the namespace it runs in; never waits for an answer.
SENDER = r"""
import socket, struct, sys, time
kind, family, dst = sys.argv[1:4]
af = socket.AF_INET if family == "4" else socket.AF_INET6
def checksum(data):
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF
try:
    if kind == "tcp":
        s = socket.socket(af, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("", 40000))
        s.setblocking(False)
        try:
            s.connect((dst, 22))
        except OSError:
            pass
        time.sleep(0.05)
    elif kind == "udp":
        s = socket.socket(af, socket.SOCK_DGRAM)
        s.bind(("", 40000))
        s.sendto(b"x", (dst, 53))
    else:
        proto = socket.IPPROTO_ICMP if family == "4" else socket.IPPROTO_ICMPV6
        s = socket.socket(af, socket.SOCK_RAW, proto)
        kind_byte = 8 if family == "4" else 128
        header = struct.pack("!BBHHH", kind_byte, 0, 0, 0x4242, 1) + b"probe!"
        if family == "4":  # the kernel fills in the ICMPv6 checksum itself
            header = header[:2] + struct.pack("!H", checksum(header)) + header[4:]
        s.sendto(header, (dst, 0))
except OSError:
    pass  # EPERM: dropped on output
"""


def sh(*argv: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        argv, check=False, input=stdin, capture_output=True, text=True, timeout=20
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


@dataclass(frozen=True)
class Pair:
    cl: str
    fw: str
    cl_if: str
    fw_if: str

    def run(self, ns: str, *argv: str, stdin: str | None = None) -> str:
        return sh("ip", "netns", "exec", ns, *argv, stdin=stdin)


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    tag = f"{os.getpid() % 0xFFFF:04x}"
    p = Pair(f"ko-{tag}-cl", f"ko-{tag}-fw", f"kcl{tag}", f"kfw{tag}")
    made: list[str] = []
    try:
        for ns in (p.cl, p.fw):
            sh("ip", "netns", "add", ns)
            made.append(ns)
            p.run(ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=0")
            p.run(ns, "sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=0")
            p.run(ns, "sysctl", "-q", "-w", "net.ipv6.conf.default.accept_dad=0")
            p.run(ns, "ip", "link", "set", "lo", "up")
        sh(
            "ip", "link", "add", p.cl_if, "netns", p.cl, "type", "veth",
            "peer", "name", p.fw_if, "netns", p.fw,
        )  # fmt: skip
        for ns, dev, v4, v6 in ((p.cl, p.cl_if, CL4, CL6), (p.fw, p.fw_if, FW4, FW6)):
            p.run(ns, "ip", "addr", "add", f"{v4}/24", "dev", dev)
            p.run(ns, "ip", "addr", "add", f"{v6}/64", "dev", dev, "nodad")
            p.run(ns, "ip", "link", "set", dev, "up")
        # Static neighbours: no ARP or neighbour discovery in the way of the first packet.
        macs = {
            ns: json.loads(p.run(ns, "ip", "-j", "link", "show", dev))[0]["address"]
            for ns, dev in ((p.cl, p.cl_if), (p.fw, p.fw_if))
        }
        for ns, dev, peer, v4, v6 in (
            (p.cl, p.cl_if, p.fw, FW4, FW6),
            (p.fw, p.fw_if, p.cl, CL4, CL6),
        ):
            for addr in (v4, v6):
                p.run(ns, "ip", "neigh", "replace", addr, "lladdr", macs[peer], "dev", dev,
                      "nud", "permanent")  # fmt: skip
        yield p
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True, timeout=20)


RULESET = """flush ruleset
table inet probe {{
  set seen4 {{ type ipv4_addr; size 1024; flags dynamic; }}
  set seen6 {{ type ipv6_addr; size 1024; flags dynamic; }}
  chain c {{
    type filter hook {hook} priority 0; policy accept;
    icmpv6 type != echo-request accept
    {sieve} counter
    {rule}
    {sieve} counter
  }}
}}
"""


def _sieve(kind: str, family: int) -> str:
    """Counts the test's own packet only (not the neighbour discovery or MLD of the link)."""
    src = CL4 if family == 4 else CL6
    addr = f"ip saddr {src}" if family == 4 else f"ip6 saddr {src}"
    proto = {"tcp": "tcp", "udp": "udp", "ping": "icmp" if family == 4 else "ipv6-icmp"}[kind]
    return f"{addr} meta l4proto {proto}"


def kernel_and_engine(
    pair: Pair, hook: str, rule: str, kind: str, family: int
) -> tuple[bool, list[tuple[Verdict, bool]]]:
    """(did the kernel's rule match, the engine's (verdict, certain) outcomes)."""
    ns, other = (pair.fw, pair.cl) if hook == "input" else (pair.cl, pair.fw)
    pair.run(other, "nft", "flush", "ruleset")
    text = RULESET.format(hook=hook, sieve=_sieve(kind, family), rule=rule)
    pair.run(ns, "nft", "-f", "-", stdin=text)
    dst = FW4 if family == 4 else FW6
    pair.run(pair.cl, sys.executable, "-c", SENDER, kind, str(family), dst)
    doc: dict[str, Any] = json.loads(pair.run(ns, "nft", "-j", "list", "ruleset"))
    counts = [
        e["counter"]["packets"]
        for o in doc["nftables"]
        if "rule" in o and o["rule"]["chain"] == "c"
        for e in o["rule"]["expr"]
        if "counter" in e
    ]
    reached, passed = counts[0], counts[-1]
    assert reached == 1, f"the packet did not reach the hook once: {counts}"
    proto = {"tcp": 6, "udp": 17, "ping": 1 if family == 4 else 58}[kind]
    packet = Packet(
        family,
        proto,
        CL4 if family == 4 else CL6,
        dst,
        sport=SPORT if kind != "ping" else 0,
        dport=DPORT.get(kind, 0),
        iif=pair.fw_if if hook == "input" else None,
        oif=pair.cl_if if hook == "output" else None,
        icmp_type=0 if kind != "ping" else (8 if family == 4 else 128),
    )
    engine = Firewall.from_nft_json(doc)
    outcomes = engine.decision_for(Hook(hook), packet)
    return passed == 0, [(o.verdict, o.certain) for o in outcomes]


def assert_agrees(pair: Pair, hook: str, rule: str, kind: str, family: int) -> bool:
    matched, outcomes = kernel_and_engine(pair, hook, rule, kind, family)
    expected = Verdict.DROP if matched else Verdict.ACCEPT
    assert outcomes == [(expected, True)], (rule, kind, family, matched, outcomes)
    return matched


# (hook, rule, packet kind, family, does the kernel match)
EXACT = [
    # 1b: no input device on output, no output device on input: the name is empty.
    ("output", 'iifname != "x" drop', "tcp", 4, True),
    ("output", 'iifname "x" drop', "tcp", 4, False),
    ("output", 'iif != "lo" drop', "udp", 6, True),
    ("input", 'oifname != "x" drop', "udp", 4, True),
    ("input", 'oifname "x" drop', "ping", 6, False),
    # Interface wildcards: a prefix match.
    ("input", 'iifname "kf*" drop', "tcp", 4, True),
    ("input", 'iifname "kfw*" drop', "ping", 4, True),
    ("input", 'iifname "kfx*" drop', "tcp", 6, False),
    ("input", 'iifname != "kf*" drop', "udp", 4, False),
    ("output", 'oifname "kcl*" drop', "udp", 6, True),
    ("output", 'iifname "kcl*" drop', "udp", 6, False),
    ("output", 'iifname != "kcl*" drop', "ping", 4, True),
    # tcp flags, every form nft -j writes, on a SYN and on packets without a TCP header.
    ("input", "tcp flags & (syn|ack) == syn drop", "tcp", 4, True),
    ("input", "tcp flags syn / fin,syn,rst,ack drop", "tcp", 6, True),
    ("input", "tcp flags == syn drop", "tcp", 4, True),
    ("input", "tcp flags == 0x2 drop", "tcp", 4, True),
    ("input", "tcp flags != syn drop", "tcp", 4, False),
    ("input", "tcp flags != syn,ack drop", "tcp", 6, True),
    ("input", "tcp flags { syn, syn|ack } drop", "tcp", 4, True),
    ("input", "tcp flags { ack, syn|ack } drop", "tcp", 4, False),
    ("input", "tcp flags syn drop", "tcp", 4, True),
    ("input", "tcp flags ack drop", "tcp", 4, False),
    ("input", "tcp flags syn,ack drop", "tcp", 6, True),
    ("input", "tcp flags & (fin|syn|rst|ack) != syn drop", "tcp", 4, False),
    ("output", "tcp flags & (syn|ack) == syn drop", "tcp", 4, True),
    ("input", "tcp flags != syn drop", "udp", 4, False),
    ("input", "tcp flags & (syn|ack) != syn drop", "ping", 6, False),
    # Echo requests have code 0.
    ("input", "icmp code 0 drop", "ping", 4, True),
    ("input", "icmp code != 0 drop", "ping", 4, False),
    ("input", "icmp code port-unreachable drop", "ping", 4, False),
    ("input", "icmpv6 code 0 drop", "ping", 6, True),
    ("input", "icmpv6 code admin-prohibited drop", "ping", 6, False),
    ("input", "icmp code 0 drop", "tcp", 4, False),
    # th inside a concatenation.
    ("input", "ip protocol . th dport vmap { tcp . 22 : drop }", "tcp", 4, True),
    ("input", "ip protocol . th dport vmap { tcp . 23 : drop, udp . 22 : drop }", "tcp", 4, False),
    ("input", "meta l4proto . th dport { udp . 53 } drop", "udp", 6, True),
    # Statements that never decide.
    ("input", 'log prefix "x " counter drop', "tcp", 4, True),
    ("input", "add @seen4 { ip saddr } drop", "tcp", 4, True),
    ("input", "update @seen6 { ip6 saddr counter } drop", "udp", 6, True),
    ("output", "tcp option maxseg size set rt mtu drop", "tcp", 4, True),
    ("output", "tcp option maxseg size set rt mtu drop", "ping", 4, False),
    ("input", "meta mark set 1 ct mark set 2 drop", "udp", 4, True),
]


@pytest.mark.parametrize("case", EXACT, ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}{c[3]}")
def test_engine_agrees_with_the_kernel(pair: Pair, case: tuple[str, str, str, int, bool]) -> None:
    hook, rule, kind, family, matches = case
    assert assert_agrees(pair, hook, rule, kind, family) is matches


# (hook, rule, kind, family): the kernel's answer depends on what the engine cannot see.
UNCERTAIN = [
    ("input", "add @seen4 { ip saddr limit rate over 2000/minute } drop", "tcp", 4),
    ("input", "update @seen6 { ip6 saddr ct count over 5 } drop", "tcp", 6),
    ("input", "add @seen4 { ip saddr quota over 10 mbytes } drop", "udp", 4),
    ("input", "ip ttl 64 drop", "ping", 4),
    ("input", "ip6 hoplimit 64 drop", "tcp", 6),
    ("input", "ct status dnat drop", "tcp", 4),
]


@pytest.mark.parametrize(("hook", "rule", "kind", "family"), UNCERTAIN)
def test_engine_is_uncertain_where_it_cannot_know(
    pair: Pair, hook: str, rule: str, kind: str, family: int
) -> None:
    matched, outcomes = kernel_and_engine(pair, hook, rule, kind, family)
    assert sorted(outcomes) == [(Verdict.ACCEPT, False), (Verdict.DROP, False)], (rule, matched)
