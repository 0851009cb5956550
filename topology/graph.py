"""The topology graph: hosts, segments (networks and tunnels), and each host's behaviour.

Built from the inventory and whatever facts were collected. Nodes are ``host:NAME`` and
``segment:NAME``; an edge joins a host to each segment it has an address on (from its
interfaces when collected, from the inventory's declared addresses otherwise), and a tunnel to
the network it runs over. Each host keeps a :class:`HostModel`: its compiled firewall (unknown
when not collected), its main routing table, its forwarding flags and interfaces.

Routing follows ``ip route`` for the main table: local addresses first, then the longest
prefix, then the lowest metric; policy routing rules and other tables are not modelled (a host
with rules beyond the three defaults gets a note saying so).
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any, Literal

import networkx as nx
from netaddr import AddrFormatError, IPAddress, IPNetwork, IPSet

from auditor.domain.facts import HostFacts, Interface, Listener, Route
from auditor.domain.inventory import HostDef, Inventory, Medium, Role, Zone
from topology.addrtypes import AddressTypes
from topology.fields import family_universe
from topology.firewall import Firewall
from topology.hostrules import host_document
from topology.intervals import V4_TOP, V6_TOP, AddressSet, contains, normalise

LOOPBACK = AddressSet.of("127.0.0.0/8", "::1/128")
#: The rules every Linux host has (local, main, default); anything else is policy routing.
DEFAULT_RULE_PRIORITIES = frozenset({0, 32766, 32767})


def host_node(name: str) -> str:
    return f"host:{name}"


def segment_node(name: str) -> str:
    return f"segment:{name}"


@dataclass(frozen=True)
class Segment:
    """A layer-2 segment: an inventory network, a tunnel, or an address range nobody declared."""

    name: str
    kind: Literal["network", "tunnel", "unmapped"]
    prefixes: tuple[IPNetwork, ...]
    zone: Zone | None = None
    medium: Medium | None = None
    over: str | None = None  #: a tunnel's underlay network

    @cached_property
    def addresses(self) -> AddressSet:
        return AddressSet.of(*self.prefixes)


@dataclass(frozen=True)
class Attachment:
    """A host's presence on a segment: the interface (when known) and its addresses there."""

    host: str
    segment: str
    interface: str | None
    addresses: tuple[IPAddress, ...]


@dataclass(frozen=True)
class RouteEntry:
    prefix: IPNetwork
    type: str = "unicast"
    gateway: IPAddress | None = None
    device: str | None = None
    metric: int = 0

    @cached_property
    def addresses(self) -> AddressSet:
        return AddressSet.of(self.prefix)

    def describe(self) -> str:
        via = f" via {self.gateway}" if self.gateway is not None else ""
        dev = f" dev {self.device}" if self.device else ""
        kind = "" if self.type == "unicast" else f"{self.type} "
        shown = "default" if self.prefix.prefixlen == 0 else str(self.prefix)
        return f"{kind}{shown}{via}{dev}"


class RouteTable:
    """One host's main routing table, both families, with symbolic longest-prefix match."""

    def __init__(self, entries: Iterable[RouteEntry]) -> None:
        ordered = sorted(entries, key=lambda e: (-e.prefix.prefixlen, e.metric))
        self._by_family: dict[int, list[RouteEntry]] = {4: [], 6: []}
        for entry in ordered:
            self._by_family[entry.prefix.version].append(entry)

    @classmethod
    def from_facts(cls, routes: Iterable[Route]) -> RouteTable:
        entries = [e for r in routes if (e := _route_entry(r)) is not None]
        return cls(entries)

    def entries(self, family: int) -> list[RouteEntry]:
        return list(self._by_family[family])

    def lookup(
        self, family: int, destinations: AddressSet | IPSet
    ) -> list[tuple[AddressSet, RouteEntry | None]]:
        """Partition destinations by the route each one takes; None for "no route"."""
        remaining = AddressSet.coerce(destinations) & family_universe(family)
        parts: list[tuple[AddressSet, RouteEntry | None]] = []
        for entry in self._by_family[family]:
            if not remaining:
                break
            # Entries are sorted by prefix length then metric: the first that covers wins.
            covered = remaining & entry.addresses
            if covered:
                parts.append((covered, entry))
                remaining = remaining - covered
        if remaining:
            parts.append((remaining, None))
        return parts


def _route_entry(route: Route) -> RouteEntry | None:
    if route.table not in ("main", "254"):
        return None
    try:
        if route.destination == "default":
            prefix = _network("0.0.0.0/0" if route.family == 4 else "::/0")
        else:
            prefix = _network(route.destination)
        gateway = _address(route.gateway) if route.gateway else None
    except (AddrFormatError, ValueError):
        return None
    metric = route.metric if route.metric is not None else 0
    return RouteEntry(prefix, route.type, gateway, route.device, metric)


# Hosts of a site list the same routes and gateways; parsing each text once was a fifth of
# building a large topology. The objects are shared read-only (RouteEntry is frozen).
@lru_cache(maxsize=1 << 16)
def _network(text: str) -> IPNetwork:
    return IPNetwork(text).cidr


@lru_cache(maxsize=1 << 16)
def _address(text: str) -> IPAddress:
    return IPAddress(text)


@dataclass
class HostModel:
    """What the reachability engine needs to know about one host."""

    name: str
    roles: tuple[Role, ...]
    firewall: Firewall
    routes: RouteTable | None  #: None when not collected
    forwarding: dict[int, bool | None]  #: per family; None when not collected
    interfaces: dict[str, Interface] = field(default_factory=dict)
    attachments: list[Attachment] = field(default_factory=list)
    facts_known: bool = False
    listeners: list[Listener] | None = None
    notes: list[str] = field(default_factory=list)

    @cached_property
    def addresses(self) -> AddressSet:
        """The host's own addresses on its segments (loopback excluded)."""
        return AddressSet.of(*[a for att in self.attachments for a in att.addresses])

    @cached_property
    def local_addresses(self) -> AddressSet:
        """Every destination the host delivers locally: its addresses and loopback."""
        extra = [
            parsed
            for i in self.interfaces.values()
            for a in i.addresses
            if (parsed := _parse_ip(a.address)) is not None
        ]
        return self.addresses | LOOPBACK | AddressSet.of(*extra)

    @cached_property
    def answering_addresses(self) -> AddressSet:
        """The local addresses other hosts can send to: every one but loopback."""
        return self.local_addresses - LOOPBACK

    def attachment_on(self, segment: str) -> Attachment | None:
        return next((a for a in self.attachments if a.segment == segment), None)

    def attachment_of_interface(self, interface: str) -> Attachment | None:
        return next((a for a in self.attachments if a.interface == interface), None)

    def addresses_on(self, segment: str, family: int | None = None) -> AddressSet:
        found = self._addresses_by_segment.get(segment)
        if found is None:
            att = self.attachment_on(segment)
            found = AddressSet.of(*att.addresses) if att else AddressSet()
            self._addresses_by_segment[segment] = found
        return found.in_family(family) if family else found

    @cached_property
    def _addresses_by_segment(self) -> dict[str, AddressSet]:
        # Asked at every on-link delivery and masquerade: converted once per segment.
        return {}

    @property
    def is_router(self) -> bool:
        return Role.ROUTER in self.roles


def _parse_ip(text: str) -> IPAddress | None:
    try:
        return _address(text)
    except (AddrFormatError, ValueError):
        return None


class Topology:
    """The graph plus per-host models and per-segment address ownership."""

    def __init__(self, segments: Mapping[str, Segment], hosts: Mapping[str, HostModel]) -> None:
        self.segments = dict(segments)
        self.hosts = dict(hosts)
        self.graph = nx.Graph()
        #: per segment: (family, address as an integer) -> the host holding it there
        self._owners: dict[str, dict[tuple[int, int], str]] = {s: {} for s in self.segments}
        for segment in self.segments.values():
            self.graph.add_node(
                segment_node(segment.name),
                kind=segment.kind,
                zone=segment.zone,
                medium=segment.medium,
                prefixes=[str(p) for p in segment.prefixes],
            )
            if segment.over is not None and segment.over in self.segments:
                self.graph.add_edge(
                    segment_node(segment.name), segment_node(segment.over), kind="underlay"
                )
        for host in self.hosts.values():
            self.graph.add_node(host_node(host.name), kind="host", model=host)
            for att in host.attachments:
                self.graph.add_edge(
                    host_node(host.name),
                    segment_node(att.segment),
                    kind="attachment",
                    interface=att.interface,
                    addresses=[str(a) for a in att.addresses],
                )
                for address in att.addresses:
                    key = (address.version, int(address))
                    self._owners.setdefault(att.segment, {})[key] = host.name

    @classmethod
    def build(cls, inventory: Inventory, facts: Mapping[str, HostFacts]) -> Topology:
        segments = _inventory_segments(inventory)
        hosts: dict[str, HostModel] = {}
        firewalls = FirewallCache()
        for name, definition in inventory.hosts.items():
            hosts[name] = _host_model(
                name, definition, facts.get(name), inventory, segments, firewalls=firewalls
            )
        return cls(segments, hosts)

    def owner_of(self, segment: str, address: IPAddress) -> str | None:
        return self._owners.get(segment, {}).get((address.version, int(address)))

    def owners(
        self, segment: str, destinations: AddressSet | IPSet
    ) -> list[tuple[str, AddressSet]]:
        """The hosts owning some of the destinations on a segment, with those addresses."""
        destinations = AddressSet.coerce(destinations)
        by_host: dict[str, list[tuple[int, int]]] = {}
        owners = self._owners.get(segment, {})
        if len(owners) <= 64 or destinations.size > len(owners):
            candidates: Iterable[tuple[tuple[int, int], str]] = owners.items()
        else:
            # Few destinations: look each one up instead of scanning the whole segment.
            candidates = ((k, owners[k]) for k in destinations.integers() if k in owners)
        for (family, value), host in candidates:
            if contains(destinations.spans(family), value):
                by_host.setdefault(host, []).append((family, value))
        return [(h, _address_set_of(keys)) for h, keys in by_host.items()]

    def owners_among(
        self, segment: str, hosts: Iterable[str], destinations: AddressSet
    ) -> list[tuple[str, AddressSet]]:
        """Like ``owners``, looking only at the given hosts (cheap on a crowded segment)."""
        found = []
        for name in hosts:
            owned = self.hosts[name].addresses_on(segment) & destinations
            if owned:
                found.append((name, owned))
        return found

    def members(self, segment: str) -> list[str]:
        return sorted(set(self._owners.get(segment, {}).values()))

    def segments_containing(self, addresses: AddressSet | IPSet) -> list[str]:
        wanted = AddressSet.coerce(addresses)
        return [s.name for s in self.segments.values() if s.addresses & wanted]

    def segment_addresses(self, name: str) -> AddressSet:
        return self.segments[name].addresses


def _address_set_of(keys: Iterable[tuple[int, int]]) -> AddressSet:
    spans: dict[int, list[tuple[int, int]]] = {4: [], 6: []}
    for family, value in keys:
        spans[family].append((value, value))
    return AddressSet(normalise(spans[4], V4_TOP), normalise(spans[6], V6_TOP))


def _inventory_segments(inventory: Inventory) -> dict[str, Segment]:
    segments = {
        name: Segment(name, "network", tuple(d.prefixes), zone=d.zone, medium=d.medium)
        for name, d in inventory.networks.items()
    }
    for name, t in inventory.tunnels.items():
        underlay = inventory.networks.get(t.over)
        segments[name] = Segment(
            name,
            "tunnel",
            tuple(t.prefixes),
            # A tunnel to another organisation's host is as external as its underlay says.
            zone=underlay.zone if underlay else None,
            medium=underlay.medium if underlay else None,
            over=t.over,
        )
    return segments


def _host_model(
    name: str,
    definition: HostDef,
    facts: HostFacts | None,
    inventory: Inventory,
    segments: dict[str, Segment],
    *,
    firewalls: FirewallCache,
) -> HostModel:
    if facts is None:
        return HostModel(
            name=name,
            roles=tuple(definition.roles),
            firewall=Firewall.unknown(),
            routes=None,
            forwarding={4: None, 6: None},
            attachments=_declared_attachments(name, definition),
            notes=["no facts collected: firewall, routes and forwarding unknown"],
        )
    firewall, firewall_notes = _host_firewall(facts, firewalls)
    interfaces = {i.name: i for i in facts.interfaces or []}
    attachments = (
        _observed_attachments(name, facts.interfaces, inventory, segments)
        if facts.interfaces is not None
        else _declared_attachments(name, definition)
    )
    return HostModel(
        name=name,
        roles=tuple(definition.roles),
        firewall=firewall,
        routes=RouteTable.from_facts(facts.routes) if facts.routes is not None else None,
        forwarding={4: facts.forwarding_v4, 6: facts.forwarding_v6},
        interfaces=interfaces,
        attachments=attachments,
        facts_known=True,
        listeners=facts.listeners,
        notes=_fact_notes(facts) + firewall_notes,
    )


def _host_firewall(facts: HostFacts, firewalls: FirewallCache) -> tuple[Firewall, list[str]]:
    """The host's firewall: nftables with iptables beside it (topology/hostrules.py), the
    address types from its local routing table for ``fib``/``addrtype`` matches."""
    if facts.nftables is None:
        return Firewall.unknown(), []
    unread = facts.errors.get("iptables")
    document, notes = host_document(facts.nftables, facts.iptables, unread)
    routes, rules = facts.routes, facts.policy_rules

    def types() -> AddressTypes | None:
        return None if routes is None else AddressTypes.from_routes(routes, rules)

    return firewalls.get(document, types), notes


class FirewallCache:
    """Compiled firewalls by the content of their rule set: hosts with the same ``nft -j``
    document (every terminal of a site, typically) share one compiled, immutable Firewall,
    and with it whatever the Firewall memoises.

    The key is a digest of the document's pickle (only ever written here, never loaded),
    which takes a third of the time of its JSON text. Equal pickles are equal documents, key
    order included; equal documents pickle alike when built alike (one JSON text parsed each
    time), and otherwise at worst miss the cache and are compiled once more.
    """

    def __init__(self) -> None:
        self._compiled: dict[bytes, Firewall] = {}

    def get(
        self,
        document: Mapping[str, Any],
        types: Callable[[], AddressTypes | None] = lambda: None,
    ) -> Firewall:
        """``types`` gives the host's address types. It is asked (routes read into address
        sets) only for a rule set using ``fib``, the only matches that read the host's own
        addresses: other rule sets stay shared, and most hosts never pay for it."""
        data = pickle.dumps(document, protocol=5)
        digest = hashlib.sha256(data)
        host_types = types() if b"fib" in data else None
        if host_types is not None:
            digest.update(pickle.dumps(host_types, protocol=5))
        key = digest.digest()
        firewall = self._compiled.get(key)
        if firewall is None:
            firewall = self._compiled[key] = Firewall.from_nft_json(document, types=host_types)
        return firewall


def _fact_notes(facts: HostFacts) -> list[str]:
    notes = [f"{fact} not collected: {why}" for fact, why in facts.errors.items()]
    if facts.interfaces is None:
        notes.append("interfaces not collected: the inventory's addresses are used")
    extra_rules = [r for r in facts.policy_rules or [] if r.priority not in DEFAULT_RULE_PRIORITIES]
    if extra_rules:
        notes.append(
            f"{len(extra_rules)} policy routing rule(s) not modelled: only the main table is used"
        )
    return notes


def _declared_attachments(name: str, definition: HostDef) -> list[Attachment]:
    return [
        Attachment(name, segment, None, tuple(addresses))
        for segment, addresses in definition.addresses.items()
    ]


def _observed_attachments(
    name: str,
    interfaces: list[Interface],
    inventory: Inventory,
    segments: dict[str, Segment],
) -> list[Attachment]:
    found: dict[tuple[str, str], list[IPAddress]] = {}
    for interface in interfaces:
        if interface.kind == "loopback" or interface.name == "lo":
            continue
        for addr in interface.addresses:
            address = _parse_ip(addr.address)
            if address is None or addr.scope != "global" or address in LOOPBACK:
                continue
            segment = inventory.network_of(address) or _unmapped(address, addr.prefixlen, segments)
            found.setdefault((segment, interface.name), []).append(address)
    return [Attachment(name, seg, ifname, tuple(addrs)) for (seg, ifname), addrs in found.items()]


def _unmapped(address: IPAddress, prefixlen: int, segments: dict[str, Segment]) -> str:
    """A segment for an address no inventory network covers (named after its prefix)."""
    prefix = IPNetwork(f"{address}/{prefixlen}").cidr
    name = f"unmapped:{prefix}"
    segments.setdefault(name, Segment(name, "unmapped", (prefix,)))
    return name
