"""The zone matrix: for every pair of networks (and tunnels), whether NEW connections get from
one to the other, as the model says and as the probes saw, the way segmentation tests are
presented (rows: from, columns: to).

The model side asks, for each source network, one question of the reachability engine: what a
device on that network that is not in the inventory can open toward every address of every
other network (``topology.reach.reach_from_segment``), and attributes what it reaches to the
destination networks by destination address: N searches for N networks, never N². Hosts' own
connections are not in the matrix (a host's rules differ from a stranger's; the controls judge
those).

The probe side places the run's observations in the same cells: the scans (from a vantage on a
network toward the targets' networks) and the egress tests (from a host on its networks toward
the outside addresses it tried). A cell no observation falls in is "not probed", never "no".

Pure: a StoredRun in, a ZoneMatrix out; nothing is probed and nothing is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from netaddr import AddrFormatError, IPAddress

from auditor.domain.attempts import Attempt
from auditor.domain.inventory import Inventory
from auditor.report.run import StoredRun
from policies.empirical import EgressAttempt, EgressObservation, ScanObservation
from policies.snapshot import Observations
from topology.fields import ICMP, ICMPV6, TCP, UDP, IntervalSet
from topology.graph import Topology
from topology.intervals import AddressSet
from topology.reach import Reachability, ReachResult, reach_from_segment
from topology.space import PacketSpace

#: Above this many networks and tunnels, rows and columns are zones instead of networks: a
#: matrix of hundreds of columns can neither be printed nor read.
GROUP_ABOVE = 60

#: Zones in the order an assessor reads them: the outside first, then inward.
ZONE_ORDER = ("external", "office", "protected", "tunnel")

#: Protocol summaries shorter than a cell: at most this many port ranges per protocol, and
#: this many examples of network pairs in a zone cell.
MAX_PORT_RANGES = 5
MAX_EXAMPLES = 3

T = TypeVar("T")

ModelState = Literal["yes", "no", "unknown"]
LineKind = Literal["network", "tunnel", "zone"]

_STATE_RANK: dict[ModelState, int] = {"no": 0, "unknown": 1, "yes": 2}


@dataclass(frozen=True)
class Line:
    """A row and the column of the same name: a network, a tunnel, or (grouped) a zone."""

    name: str
    zone: str  #: the inventory's zone, or "tunnel"
    kind: LineKind
    members: int = 1  #: networks a zone line stands for


@dataclass(frozen=True)
class ModelCell:
    state: ModelState
    certain: tuple[str, ...] = ()  #: "tcp/22", "udp/any", "ping": what certainly gets through
    uncertain: tuple[str, ...] = ()  #: what may get through, over uncertain paths only
    examples: tuple[str, ...] = ()  #: in a zone cell: a few "from → to" network pairs
    pairs: int = 0  #: in a zone cell: how many network pairs are not "no"


NO_PATH = ModelCell("no")


@dataclass(frozen=True)
class ProbeCell:
    """What the run's probes saw for one cell."""

    #: (target host, open services) found by a scan
    open: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: targets a scan reached in this cell on which nothing was open
    closed: tuple[str, ...] = ()
    #: (host, attempts that got out): egress attempts seen leaving, or that connected
    escaped: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: hosts whose egress attempts toward this cell were watched and nothing was seen
    quiet: tuple[str, ...] = ()
    #: hosts whose attempts toward this cell did not run or were not watched there
    unobserved: tuple[str, ...] = ()

    @property
    def probed(self) -> bool:
        return bool(self.open or self.closed or self.escaped or self.quiet or self.unobserved)

    @property
    def got_through(self) -> bool:
        return bool(self.open or self.escaped)

    def merged(self, other: ProbeCell) -> ProbeCell:
        return ProbeCell(
            open=_merge_services(self.open, other.open),
            closed=_union(self.closed, other.closed),
            escaped=_merge_services(self.escaped, other.escaped),
            quiet=_union(self.quiet, other.quiet),
            unobserved=_union(self.unobserved, other.unobserved),
        )


@dataclass
class ZoneMatrix:
    lines: list[Line]
    grouped: bool  #: lines are zones (the organisation has more than GROUP_ABOVE networks)
    #: model cells that are not "no" (the rest of a modelled row is "no")
    model: dict[tuple[str, str], ModelCell] = field(default_factory=dict)
    probes: dict[tuple[str, str], ProbeCell] = field(default_factory=dict)
    #: rows the model could not answer, with the reason (no topology, no addresses, …)
    unmodelled: dict[str, str] = field(default_factory=dict)
    #: whether the run held observations at all (else every probe cell is "not probed")
    observed: bool = False
    notes: list[str] = field(default_factory=list)

    def model_cell(self, source: str, destination: str) -> ModelCell | None:
        """None on the diagonal of a network matrix (a network to itself is not asked) and
        for a row the model could not answer."""
        if source == destination and not self.grouped:
            return None
        if source in self.unmodelled:
            return None
        return self.model.get((source, destination), NO_PATH)

    def probe_cell(self, source: str, destination: str) -> ProbeCell:
        return self.probes.get((source, destination), ProbeCell())


# -- building -------------------------------------------------------------------------------


def zone_matrix(run: StoredRun) -> ZoneMatrix | None:
    """The matrix of a stored run; None without an inventory (there are no networks to name)."""
    if run.inventory is None:
        return None
    return build_matrix(run.inventory, run.topology, run.observations)


def build_matrix(
    inventory: Inventory,
    topology: Topology | None,
    observations: Observations | None,
    *,
    group_above: int = GROUP_ABOVE,
) -> ZoneMatrix:
    lines = _network_lines(inventory)
    matrix = ZoneMatrix(lines=lines, grouped=False, observed=observations is not None)
    if topology is None:
        reason = "the topology could not be rebuilt"
        matrix.unmodelled = {line.name: reason for line in lines}
    else:
        _fill_model(matrix, topology)
    if observations is not None:
        _fill_probes(matrix, inventory, observations)
    else:
        matrix.notes.append("the run holds no observations: no probe result is shown")
    if len(lines) > group_above:
        return _grouped_by_zone(matrix, group_above)
    return matrix


def _network_lines(inventory: Inventory) -> list[Line]:
    lines = [Line(name, net.zone.value, "network") for name, net in inventory.networks.items()]
    lines += [Line(name, "tunnel", "tunnel") for name in inventory.tunnels]
    return sorted(lines, key=lambda line: (_zone_rank(line.zone), line.name))


def _zone_rank(zone: str) -> int:
    return ZONE_ORDER.index(zone) if zone in ZONE_ORDER else len(ZONE_ORDER)


# -- the model side -------------------------------------------------------------------------


def _fill_model(matrix: ZoneMatrix, topology: Topology) -> None:
    names = [line.name for line in matrix.lines]
    addresses = {name: _segment_addresses(topology, name) for name in names}
    everywhere = AddressSet.of()
    for prefix in addresses.values():
        everywhere = everywhere | prefix
    for source in names:
        if addresses[source].is_empty():
            matrix.unmodelled[source] = "the network has no addresses in the model"
            continue
        # One search per source network, toward every other network at once. On the wire: a
        # host of the source network answering for its address elsewhere is not that network.
        result = reach_from_segment(
            topology, source, everywhere - addresses[source], on_the_wire=True
        )
        _attribute(matrix, source, result, addresses)


def _segment_addresses(topology: Topology, name: str) -> AddressSet:
    try:
        return topology.segment_addresses(name)
    except KeyError:
        return AddressSet.of()


def _attribute(
    matrix: ZoneMatrix, source: str, result: ReachResult, addresses: Mapping[str, AddressSet]
) -> None:
    if _search_incomplete(result):
        matrix.unmodelled[source] = "the search stopped before the end: " + "; ".join(result.notes)
        return
    certain, uncertain = result.reached, result.maybe_reached
    touched = certain.address_set() | uncertain.address_set()
    for destination, prefix in addresses.items():
        if destination == source or (touched & prefix).is_empty():
            continue
        cell = _model_cell(certain.where(daddr=prefix), uncertain.where(daddr=prefix))
        if cell.state != "no":
            matrix.model[(source, destination)] = cell


def _search_incomplete(result: ReachResult) -> bool:
    # An unknown verdict with nothing even maybe reached is the engine's "stopped early".
    stopped = any("search stopped" in note for note in result.notes)
    return stopped or (result.reachable is Reachability.UNKNOWN and not result.maybe_reached)


def _model_cell(certain: PacketSpace, uncertain: PacketSpace) -> ModelCell:
    if certain:
        state: ModelState = "yes"
    elif uncertain:
        state = "unknown"
    else:
        return NO_PATH
    return ModelCell(state, services_of(certain), services_of(uncertain))


def services_of(space: PacketSpace) -> tuple[str, ...]:
    """The protocols and destination ports of a packet space, shortened: "tcp/22,443",
    "udp/any", "ping", "other protocols"."""
    tcp = udp = IntervalSet.of(65535)
    ping = other = False
    known = IntervalSet.of(255, [TCP, UDP, ICMP, ICMPV6])
    for cube in space:
        if TCP in cube.proto:
            tcp = tcp | cube.dport
        if UDP in cube.proto:
            udp = udp | cube.dport
        ping = ping or ICMP in cube.proto or ICMPV6 in cube.proto
        other = other or not (cube.proto - known).is_empty()
    found = [f"{name}/{_ports(p)}" for name, p in (("tcp", tcp), ("udp", udp)) if not p.is_empty()]
    found += ["ping"] if ping else []
    found += ["other protocols"] if other else []
    return tuple(found)


def _ports(values: IntervalSet) -> str:
    if values.is_full():
        return "any"
    spans = [str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in values.intervals]
    if len(spans) > MAX_PORT_RANGES:
        return ",".join(spans[:MAX_PORT_RANGES]) + ",…"
    return ",".join(spans)


# -- the probe side -------------------------------------------------------------------------


@dataclass
class _Places:
    """Where observed addresses belong: network by prefix, host by declared address."""

    inventory: Inventory
    hosts: dict[IPAddress, str]

    @classmethod
    def of(cls, inventory: Inventory) -> _Places:
        hosts = {a: name for name, h in inventory.hosts.items() for a in h.all_addresses()}
        return cls(inventory, hosts)

    def locate(self, text: str) -> tuple[str, str] | None:
        """(network, host or the address itself) of an observed address; None when it is not
        an address or lies on no network of the inventory. Observed text is untrusted."""
        try:
            address = IPAddress(text.strip())
        except (AddrFormatError, ValueError, TypeError):
            return None
        network = self.inventory.network_of(address)
        if network is None:
            return None
        return network, self.hosts.get(address, str(address))


def _fill_probes(matrix: ZoneMatrix, inventory: Inventory, observations: Observations) -> None:
    places = _Places.of(inventory)
    known = {line.name for line in matrix.lines}
    for network, attempt in sorted(observations.scans.items()):
        scan = _usable(attempt, f"scan from {network}", matrix.notes)
        if scan is not None and scan.network in known:
            _place_scan(matrix, scan, places)
    for host, tried in sorted(observations.egress.items()):
        egress = _usable(tried, f"egress test of {host}", matrix.notes)
        if egress is not None:
            _place_egress(matrix, egress, inventory, places)


def _usable(attempt: Attempt[T], what: str, notes: list[str]) -> T | None:
    value = attempt.collected
    if attempt.error is not None:
        state = "partial" if value is not None else "failed"
        notes.append(f"{what} {state}: {attempt.error.reason}: {attempt.error.message}")
    return value


def _add(matrix: ZoneMatrix, key: tuple[str, str], cell: ProbeCell) -> None:
    matrix.probes[key] = matrix.probe_cell(*key).merged(cell)


def _place_scan(matrix: ZoneMatrix, scan: ScanObservation, places: _Places) -> None:
    open_by_target: dict[tuple[str, str], list[str]] = {}
    for port in scan.open_ports:
        place = places.locate(port.address)
        if place is not None:
            open_by_target.setdefault(place, []).append(f"{port.proto}/{port.port}")
    for target in scan.targets:
        place = places.locate(target)
        if place is None:
            continue
        network, host = place
        services = tuple(sorted(set(open_by_target.get(place, ())), key=_service_order))
        if services:
            _add(matrix, (scan.network, network), ProbeCell(open=((host, services),)))
        elif not _open_elsewhere(host, network, open_by_target):
            _add(matrix, (scan.network, network), ProbeCell(closed=(host,)))


def _open_elsewhere(host: str, network: str, found: Mapping[tuple[str, str], list[str]]) -> bool:
    # A host scanned at two addresses (IPv4 and IPv6) with ports open on one is not "closed".
    return (network, host) in found


def _service_order(service: str) -> tuple[str, int]:
    proto, _, port = service.partition("/")
    return (proto, int(port) if port.isdigit() else -1)


def _place_egress(
    matrix: ZoneMatrix, egress: EgressObservation, inventory: Inventory, places: _Places
) -> None:
    known = {line.name for line in matrix.lines}
    rows = [n for n in _home_networks(inventory, egress.host) if n in known]
    by_destination: dict[str, list[EgressAttempt]] = {}
    for attempt in egress.attempts:
        place = places.locate(attempt.destination)
        if place is None:
            continue
        by_destination.setdefault(place[0], []).append(attempt)
    for destination, attempts in by_destination.items():
        if destination not in known:
            continue
        cell = _egress_cell(egress, destination, attempts)
        for row in rows:
            if row != destination:
                _add(matrix, (row, destination), cell)


def _home_networks(inventory: Inventory, host: str) -> list[str]:
    """The networks an egress test speaks for: the host's networks inside the organisation
    (the point of the test is what leaves them), or all of them when it has none there."""
    definition = inventory.hosts.get(host)
    if definition is None:
        return []
    attached = list(definition.addresses)
    inside = [
        n
        for n in attached
        if n in inventory.networks and inventory.networks[n].zone.value != "external"
    ]
    return inside or attached


def _egress_cell(
    egress: EgressObservation, destination: str, attempts: list[EgressAttempt]
) -> ProbeCell:
    escaped = [a for a in attempts if a.seen_on or a.outcome == "connected"]
    if escaped:
        services = tuple(dict.fromkeys(_attempt_service(a) for a in escaped))
        return ProbeCell(escaped=((egress.host, services),))
    watched = destination in egress.captured_networks
    if watched and all(a.executed for a in attempts):
        return ProbeCell(quiet=(egress.host,))
    return ProbeCell(unobserved=(egress.host,))


def _attempt_service(attempt: EgressAttempt) -> str:
    return "ping" if attempt.proto == "icmp" else f"{attempt.proto}/{attempt.port}"


# -- grouping by zone -----------------------------------------------------------------------


def _grouped_by_zone(matrix: ZoneMatrix, limit: int) -> ZoneMatrix:
    zone_of = {line.name: line.zone for line in matrix.lines}
    counts: dict[str, int] = {}
    for line in matrix.lines:
        counts[line.zone] = counts.get(line.zone, 0) + 1
    zones = sorted(counts, key=lambda z: (_zone_rank(z), z))
    grouped = ZoneMatrix(
        lines=[Line(z, z, "zone", counts[z]) for z in zones],
        grouped=True,
        observed=matrix.observed,
        notes=[
            f"{len(matrix.lines)} networks and tunnels (more than {limit}): "
            "rows and columns are zones",
            *matrix.notes,
        ],
    )
    grouped.model = _grouped_model(matrix, zone_of)
    for (source, destination), cell in matrix.probes.items():
        _add(grouped, (zone_of[source], zone_of[destination]), cell)
    grouped.unmodelled = _grouped_unmodelled(matrix, zone_of, counts)
    unanswered = [n for n in matrix.unmodelled if zone_of[n] not in grouped.unmodelled]
    if unanswered:
        shown = ", ".join(unanswered[:MAX_EXAMPLES]) + (
            "…" if len(unanswered) > MAX_EXAMPLES else ""
        )
        grouped.notes.append(
            f"{len(unanswered)} network(s) could not be asked and are left out of their "
            f"zone's row: {shown}"
        )
    return grouped


def _grouped_model(
    matrix: ZoneMatrix, zone_of: Mapping[str, str]
) -> dict[tuple[str, str], ModelCell]:
    pairs: dict[tuple[str, str], list[tuple[str, str, ModelCell]]] = {}
    for (source, destination), cell in sorted(matrix.model.items()):
        key = (zone_of[source], zone_of[destination])
        pairs.setdefault(key, []).append((source, destination, cell))
    return {key: _zone_cell(found) for key, found in pairs.items()}


def _zone_cell(found: list[tuple[str, str, ModelCell]]) -> ModelCell:
    # Worst first: the examples an assessor sees are the certain paths.
    found.sort(key=lambda item: -_STATE_RANK[item[2].state])
    state = found[0][2].state
    return ModelCell(
        state,
        certain=_union(*(cell.certain for _, _, cell in found)),
        uncertain=_union(*(cell.uncertain for _, _, cell in found)),
        examples=tuple(f"{s} → {d}" for s, d, _ in found[:MAX_EXAMPLES]),
        pairs=len(found),
    )


def _grouped_unmodelled(
    matrix: ZoneMatrix, zone_of: Mapping[str, str], counts: Mapping[str, int]
) -> dict[str, str]:
    """A zone row is unanswered only when none of its networks was answered; otherwise the
    caller names the missing ones in the notes (a zone's "no" must not hide an unasked one)."""
    missing: dict[str, list[str]] = {}
    for name in matrix.unmodelled:
        missing.setdefault(zone_of[name], []).append(name)
    out: dict[str, str] = {}
    for zone, names in missing.items():
        if len(names) == counts[zone]:
            out[zone] = matrix.unmodelled[names[0]]
    return out


def _union(*groups: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(item for group in groups for item in group))


def _merge_services(
    *groups: Iterable[tuple[str, tuple[str, ...]]],
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    merged: dict[str, tuple[str, ...]] = {}
    for group in groups:
        for host, services in group:
            merged[host] = _union(merged.get(host, ()), services)
    return tuple(merged.items())
