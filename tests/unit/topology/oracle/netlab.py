"""Three throwaway namespaces and the kernel's verdict per hook for one crafted packet.

``fw`` holds the rule set under test. It has two links: ``eth0`` to ``cl`` and ``docker0`` to
``ct`` (the names real rule sets use). Nothing leaves the three namespaces: they have no
other link, and every address below is in the lab's 10.98.0.0/16 and fd98::/16.

Paths a packet can take through ``fw`` (the hooks it meets):
  in:eth0, in:docker0     sent by cl / ct to an address fw delivers locally (prerouting, input)
  fwd:eth0>docker0, fwd:docker0>eth0     routed through fw (prerouting, forward, postrouting)
  out:eth0, out:docker0   sent by fw itself out of that link (output, postrouting)
  local:lo                sent by fw to itself (output, postrouting, prerouting, input on lo)

Which of ``in`` and ``fwd`` happens is chosen by policy routing in fw: packets arriving on a
link look up a table that either makes every address local (AnyIP) or routes every address
out of the other link.

The verdict per hook comes from a table of our own, ``inet zz_oracle``, added after the rule
set was listed for the engine: on every hook a chain at the lowest priority counts the probe
(it reached the hook) and one at the highest counts it again (every chain of the hook let it
through). Probes are told apart from the links' own traffic (neighbour discovery, resets,
rejections) by their TTL / hop limit, 99 when sent (98 once forwarded), which no rule set of
the corpus matches.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

from auditor.domain.errors import AuditorError
from auditor.domain.facts import IptablesListings, IptablesSave
from probes.host_collector import LEGACY_NAMES, has_xt_expressions
from probes.parsers.ipset import parse_ipset_save
from probes.parsers.iptables import iptables_save_fact

HOOKS = ("prerouting", "input", "forward", "output", "postrouting")
#: iptables-legacy's built-in chains per table (a policy outlives -F: set back to ACCEPT).
LEGACY_BUILTINS = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "raw": ("PREROUTING", "OUTPUT"),
}
MARK_TTL = 99

CL4, FW_CL4 = "10.98.249.1", "10.98.249.2"
CT4, FW_CT4 = "10.98.250.2", "10.98.250.1"
CL6, FW_CL6 = "fd98:0:0:249::1", "fd98:0:0:249::2"
CT6, FW_CT6 = "fd98:0:0:250::2", "fd98:0:0:250::1"
#: Destinations routed through fw (not local to any namespace).
BEYOND_CT = {4: "10.98.251.10", 6: "fd98:0:0:251::10"}
BEYOND_CL = {4: "10.98.252.10", 6: "fd98:0:0:252::10"}

UPLINK, DOWNLINK = "eth0", "docker0"

#: path -> (sending namespace role, bound device, iif seen in fw, oif seen in fw, phase)
PATHS: dict[str, tuple[str, str | None, str | None, str | None, str]] = {
    "in:eth0": ("cl", None, UPLINK, None, "deliver"),
    "in:docker0": ("ct", None, DOWNLINK, None, "deliver"),
    "fwd:eth0>docker0": ("cl", None, UPLINK, DOWNLINK, "forward"),
    "fwd:docker0>eth0": ("ct", None, DOWNLINK, UPLINK, "forward"),
    "out:eth0": ("fw", UPLINK, None, UPLINK, "deliver"),
    "out:docker0": ("fw", DOWNLINK, None, DOWNLINK, "deliver"),
    "local:lo": ("fw", None, "lo", "lo", "deliver"),
}

#: Sends one packet per JSON line read, answers one line; runs in a namespace until EOF.
SENDER = r"""
import ipaddress, json, socket, struct, sys, time
# Transparent: any source address at all (freebind alone does not cover an IPv4 route lookup).
IP_TRANSPARENT, IPV6_TRANSPARENT, IP_FREEBIND, IPV6_FREEBIND = 19, 75, 15, 78
def checksum(data):
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF
def endpoint(family, addr, port, device):
    if family == 4:
        return (addr, port)
    parsed = ipaddress.ip_address(addr)
    linked = parsed.is_link_local or (parsed.is_multicast and (int(parsed) >> 112) & 0xF == 2)
    scope = socket.if_nametoindex(device) if linked else 0
    return (addr, port, 0, scope)
def prepare(p):
    family = p["family"]
    af = socket.AF_INET if family == 4 else socket.AF_INET6
    if p["kind"] == "tcp":
        s = socket.socket(af, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    elif p["kind"] == "udp":
        s = socket.socket(af, socket.SOCK_DGRAM)
    else:
        s = socket.socket(af, socket.SOCK_RAW, socket.IPPROTO_ICMP if family == 4 else 58)
    if family == 4:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 99)
        s.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
        s.setsockopt(socket.IPPROTO_IP, IP_TRANSPARENT, 1)
        if p["kind"] != "tcp":
            s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 99)
            s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    else:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 99)
        s.setsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND, 1)
        s.setsockopt(socket.IPPROTO_IPV6, IPV6_TRANSPARENT, 1)
        if p["kind"] != "tcp":
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 99)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
    if p["device"]:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, p["device"].encode())
    return s
def send(p):
    family, device = p["family"], p["device"] or p["link"]
    try:
        s = prepare(p)
    except OSError as e:
        return "error %s" % e.errno
    try:
        if p["kind"] == "tcp":
            s.bind(endpoint(family, p["saddr"], p["sport"], device))
            s.setblocking(False)
            try:
                s.connect(endpoint(family, p["daddr"], p["dport"], device))
            except BlockingIOError:
                pass
        elif p["kind"] == "udp":
            s.bind(endpoint(family, p["saddr"], p["sport"], device))
            s.sendto(b"oracle", endpoint(family, p["daddr"], p["dport"], device))
        else:
            s.bind(endpoint(family, p["saddr"], 0, device))
            kind = 8 if family == 4 else 128
            header = struct.pack("!BBHHH", kind, 0, 0, p["ident"] & 0xFFFF, 1) + b"oracle"
            if family == 4:  # the kernel fills in the ICMPv6 checksum itself
                header = header[:2] + struct.pack("!H", checksum(header)) + header[4:]
            s.sendto(header, endpoint(family, p["daddr"], 0, device))
        return "sent"
    except OSError as e:
        return "error %s" % e.errno
    finally:
        s.close()
for line in sys.stdin:
    answer = send(json.loads(line))
    time.sleep(0.015)
    sys.stdout.write(answer + "\n")
    sys.stdout.flush()
"""


class NetlabError(AuditorError):
    """A command setting up or reading the namespaces failed."""


def sh(*argv: str, stdin: str | None = None, check: bool = True) -> str:
    done = subprocess.run(
        argv, check=False, input=stdin, capture_output=True, text=True, timeout=60
    )
    if check and done.returncode != 0:
        raise NetlabError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


#: What tells a probe from the links' own traffic (one rule each; the first that matches).
SIEVE = (
    "ip ttl { 98, 99 } meta l4proto { tcp, udp }",
    "ip ttl { 98, 99 } icmp type echo-request",
    "ip6 hoplimit { 98, 99 } meta l4proto { tcp, udp }",
    "ip6 hoplimit { 98, 99 } icmpv6 type echo-request",
)


def _sentinel_chain(name: str, hook: str, prio: int, dnat: bool) -> str:
    rules = [f"    {sieve} counter name {name}\n" for sieve in SIEVE]
    if dnat:
        # A destination NAT on this hook shows in the probe's conntrack entry by now.
        rules += [f"    {sieve} ct status dnat counter name translated\n" for sieve in SIEVE]
    return (
        f"  counter {name} {{}}\n"
        f"  chain {name} {{\n"
        f"    type filter hook {hook} priority {prio}; policy accept;\n" + "".join(rules) + "  }\n"
    )


def _sentinel_table() -> str:
    chains = ["  counter translated {}\n"]
    for hook in HOOKS:
        chains.append(_sentinel_chain(f"first_{hook}", hook, -2000000000, dnat=False))
        dnat = hook in ("prerouting", "output")
        chains.append(_sentinel_chain(f"last_{hook}", hook, 2000000000, dnat=dnat))
    return "table inet zz_oracle {\n" + "".join(chains) + "}\n"


@dataclass(frozen=True)
class Observation:
    """What the kernel did with one probe: per hook reached, the verdict; NAT seen."""

    #: hook -> "accept" | "drop" ("ambiguous": counted more than once), hooks reached only
    verdicts: dict[str, str]
    dnat: bool  #: the probe's conntrack entry says its destination was translated
    send: str  #: the sender's answer ("sent" or "error ERRNO")


class Netlab:
    """The three namespaces; ``fw`` is where rule sets are built and probed."""

    def __init__(self, tag: str) -> None:
        self.ns = {role: f"orc-{tag}-{role}" for role in ("fw", "cl", "ct")}
        self._made: list[str] = []
        self._senders: dict[str, subprocess.Popen[str]] = {}
        self.phase = ""

    @property
    def fw(self) -> str:
        return self.ns["fw"]

    def run(self, role: str, *argv: str, stdin: str | None = None, check: bool = True) -> str:
        return sh("ip", "netns", "exec", self.ns[role], *argv, stdin=stdin, check=check)

    # -- set up / tear down -----------------------------------------------------------------
    def create(self) -> None:
        for role, ns in self.ns.items():
            sh("ip", "netns", "add", ns)
            self._made.append(ns)
            for key, value in (
                ("net.ipv4.ip_forward", "1" if role == "fw" else "0"),
                ("net.ipv6.conf.all.forwarding", "1" if role == "fw" else "0"),
                ("net.ipv6.conf.default.accept_dad", "0"),
                ("net.ipv4.conf.all.rp_filter", "0"),
                ("net.ipv4.conf.default.rp_filter", "0"),
                ("net.ipv4.conf.all.accept_local", "1"),
                ("net.ipv4.conf.default.accept_local", "1"),
            ):
                self.run(role, "sysctl", "-q", "-w", f"{key}={value}")
            self.run(role, "ip", "link", "set", "lo", "up")
        self._link("cl", "up0", UPLINK, (CL4, CL6), (FW_CL4, FW_CL6))
        self._link("ct", "up0", DOWNLINK, (CT4, CT6), (FW_CT4, FW_CT6))
        self._routes()

    def _link(
        self, role: str, dev: str, fw_dev: str, addrs: tuple[str, str], fw_addrs: tuple[str, str]
    ) -> None:
        sh("ip", "link", "add", dev, "netns", self.ns[role], "type", "veth",
           "peer", "name", fw_dev, "netns", self.fw)  # fmt: skip
        for side, name, (v4, v6) in ((role, dev, addrs), ("fw", fw_dev, fw_addrs)):
            self.run(side, "ip", "addr", "add", f"{v4}/24", "dev", name)
            self.run(side, "ip", "addr", "add", f"{v6}/64", "dev", name, "nodad")
            self.run(side, "ip", "link", "set", name, "up")
        mac = {
            side: json.loads(self.run(side, "ip", "-j", "link", "show", name))[0]["address"]
            for side, name in ((role, dev), ("fw", fw_dev))
        }
        # Static neighbours: no ARP or neighbour discovery before a probe's first packet.
        for side, name, peer, (v4, v6) in (
            (role, dev, "fw", fw_addrs),
            ("fw", fw_dev, role, addrs),
        ):
            for addr in (v4, v6):
                self.run(side, "ip", "neigh", "replace", addr, "lladdr", mac[peer], "dev", name,
                         "nud", "permanent")  # fmt: skip
        for family, gateway in (("-4", fw_addrs[0]), ("-6", fw_addrs[1])):
            self.run(role, "ip", family, "route", "add", "default", "via", gateway, "dev", dev)
        self.run(role, "ip", "-4", "route", "add", "224.0.0.0/4", "dev", dev)

    def _routes(self) -> None:
        for family, cl, ct in (("-4", CL4, CT4), ("-6", CL6, CT6)):
            any_ = "0.0.0.0/0" if family == "-4" else "::/0"
            fw = ("ip", family, "route", "add")
            self.run("fw", *fw, "default", "via", cl, "dev", UPLINK, "metric", "100")
            self.run("fw", *fw, "default", "via", ct, "dev", DOWNLINK, "metric", "200")
            if family == "-4":  # multicast probes leave by a link too
                self.run("fw", *fw, "224.0.0.0/4", "dev", UPLINK, "metric", "100")
                self.run("fw", *fw, "224.0.0.0/4", "dev", DOWNLINK, "metric", "200")
            # 100: AnyIP (every address local); 101/102: out of the other link.
            self.run("fw", *fw, "local", any_, "dev", "lo", "table", "100")
            self.run("fw", *fw, "default", "via", ct, "dev", DOWNLINK, "table", "101")
            self.run("fw", *fw, "default", "via", cl, "dev", UPLINK, "table", "102")

    def set_phase(self, phase: str) -> None:
        """``deliver``: whatever arrives is local; ``forward``: it is routed on."""
        if phase == self.phase:
            return
        tables = {"deliver": ("100", "100"), "forward": ("101", "102")}[phase]
        for family in ("-4", "-6"):
            for pref in ("1000", "1001"):
                self.run("fw", "ip", family, "rule", "del", "pref", pref, check=False)
            for pref, dev, table in (("1000", UPLINK, tables[0]), ("1001", DOWNLINK, tables[1])):
                self.run("fw", "ip", family, "rule", "add", "pref", pref, "iif", dev,
                         "lookup", table)  # fmt: skip
        self.phase = phase

    def destroy(self) -> None:
        for proc in self._senders.values():
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(timeout=10)
        self._senders.clear()
        for ns in self._made:
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True, timeout=30)
        self._made.clear()

    # -- the rule set -------------------------------------------------------------------------
    def listing(self) -> tuple[dict[str, Any], str]:
        """The rule set of fw as the kernel lists it (JSON and text)."""
        doc: dict[str, Any] = json.loads(self.run("fw", "nft", "-j", "list", "ruleset"))
        text = self.run("fw", "nft", "list", "ruleset")
        return doc, text

    def iptables_listings(self, doc: dict[str, Any]) -> IptablesListings:
        """What the collector reads beside nftables, read the way it reads it: legacy tables'
        listings where the kernel has such tables, iptables-nft's where nft showed xt."""
        listed: dict[str, IptablesSave | None] = {}
        texts: list[str] = []
        for version, tool in ((4, "iptables"), (6, "ip6tables")):
            names = self.run("fw", "cat", LEGACY_NAMES[version], check=False)
            legacy = self.run("fw", f"{tool}-legacy-save") if names.strip() else None
            family = "ip" if version == 4 else "ip6"
            nft = self.run("fw", f"{tool}-nft-save") if has_xt_expressions(doc, family) else None
            listed[f"legacy_v{version}"] = None if legacy is None else iptables_save_fact(legacy)
            listed[f"nft_v{version}"] = None if nft is None else iptables_save_fact(nft)
            texts += [t for t in (legacy, nft) if t is not None]
        ipsets = None
        if any("--match-set" in text for text in texts):
            ipsets = parse_ipset_save(self.run("fw", "ipset", "save"))
        return IptablesListings(**listed, ipsets=ipsets)

    def routes(self) -> tuple[str, str, str, str]:
        """fw's routes, every table, and its policy rules, as the collector lists them
        (``ip -j``: routes v4 and v6, rules v4 and v6)."""
        return (
            self.run("fw", "ip", "-4", "-j", "route", "show", "table", "all"),
            self.run("fw", "ip", "-6", "-j", "route", "show", "table", "all"),
            self.run("fw", "ip", "-4", "-j", "rule", "show"),
            self.run("fw", "ip", "-6", "-j", "rule", "show"),
        )

    def add_sentinels(self) -> None:
        self.run("fw", "nft", "-f", "-", stdin=_sentinel_table())

    def clear(self) -> None:
        """Removes every rule of fw, nft and legacy alike (between rule sets)."""
        self.run("fw", "nft", "flush", "ruleset")
        for tool in ("iptables-legacy", "ip6tables-legacy"):
            for table, chains in LEGACY_BUILTINS.items():
                self.run("fw", tool, "-t", table, "-F", check=False)
                self.run("fw", tool, "-t", table, "-X", check=False)
                for chain in chains:
                    self.run("fw", tool, "-t", table, "-P", chain, "ACCEPT", check=False)
        if shutil.which("ipset"):
            self.run("fw", "ipset", "destroy", check=False)  # no rule refers to them now
            for chain in ("INPUT", "FORWARD", "OUTPUT"):
                self.run("fw", tool, "-P", chain, "ACCEPT", check=False)
        self.run("fw", "conntrack", "-F", check=False)

    # -- probing ------------------------------------------------------------------------------
    def _sender(self, role: str) -> subprocess.Popen[str]:
        proc = self._senders.get(role)
        if proc is None:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns[role], sys.executable, "-u", "-c", SENDER],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            self._senders[role] = proc
        return proc

    def _send(self, role: str, probe: dict[str, Any]) -> str:
        proc = self._sender(role)
        stdin: IO[str] | None = proc.stdin
        stdout: IO[str] | None = proc.stdout
        if stdin is None or stdout is None:
            raise NetlabError(f"the sender in {self.ns[role]} has no pipes")
        stdin.write(json.dumps(probe) + "\n")
        stdin.flush()
        answer = stdout.readline().strip()
        if not answer:
            raise NetlabError(f"the sender in {self.ns[role]} stopped")
        return answer

    def observe(self, path: str, probe: dict[str, Any]) -> Observation:
        """Sends ``probe`` along ``path`` and reads what each hook of fw did with it."""
        role, device, _, _, phase = PATHS[path]
        self.set_phase(phase)
        # Link-local addresses need a link: the bound device, else the sender's first link.
        link = device or (UPLINK if role == "fw" else "up0")
        answer = self._send(role, {**probe, "device": device, "link": link})
        # One command reads and zeroes the counters and empties conntrack: the next probe
        # starts from nothing remembered (no ESTABLISHED entry, no NAT binding).
        script = (
            "nft -j reset counters table inet zz_oracle && { conntrack -F >/dev/null 2>&1; true; }"
        )
        counters = _counters(json.loads(self.run("fw", "sh", "-c", script)))
        return Observation(_verdicts(counters), counters.get("translated", 0) > 0, answer)


def _counters(doc: dict[str, Any]) -> dict[str, int]:
    return {
        o["counter"]["name"]: o["counter"]["packets"] for o in doc["nftables"] if "counter" in o
    }


def _verdicts(packets: dict[str, int]) -> dict[str, str]:
    found = {}
    for hook in HOOKS:
        reached = packets.get(f"first_{hook}", 0)
        if reached == 1:
            found[hook] = "accept" if packets.get(f"last_{hook}", 0) == 1 else "drop"
        elif reached > 1:
            # Copies (a looped-back multicast, say): which one passed cannot be told.
            found[hook] = "ambiguous"
    return found


@contextmanager
def netlab() -> Iterator[Netlab]:
    lab = Netlab(f"{os.getpid() % 0xFFFF:04x}")
    try:
        lab.create()
        yield lab
    finally:
        lab.destroy()
