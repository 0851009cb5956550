"""Path questions on a stored model: "can SOURCE open a new connection to TARGET, and how?"

Nothing is sent: the answers come from the topology rebuilt from a run's collected facts
(``auditor.analysis.stored``) and the symbolic search of ``topology.reach``. A source is a host
of the inventory (connections from its own addresses) or a network or tunnel (a device there
that the inventory does not list). A target is a host (its input hook must accept), a network
or tunnel (reaching its wire is enough), or an address or prefix (a single address of a host is
asked as that host: its input must accept).

The answers are plain dataclasses; ``to_json`` gives what ``auditor query --json`` prints.
Every text in them that a host supplied (rule texts, notes) is untrusted: the command line
prints it as data.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from netaddr import AddrFormatError, IPNetwork

from auditor.domain.errors import AuditorError
from topology.fields import (
    ICMP,
    ICMPV6,
    TCP,
    UDP,
    describe_ipset,
    describe_protos,
    ports,
    protos,
)
from topology.graph import Topology
from topology.intervals import AddressSet
from topology.reach import (
    Reachability,
    ReachPath,
    ReachResult,
    Step,
    reach,
    reach_from_segment,
)
from topology.space import Cube, PacketSpace

#: How many close names an unknown-name error suggests.
CLOSE_NAMES = 5
#: Up to this many names, an unknown-name error with no close one lists them all.
LISTED_NAMES = 20
#: Paths kept per answer (the certain and shortest first).
MAX_PATHS = 16


class QueryError(AuditorError):
    """A query that cannot be asked: an unknown name, or options that do not fit together."""


class Proto(StrEnum):
    TCP = "tcp"
    UDP = "udp"
    ICMP = "icmp"


class EndpointKind(StrEnum):
    HOST = "host"
    NETWORK = "network"
    TUNNEL = "tunnel"
    UNMAPPED = "unmapped"  #: a prefix a host has an address in, that no inventory network covers
    ADDRESSES = "addresses"  #: an address or prefix given on the command line


@dataclass(frozen=True)
class Endpoint:
    """A resolved ``--from`` or ``--to``: its name, what it is and the addresses it stands for."""

    name: str
    kind: EndpointKind
    addresses: AddressSet
    #: the host an address target belongs to (its input must then accept, as for a host)
    owner: str | None = None

    @property
    def is_segment(self) -> bool:
        return self.kind in (EndpointKind.NETWORK, EndpointKind.TUNNEL, EndpointKind.UNMAPPED)

    @property
    def needs_input(self) -> bool:
        """Does reaching it take a host's input accepting, not only the packet on a wire?"""
        return self.kind is EndpointKind.HOST or self.owner is not None

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "name": self.name,
            "kind": str(self.kind),
            "addresses": [str(c) for c in self.addresses.cidrs()],
        }
        if self.owner is not None:
            document["host"] = self.owner
        return document

    def describe(self) -> str:
        held = f", an address of {self.owner}" if self.owner else ""
        return f"{self.name} ({self.kind}: {describe_ipset(self.addresses)}{held})"


@dataclass(frozen=True)
class Hop:
    """One step of a path as a person reads it (``topology.reach.Step``, JSON-able)."""

    host: str
    network: str | None
    direction: str
    rule: str | None
    rule_ref: str | None

    @classmethod
    def of(cls, step: Step) -> Hop:
        return cls(step.host, step.network, str(step.direction), step.rule, step.rule_ref)

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "network": self.network,
            "direction": self.direction,
            "rule": self.rule,
            "rule_ref": self.rule_ref,
        }


@dataclass(frozen=True)
class PathAnswer:
    """One path: its hops, whether every step of it was certain, the packet classes that take
    it (as the source sent them) and, when uncertain, why."""

    hops: tuple[Hop, ...]
    certain: bool
    packets: tuple[str, ...]
    reasons: tuple[str, ...]

    @classmethod
    def merged(cls, paths: list[ReachPath]) -> PathAnswer:
        """Paths of the same hops and certainty as one: the search may split the packets
        taking a route (by the destination address they were sent to, say), a reader asks
        which routes there are."""
        first = paths[0]
        space = PacketSpace.empty()
        for path in paths:
            space = space.union(path.space)
        return cls(
            hops=tuple(Hop.of(s) for s in first.hops),
            certain=first.certain,
            packets=tuple(space.describe()),
            reasons=tuple(dict.fromkeys(r for p in paths for r in p.reasons)),
        )

    def details_json(self) -> dict[str, Any]:
        return {
            "certain": self.certain,
            "packets": list(self.packets),
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True)
class PacketClass:
    """One class of packets that gets through, in full (the text summary abbreviates long
    address lists): for scripts reading ``--json``."""

    certain: bool
    family: int
    protocols: str
    sport: str
    dport: str
    icmp_type: str
    sources: tuple[str, ...]  #: CIDRs
    destinations: tuple[str, ...]  #: CIDRs

    @classmethod
    def of(cls, cube: Cube, *, certain: bool) -> PacketClass:
        return cls(
            certain=certain,
            family=cube.version,
            protocols=describe_protos(cube.proto),
            sport=str(cube.sport),
            dport=str(cube.dport),
            icmp_type=str(cube.icmp_type),
            sources=tuple(str(c) for c in cube.saddr.cidrs()),
            destinations=tuple(str(c) for c in cube.daddr.cidrs()),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "certain": self.certain,
            "family": self.family,
            "protocols": self.protocols,
            "sport": self.sport,
            "dport": self.dport,
            "icmp_type": self.icmp_type,
            "from": list(self.sources),
            "to": list(self.destinations),
        }


@dataclass(frozen=True)
class QueryAnswer:
    """The answer to one (source, target, packets) question."""

    source: Endpoint
    target: Endpoint
    asked: str  #: the packets asked about, in words
    reachable: Reachability
    packets: tuple[str, ...]  #: ReachResult.summary(): the classes that get through
    paths: tuple[PathAnswer, ...]
    reasons: tuple[str, ...]  #: why uncertain paths are uncertain, over all paths
    notes: tuple[str, ...]
    #: the same classes as ``packets``, every address listed
    classes: tuple[PacketClass, ...] = ()
    #: what the query itself remarks on the question (always shown, unlike the model's notes)
    remarks: tuple[str, ...] = ()

    @property
    def can_reach(self) -> bool:
        """Yes, or maybe: what an inbound question lists."""
        return self.reachable is not Reachability.NO

    def to_json(self) -> dict[str, Any]:
        return {
            "from": self.source.to_json(),
            "to": self.target.to_json(),
            "asked": self.asked,
            "reachable": str(self.reachable),
            "packets": list(self.packets),
            "packet_classes": [c.to_json() for c in self.classes],
            # Each path is its list of hops; what else is known of path i is path_details[i].
            "paths": [[h.to_json() for h in p.hops] for p in self.paths],
            "path_details": [p.details_json() for p in self.paths],
            "reasons": list(self.reasons),
            "notes": list(self.notes),
            "remarks": list(self.remarks),
        }


@dataclass(frozen=True)
class InboundAnswer:
    """Who can open a connection to a target: one answer per source that can (yes or
    unknown), out of ``sources_asked`` networks, tunnels and collected hosts."""

    target: Endpoint
    asked: str
    sources_asked: int
    answers: tuple[QueryAnswer, ...]

    def to_json(self) -> list[dict[str, Any]]:
        return [a.to_json() for a in self.answers]


# -- packets ------------------------------------------------------------------------------------


def packet_space(proto: Proto | None = None, port: int | None = None) -> PacketSpace:
    """The new connections asked about. No option: TCP, UDP and echo requests (the new
    connections of docs/controls.md); ``port`` alone: TCP and UDP to it; icmp: echo requests
    of both families."""
    if proto is Proto.ICMP:
        if port is not None:
            raise QueryError("--port does not apply to icmp (echo requests have no port)")
        return PacketSpace.connection_attempts().where(proto=protos(ICMP, ICMPV6))
    if proto is None and port is None:
        return PacketSpace.connection_attempts()
    numbers = protos(TCP, UDP) if proto is None else protos(TCP if proto is Proto.TCP else UDP)
    if port is None:
        return PacketSpace.new_connections(protocols=numbers)
    if not 0 < port < 65536:
        raise QueryError(f"--port {port} is not a port number (1-65535)")
    return PacketSpace.new_connections(protocols=numbers, dports=ports(port))


def describe_asked(proto: Proto | None, port: int | None) -> str:
    if proto is Proto.ICMP:
        return "new connections: icmp echo requests (IPv4 and IPv6)"
    if proto is None and port is None:
        return "new connections: tcp, udp, icmp echo requests"
    kinds = "tcp, udp" if proto is None else str(proto)
    return f"new connections: {kinds}" + (f" to port {port}" if port is not None else "")


# -- names --------------------------------------------------------------------------------------


def resolve_source(topology: Topology, name: str) -> Endpoint:
    """A host of the inventory, or a network or tunnel; else a QueryError naming close names."""
    found = _named(topology, name)
    if found is None:
        raise QueryError(_unknown_name("source", name, _names(topology)))
    return found


def resolve_target(topology: Topology, text: str) -> Endpoint:
    """A host, a network or tunnel, or an IPv4/IPv6 address or prefix."""
    found = _named(topology, text)
    if found is not None:
        return found
    addresses = _parse_addresses(text)
    if addresses is None:
        raise QueryError(_unknown_name("target", text, _names(topology), "an address or prefix"))
    return Endpoint(text, EndpointKind.ADDRESSES, addresses, _owner(topology, addresses))


def _owner(topology: Topology, addresses: AddressSet) -> str | None:
    """The host a single address belongs to. Such an address is asked as the host is: a
    packet on the wire to it says nothing of whether the host takes the connection, and a
    "yes" its own firewall refutes would mislead. A prefix stays a piece of network."""
    if addresses.size != 1:
        return None
    return next(
        (
            name
            for name, host in topology.hosts.items()
            if addresses.issubset(host.answering_addresses)
        ),
        None,
    )


def _named(topology: Topology, name: str) -> Endpoint | None:
    # The inventory keeps host and network names apart (one namespace per kind); a host is
    # looked up first because it is what an auditor names most often.
    host = topology.hosts.get(name)
    if host is not None:
        return Endpoint(name, EndpointKind.HOST, host.answering_addresses)
    segment = topology.segments.get(name)
    if segment is not None:
        return Endpoint(name, EndpointKind(segment.kind), segment.addresses)
    return None


def _names(topology: Topology) -> list[str]:
    return sorted(set(topology.hosts) | set(topology.segments))


def _unknown_name(role: str, name: str, known: Iterable[str], alternatives: str = "") -> str:
    known = list(known)
    close = difflib.get_close_matches(name, known, n=CLOSE_NAMES, cutoff=0.5)
    what = "a host, network or tunnel" + (f", or {alternatives}" if alternatives else "")
    if close:
        hint = f"close names: {', '.join(close)}"
    elif len(known) <= LISTED_NAMES:
        hint = f"known names: {', '.join(known)}"
    else:
        hint = f"no name of its {len(known)} hosts, networks and tunnels is close"
    return f"unknown {role} {name!r}: not {what} of this run; {hint}"


def _parse_addresses(text: str) -> AddressSet | None:
    # Only text that looks like an address is parsed: netaddr reads a bare number as one, and
    # a mistyped host name ("42") must say "unknown name", not query 0.0.0.42.
    if "." not in text and ":" not in text:
        return None
    try:
        network = IPNetwork(text)
    except (AddrFormatError, ValueError, TypeError):
        return None
    return AddressSet.of(network.cidr)


# -- questions ----------------------------------------------------------------------------------


def query_path(
    topology: Topology,
    source: str,
    target: str,
    proto: Proto | None = None,
    port: int | None = None,
) -> QueryAnswer:
    """Which new connections from ``source`` get to ``target``, by which paths."""
    space = packet_space(proto, port)
    start = resolve_source(topology, source)
    goal = resolve_target(topology, target)
    answer = _answer(topology, start, goal, space, describe_asked(proto, port))
    if start.kind is EndpointKind.HOST and start.name in (goal.name, goal.owner):
        remark = f"{start.name} is both source and target: its own addresses are not a path"
        answer = replace(answer, remarks=(remark, *answer.remarks))
    return answer


def query_inbound(
    topology: Topology, target: str, proto: Proto | None = None, port: int | None = None
) -> InboundAnswer:
    """Which networks, tunnels and collected hosts can open a connection to ``target``.

    Every segment is asked as a device there that the inventory does not list; every other
    host whose facts were collected, as itself (an uncollected host's answer would only say
    that nothing is known of it)."""
    space = packet_space(proto, port)
    asked = describe_asked(proto, port)
    goal = resolve_target(topology, target)
    sources = [_named(topology, s) for s in sorted(topology.segments)]
    sources += [
        _named(topology, h)
        for h in sorted(topology.hosts)
        if topology.hosts[h].facts_known and h not in (goal.name, goal.owner)
    ]
    answers = [_answer(topology, s, goal, space, asked) for s in sources if s is not None]
    return InboundAnswer(
        target=goal,
        asked=asked,
        sources_asked=len(answers),
        answers=tuple(a for a in answers if a.can_reach),
    )


def _answer(
    topology: Topology, source: Endpoint, target: Endpoint, space: PacketSpace, asked: str
) -> QueryAnswer:
    result = _search(topology, source, target, space)
    cut = len(result.paths) >= MAX_PATHS
    return QueryAnswer(
        source=source,
        target=target,
        asked=asked,
        reachable=result.reachable,
        packets=tuple(result.summary()),
        paths=_merged_paths(result.paths),
        reasons=tuple(dict.fromkeys(r for p in result.paths for r in p.reasons)),
        notes=result.notes,
        classes=_classes(result),
        remarks=(f"the search kept its first {MAX_PATHS} paths: there may be more",) if cut else (),
    )


def _merged_paths(paths: Iterable[ReachPath]) -> tuple[PathAnswer, ...]:
    same: dict[tuple[tuple[Step, ...], bool], list[ReachPath]] = {}
    for path in paths:
        same.setdefault((path.hops, path.certain), []).append(path)
    return tuple(PathAnswer.merged(group) for group in same.values())


def _classes(result: ReachResult) -> tuple[PacketClass, ...]:
    certain = [PacketClass.of(c, certain=True) for c in result.reached]
    return (*certain, *(PacketClass.of(c, certain=False) for c in result.maybe_reached))


def _search(
    topology: Topology, source: Endpoint, target: Endpoint, space: PacketSpace
) -> ReachResult:
    # A host target counts only once its input accepts the packets: that an address is on a
    # wire says nothing of whether the host would take the connection.
    to_input = target.needs_input
    if source.is_segment:
        return reach_from_segment(
            topology, source.name, target.addresses, space, to_input=to_input, max_paths=MAX_PATHS
        )
    return reach(
        topology, source.name, target.addresses, space, to_input=to_input, max_paths=MAX_PATHS
    )
