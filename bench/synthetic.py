"""A synthetic certified organisation of any size, generated from a fixed seed.

Pure data: no packet is ever sent to these addresses. They are nevertheless drawn from the
lab's own ranges (10.98.0.0/16, fd98::/16), so that an audit started on this inventory by
mistake could only ever touch lab addresses.

The organisation is made of *sites* of about fifty hosts, each a copy of the reference lab's
shape at a larger scale:

- outside: a medical institution (``hospital``) on a carrier IP-VPN with a WireGuard tunnel to
  the receiving server, a data user (``recipient``) likewise toward the sending server, and an
  office LAN whose gateway forwards and masquerades to the shared Internet network;
- inside (one contiguous block per site, so that the core routes by site): dedicated lines
  between the processing servers and the receiving / sending servers, a server LAN (processing
  servers, a log host, the site router) and a terminal LAN;
- the site routers meet on a shared core network with a hub router that routes between sites.

Every collected host has a realistic ``nft -j list ruleset`` (tens of rules for terminals,
about a hundred for servers, a few hundred for routers: per-address allow lists, named sets,
jumps to regular chains, counters and logs), connected and static routes, listeners,
processes and packages. Violations are planted in a few sites, and listed in
``SyntheticOrganisation.planted`` as the (control, subject) pairs that must fail.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from netaddr import IPAddress, IPNetwork

from auditor.domain.attempts import Attempt
from auditor.domain.facts import (
    HostFacts,
    HostKey,
    Interface,
    InterfaceAddress,
    Listener,
    PolicyRule,
    Process,
    Route,
)
from auditor.domain.inventory import Inventory
from bench import nftgen as nft

SEED = 20_180_502  # the day 施行規則 was promulgated; any fixed number would do
HOSTS_PER_SITE = 50
#: hosts every site has whatever its size: two outside parties, recv, send, two processing
#: servers, log host, site router, office gateway
FIXED_PER_SITE = 9
PROCESSING_PER_SITE = 2

V4_POOL = IPNetwork("10.98.0.0/16")
V6_PREFIX = "fd98"

#: The kinds of violation planted, with the controls each must make fail.
VIOLATIONS: dict[str, tuple[str, ...]] = {
    # the receiving server's output chain accepts everything (lab scenario recv-egress)
    "recv-egress": ("recv-no-outbound",),
    # the sending server accepts TCP 8443 from its carrier network (lab send-inbound)
    "send-inbound": ("send-no-inbound", "unauthorized-access-prevention"),
    # a processing server also sits on the office LAN, default route via its gateway
    "proc-dual-homed": ("proc-egress-only-via-gateways",),
    # a terminal runs x11vnc, reachable from the terminal LAN (lab remote-control)
    "terminal-vnc": ("no-remote-control-software", "unauthorized-access-prevention"),
}

BASE_PACKAGES = {
    "openssh-server": "1:9.2p1-2+deb12u3",
    "nftables": "1.0.6-2+deb12u2",
    "iproute2": "6.1.0-3",
    "rsyslog": "8.2302.0-1",
    "systemd": "252.26-1~deb12u2",
    "sudo": "1.9.13p3-1+deb12u1",
    "chrony": "4.3-2+deb12u1",
    "python3": "3.11.2-1+b1",
    "prometheus-node-exporter": "1.5.0-1+b6",
    "libc6": "2.36-9+deb12u7",
}


class AddressPlanError(ValueError):
    """The requested size does not fit in the lab's address ranges."""


class _Allocator:
    """Hands out aligned IPv4 prefixes from a pool, in order."""

    def __init__(self, pool: IPNetwork) -> None:
        self._next = int(pool.first)
        self._last = int(pool.last)

    def take(self, prefixlen: int) -> IPNetwork:
        size = 2 ** (32 - prefixlen)
        start = -(-self._next // size) * size
        if start + size - 1 > self._last:
            raise AddressPlanError("the organisation does not fit in 10.98.0.0/16")
        self._next = start + size
        return IPNetwork(f"{IPAddress(start)}/{prefixlen}")


def _prefixlen_for(count: int) -> int:
    """The longest IPv4 prefix with room for ``count`` hosts (network and broadcast aside)."""
    length = 30
    while 2 ** (32 - length) - 2 < count:
        length -= 1
    return length


@dataclass
class Net:
    """A network or tunnel of the plan: its name, zone, medium, prefixes and members."""

    name: str
    zone: str
    medium: str
    v4: IPNetwork
    v6: IPNetwork | None
    iface: str  #: the interface name hosts use on it
    members: dict[str, int] = field(default_factory=dict)  #: host -> host number

    def address(self, host: str, family: int) -> IPAddress:
        number = self.members[host]
        if family == 4:
            return IPAddress(int(self.v4.first) + number)
        assert self.v6 is not None
        return IPAddress(int(self.v6.first) + number, 6)

    def addresses(self, host: str) -> list[IPAddress]:
        return [self.address(host, f) for f in (4, 6) if f == 4 or self.v6 is not None]

    def prefixes(self) -> list[IPNetwork]:
        return [self.v4] + ([self.v6] if self.v6 is not None else [])


@dataclass
class Site:
    index: int
    nets: dict[str, Net]
    block: IPNetwork  #: the site's protected block (the core routes it to the site router)
    terminals: list[str]
    office_pcs: list[str]
    processing: list[str]

    def host(self, role: str) -> str:
        return f"s{self.index:03d}-{role}"


@dataclass
class SyntheticOrganisation:
    """The inventory (as the YAML document), the facts of every collected host, and the
    violations planted: (control, subject) pairs that must fail."""

    size: int
    seed: int
    inventory_doc: dict[str, Any]
    facts: dict[str, HostFacts]
    planted: set[tuple[str, str]]
    rule_counts: dict[str, int]

    def inventory(self) -> Inventory:
        return Inventory.model_validate(self.inventory_doc)

    def collection(self) -> dict[str, Attempt[HostFacts]]:
        """The facts as the collector hands them to the checks."""
        return {
            host: Attempt.ok("host-collector", host, facts, sorted(facts.evidence.values()))
            for host, facts in self.facts.items()
        }

    def write_inventory(self, folder: Path) -> Path:
        """inventory.yaml (and empty key / known_hosts placeholders) in ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "keys").mkdir(exist_ok=True)
        (folder / "keys" / "none").write_text("", encoding="utf-8")
        (folder / "known_hosts").write_text("", encoding="utf-8")
        path = folder / "inventory.yaml"
        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
        text = yaml.dump(self.inventory_doc, Dumper=dumper, sort_keys=False, allow_unicode=True)
        path.write_text(text, encoding="utf-8")
        return path


# -- the address plan ----------------------------------------------------------------------


def _v6(site: int, net: int) -> IPNetwork:
    return IPNetwork(f"{V6_PREFIX}:{site:x}:{net:x}::/64")


def _plan_sites(size: int, rng: random.Random) -> tuple[list[Site], dict[str, Net]]:
    count = max(1, size // HOSTS_PER_SITE)
    spare = size - 2 - count * FIXED_PER_SITE  # an Internet vantage host and the core hub
    if spare < count * 3:
        raise AddressPlanError(f"{size} hosts are too few for {count} site(s)")
    alloc = _Allocator(V4_POOL)
    shared = {
        "inet": Net(
            "inet", "external", "internet", alloc.take(_prefixlen_for(count + 2)), _v6(0, 1), "inet"
        ),
        "core": Net(
            "core",
            "protected",
            "leased-line",
            alloc.take(_prefixlen_for(count + 2)),
            _v6(0, 2),
            "core",
        ),
    }
    sites = []
    for index in range(count):
        local = spare // count + (1 if index < spare % count else 0)
        terminals = max(1, round(local * rng.uniform(0.62, 0.78)))
        offices = max(1, local - terminals)
        sites.append(_plan_site(index, terminals, offices, alloc))
    return sites, shared


def _plan_site(index: int, terminals: int, offices: int, alloc: _Allocator) -> Site:
    n = index + 1  # IPv6 site numbers start at 1: site 0 holds the shared networks
    name = f"s{index:03d}"
    term_len = _prefixlen_for(terminals + 1)
    inside = [("line-recv", 29), ("line-send", 29), ("srv-lan", 28), ("term-lan", term_len)]
    block_len = _prefixlen_for(sum(2 ** (32 - length) for _, length in inside) - 2)
    block = alloc.take(block_len)
    inner = _Allocator(block)
    nets: dict[str, Net] = {}
    media = {"line-recv": "leased-line", "line-send": "leased-line"}
    for k, (kind, length) in enumerate(inside, start=1):
        nets[kind] = Net(
            f"{name}-{kind}",
            "protected",
            media.get(kind, "lan"),
            inner.take(length),
            _v6(n, k),
            kind,
        )
    nets["carrier-in"] = Net(
        f"{name}-carrier-in", "external", "ip-vpn", alloc.take(29), _v6(n, 10), "carrier-in"
    )
    nets["carrier-out"] = Net(
        f"{name}-carrier-out", "external", "ip-vpn", alloc.take(29), _v6(n, 11), "carrier-out"
    )
    nets["office"] = Net(
        f"{name}-office",
        "office",
        "lan",
        alloc.take(_prefixlen_for(offices + 2)),
        _v6(n, 12),
        "office",
    )
    # WireGuard tunnels: IPv4 inner addresses only, as in the reference lab.
    nets["wg-in"] = Net(f"{name}-wg-in", "tunnel", "", alloc.take(30), None, "wg-in")
    nets["wg-out"] = Net(f"{name}-wg-out", "tunnel", "", alloc.take(30), None, "wg-out")
    processing = [f"{name}-proc-{i}" for i in range(1, PROCESSING_PER_SITE + 1)]
    site = Site(
        index,
        nets,
        block,
        terminals=[f"{name}-term-{i:03d}" for i in range(1, terminals + 1)],
        office_pcs=[f"{name}-pc-{i:03d}" for i in range(1, offices + 1)],
        processing=processing,
    )
    _place_hosts(site)
    return site


def _place_hosts(site: Site) -> None:
    nets, h = site.nets, site.host
    nets["carrier-in"].members.update({h("hospital"): 1, h("recv"): 2})
    nets["wg-in"].members.update({h("hospital"): 1, h("recv"): 2})
    nets["carrier-out"].members.update({h("recipient"): 1, h("send"): 2})
    nets["wg-out"].members.update({h("recipient"): 1, h("send"): 2})
    nets["line-recv"].members[h("recv")] = 1
    nets["line-send"].members[h("send")] = 1
    nets["srv-lan"].members.update({h("router"): 1, h("log"): 2})
    for i, proc in enumerate(site.processing):
        nets["line-recv"].members[proc] = 2 + i
        nets["line-send"].members[proc] = 2 + i
        nets["srv-lan"].members[proc] = 3 + i
    nets["term-lan"].members[h("router")] = 1
    for i, term in enumerate(site.terminals):
        nets["term-lan"].members[term] = 2 + i
    nets["office"].members[h("office-gw")] = 1
    for i, pc in enumerate(site.office_pcs):
        nets["office"].members[pc] = 2 + i


def _attach_shared(sites: list[Site], shared: dict[str, Net]) -> None:
    shared["inet"].members["inet-vantage"] = 1
    shared["core"].members["core-hub"] = 1
    for site in sites:
        shared["inet"].members[site.host("office-gw")] = 2 + site.index
        shared["core"].members[site.host("router")] = 2 + site.index


# -- the generator ---------------------------------------------------------------------------


def generate(size: int, seed: int = SEED) -> SyntheticOrganisation:
    """An organisation of about ``size`` hosts (exactly ``size`` inventory hosts)."""
    rng = random.Random(seed)
    sites, shared = _plan_sites(size, rng)
    _attach_shared(sites, shared)
    violations = _choose_violations(sites, rng)
    _apply_topology_violations(sites, violations)
    builder = _Builder(sites, shared, violations, rng)
    return builder.build(size, seed)


def _choose_violations(sites: list[Site], rng: random.Random) -> dict[str, list[str]]:
    """kind -> the hosts it is planted on: about one site in ten per kind, at least one."""
    chosen: dict[str, list[str]] = {}
    per_kind = max(1, len(sites) // 10)
    for kind in VIOLATIONS:
        picked = rng.sample(sites, per_kind)
        if kind == "recv-egress":
            chosen[kind] = [s.host("recv") for s in picked]
        elif kind == "send-inbound":
            chosen[kind] = [s.host("send") for s in picked]
        elif kind == "proc-dual-homed":
            chosen[kind] = [s.processing[0] for s in picked]
        else:
            chosen[kind] = [rng.choice(s.terminals) for s in picked]
    return chosen


def _apply_topology_violations(sites: list[Site], violations: dict[str, list[str]]) -> None:
    """A dual-homed processing server gets an address on its site's office LAN."""
    by_proc = {s.processing[0]: s for s in sites}
    for proc in violations["proc-dual-homed"]:
        office = by_proc[proc].nets["office"]
        office.members[proc] = max(office.members.values()) + 1
        if office.members[proc] >= office.v4.size - 1:
            raise AddressPlanError(f"no room on {office.name} for {proc}")


class _Builder:
    def __init__(
        self,
        sites: list[Site],
        shared: dict[str, Net],
        violations: dict[str, list[str]],
        rng: random.Random,
    ) -> None:
        self.sites = sites
        self.shared = shared
        self.violations = violations
        self.planted_on = {h: kind for kind, hosts in violations.items() for h in hosts}
        self.rng = rng
        self.all_nets = [*shared.values(), *(n for s in sites for n in s.nets.values())]
        self.hosts: dict[str, dict[str, Any]] = {}
        self.facts: dict[str, HostFacts] = {}
        self.rule_counts: dict[str, int] = {}
        # Administrators' workstations: a few terminals of the first site.
        first = sites[0]
        self.admins = [first.nets["term-lan"].address(t, 4) for t in first.terminals[:8]]
        self.central_log = first.host("log")

    # -- the inventory ----------------------------------------------------------------------
    def build(self, size: int, seed: int) -> SyntheticOrganisation:
        networks: dict[str, Any] = {}
        tunnels: dict[str, Any] = {}
        for net in self.all_nets:
            if net.zone == "tunnel":
                endpoints = sorted(net.members, key=lambda h: net.members[h])
                over = net.name.replace("-wg-in", "-carrier-in").replace("-wg-out", "-carrier-out")
                tunnels[net.name] = {
                    "type": "wireguard",
                    "over": over,
                    "ipv4": str(net.v4),
                    "endpoints": endpoints,
                }
            else:
                networks[net.name] = {
                    "zone": net.zone,
                    "medium": net.medium,
                    "ipv4": str(net.v4),
                    "ipv6": str(net.v6),
                }
        for net in self.all_nets:
            for host in net.members:
                entry = self.hosts.setdefault(host, {"roles": self._roles(host), "addresses": {}})
                entry["addresses"][net.name] = [str(a) for a in net.addresses(host)]
        for site in self.sites:
            self._site_hosts(site)
        self._hub()
        if len(self.hosts) != size:
            raise AssertionError(f"planned {len(self.hosts)} hosts for size {size}")
        doc = {
            "version": 1,
            "organisation": f"Synthetic Anonymisation Co. ({size} hosts, seed {seed})",
            "scope": {"authorized": ["10.98.0.0/16", "fd98::/16"]},
            "ssh": {"user": "auditor", "key": "keys/none", "known_hosts": "known_hosts"},
            "networks": networks,
            "tunnels": tunnels,
            "hosts": dict(sorted(self.hosts.items())),
            "log_host": self.central_log,
        }
        planted = {
            (control, host)
            for kind, hosts in self.violations.items()
            for host in hosts
            for control in VIOLATIONS[kind]
        }
        return SyntheticOrganisation(size, seed, doc, self.facts, planted, self.rule_counts)

    @staticmethod
    def _roles(host: str) -> list[str]:
        kind = host.split("-", 1)[1] if host.startswith("s") and host[1:4].isdigit() else host
        table = {
            "hospital": "external-party",
            "recipient": "external-party",
            "recv": "receiving",
            "send": "sending",
            "log": "log",
            "router": "router",
            "office-gw": "router",
            "inet-vantage": "vantage",
            "core-hub": "router",
        }
        if kind.startswith("proc-"):
            return ["processing"]
        if kind.startswith("term-"):
            return ["terminal"]
        if kind.startswith("pc-"):
            return ["office"]
        return [table[kind]]

    def _site_hosts(self, site: Site) -> None:
        nets, h = site.nets, site.host
        recv, send, log_host = h("recv"), h("send"), h("log")
        self._organisation(
            recv,
            nets["line-recv"],
            [
                _service(51820, "udp", nets["carrier-in"], "WireGuard from the hospital"),
                _service(22, "tcp", nets["wg-in"], "SFTP from the hospital", nets["line-recv"]),
            ],
        )
        self._organisation(
            send,
            nets["line-send"],
            [
                _service(22, "tcp", nets["line-send"], "SFTP from the processing servers"),
            ],
        )
        self._organisation(
            log_host,
            nets["srv-lan"],
            [
                _service(514, "udp", nets["srv-lan"], "syslog"),
                _service(22, "tcp", nets["srv-lan"], "administration"),
            ],
        )
        for proc in site.processing:
            self._organisation(
                proc,
                nets["srv-lan"],
                [
                    _service(22, "tcp", nets["srv-lan"], "analysts' sessions, administration"),
                    _service(443, "tcp", nets["srv-lan"], "analysis web front-end"),
                    _service(9100, "tcp", nets["srv-lan"], "metrics for the log host"),
                ],
            )
        for term in site.terminals:
            self._organisation(
                term,
                nets["term-lan"],
                [
                    _service(22, "tcp", nets["term-lan"], "administration"),
                ],
            )
        rules = _SiteRules(self, site)
        for host, (ruleset, routes, forwarding, listeners) in rules.all_hosts().items():
            self._facts(host, ruleset, routes, forwarding, listeners)

    def _hub(self) -> None:
        core = self.shared["core"]
        b = nft.RulesetBuilder()
        _base(b, forward_policy="drop")
        b.rule("forward", nft.ct_state("established", "related"), nft.ACCEPT)
        log_site = self.sites[0]
        central = log_site.nets["srv-lan"].address(self.central_log, 4)
        for site in self.sites:
            # Each site's log host forwards to the central one; nothing else crosses the core.
            src = site.nets["srv-lan"].address(site.host("log"), 4)
            b.rule(
                "forward",
                nft.addr_match("saddr", src),
                nft.addr_match("daddr", central),
                nft.port_match("udp", 514),
                nft.COUNTER,
                nft.ACCEPT,
            )
        b.rule("forward", nft.COUNTER, nft.log("core-drop: "), nft.DROP)
        routes = [*_connected("core", core, "core-hub")]
        routes += [
            Route(
                family=4,
                destination=str(site.block),
                gateway=str(core.address(site.host("router"), 4)),
                device="core",
            )
            for site in self.sites
        ]
        self._facts("core-hub", b, routes, True, _sshd())

    def _organisation(self, host: str, ssh_net: Net, services: list[dict[str, Any]]) -> None:
        entry = self.hosts[host]
        entry["ssh"] = str(ssh_net.address(host, 4))
        entry["services"] = services

    # -- facts --------------------------------------------------------------------------------
    def _facts(
        self,
        host: str,
        ruleset: nft.RulesetBuilder,
        routes: list[Route],
        forwarding: bool,
        listeners: list[Listener],
    ) -> None:
        interfaces = [_loopback()]
        for net in self.all_nets:
            if host in net.members:
                interfaces.append(_interface(net, host, self.rng))
        document = ruleset.document()
        self.rule_counts[host] = ruleset.rule_count
        processes = [
            _process(1, "root", "systemd", "/sbin/init"),
            _process(52, "root", "systemd-journald", "/lib/systemd/systemd-journald"),
            _process(61, "root", "rsyslogd", "/usr/sbin/rsyslogd -n -iNONE"),
        ]
        processes += [
            _process(100 + i, "root", p.process or "unknown", p.process or "")
            for i, p in enumerate(listeners)
        ]
        packages = dict(BASE_PACKAGES)
        if any(lst.process == "x11vnc" for lst in listeners):
            packages["x11vnc"] = "0.9.16-9"
        parts = {
            "interfaces": interfaces,
            "routes": routes,
            "nftables": document,
            "listeners": listeners,
            "processes": processes,
            "packages": packages,
        }
        evidence = {name: _ref(host, name, value) for name, value in parts.items()}
        self.facts[host] = HostFacts(
            host=host,
            interfaces=interfaces,
            routes=routes,
            policy_rules=[
                PolicyRule(family=f, priority=p, table=t, selector={"src": "all"})
                for f in (4, 6)
                for p, t in ((0, "local"), (32766, "main"))
            ],
            forwarding_v4=forwarding,
            forwarding_v6=forwarding,
            nftables=document,
            listeners=listeners,
            processes=processes,
            wireguard=None,
            machine_id=hashlib.sha256(f"machine-id {host}".encode()).hexdigest()[:32],
            host_keys=[HostKey(type="ssh-ed25519", fingerprint=_fingerprint(host))],
            os_release={"ID": "debian", "VERSION_ID": "12"},
            packages=packages,
            evidence=evidence,
        )


def _service(port: int, proto: str, *sources_and_purpose: Any) -> dict[str, Any]:
    nets = [s for s in sources_and_purpose if isinstance(s, Net)]
    purpose = next(s for s in sources_and_purpose if isinstance(s, str))
    return {"port": port, "proto": proto, "from": [n.name for n in nets], "purpose": purpose}


def _ref(host: str, name: str, value: Any) -> str:
    text = json.dumps(value, default=lambda v: v.model_dump(mode="json"), sort_keys=True)
    return "sha256:" + hashlib.sha256(f"{host}\0{name}\0{text}".encode()).hexdigest()


def _fingerprint(host: str) -> str:
    digest = hashlib.sha256(f"host key {host}".encode()).hexdigest()
    return "SHA256:" + digest[:43]


def _loopback() -> Interface:
    return Interface(
        name="lo",
        kind="loopback",
        up=True,
        addresses=[
            InterfaceAddress(address="127.0.0.1", prefixlen=8, family=4, scope="host"),
            InterfaceAddress(address="::1", prefixlen=128, family=6, scope="host"),
        ],
    )


def _interface(net: Net, host: str, rng: random.Random) -> Interface:
    addresses = [
        InterfaceAddress(address=str(net.address(host, 4)), prefixlen=net.v4.prefixlen, family=4)
    ]
    if net.v6 is not None:
        addresses.append(
            InterfaceAddress(address=str(net.address(host, 6)), prefixlen=64, family=6)
        )
    kind = "wireguard" if net.zone == "tunnel" else "veth"
    mac = None if kind == "wireguard" else ":".join(f"{rng.randrange(256):02x}" for _ in range(6))
    return Interface(name=net.iface, kind=kind, up=True, mac=mac, addresses=addresses)


def _connected(iface: str, net: Net, host: str) -> list[Route]:
    routes = [
        Route(family=4, destination=str(net.v4), device=iface, source=str(net.address(host, 4)))
    ]
    if net.v6 is not None:
        routes.append(Route(family=6, destination=str(net.v6), device=iface, metric=256))
    return routes


def _default_via(net: Net, gateway: str, iface: str) -> list[Route]:
    routes = [
        Route(family=4, destination="default", gateway=str(net.address(gateway, 4)), device=iface)
    ]
    if net.v6 is not None:
        routes.append(
            Route(
                family=6,
                destination="default",
                gateway=str(net.address(gateway, 6)),
                device=iface,
                metric=1024,
            )
        )
    return routes


def _sshd() -> list[Listener]:
    return [
        Listener(proto="tcp", address="0.0.0.0", port=22, process="sshd", pid=410),
        Listener(proto="tcp", address="::", port=22, process="sshd", pid=410),
    ]


def _process(pid: int, user: str, command: str, args: str) -> Process:
    return Process(pid=pid, user=user, command=command, args=args or command)


def _base(
    b: nft.RulesetBuilder, *, output_policy: str = "accept", forward_policy: str = "drop"
) -> None:
    """Base chains and the rules every host's input starts with."""
    b.base_chain("input", "input", "drop")
    b.base_chain("forward", "forward", forward_policy)
    b.base_chain("output", "output", output_policy)
    b.rule("input", nft.iface_match("iif", "lo"), nft.ACCEPT)
    b.rule("input", nft.icmpv6_nd(), nft.ACCEPT)
    b.rule("input", nft.ct_state("established", "related"), nft.ACCEPT)
    b.rule("input", nft.ct_state("invalid"), nft.COUNTER, nft.DROP)


class _SiteRules:
    """Rule sets, routes, forwarding and listeners for the collected hosts of one site."""

    def __init__(self, builder: _Builder, site: Site) -> None:
        self.b = builder
        self.site = site
        self.nets = site.nets
        self.h = site.host

    def all_hosts(self) -> dict[str, tuple[nft.RulesetBuilder, list[Route], bool, list[Listener]]]:
        found = {
            self.h("recv"): self.recv(),
            self.h("send"): self.send(),
            self.h("log"): self.log_host(),
            self.h("router"): self.router(),
            self.h("office-gw"): self.office_gateway(),
        }
        for proc in self.site.processing:
            found[proc] = self.processing(proc)
        for term in self.site.terminals:
            found[term] = self.terminal(term)
        return found

    # -- shared pieces ------------------------------------------------------------------------
    def _admin_chain(self, b: nft.RulesetBuilder, iface: str, net: Net) -> None:
        """SSH from the administrators' workstations (routed in) and the local log host:
        one rule per workstation, as sites write them, plus a named set for the rest."""
        b.chain("admin")
        b.address_set("monitoring4", 4, [self.nets["srv-lan"].address(self.h("log"), 4)])
        for admin in self.b.admins:
            b.rule(
                "admin",
                nft.addr_match("saddr", admin),
                nft.port_match("tcp", 22),
                nft.COUNTER,
                nft.ACCEPT,
            )
        b.rule(
            "admin",
            nft.set_match("saddr", 4, "monitoring4"),
            nft.port_match("tcp", [22, 9100]),
            nft.ACCEPT,
        )
        b.rule("input", nft.iface_match("iifname", iface), nft.jump("admin"))
        for family in (4, 6):
            b.rule(
                "input",
                nft.iface_match("iifname", iface),
                nft.icmp_echo(family),
                nft.addr_match("saddr", net.v4 if family == 4 else net.v6 or net.v4),
                nft.ACCEPT,
            )

    def _drop_logged(self, b: nft.RulesetBuilder, chain: str) -> None:
        b.rule(chain, nft.COUNTER, nft.log(f"{chain}-drop: "), nft.DROP)

    def _restricted_output(
        self, b: nft.RulesetBuilder, allowed: list[tuple[Net, IPAddress, str, int]]
    ) -> None:
        b.rule("output", nft.iface_match("oif", "lo"), nft.ACCEPT)
        b.rule("output", nft.icmpv6_nd(), nft.ACCEPT)
        b.rule("output", nft.ct_state("established", "related"), nft.ACCEPT)
        for net, target, proto, port in allowed:
            b.rule(
                "output",
                nft.iface_match("oifname", net.iface),
                nft.addr_match("daddr", target),
                nft.port_match(proto, port),
                nft.ACCEPT,
            )

    # -- hosts --------------------------------------------------------------------------------
    def recv(self) -> tuple[nft.RulesetBuilder, list[Route], bool, list[Listener]]:
        host = self.h("recv")
        leaky = self.b.planted_on.get(host) == "recv-egress"
        b = nft.RulesetBuilder()
        _base(b, output_policy="accept" if leaky else "drop")
        cin, wg, lrecv = self.nets["carrier-in"], self.nets["wg-in"], self.nets["line-recv"]
        hospital = self.h("hospital")
        for family in (4, 6):
            b.rule(
                "input",
                nft.iface_match("iifname", "carrier-in"),
                nft.addr_match("saddr", cin.address(hospital, family)),
                nft.port_match("udp", 51820),
                nft.ACCEPT,
            )
        b.rule(
            "input",
            nft.iface_match("iifname", "wg-in"),
            nft.addr_match("saddr", wg.address(hospital, 4)),
            nft.port_match("tcp", 22),
            nft.ACCEPT,
        )
        for proc in self.site.processing:
            for family in (4, 6):
                b.rule(
                    "input",
                    nft.iface_match("iifname", "line-recv"),
                    nft.addr_match("saddr", lrecv.address(proc, family)),
                    nft.port_match("tcp", 22),
                    nft.COUNTER,
                    nft.ACCEPT,
                )
        self._blocklist(b)
        self._drop_logged(b, "input")
        if not leaky:
            self._restricted_output(b, [])
        routes = _connected("carrier-in", cin, host) + _connected("line-recv", lrecv, host)
        routes += _connected("wg-in", wg, host)
        listeners = [
            *_sshd(),
            Listener(proto="udp", address="0.0.0.0", port=51820, process="wireguard-go"),
        ]
        return b, routes, False, listeners

    def send(self) -> tuple[nft.RulesetBuilder, list[Route], bool, list[Listener]]:
        host = self.h("send")
        open_port = self.b.planted_on.get(host) == "send-inbound"
        b = nft.RulesetBuilder()
        _base(b, output_policy="drop")
        cout, wg, lsend = self.nets["carrier-out"], self.nets["wg-out"], self.nets["line-send"]
        for proc in self.site.processing:
            for family in (4, 6):
                b.rule(
                    "input",
                    nft.iface_match("iifname", "line-send"),
                    nft.addr_match("saddr", lsend.address(proc, family)),
                    nft.port_match("tcp", 22),
                    nft.ACCEPT,
                )
        if open_port:
            b.rule(
                "input",
                nft.iface_match("iifname", "carrier-out"),
                nft.port_match("tcp", 8443),
                nft.ACCEPT,
            )
        self._blocklist(b)
        self._drop_logged(b, "input")
        recipient = self.h("recipient")
        self._restricted_output(
            b,
            [
                (cout, cout.address(recipient, 4), "udp", 51820),
                (cout, cout.address(recipient, 6), "udp", 51820),
                (wg, wg.address(recipient, 4), "tcp", 22),
            ],
        )
        routes = _connected("line-send", lsend, host) + _connected("carrier-out", cout, host)
        routes += _connected("wg-out", wg, host)
        listeners = _sshd()
        if open_port:
            listeners.append(Listener(proto="tcp", address="0.0.0.0", port=8443, process="python3"))
        return b, routes, False, listeners

    def processing(self, host: str) -> tuple[nft.RulesetBuilder, list[Route], bool, list[Listener]]:
        srv, term = self.nets["srv-lan"], self.nets["term-lan"]
        lrecv, lsend = self.nets["line-recv"], self.nets["line-send"]
        b = nft.RulesetBuilder()
        _base(b, output_policy="drop")
        self._admin_chain(b, "srv-lan", srv)
        # The analysts' terminals, routed in by the site router: one rule per terminal.
        for t in self.site.terminals:
            b.rule(
                "input",
                nft.iface_match("iifname", "srv-lan"),
                nft.addr_match("saddr", term.address(t, 4)),
                nft.port_match("tcp", [22, 443]),
                nft.COUNTER,
                nft.ACCEPT,
            )
        self._drop_logged(b, "input")
        log_addr = srv.address(self.h("log"), 4)
        self._restricted_output(
            b,
            [
                (lrecv, lrecv.address(self.h("recv"), 4), "tcp", 22),
                (lrecv, lrecv.address(self.h("recv"), 6), "tcp", 22),
                (lsend, lsend.address(self.h("send"), 4), "tcp", 22),
                (lsend, lsend.address(self.h("send"), 6), "tcp", 22),
                (srv, log_addr, "udp", 514),
            ],
        )
        dual_homed = self.b.planted_on.get(host) == "proc-dual-homed"
        if dual_homed:
            # "Just for the package updates": the office LAN and, through it, the Internet.
            b.rule("output", nft.iface_match("oifname", "office"), nft.ACCEPT)
        self._drop_logged(b, "output")
        routes = (
            _connected("line-recv", lrecv, host)
            + _connected("line-send", lsend, host)
            + _connected("srv-lan", srv, host)
        )
        router = self.h("router")
        routes.append(
            Route(
                family=4,
                destination=str(term.v4),
                gateway=str(srv.address(router, 4)),
                device="srv-lan",
            )
        )
        if dual_homed:
            office = self.nets["office"]
            routes += _connected("office", office, host)
            routes += _default_via(office, self.h("office-gw"), "office")
        listeners = [
            *_sshd(),
            Listener(proto="tcp", address="0.0.0.0", port=443, process="nginx"),
            Listener(proto="tcp", address="0.0.0.0", port=9100, process="node_exporter"),
        ]
        return b, routes, False, listeners

    def log_host(self) -> tuple[nft.RulesetBuilder, list[Route], bool, list[Listener]]:
        host = self.h("log")
        srv = self.nets["srv-lan"]
        b = nft.RulesetBuilder()
        _base(b)
        self._admin_chain(b, "srv-lan", srv)
        b.rule(
            "input",
            nft.iface_match("iifname", "srv-lan"),
            nft.addr_match("saddr", srv.v4),
            nft.port_match("udp", 514),
            nft.ACCEPT,
        )
        if host == self.b.central_log:
            # The central log host receives every site's logs over the core.
            for site in self.b.sites:
                b.rule(
                    "input",
                    nft.iface_match("iifname", "srv-lan"),
                    nft.addr_match("saddr", site.block),
                    nft.port_match("udp", 514),
                    nft.COUNTER,
                    nft.ACCEPT,
                )
        self._drop_logged(b, "input")
        routes = _connected("srv-lan", srv, host)
        routes += _default_via(srv, self.h("router"), "srv-lan")[:1]
        listeners = [
            *_sshd(),
            Listener(proto="udp", address="0.0.0.0", port=514, process="rsyslogd"),
        ]
        return b, routes, False, listeners

    def terminal(self, host: str) -> tuple[nft.RulesetBuilder, list[Route], bool, list[Listener]]:
        term = self.nets["term-lan"]
        vnc = self.b.planted_on.get(host) == "terminal-vnc"
        b = nft.RulesetBuilder()
        _base(b, output_policy="drop")
        self._admin_chain(b, "term-lan", term)
        if vnc:
            b.rule(
                "input",
                nft.iface_match("iifname", "term-lan"),
                nft.port_match("tcp", 5900),
                nft.ACCEPT,
            )
        self._drop_logged(b, "input")
        srv = self.nets["srv-lan"]
        self._restricted_output(
            b,
            [
                (term, srv.address(p, 4), "tcp", port)
                for p in self.site.processing
                for port in (22, 443)
            ]
            + [(term, srv.address(self.h("log"), 4), "udp", 514)],
        )
        self._drop_logged(b, "output")
        routes = _connected("term-lan", term, host)
        routes += _default_via(term, self.h("router"), "term-lan")[:1]
        listeners = _sshd()
        if vnc:
            listeners.append(Listener(proto="tcp", address="0.0.0.0", port=5900, process="x11vnc"))
        return b, routes, False, listeners

    def router(self) -> tuple[nft.RulesetBuilder, list[Route], bool, list[Listener]]:
        host = self.h("router")
        srv, term, core = self.nets["srv-lan"], self.nets["term-lan"], self.b.shared["core"]
        b = nft.RulesetBuilder()
        _base(b, forward_policy="drop")
        self._admin_chain(b, "srv-lan", srv)
        self._drop_logged(b, "input")
        b.rule("forward", nft.ct_state("established", "related"), nft.ACCEPT)
        b.rule("forward", nft.ct_state("invalid"), nft.DROP)
        b.chain("terminals")
        b.rule(
            "forward",
            nft.iface_match("iifname", "term-lan"),
            nft.iface_match("oifname", "srv-lan"),
            nft.jump("terminals"),
        )
        # Per terminal and processing server: the pairs the site's access list allows.
        for t in self.site.terminals:
            for p in self.site.processing:
                b.rule(
                    "terminals",
                    nft.addr_match("saddr", term.address(t, 4)),
                    nft.addr_match("daddr", srv.address(p, 4)),
                    nft.port_match("tcp", [22, 443]),
                    nft.COUNTER,
                    nft.ACCEPT,
                )
            b.rule(
                "terminals",
                nft.addr_match("saddr", term.address(t, 4)),
                nft.addr_match("daddr", srv.address(self.h("log"), 4)),
                nft.port_match("udp", 514),
                nft.ACCEPT,
            )
        log_addr = srv.address(self.h("log"), 4)
        b.rule(
            "forward",
            nft.iface_match("iifname", "srv-lan"),
            nft.iface_match("oifname", "core"),
            nft.addr_match("saddr", log_addr),
            nft.port_match("udp", 514),
            nft.ACCEPT,
        )
        for admin in self.b.admins:
            b.rule(
                "forward",
                nft.iface_match("iifname", "core"),
                nft.addr_match("saddr", admin),
                nft.port_match("tcp", 22),
                nft.ACCEPT,
            )
        self._drop_logged(b, "forward")
        routes = (
            _connected("srv-lan", srv, host)
            + _connected("term-lan", term, host)
            + _connected("core", core, host)
        )
        routes += _default_via(core, "core-hub", "core")[:1]
        return b, routes, True, _sshd()

    def office_gateway(self) -> tuple[nft.RulesetBuilder, list[Route], bool, list[Listener]]:
        host = self.h("office-gw")
        office, inet = self.nets["office"], self.b.shared["inet"]
        b = nft.RulesetBuilder()
        _base(b, forward_policy="drop")
        b.rule("input", nft.iface_match("iifname", "office"), nft.port_match("tcp", 22), nft.ACCEPT)
        self._drop_logged(b, "input")
        b.rule("forward", nft.ct_state("established", "related"), nft.ACCEPT)
        b.rule(
            "forward",
            nft.iface_match("iifname", "office"),
            nft.iface_match("oifname", "inet"),
            nft.ACCEPT,
        )
        self._drop_logged(b, "forward")
        b.base_chain("postrouting", "postrouting", "accept", kind="nat")
        b.rule("postrouting", nft.iface_match("oifname", "inet"), nft.masquerade())
        routes = _connected("office", office, host) + _connected("inet", inet, host)
        routes += _default_via(inet, "inet-vantage", "inet")
        return b, routes, True, _sshd()

    def _blocklist(self, b: nft.RulesetBuilder) -> None:
        """Addresses the site's security team blocked after incidents: a named interval set."""
        rng = self.b.rng
        blocked: list[IPAddress | IPNetwork] = [
            IPNetwork(f"10.98.{rng.randrange(256)}.{rng.randrange(0, 256, 16)}/28")
            for _ in range(12)
        ]
        b.address_set("blocked4", 4, sorted(set(blocked)))
        b.rule(
            "input",
            nft.set_match("saddr", 4, "blocked4"),
            nft.COUNTER,
            nft.log("blocked: "),
            nft.DROP,
        )
