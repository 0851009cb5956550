"""Reachability: which new connections get from a host to a destination, by which path.

A breadth-first search over hosts and segments carrying *flows* (symbolic packet classes with
their original form and certainty) that shrink at every hop:

* at the source: route lookup (egress interface, next hop), output hook, postrouting hook;
* on a segment: a packet whose destination is on-link is delivered to that address (the
  destination is *reached* when the address is in the destination set); a packet sent to a
  gateway arrives at the host owning the gateway's address;
* at a host: prerouting (dnat), then input when the destination is local, else forwarding
  (if enabled for the family), route lookup, forward hook, postrouting (snat, masquerade);
  a packet a collected host accepts on input over one of the query's ``local_over`` segments
  is delivered there and goes no further, whichever of the host's addresses it was sent to;
* a host whose facts were not collected may forward anything to any of its segments, and an
  unknown gateway may send anything anywhere: such paths are marked uncertain.

Every segment and host is explored at most once per packet class (a visited space per
(host, segment) pair), so the search ends and costs O(hops × rules) set operations, never a
per-address enumeration.
"""

from __future__ import annotations

import weakref
from collections import deque
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import lru_cache

from netaddr import IPAddress, IPSet

from auditor.domain.facts import Listener
from topology.fields import NO_DEVICE, NameSet, describe_ipset, ports, protos
from topology.firewall import Decision, Flow, Hook, Verdict, apply_redirect, apply_source_nat
from topology.graph import LOOPBACK, HostModel, RouteEntry, Topology
from topology.intervals import V4_ALL, AddressSet
from topology.space import Constraint, Cube, PacketSpace, split

#: Beyond this many host visits the search stops and the result says so.
MAX_VISITS = 200_000


class Direction(StrEnum):
    """Where on a host a step of a path was decided."""

    OUTPUT = "output"  #: the output hook, for packets the host sends
    FORWARD = "forward"  #: the forward hook, for packets the host routes on
    INPUT = "input"  #: the input hook, for packets delivered to the host
    ROUTE = "route"  #: the routing decision
    LINK = "link"  #: delivery on a network segment


@dataclass(frozen=True)
class Step:
    """One step of a path: the host, the segment the packet arrives from or leaves to, and the
    rule text (and table/chain/handle) that decided. policies/ turns steps into findings' hops."""

    host: str
    network: str | None
    direction: Direction
    rule: str | None = None
    rule_ref: str | None = None


class Reachability(StrEnum):
    YES = "yes"  #: a certain path exists
    NO = "no"  #: nothing gets there, and every step was certain
    UNKNOWN = "unknown"  #: only uncertain paths (unknown hosts, unmodelled rules)


@dataclass(frozen=True)
class ReachPath:
    """Packets that take one path, the hops they pass, and where they end."""

    hops: tuple[Step, ...]
    space: PacketSpace  #: as the source sent them (before any translation)
    delivered: PacketSpace  #: as they arrive (after translations)
    certain: bool
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class DropPoint:
    """A rule (or a base chain's policy) that dropped or rejected some of a search's packets.

    Only a rule met this way can hold a no-path answer alone (topology.defence): packets a
    rule never saw in the search are not stopped by it."""

    host: str
    hook: Hook
    ref: str  #: "inet filter/input/12", or "inet filter/input policy"
    text: str  #: the rule's text, or "policy drop"


@dataclass(frozen=True)
class ReachResult:
    reachable: Reachability
    reached: PacketSpace  #: source packet classes that certainly get there
    maybe_reached: PacketSpace  #: those that get there only over uncertain paths
    paths: tuple[ReachPath, ...]
    notes: tuple[str, ...] = ()
    #: every drop decision the search met, once per (host, rule), in the order met
    drops: tuple[DropPoint, ...] = ()

    def summary(self) -> list[str]:
        """One line per reaching packet class: family, protocols, ports, destinations."""
        lines = [f"certain: {d}" for d in self.reached.describe()]
        return lines + [f"uncertain: {d}" for d in self.maybe_reached.describe()]


@dataclass(frozen=True)
class _Item:
    """Flows arriving at a host over a segment (or starting there), with their path so far."""

    host: str
    segment: str | None
    interface: str | None
    flows: tuple[Flow, ...]
    hops: tuple[Step, ...]
    via_gateway: bool = False


class SegmentIndex:
    """Per segment, the few hosts a search must look at: NAT hosts and possible forwarders.

    Built lazily and kept per topology, so that crowded segments cost nothing per member.
    """

    def __init__(self, topology: Topology) -> None:
        # Weakly: the index is the value of a weak-keyed dictionary whose key is this topology,
        # and a value holding its key keeps it alive for ever (every topology a long-running
        # watch ever built, with all its compiled rule sets).
        self._topology_ref = weakref.ref(topology)
        self._nat: dict[str, list[str]] = {}
        self._forwarders: dict[str, list[str]] = {}
        self._any_dnat: bool | None = None

    @property
    def _topology(self) -> Topology:
        topology = self._topology_ref()
        assert topology is not None, "a segment index outlived its topology"
        return topology

    def any_dnat(self) -> bool:
        """Does any host translate destinations (prerouting or output NAT)? Asked by every
        query; a scan of every host each time made a query cost grow with the topology."""
        if self._any_dnat is None:
            self._any_dnat = any(
                h.firewall.has_nat(Hook.PREROUTING) or h.firewall.has_nat(Hook.OUTPUT)
                for h in self._topology.hosts.values()
            )
        return self._any_dnat

    def nat_hosts(self, segment: str) -> list[str]:
        if segment not in self._nat:
            self._nat[segment] = [
                m
                for m in self._topology.members(segment)
                if self._topology.hosts[m].firewall.has_nat(Hook.PREROUTING)
            ]
        return self._nat[segment]

    def forwarders(self, segment: str) -> list[str]:
        if segment not in self._forwarders:
            self._forwarders[segment] = [
                m for m in self._topology.members(segment) if _may_forward(self._topology.hosts[m])
            ]
        return self._forwarders[segment]

    def share_with(self, derived: Topology) -> None:
        """Give ``derived`` (this topology with one host's firewall less a drop) what is
        known already. Removing a drop never adds NAT and never changes forwarding flags, so
        every answer stays right for it, or (a NAT host that no longer translates) merely
        sends the search one host further for nothing."""
        index = SegmentIndex(derived)
        index._nat = self._nat
        index._forwarders = self._forwarders
        index._any_dnat = self._any_dnat
        _INDEXES[derived] = index


_INDEXES: weakref.WeakKeyDictionary[Topology, SegmentIndex] = weakref.WeakKeyDictionary()


def segment_index(topology: Topology) -> SegmentIndex:
    index = _INDEXES.get(topology)
    if index is None:
        index = _INDEXES[topology] = SegmentIndex(topology)
    return index


@dataclass
class _Search:
    topology: Topology
    destinations: AddressSet
    to_input: bool
    local_only: bool = False
    #: Segments over which an input delivery is local to the receiving host (see ``reach``).
    local_over: frozenset[str] = frozenset()
    queue: deque[_Item] = field(default_factory=deque)
    visited: dict[tuple[str, str | None], list[Cube]] = field(default_factory=dict)
    paths: list[ReachPath] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    visits: int = 0
    drops: dict[tuple[str, str], DropPoint] = field(default_factory=dict)
    #: An input delivery reaches a destination only over the segment holding its address
    #: (see ``reach_from_segment``'s ``on_the_wire``).
    on_the_wire: bool = False

    @property
    def index(self) -> SegmentIndex:
        return segment_index(self.topology)

    # -- bookkeeping -------------------------------------------------------------------------
    def unexplored(self, key: tuple[str, str | None], flows: Iterable[Flow]) -> list[Flow]:
        """The parts of the flows not already explored at this (host, segment)."""
        seen = self.visited.setdefault(key, [])
        fresh: list[Flow] = []
        for flow in flows:
            _, outside = split([flow.cube], [c.as_constraint() for c in seen])
            fresh += [flow.narrowed(c) for c in outside]
        seen += [f.cube for f in fresh]
        return fresh

    def reach(self, hops: tuple[Step, ...], flows: Iterable[Flow]) -> None:
        """Record the flows whose (current) destination is in the destination set."""
        inside = [
            flow.narrowed(c)
            for flow in flows
            if (c := flow.cube.intersect(Constraint({"daddr": self.destinations})))
        ]
        for certain in (True, False):
            group = [f for f in inside if f.certain is certain]
            if not group:
                continue
            reasons = tuple(dict.fromkeys(r for f in group for r in f.reasons))
            self.paths.append(
                ReachPath(
                    hops=hops,
                    space=PacketSpace.of(f.origin for f in group),
                    delivered=PacketSpace.of(f.cube for f in group),
                    certain=certain,
                    reasons=reasons,
                )
            )

    def result(self, max_paths: int) -> ReachResult:
        reached = PacketSpace.empty()
        maybe = PacketSpace.empty()
        for path in self.paths:
            if path.certain:
                reached = reached.union(path.space)
            else:
                maybe = maybe.union(path.space)
        maybe = maybe.subtract(reached)
        if reached:
            verdict = Reachability.YES
        elif maybe or self.visits > MAX_VISITS:
            verdict = Reachability.UNKNOWN
        else:
            verdict = Reachability.NO
        ordered = sorted(self.paths, key=lambda p: (not p.certain, len(p.hops)))
        return ReachResult(
            reachable=verdict,
            reached=reached.simplified(),
            maybe_reached=maybe.simplified(),
            paths=tuple(ordered[:max_paths]),
            notes=tuple(dict.fromkeys(self.notes)),
            drops=tuple(self.drops.values()),
        )

    def run_hook(
        self, host: HostModel, hook: Hook, flows: list[Flow]
    ) -> list[tuple[_Rules, list[Flow]]]:
        """The accepted flows of a hook (see ``_run``), noting every drop decision met."""
        return _run(host, hook, flows, self.drops)

    # -- the search --------------------------------------------------------------------------
    def run(self) -> None:
        while self.queue:
            self.visits += 1
            if self.visits > MAX_VISITS:
                self.notes.append(f"search stopped after {MAX_VISITS} host visits")
                return
            item = self.queue.popleft()
            host = self.topology.hosts.get(item.host)
            if host is None:
                continue
            if item.segment is None:
                self.originate(host, item)
            elif host.facts_known:
                self.arrive_known(host, item)
            else:
                self.arrive_unknown(host, item)

    def originate(self, host: HostModel, item: _Item) -> None:
        """A new connection leaves its source: route, output, postrouting."""
        own = [f.at_first_hook() for f in item.flows]
        for entry_flows, entry, hops in self.route(host, own, item.hops):
            out = _with_devices(entry_flows, iif=NO_DEVICE, oif=self._device(host, entry))
            for rules, accepted in self.run_hook(host, Hook.OUTPUT, out):
                nat_doubt = [
                    f.doubtful("output dnat: the route is not recomputed") if f.nat else f
                    for f in accepted
                ]
                hop = _hop(host.name, self._segment_of(host, entry), Direction.OUTPUT, rules)
                self.leave(host, entry, nat_doubt, (*hops, hop))

    def arrive_known(self, host: HostModel, item: _Item) -> None:
        """Prerouting, then input (local destination) or forwarding."""
        fresh = self.unexplored((host.name, item.segment), item.flows)
        if not fresh:
            return
        iif = item.interface or _unknown_interface(host)
        arriving = _with_devices([f.at_first_hook() for f in fresh], iif=iif, oif=NO_DEVICE)
        for pre_rules, accepted in self.run_hook(host, Hook.PREROUTING, arriving):
            redirected = [_redirected(host, item.segment, f) for f in accepted]
            local, transit = _split_local(host, redirected)
            self.deliver_input(host, item, local, pre_rules)
            if not self.local_only:
                self.forward(host, item, transit, pre_rules)

    def deliver_input(
        self, host: HostModel, item: _Item, flows: list[Flow], pre_rules: _Rules
    ) -> None:
        if item.segment in self.local_over:
            # Delivered to this host's own address (Linux accepts a packet for any of its
            # addresses on any interface): it ends here, on no segment but the one it came
            # over, even when that address belongs to another segment's prefix. Only
            # collected hosts come here; an uncollected one stays uncertain (arrive_unknown).
            return
        if self.on_the_wire and item.segment is not None:
            flows = _restrict(
                flows, Constraint({"daddr": self.topology.segment_addresses(item.segment)})
            )
        for rules, accepted in self.run_hook(host, Hook.INPUT, flows):
            hop = _hop(host.name, item.segment, Direction.INPUT, _joined(pre_rules, rules))
            self.reach((*item.hops, hop), accepted)

    def forward(self, host: HostModel, item: _Item, flows: list[Flow], pre_rules: _Rules) -> None:
        if not flows:
            return
        allowed = _forwarding_allowed(host, flows)
        for entry_flows, entry, hops in self.route(host, allowed, item.hops):
            out = _with_devices(
                entry_flows,
                iif=item.interface or _unknown_interface(host),
                oif=self._device(host, entry),
            )
            out = [f for f in out if not f.cube.is_empty()]
            for rules, accepted in self.run_hook(host, Hook.FORWARD, out):
                hop = _hop(
                    host.name,
                    self._segment_of(host, entry),
                    Direction.FORWARD,
                    _joined(pre_rules, rules),
                )
                self.leave(host, entry, accepted, (*hops, hop))

    def arrive_unknown(self, host: HostModel, item: _Item) -> None:
        """No facts: it may deliver locally and may forward anything to any of its segments."""
        # Where it came from changes nothing for such a host: one visited space for all.
        fresh = self.unexplored((host.name, "*"), item.flows)
        if not fresh:
            return
        doubt = f"{host.name}: no facts collected, it may accept or forward anything"
        flows = [f.doubtful(doubt) for f in fresh]
        local, transit = _split_local(host, flows)
        hop = Step(host=host.name, network=item.segment, direction=Direction.INPUT, rule="unknown")
        self.reach((*item.hops, hop), local)
        may_forward = item.via_gateway or host.is_router
        if self.local_only or not transit or not may_forward:
            return
        for att in host.attachments:
            fwd = Step(
                host=host.name, network=att.segment, direction=Direction.FORWARD, rule="unknown"
            )
            self.spread(att.segment, transit, (*item.hops, fwd), sender=host.name)

    # -- leaving a host ----------------------------------------------------------------------
    def route(
        self, host: HostModel, flows: Iterable[Flow], hops: tuple[Step, ...]
    ) -> list[tuple[list[Flow], RouteEntry | None, tuple[Step, ...]]]:
        """Split flows by the route they take; None stands for "routes unknown"."""
        if host.routes is None:
            doubt = f"{host.name}: routes not collected"
            unknown = [f.doubtful(doubt) for f in flows]
            return [(unknown, None, hops)] if unknown else []
        by_entry: dict[int, tuple[RouteEntry, list[Flow]]] = {}
        for flow in flows:
            cube = flow.cube
            for addresses, entry in host.routes.lookup(cube.version, cube.daddr):
                if entry is None or entry.type != "unicast":
                    continue  # no route, blackhole, unreachable, prohibit: dropped here
                piece = cube.with_fields(daddr=addresses)
                by_entry.setdefault(id(entry), (entry, []))[1].append(flow.narrowed(piece))
        return [
            (group, entry, (*hops, _route_hop(host.name, self._segment_of(host, entry), entry)))
            for entry, group in by_entry.values()
        ]

    def leave(
        self, host: HostModel, entry: RouteEntry | None, flows: list[Flow], hops: tuple[Step, ...]
    ) -> None:
        """Postrouting (snat, masquerade), then onto the segment."""
        if not flows:
            return
        if entry is None:
            for att in host.attachments:
                self.spread(att.segment, flows, hops, sender=host.name)
            return
        segment = self._segment_of(host, entry)
        for rules, accepted in self.run_hook(host, Hook.POSTROUTING, flows):
            translated = [_masqueraded(host, segment, f) for f in accepted]
            if rules.texts and hops:
                last = hops[-1]
                hops = (*hops[:-1], _with_rules(last, rules))
            self.emit(host, segment, entry, translated, hops)

    def emit(
        self,
        host: HostModel,
        segment: str | None,
        entry: RouteEntry,
        flows: list[Flow],
        hops: tuple[Step, ...],
    ) -> None:
        if segment is None:
            doubt = f"{host.name}: route {entry.describe()} leaves by an unknown segment"
            self.reach(hops, [f.doubtful(doubt) for f in flows])
            return
        if entry.gateway is None:
            self.on_link(segment, flows, hops)
            return
        owner = self.topology.owner_of(segment, entry.gateway)
        if owner is None:
            doubt = f"gateway {entry.gateway} on {segment} is not in the inventory"
            self.reach(hops, [f.doubtful(doubt) for f in flows])
            return
        self.enqueue(owner, segment, flows, hops, via_gateway=True)

    def on_link(self, segment: str, flows: list[Flow], hops: tuple[Step, ...]) -> None:
        """Delivered on a segment to the destination address itself."""
        prefix = self.topology.segment_addresses(segment)
        on_segment = _restrict(flows, Constraint({"daddr": prefix}))
        sender = hops[-1].host if hops else ""
        link = Step(
            host=sender, network=segment, direction=Direction.LINK, rule=f"delivered on {segment}"
        )
        if not self.to_input:
            self.reach((*hops, link), on_segment)
        if not on_segment:
            return
        destinations = _daddrs(on_segment)
        # Packets for a host end there, unless its prerouting may send them on (dnat).
        owners = (
            self.topology.owners(segment, destinations)
            if self.to_input
            else self.topology.owners_among(segment, self.index.nat_hosts(segment), destinations)
        )
        for owner, addresses in owners:
            owned = _restrict(on_segment, Constraint({"daddr": addresses}))
            self.enqueue(owner, segment, owned, hops)

    def spread(
        self, segment: str, flows: list[Flow], hops: tuple[Step, ...], sender: str = ""
    ) -> None:
        """Routes unknown: on-link delivery, or through any host there that may forward."""
        self.on_link(segment, flows, hops)
        for member in self.index.forwarders(segment):
            if member != sender:
                self.enqueue(member, segment, flows, hops, via_gateway=True)

    def enqueue(
        self,
        host: str,
        segment: str,
        flows: list[Flow],
        hops: tuple[Step, ...],
        *,
        via_gateway: bool = False,
    ) -> None:
        if not flows:
            return
        model = self.topology.hosts[host]
        att = model.attachment_on(segment)
        interface = att.interface if att else None
        self.queue.append(_Item(host, segment, interface, tuple(flows), hops, via_gateway))

    def _device(self, host: HostModel, entry: RouteEntry | None) -> str:
        """The egress interface of a route: named, or the one on the gateway's segment."""
        if entry is not None and entry.device:
            return entry.device
        segment = self._segment_of(host, entry)
        att = host.attachment_on(segment) if segment else None
        return att.interface if att and att.interface else _unknown_interface(host)

    def _segment_of(self, host: HostModel, entry: RouteEntry | None) -> str | None:
        if entry is None:
            return None
        if entry.device:
            att = host.attachment_of_interface(entry.device)
            if att is not None:
                return att.segment
        if entry.gateway is not None:
            for att in host.attachments:
                if entry.gateway in self.topology.segment_addresses(att.segment):
                    return att.segment
        return None


# -- helpers over flows -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Rules:
    texts: tuple[str, ...] = ()
    refs: tuple[str, ...] = ()


def _run(
    host: HostModel,
    hook: Hook,
    flows: list[Flow],
    drops: dict[tuple[str, str], DropPoint] | None = None,
) -> list[tuple[_Rules, list[Flow]]]:
    """Accepted flows of a hook, grouped by the rules that accepted them; the rules that
    dropped the others go into ``drops`` (the last step of a dropped flow decided it)."""
    if not flows:
        return []
    fresh = [f.reset() for f in flows]
    groups: dict[tuple[str, ...], tuple[_Rules, list[Flow]]] = {}
    for verdict, flow in host.firewall.run_hook(hook, fresh):
        if verdict is not Verdict.ACCEPT:
            if drops is not None and flow.steps:
                _note_drop(drops, host.name, hook, flow.steps[-1])
            continue
        rules = _Rules(tuple(s.text for s in flow.steps), tuple(s.ref for s in flow.steps))
        groups.setdefault(rules.refs, (rules, []))[1].append(flow)
    return list(groups.values())


def _note_drop(
    drops: dict[tuple[str, str], DropPoint], host: str, hook: Hook, decision: Decision
) -> None:
    key = (host, decision.ref)
    if key not in drops:
        drops[key] = DropPoint(host, hook, decision.ref, decision.text)


def _joined(first: _Rules, second: _Rules) -> _Rules:
    return _Rules(first.texts + second.texts, first.refs + second.refs)


def _hop(host: str, segment: str | None, direction: Direction, rules: _Rules) -> Step:
    text = "; ".join(rules.texts) if rules.texts else "no base chain (accept)"
    return Step(
        host=host,
        network=segment,
        direction=direction,
        rule=text,
        rule_ref="; ".join(rules.refs) or None,
    )


def _with_rules(hop: Step, rules: _Rules) -> Step:
    text = "; ".join(t for t in (hop.rule, *rules.texts) if t)
    ref = "; ".join(r for r in (hop.rule_ref, *rules.refs) if r) or None
    return replace(hop, rule=text, rule_ref=ref)


def _route_hop(host: str, segment: str | None, entry: RouteEntry) -> Step:
    return Step(host=host, network=segment, direction=Direction.ROUTE, rule=entry.describe())


def _unknown_interface(host: HostModel) -> str:
    """An interface name for rules to test when the real one is not known: matches no name."""
    return f"?{host.name}"


def _with_devices(flows: Iterable[Flow], *, iif: str, oif: str) -> list[Flow]:
    values = {"iif": NameSet.of(iif), "oif": NameSet.of(oif)}
    return [f.translate(**values) for f in flows]


def _restrict(flows: Iterable[Flow], constraint: Constraint) -> list[Flow]:
    return [f.narrowed(c) for f in flows if (c := f.cube.intersect(constraint))]


def _daddrs(flows: Iterable[Flow]) -> AddressSet:
    out = AddressSet()
    for f in flows:
        out = out | f.cube.daddr
    return out


def _split_local(host: HostModel, flows: Iterable[Flow]) -> tuple[list[Flow], list[Flow]]:
    local_constraint = Constraint({"daddr": host.local_addresses})
    local: list[Flow] = []
    transit: list[Flow] = []
    for flow in flows:
        inside, outside = split([flow.cube], [local_constraint])
        local += [flow.narrowed(c) for c in inside]
        transit += [flow.narrowed(c) for c in outside]
    return local, transit


def _forwarding_allowed(host: HostModel, flows: Iterable[Flow]) -> list[Flow]:
    allowed: list[Flow] = []
    for flow in flows:
        enabled = host.forwarding.get(flow.cube.version)
        if enabled is None:
            allowed.append(flow.doubtful(f"{host.name}: IPv{flow.cube.version} forwarding unknown"))
        elif enabled:
            allowed.append(flow)
    return allowed


def _may_forward(host: HostModel) -> bool:
    if not host.facts_known:
        return host.is_router
    return any(v is not False for v in host.forwarding.values())


def _masqueraded(host: HostModel, segment: str | None, flow: Flow) -> Flow:
    if not any(n.kind == "masquerade" for n in flow.nat):
        return flow
    own = host.addresses_on(segment, flow.cube.version) if segment else AddressSet()
    if not own:
        return flow.doubtful(f"{host.name}: masquerade without a known address on {segment}")
    return apply_source_nat(flow, own)


def _redirected(host: HostModel, segment: str | None, flow: Flow) -> Flow:
    if not any(n.kind == "redirect" for n in flow.nat):
        return flow
    own = host.addresses_on(segment, flow.cube.version) if segment else AddressSet()
    return apply_redirect(flow, own or host.addresses)


# -- public queries ---------------------------------------------------------------------------


def _default_space(space: PacketSpace | None) -> PacketSpace:
    return space if space is not None else PacketSpace.connection_attempts()


def reach(
    topology: Topology,
    source: str,
    destinations: AddressSet | IPSet,
    space: PacketSpace | None = None,
    *,
    to_input: bool = False,
    local_over: Collection[str] = (),
    max_paths: int = 16,
) -> ReachResult:
    """Which new connections from ``source`` reach an address in ``destinations``.

    ``space`` narrows the kind of connection (default: the new connections of docs/controls.md, TCP,
    UDP and ICMP echo, both families); the source addresses are always the host's own. A destination is
    reached when a packet is put on a segment where its destination address is on-link, or is
    accepted by the input hook of a host owning it; with ``to_input`` an on-link delivery to a
    host in the graph counts only once that host's input accepts it.

    ``local_over`` names segments whose wire is not part of what is asked about (the protected
    networks, when the question is "does it get outside"). A packet that arrives over one of
    them at a collected host owning its (possibly translated) destination is delivered locally
    there, and does not reach the destination even when that address is in ``destinations``:
    Linux accepts a packet for any of its addresses on any interface, so the packet never
    crosses the segment the address belongs to. Reaching such an address still counts when
    the packet is put on that address's own segment, or arrives over any segment not named
    (an external network crossed, an unmapped segment), or at a host whose facts were not
    collected (uncertain, as before).
    """
    host = topology.hosts[source]
    destinations = AddressSet.coerce(destinations)
    start = _default_space(space).where(ct=frozenset({"new"}))
    start = PacketSpace.of(
        c.with_fields(saddr=c.saddr & host.addresses) for c in start if c.saddr & host.addresses
    )
    if not segment_index(topology).any_dnat():
        # Without any dnat, a destination never changes: only packets to D can reach D.
        start = start.where(daddr=destinations)
    # A host's own addresses are not a network path.
    start = start.subtract(PacketSpace.everything().where(daddr=host.local_addresses | LOOPBACK))
    search = _Search(topology, destinations, to_input, local_over=frozenset(local_over))
    search.notes += [f"{source}: {n}" for n in host.notes]
    flows = tuple(Flow.start(c) for c in start)
    search.queue.append(_Item(source, None, None, flows, ()))
    search.run()
    return search.result(max_paths)


def reach_segment(
    topology: Topology, source: str, segment: str, space: PacketSpace | None = None
) -> ReachResult:
    return reach(topology, source, topology.segment_addresses(segment), space)


#: The name a path gives to the unknown device that opens a connection from a segment.
ANY_DEVICE = "(any device)"


def reach_from_segment(
    topology: Topology,
    segment: str,
    destinations: AddressSet | IPSet,
    space: PacketSpace | None = None,
    *,
    to_input: bool = False,
    on_the_wire: bool = False,
    max_paths: int = 16,
) -> ReachResult:
    """Which new connections a device on ``segment`` that is not in the inventory (a laptop
    plugged in, a compromised appliance) can open to an address in ``destinations``.

    Its source addresses are the segment's, less those of the hosts the inventory places
    there; its routes are unknown, so it may send on-link or through any host of the segment
    that may forward (as for a host whose routes were not collected, but certain: every host
    it passes judges the packets with its own rules). A destination on the segment itself is
    reached on the wire unless ``to_input`` asks for the owner's input to accept.

    ``on_the_wire`` asks which *networks* the device gets into rather than which hosts: a
    host's input accepting a packet for one of its addresses counts only when the packet
    arrived over the segment that holds that address. A host on the device's own segment
    accepting a packet for its address on another network (Linux accepts it on any
    interface) has then let the device reach the host, not that network.
    """
    prefix = topology.segment_addresses(segment)
    members = AddressSet.of()
    for name in topology.members(segment):
        members = members | topology.hosts[name].addresses_on(segment)
    destinations = AddressSet.coerce(destinations)
    start = _default_space(space).where(ct=frozenset({"new"}), saddr=prefix - members)
    search = _Search(topology, destinations, to_input, on_the_wire=on_the_wire)
    flows = [Flow.start(c) for c in start if not c.is_empty()]
    origin = Step(host=ANY_DEVICE, network=segment, direction=Direction.OUTPUT)
    search.spread(segment, flows, (origin,), sender="")
    _send_to_members_own_addresses(search, segment, flows, (origin,))
    search.run()
    return search.result(max_paths)


def _send_to_members_own_addresses(
    search: _Search, segment: str, flows: list[Flow], hops: tuple[Step, ...]
) -> None:
    """A device may send a packet for any address of a host on its segment to that host's
    address there (a route via it): the host accepts it for any of its own addresses (Linux's
    weak host model), whether or not it forwards. Those on the segment's own prefix are
    delivered on the wire already (spread), and forwarders were given every flow."""
    topology = search.topology
    prefix = topology.segment_addresses(segment)
    forwarders = set(search.index.forwarders(segment))
    for name in topology.members(segment):
        if name in forwarders:
            continue
        elsewhere = topology.hosts[name].answering_addresses - prefix
        if elsewhere:
            owned = _restrict(flows, Constraint({"daddr": elsewhere}))
            search.enqueue(name, segment, owned, hops, via_gateway=True)


def inbound(
    topology: Topology,
    host: str,
    segment: str,
    space: PacketSpace | None = None,
    *,
    sources: AddressSet | IPSet | None = None,
    max_paths: int = 16,
) -> ReachResult:
    """Which new connections from ``segment`` (a network or a tunnel) the host accepts.

    The packets come in on the host's interface on that segment, from any address of the
    segment other than the host's (or from ``sources``), to any of the host's own addresses;
    prerouting then input decide.
    """
    model = topology.hosts[host]
    att = model.attachment_on(segment)
    origin = (
        AddressSet.coerce(sources) if sources is not None else topology.segment_addresses(segment)
    )
    own = model.answering_addresses
    start = _default_space(space).where(
        ct=frozenset({"new"}), saddr=origin - model.addresses, daddr=own
    )
    search = _Search(topology, own, to_input=True, local_only=True)
    search.notes += [f"{host}: {n}" for n in model.notes]
    if att is None:
        search.notes.append(f"{host} has no interface on {segment}")
        return search.result(max_paths)
    flows = tuple(Flow.start(c) for c in start)
    search.queue.append(_Item(host, segment, att.interface, flows, ()))
    search.run()
    return search.result(max_paths)


@dataclass(frozen=True)
class ListenerExposure:
    listener: Listener
    segment: str
    result: ReachResult
    #: the new connections asked about (to the listener's port and addresses), to ask again
    space: PacketSpace = field(default_factory=PacketSpace.empty)


def listener_addresses(model: HostModel, listener: Listener) -> AddressSet:
    """The local addresses a socket bound to ``listener.address`` answers on (not loopback)."""
    bound = listener.address.strip("[]").split("%")[0]
    own = model.answering_addresses
    if bound in ("0.0.0.0",):
        return own & V4_ALL
    if bound in ("::", "*", ""):
        # A dual-stack socket (the Linux default) answers IPv4 too.
        return own
    try:
        address = IPAddress(bound)
    except ValueError:
        return own
    if address.version == 6 and address.is_ipv4_mapped():
        address = address.ipv4()
    return AddressSet.of(address) - LOOPBACK


_EXPOSURES: weakref.WeakKeyDictionary[Topology, dict[str, list[ListenerExposure] | None]] = (
    weakref.WeakKeyDictionary()
)


def listener_exposure(topology: Topology, host: str) -> list[ListenerExposure] | None:
    """For each listening socket (loopback excluded) and each segment of the host: who can
    open a new connection to it. None when the listeners were not collected.

    Answered once per topology and host: two controls ask it of every organisation host."""
    known = _EXPOSURES.setdefault(topology, {})
    if host not in known:
        known[host] = _listener_exposure(topology, host)
    found = known[host]
    return list(found) if found is not None else None


def _listener_exposure(topology: Topology, host: str) -> list[ListenerExposure] | None:
    model = topology.hosts[host]
    if model.listeners is None:
        return None
    exposures: list[ListenerExposure] = []
    for listener in model.listeners:
        addresses = listener_addresses(model, listener)
        if not addresses:
            continue
        number = 6 if listener.proto == "tcp" else 17
        space = _new_connections_to(number, listener.port).where(daddr=addresses)
        for att in model.attachments:
            result = inbound(topology, host, att.segment, space)
            exposures.append(ListenerExposure(listener, att.segment, result, space))
    return exposures


@lru_cache(maxsize=1024)
def _new_connections_to(protocol: int, port: int) -> PacketSpace:
    # The same few services listen on every host of an organisation: made once each.
    return PacketSpace.new_connections(protocols=protos(protocol), dports=ports(port))


def describe_destinations(result: ReachResult) -> str:
    addresses = result.reached.address_set() | result.maybe_reached.address_set()
    return describe_ipset(addresses)
