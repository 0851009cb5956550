"""Drafting an inventory from what the organisation's hosts say about themselves.

``auditor inventory draft`` logs in to the hosts it is given, read-only, with the audit's own
collector and a subset of its plan (no command the sudoers of an organisation do not already
allow), reads this machine's own interfaces, sweeps every network this machine is attached
to for neighbours, and turns all of it into a draft inventory (``auditor.audit.draft_yaml``).

What a probe can see (prefixes, addresses, tunnels, listeners) is filled in; what it cannot
(zones, media, roles, the organisation's name) is left as ``TODO``, which the loader refuses.
Every address given is checked against the authorized scope before any packet is sent, and
everything a host returns is untrusted: only parsed, bounded facts reach the draft.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from netaddr import IPAddress, IPNetwork

from auditor.audit.scope import ScopeGuard
from auditor.domain.attempts import Attempt
from auditor.domain.errors import AuditorError
from auditor.domain.facts import HostFacts, Interface, Listener, WireguardInterface
from auditor.domain.inventory import NAME_PATTERN, Scope, SshAccess, earlier_overlaps
from probes.discovery import DiscoveryResult, discover
from probes.host_collector import DEFAULT_PLAN, HostPlan, Target, collect_hosts
from probes.netlocal import require_tool, run_tool
from probes.parsers import ParseError, parse_ip_addr

#: The facts a draft is made of: the collection plan's own rules for them, nothing more, so
#: the commands are exactly those an organisation's sudoers already allow for an audit.
DRAFT_FACTS = ("interfaces", "routes", "listeners", "wireguard")
DRAFT_PLAN = HostPlan(rules=tuple(r for r in DEFAULT_PLAN.rules if r.fact in DRAFT_FACTS))

#: The value the loader refuses: a decision left to the person who reads the draft.
TODO = "TODO"

# Kernel and container-engine names say nothing about what a network is for ("eth0" on two
# hosts are rarely the same network): such networks are named after their prefix instead.
_GENERIC_INTERFACE = re.compile(
    r"^(eth|ens|enp|eno|enx|em|wlan|wlp|wlo|veth|bond|team|tap|tun|wg|virbr|podman|docker|cni|br)"
    r"[-_.]?[0-9a-f]"
)
_NAME = re.compile(NAME_PATTERN)


class DraftError(AuditorError):
    """The draft cannot be made as asked (a malformed --host, a clash of names)."""


@dataclass(frozen=True)
class HostSpec:
    """One ``--host NAME=ADDRESS`` (or ``--host ADDRESS``): where to log in, by IP literal."""

    name: str
    address: str


def parse_host_spec(text: str) -> HostSpec:
    """``NAME=ADDRESS`` or ``ADDRESS``; the address must be an IP literal (no DNS: a name
    could resolve anywhere, outside the scope included)."""
    name, sep, address = text.partition("=")
    if not sep:
        name, address = "", text
    try:
        literal = ipaddress.ip_address(address.strip())
    except ValueError:
        raise DraftError(f"--host {text!r}: {address!r} is not an IP address") from None
    name = name.strip() or f"host-{dashed(str(literal))}"
    if not _NAME.fullmatch(name):
        raise DraftError(
            f"--host {text!r}: {name!r} is not a valid inventory name "
            "(lower case letters, digits, '.', '_', '-'; at most 63)"
        )
    return HostSpec(name, str(literal))


def dashed(address: str) -> str:
    """An address or prefix as a name part: ``10.98.21.0/24`` -> ``10-98-21-0-24``."""
    return re.sub(r"[^0-9a-z]+", "-", address.lower()).strip("-")


def check_hosts_in_scope(specs: Sequence[HostSpec], scope: Scope) -> ScopeGuard:
    """Refuse (OutOfScopeError) any address outside the scope, and duplicate names, before
    anything is sent; return the guard every later probe asks."""
    names = [s.name for s in specs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DraftError(f"--host: the name(s) {', '.join(twice)} are given more than once")
    guard = ScopeGuard(scope)
    for spec in specs:
        guard.check(spec.address)
    return guard


class DiscardingSink:
    """Evidence of a draft is not kept: a draft is a starting point, not an audit. Each
    artifact still gets its digest, so references in the facts stay well formed."""

    def add(
        self,
        content: bytes,
        *,
        probe: str,
        command: str,
        host: str | None,
        started: datetime,
        finished: datetime,
        tool_version: str | None = None,
        media_type: str = "text/plain",
        exit_status: int | None = None,
    ) -> str:
        return "sha256:" + hashlib.sha256(content).hexdigest()


def collect_for_draft(
    specs: Sequence[HostSpec], access: SshAccess, guard: ScopeGuard
) -> dict[str, Attempt[HostFacts]]:
    """Log in to every host (strict host keys, the draft plan's commands only)."""
    targets = [Target(s.name, s.address) for s in specs]
    return collect_hosts(targets, access, DiscardingSink(), guard.check, plan=DRAFT_PLAN)


def auditor_interfaces() -> list[Interface]:
    """This machine's own interfaces and addresses (``ip -j addr show``, read locally)."""
    run = run_tool([require_tool("ip"), "-j", "addr", "show"], 10.0)
    if run.exit_status != 0:
        stderr = run.stderr.decode(errors="replace").strip()[:300]
        raise DraftError(
            f"cannot read this machine's addresses: ip exited {run.exit_status}: {stderr}"
        )
    try:
        return parse_ip_addr(run.stdout.decode(errors="replace"))
    except ParseError as exc:
        raise DraftError(f"cannot read this machine's addresses: {exc}") from exc


# -- the draft's model ------------------------------------------------------------------------


@dataclass
class DraftNetwork:
    name: str
    prefixes: list[IPNetwork]
    seen_on: list[str] = field(default_factory=list)  #: "host/interface"
    auditor: list[IPAddress] = field(default_factory=list)  #: this machine's addresses there
    sweep: str = "not swept"  #: what the neighbour sweep gave, for a comment

    def holds(self, address: IPAddress) -> bool:
        return any(address in p for p in self.prefixes)


@dataclass
class TunnelEnd:
    host: str | None  #: known once the endpoint address is matched to a host
    endpoint: IPAddress | None  #: where its packets go (None: the peer connects in)
    inner: list[IPAddress] = field(default_factory=list)  #: its addresses inside the tunnel


@dataclass
class DraftTunnel:
    name: str
    type: str
    prefixes: list[IPNetwork]
    ends: list[TunnelEnd] = field(default_factory=list)
    over: str | None = None
    notes: list[str] = field(default_factory=list)

    def holds(self, address: IPAddress) -> bool:
        return any(address in p for p in self.prefixes)


@dataclass
class DraftService:
    port: int
    proto: str
    sources: list[str]
    processes: list[str]


@dataclass
class DraftHost:
    name: str
    ssh: str | None  #: set for the hosts logged in to
    addresses: dict[str, list[IPAddress]] = field(default_factory=dict)
    services: list[DraftService] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  #: what could not be collected
    macs: set[str] = field(default_factory=set)

    def add_address(self, segment: str, address: IPAddress) -> None:
        found = self.addresses.setdefault(segment, [])
        if address not in found:
            found.append(address)
            found.sort(key=lambda a: (a.version, a))


@dataclass
class Draft:
    scope: Scope
    access: SshAccess
    networks: list[DraftNetwork]
    tunnels: list[DraftTunnel]
    hosts: list[DraftHost]  #: logged in to, in the order given
    neighbours: list[DraftHost]  #: answered a sweep or ended a tunnel; nobody logged in
    notes: list[str]  #: what could not be drafted, and why

    def segment_of(self, address: IPAddress) -> str | None:
        segments: list[DraftNetwork | DraftTunnel] = [*self.networks, *self.tunnels]
        return next((s.name for s in segments if s.holds(address)), None)


@dataclass(frozen=True)
class Sweep:
    """A neighbour sweep of one network: addresses that answered, with their MAC."""

    live: Mapping[str, str | None]
    problem: str | None = None  #: why nothing was swept

    @classmethod
    def of(cls, attempt: Attempt[DiscoveryResult]) -> Sweep:
        result = attempt.collected
        if result is None:
            return cls({}, attempt.error.message if attempt.error else "not swept")
        live: dict[str, str | None] = {h.address: h.mac for h in result.hosts}
        for neighbour in result.neighbours:
            live.setdefault(neighbour.address, neighbour.mac)
        return cls(live)


# -- networks ---------------------------------------------------------------------------------


def _global_prefixes(interface: Interface) -> list[tuple[IPAddress, IPNetwork]]:
    found = []
    for a in interface.addresses:
        if a.scope != "global":
            continue
        try:
            address = IPAddress(a.address)
            prefix = IPNetwork(f"{a.address}/{a.prefixlen}").cidr
        except Exception:  # untrusted text the parser let through: not a network to draft
            continue
        found.append((address, prefix))
    return found


def _links(facts: HostFacts) -> list[Interface]:
    """Interfaces that attach a host to a network: not loopback, not a tunnel."""
    tunnels = {t.name for t in facts.wireguard or []}
    return [
        i
        for i in facts.interfaces or []
        if i.kind not in ("loopback", "wireguard") and i.name not in tunnels
    ]


class _Groups:
    """Prefixes held by one interface are one network (its IPv4 and IPv6 prefixes)."""

    def __init__(self) -> None:
        self.parent: dict[IPNetwork, IPNetwork] = {}

    def find(self, prefix: IPNetwork) -> IPNetwork:
        self.parent.setdefault(prefix, prefix)
        while self.parent[prefix] != prefix:
            prefix = self.parent[prefix]
        return prefix

    def join(self, prefixes: Sequence[IPNetwork]) -> None:
        for prefix in prefixes:
            self.parent[self.find(prefix)] = self.find(prefixes[0])

    def groups(self) -> list[list[IPNetwork]]:
        by_root: dict[IPNetwork, list[IPNetwork]] = {}
        for prefix in self.parent:
            by_root.setdefault(self.find(prefix), []).append(prefix)
        return [sorted(g, key=lambda p: (p.version, p)) for g in by_root.values()]


def _segment_name(interface: str | None, prefixes: list[IPNetwork], kind: str) -> str:
    """The interface's name when it says something, else one made of the first prefix."""
    if (
        interface is not None
        and _NAME.fullmatch(interface)
        and not _GENERIC_INTERFACE.match(interface)
    ):
        return interface
    return f"{kind}-{dashed(str(prefixes[0]))}"


def _network_name(prefixes: list[IPNetwork], interface_names: set[str]) -> str:
    # Named after the interface only when every host calls it the same.
    only = next(iter(interface_names)) if len(interface_names) == 1 else None
    return _segment_name(only, prefixes, "net")


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}-{n}", n + 1
    taken.add(candidate)
    return candidate


def draft_networks(
    facts: Mapping[str, HostFacts], local: Sequence[Interface], scope: Scope, notes: list[str]
) -> list[DraftNetwork]:
    """The networks the hosts (and this machine) are attached to, inside the scope; sorted
    by prefix, so the same hosts give the same draft."""
    groups = _Groups()
    seen: dict[IPNetwork, list[tuple[str, str]]] = {}
    own: dict[IPNetwork, list[IPAddress]] = {}
    attachments: list[tuple[str | None, Interface]] = [
        (h, i) for h, f in facts.items() for i in _links(f)
    ]
    attachments += [(None, i) for i in local if i.kind != "loopback"]
    for host, interface in attachments:
        prefixes = []
        for address, prefix in _global_prefixes(interface):
            if not scope.permits(prefix):
                if host is not None:
                    notes.append(
                        f"{host}: {interface.name} {prefix} is outside the scope: left out"
                    )
                continue
            prefixes.append(prefix)
            if host is None:
                own.setdefault(prefix, []).append(address)
            else:
                seen.setdefault(prefix, []).append((host, interface.name))
        if prefixes:
            groups.join(prefixes)
    networks = [
        DraftNetwork(
            name="",
            prefixes=group,
            seen_on=sorted({f"{h}/{i}" for p in group for h, i in seen.get(p, [])}),
            auditor=sorted(
                {a for p in group for a in own.get(p, [])}, key=lambda a: (a.version, a)
            ),
        )
        for group in sorted(
            _one_prefix_per_family(groups.groups(), notes), key=lambda g: (g[0].version, g[0])
        )
    ]
    taken: set[str] = set()
    for network in networks:
        names = {i for p in network.prefixes for _, i in seen.get(p, [])}
        network.name = _unique(_network_name(network.prefixes, names), taken)
    _note_overlaps(networks, notes)
    return networks


def _one_prefix_per_family(
    groups: list[list[IPNetwork]], notes: list[str]
) -> list[list[IPNetwork]]:
    """A network has one prefix per family: an interface holding two IPv4 prefixes (say) does
    not tell which IPv6 prefix goes with which, so each becomes a network of its own."""
    result = []
    for group in groups:
        families = [p.version for p in group]
        if len(set(families)) == len(families):
            result.append(group)
            continue
        notes.append(
            f"{', '.join(map(str, group))} share an interface: drafted as separate networks"
        )
        result += [[p] for p in group]
    return result


def _note_overlaps(networks: list[DraftNetwork], notes: list[str]) -> None:
    """Nested prefixes (a /16 on one host, a /24 on another) cannot both be networks: the
    loader refuses overlaps, and only a person can tell which host is misconfigured."""
    entries = [(n.name, p) for n in networks for p in n.prefixes]
    for later, earlier in earlier_overlaps([p for _, p in entries]).items():
        for index in earlier:
            notes.append(
                f"{entries[later][0]} ({entries[later][1]}) overlaps {entries[index][0]} "
                f"({entries[index][1]}): decide which prefix is right"
            )


# -- tunnels ----------------------------------------------------------------------------------


def _endpoint_address(endpoint: str | None) -> IPAddress | None:
    """``10.98.10.10:51820`` or ``[fd98::10]:51820`` -> the address; None if unparseable."""
    if not endpoint:
        return None
    host = endpoint.rsplit(":", 1)[0].strip("[]")
    try:
        return IPAddress(host)
    except Exception:
        return None


def _inner_addresses(allowed_ips: Iterable[str], prefixes: Sequence[IPNetwork]) -> list[IPAddress]:
    found = []
    for allowed in allowed_ips:
        try:
            net = IPNetwork(allowed)
        except Exception:
            continue
        if net.size == 1 and any(net.ip in p for p in prefixes):
            found.append(net.ip)
    return found


def _tunnel_of(
    host: str,
    wg: WireguardInterface,
    interface: Interface,
    scope: Scope,
    tunnels: list[DraftTunnel],
) -> None:
    own = [(a, p) for a, p in _global_prefixes(interface) if scope.permits(p)]
    prefixes = sorted({p for _, p in own}, key=lambda p: (p.version, p))
    if not prefixes:
        return
    tunnel = next((t for t in tunnels if set(t.prefixes) & set(prefixes)), None)
    if tunnel is None:
        first = {p.version: p for p in reversed(prefixes)}
        tunnel = DraftTunnel(name=wg.name, type="wireguard", prefixes=sorted(first.values()))
        if len(first) < len(prefixes):
            tunnel.notes.append(
                f"{host}/{wg.name} holds {', '.join(map(str, prefixes))}: "
                "only the first of each family is drafted"
            )
        tunnels.append(tunnel)
    addresses = [a for a, _ in own]
    # Seen before as the peer of the other end: the same end, now with its name.
    end = next((e for e in tunnel.ends if set(e.inner) & set(addresses)), None)
    if end is None:
        tunnel.ends.append(TunnelEnd(host, None, addresses))
    else:
        end.host = host
    for peer in wg.peers:
        inner = _inner_addresses(peer.allowed_ips, prefixes)
        if any(a in e.inner for e in tunnel.ends for a in inner):
            continue  # the other end, already known from its own side
        tunnel.ends.append(TunnelEnd(None, _endpoint_address(peer.endpoint), inner))


def draft_tunnels(
    facts: Mapping[str, HostFacts], scope: Scope, taken: set[str]
) -> list[DraftTunnel]:
    """The WireGuard tunnels of the hosts (one per inner prefix, seen from either end);
    ``taken``: names already used by networks."""
    tunnels: list[DraftTunnel] = []
    for host, f in facts.items():
        interfaces = {i.name: i for i in f.interfaces or []}
        for wg in f.wireguard or []:
            if wg.name in interfaces:
                _tunnel_of(host, wg, interfaces[wg.name], scope, tunnels)
    tunnels.sort(key=lambda t: (t.prefixes[0].version, t.prefixes[0]))
    for tunnel in tunnels:
        tunnel.name = _unique(_segment_name(tunnel.name, tunnel.prefixes, "tun"), taken)
    return tunnels


# -- hosts ------------------------------------------------------------------------------------

_LOOPBACK = (IPNetwork("127.0.0.0/8"), IPNetwork("::1/128"))


def _reachable_from(listener: Listener, host: DraftHost) -> list[str]:
    """The segments a listener answers on, by its bound address: a wildcard answers on every
    segment of its family ("::" on both, as Linux binds it by default), a loopback address on
    none. The host's firewall may narrow this further; the draft says so."""
    bound = listener.address.strip("[]")
    if bound in ("*", "::"):
        return sorted(host.addresses)
    if bound == "0.0.0.0":
        return sorted(
            s for s, addrs in host.addresses.items() if any(a.version == 4 for a in addrs)
        )
    try:
        address = IPAddress(bound.split("%")[0])
    except Exception:
        return []
    if any(address in loop for loop in _LOOPBACK):
        return []
    return sorted(s for s, addrs in host.addresses.items() if address in addrs)


def _services(listeners: Sequence[Listener], host: DraftHost) -> list[DraftService]:
    by_port: dict[tuple[int, str], DraftService] = {}
    for listener in listeners:
        sources = _reachable_from(listener, host)
        if not sources:
            continue
        key = (listener.port, listener.proto)
        service = by_port.setdefault(key, DraftService(listener.port, listener.proto, [], []))
        service.sources = sorted(set(service.sources) | set(sources))
        if listener.process and listener.process not in service.processes:
            service.processes.append(listener.process)
    return [by_port[k] for k in sorted(by_port)]


def _default_routes(facts: HostFacts) -> list[str]:
    return sorted(
        {
            f"default route via {r.gateway}"
            for r in facts.routes or []
            if r.destination == "default" and r.gateway and r.table == "main"
        }
    )


def _logged_in_host(spec: HostSpec, attempt: Attempt[HostFacts] | None, draft: Draft) -> DraftHost:
    host = DraftHost(spec.name, spec.address)
    facts = attempt.collected if attempt is not None else None
    if attempt is not None and not attempt.succeeded and attempt.error is not None:
        host.problems.append(f"collection incomplete: {attempt.error.message}")
    if facts is None:
        return host
    for interface in facts.interfaces or []:
        if interface.mac:
            host.macs.add(interface.mac.lower())
        for address, _ in _global_prefixes(interface):
            segment = draft.segment_of(address)
            if segment is not None:
                host.add_address(segment, address)
    if facts.listeners is not None:
        host.services = _services(facts.listeners, host)
    else:
        why = facts.errors.get("listeners", "unknown")
        host.problems.append(f"listeners not collected, no services drafted: {why}")
    host.notes += _default_routes(facts)
    return host


def _neighbours(draft: Draft, sweeps: Mapping[str, Sweep]) -> list[DraftHost]:
    """Devices that answered a sweep and that no logged-in host accounts for, one per MAC."""
    known_addresses = {a for h in draft.hosts for addrs in h.addresses.values() for a in addrs}
    known_macs = {m for h in draft.hosts for m in h.macs}
    own = {a for n in draft.networks for a in n.auditor}
    by_device: dict[str, DraftHost] = {}
    for network in draft.networks:
        sweep = sweeps.get(network.name)
        if sweep is None:
            continue
        for text, mac in sorted(sweep.live.items()):
            try:
                address = IPAddress(text)
            except Exception:
                continue
            if address in known_addresses or address in own or not network.holds(address):
                continue
            if mac is not None and mac.lower() in known_macs:
                continue  # another address of a host logged in to (not on its interfaces)
            key = mac.lower() if mac else str(address)
            device = by_device.get(key)
            if device is None:
                device = by_device[key] = DraftHost(name="", ssh=None)
                device.notes.append("unknown: answered the sweep of " + network.name)
            if mac:
                device.macs.add(mac.lower())
            device.add_address(network.name, address)
    return list(by_device.values())


def _resolve_tunnel_ends(draft: Draft) -> None:
    everyone = [*draft.hosts, *draft.neighbours]
    for tunnel in draft.tunnels:
        for end in tunnel.ends:
            if end.host is None and end.endpoint is not None:
                end.host = _host_for_endpoint(draft, everyone, end.endpoint, tunnel)
            holder = next((h for h in everyone if h.name == end.host), None)
            if holder is not None:
                for address in end.inner:
                    holder.add_address(tunnel.name, address)
        tunnel.over = _carrier(draft, tunnel)
        if len(tunnel.ends) > 2:
            extra = ", ".join(str(e.endpoint or e.inner) for e in tunnel.ends[2:])
            tunnel.notes.append(f"more than two peers; only the first is drafted (also: {extra})")


def _host_for_endpoint(
    draft: Draft, everyone: list[DraftHost], endpoint: IPAddress, tunnel: DraftTunnel
) -> str | None:
    for host in everyone:
        if any(endpoint in addrs for addrs in host.addresses.values()):
            return host.name
    segment = draft.segment_of(endpoint)
    if segment is None:
        tunnel.notes.append(f"peer endpoint {endpoint} is in no drafted network: end left TODO")
        return None
    peer = DraftHost(name=_unique(f"peer-{dashed(str(endpoint))}", _names(draft)), ssh=None)
    peer.notes.append(f"unknown: WireGuard peer of {tunnel.name}, did not answer a sweep")
    peer.add_address(segment, endpoint)
    draft.neighbours.append(peer)
    everyone.append(peer)
    return peer.name


def _carrier(draft: Draft, tunnel: DraftTunnel) -> str | None:
    """The network the tunnel's packets travel on: the one holding a peer's endpoint."""
    for end in tunnel.ends:
        if end.endpoint is not None:
            segment = draft.segment_of(end.endpoint)
            if segment is not None and any(n.name == segment for n in draft.networks):
                return segment
    return None


def _names(draft: Draft) -> set[str]:
    hosts = {h.name for h in [*draft.hosts, *draft.neighbours]}
    return hosts | {n.name for n in draft.networks} | {t.name for t in draft.tunnels}


def _name_neighbours(draft: Draft) -> None:
    taken = _names(draft) - {""}
    for device in sorted(draft.neighbours, key=_first_address):
        if not device.name:
            device.name = _unique(f"unknown-{dashed(str(_first_address(device)[1]))}", taken)
    draft.neighbours.sort(key=_first_address)


def _first_address(host: DraftHost) -> tuple[int, IPAddress]:
    first = min(
        (a for addrs in host.addresses.values() for a in addrs), key=lambda a: (a.version, a)
    )
    return first.version, first


def build_draft(
    *,
    specs: Sequence[HostSpec],
    collected: Mapping[str, Attempt[HostFacts]],
    local: Sequence[Interface],
    sweeps: Mapping[str, Sweep],
    scope: Scope,
    access: SshAccess,
) -> Draft:
    """The draft, from collected facts, this machine's interfaces and the sweeps (by network
    name, as ``draft_networks`` names them). Pure: the same inputs give the same draft."""
    notes: list[str] = []
    facts = {n: f for n, a in collected.items() if (f := a.collected) is not None}
    networks = draft_networks(facts, local, scope, notes)
    tunnels = draft_tunnels(facts, scope, {n.name for n in networks})
    draft = Draft(scope, access, networks, tunnels, [], [], notes)
    draft.hosts = [_logged_in_host(s, collected.get(s.name), draft) for s in specs]
    for network in networks:
        sweep = sweeps.get(network.name)
        if sweep is not None:
            network.sweep = sweep.problem or f"swept: {len(sweep.live)} answered"
    draft.neighbours = _neighbours(draft, sweeps)
    _name_neighbours(draft)
    _resolve_tunnel_ends(draft)
    _name_neighbours(draft)
    return draft


def sweep_networks(
    networks: Sequence[DraftNetwork], guard: ScopeGuard, known: Sequence[IPAddress]
) -> dict[str, Sweep]:
    """Sweep every network this machine holds an address on, from that address (the audit's
    discovery probe); the others are left for the reader, with the reason."""
    sweeps: dict[str, Sweep] = {}
    for network in networks:
        if not network.auditor:
            sweeps[network.name] = Sweep({}, "not swept: this machine holds no address here")
            continue
        attempt = discover(
            network=network.name,
            prefixes=[str(p) for p in network.prefixes],
            auditor_addresses=[str(a) for a in network.auditor],
            sink=DiscardingSink(),
            check_target=guard.check,
            known_ipv6=[str(a) for a in known if a.version == 6 and network.holds(a)],
        )
        sweeps[network.name] = Sweep.of(attempt)
    return sweeps


__all__ = [
    "DRAFT_PLAN",
    "TODO",
    "Draft",
    "DraftError",
    "DraftHost",
    "DraftNetwork",
    "DraftTunnel",
    "HostSpec",
    "Sweep",
    "auditor_interfaces",
    "build_draft",
    "check_hosts_in_scope",
    "collect_for_draft",
    "draft_networks",
    "make_draft",
    "parse_host_spec",
    "sweep_networks",
]


def make_draft(
    specs: Sequence[HostSpec], access: SshAccess, scope: Scope, *, sweep: bool = True
) -> Draft:
    """Check the scope, log in to every host, read this machine's interfaces, sweep the
    networks it is on (unless ``sweep`` is False), and draft."""
    guard = check_hosts_in_scope(specs, scope)
    collected = collect_for_draft(specs, access, guard)
    if not any((a.collected and a.collected.interfaces) for a in collected.values()):
        reasons = "; ".join(a.error.message for a in collected.values() if a.error is not None)
        raise DraftError(f"no host's interfaces could be collected, nothing to draft: {reasons}")
    local = auditor_interfaces()
    first = build_draft(
        specs=specs, collected=collected, local=local, sweeps={}, scope=scope, access=access
    )
    if not sweep:
        return first
    known = [a for h in first.hosts for addrs in h.addresses.values() for a in addrs]
    sweeps = sweep_networks(first.networks, guard, known)
    return build_draft(
        specs=specs, collected=collected, local=local, sweeps=sweeps, scope=scope, access=access
    )
