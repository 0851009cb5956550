"""The inventory: what an auditor on site writes down before auditing.

It names the networks (with their zone and medium, which no probe can tell), the hosts with
their roles and the addresses the auditor reaches them at, the tunnels, the services each
host is declared to offer and from where, and the authorized scope: the only addresses the
auditor may ever send a packet to. See ``docs/inventory.md`` for the format.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, cast

from netaddr import IPAddress, IPNetwork, IPSet
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    field_validator,
    model_validator,
)

from auditor.domain.yamlsource import (
    Loc,
    LocatedDocument,
    SourceError,
    load_located,
    validate_document,
)

Problem = tuple[Loc, str]

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
Name = Annotated[str, Field(pattern=NAME_PATTERN)]


def _parse_network(value: Any) -> IPNetwork:
    if isinstance(value, IPNetwork):
        return value
    try:
        net = IPNetwork(str(value))
    except Exception as exc:
        raise ValueError(f"not an IP network: {value!r}") from exc
    if net.ip != net.network:
        raise ValueError(f"{value} has host bits set; write {net.cidr}")
    return net


def _parse_address(value: Any) -> IPAddress:
    if isinstance(value, IPAddress):
        return value
    try:
        return IPAddress(str(value))
    except Exception as exc:
        raise ValueError(f"not an IP address: {value!r}") from exc


Network = Annotated[IPNetwork, BeforeValidator(_parse_network), PlainSerializer(str)]
Address = Annotated[IPAddress, BeforeValidator(_parse_address), PlainSerializer(str)]


class Zone(StrEnum):
    EXTERNAL = "external"
    PROTECTED = "protected"
    OFFICE = "office"


class Medium(StrEnum):
    INTERNET = "internet"
    IP_VPN = "ip-vpn"
    LEASED_LINE = "leased-line"
    LAN = "lan"


class Role(StrEnum):
    RECEIVING = "receiving"
    SENDING = "sending"
    PROCESSING = "processing"
    TERMINAL = "terminal"
    LOG = "log"
    ROUTER = "router"
    OFFICE = "office"
    EXTERNAL_PARTY = "external-party"
    VANTAGE = "vantage"


#: Roles of the certified organisation's own machines: these are audited over SSH.
ORGANISATION_ROLES = frozenset(
    {Role.RECEIVING, Role.SENDING, Role.PROCESSING, Role.TERMINAL, Role.LOG}
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class Scope(Strict):
    """The only addresses any probe may send a packet to (and loopback)."""

    authorized: list[Network] = Field(min_length=1)

    @cached_property
    def ipset(self) -> IPSet:
        return IPSet(self.authorized)

    def permits(self, target: str | IPAddress | IPNetwork) -> bool:
        """True when every address of ``target`` is authorized (loopback always is)."""
        family, first, last = _bounds(target)
        if _is_loopback(family, first, last):
            return True
        # Asked for every network and host of the inventory: integer ranges, not IPSets.
        authorized = self.authorized
        ranges = _memo(self, "_ranges", (authorized,), lambda: MergedRanges(authorized))
        return ranges.covers(family, first, last)


def _bounds(target: str | IPAddress | IPNetwork) -> tuple[int, int, int]:
    """(family, first, last) of an address or a network, whatever its host bits."""
    if isinstance(target, IPAddress):
        value = int(target)
        return target.version, value, value
    net = target if isinstance(target, IPNetwork) else IPNetwork(str(target))
    return net.version, net.first, net.last


#: 127.0.0.0/8 as integers.
_V4_LOOPBACK = (127 << 24, (128 << 24) - 1)


def _is_loopback(family: int, first: int, last: int) -> bool:
    """Inside 127.0.0.0/8, or exactly ::1."""
    if family == 4:
        return _V4_LOOPBACK[0] <= first and last <= _V4_LOOPBACK[1]
    return first == last == 1


class MergedRanges:
    """The union of some prefixes as sorted, merged integer ranges per family, so that
    "does the union hold all of this range" is one bisection."""

    def __init__(self, prefixes: Iterable[IPNetwork]) -> None:
        spans: dict[int, list[tuple[int, int]]] = {4: [], 6: []}
        for prefix in prefixes:
            spans[prefix.version].append((prefix.first, prefix.last))
        self._starts: dict[int, list[int]] = {}
        self._ends: dict[int, list[int]] = {}
        for family, found in spans.items():
            merged = _merged(found)
            self._starts[family] = [lo for lo, _ in merged]
            self._ends[family] = [hi for _, hi in merged]

    def covers(self, family: int, first: int, last: int) -> bool:
        # Merged ranges are disjoint and never adjacent: only the last one starting at or
        # before ``first`` can hold the whole range.
        i = bisect_right(self._starts[family], first) - 1
        return i >= 0 and self._ends[family][i] >= last


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, with overlapping and adjacent spans joined (a range may straddle two
    adjacent authorized prefixes, as an IPSet would allow)."""
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(spans):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


T = TypeVar("T")


def _memo(model: BaseModel, key: str, sources: tuple[object, ...], build: Callable[[], T]) -> T:
    """A value derived from some of the model's fields, kept on the model while those fields
    hold the same objects.

    ``model_copy`` copies the instance dictionary, cached values included, even when the
    copy replaces a field they were derived from: keying on the fields' objects notices.
    """
    found = model.__dict__.get(key)
    if found is None or not _same_objects(found[0], sources):
        found = (sources, build())
        model.__dict__[key] = found
    return cast(T, found[1])


def _same_objects(a: tuple[object, ...], b: tuple[object, ...]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


class SshAccess(Strict):
    user: str = "auditor"
    key: Path
    known_hosts: Path
    port: int = Field(default=22, ge=1, le=65535)
    connect_timeout: float = Field(default=5.0, gt=0, le=120)
    command_timeout: float = Field(default=30.0, gt=0, le=3600)
    parallel: int = Field(default=8, ge=1, le=256)
    #: The most one host may send during its collection (outputs and files together, MiB).
    #: A real server sends a few MiB; past the budget its collection stops with the reason,
    #: so a hostile or broken host cannot fill the auditor's memory and disk.
    host_budget_mib: float = Field(default=64.0, gt=0, le=4096)

    @property
    def host_budget_bytes(self) -> int:
        return int(self.host_budget_mib * 1024 * 1024)


class AuditPolicy(Strict):
    """Limits the organisation sets for judgements that depend on its own practice."""

    #: How old a host's package lists may be for "no security update pending" to be known
    #: (security-updates-applied); None: the control's default (7 days).
    package_lists_max_age_days: int | None = Field(default=None, ge=1, le=3650)


class LocalVantage(Strict):
    """This machine's own addresses on a network: it can capture and scan from there."""

    ipv4: Address | None = None
    ipv6: Address | None = None


class NetworkDef(Strict):
    zone: Zone
    medium: Medium
    ipv4: Network | None = None
    ipv6: Network | None = None
    auditor: LocalVantage | None = None
    description: str = ""

    @model_validator(mode="after")
    def _has_a_prefix(self) -> NetworkDef:
        if self.ipv4 is None and self.ipv6 is None:
            raise ValueError("a network needs ipv4 or ipv6")
        if self.ipv4 is not None and self.ipv4.version != 4:
            raise ValueError(f"ipv4: {self.ipv4} is not IPv4")
        if self.ipv6 is not None and self.ipv6.version != 6:
            raise ValueError(f"ipv6: {self.ipv6} is not IPv6")
        return self

    @property
    def prefixes(self) -> list[IPNetwork]:
        return [p for p in (self.ipv4, self.ipv6) if p is not None]


class TunnelDef(Strict):
    type: Literal["wireguard", "ipsec", "openvpn"]
    over: Name
    ipv4: Network | None = None
    ipv6: Network | None = None
    endpoints: list[Name] = Field(min_length=2, max_length=2)

    @property
    def prefixes(self) -> list[IPNetwork]:
        return [p for p in (self.ipv4, self.ipv6) if p is not None]


class ServiceDef(Strict):
    """A listening service the organisation declares, and the networks allowed to reach it."""

    port: int = Field(ge=1, le=65535)
    proto: Literal["tcp", "udp"] = "tcp"
    sources: list[Name] = Field(alias="from", min_length=1)
    purpose: str = ""


class HostDef(Strict):
    roles: list[Role] = Field(min_length=1)
    os: Literal["linux", "windows"] = "linux"
    ssh: Address | None = None
    addresses: dict[Name, list[Address]] = Field(default_factory=dict)
    services: list[ServiceDef] = Field(default_factory=list)
    description: str = ""

    @field_validator("roles")
    @classmethod
    def _unique_roles(cls, roles: list[Role]) -> list[Role]:
        if len(set(roles)) != len(roles):
            raise ValueError("a role is listed twice")
        return roles

    @property
    def is_organisation(self) -> bool:
        return bool(ORGANISATION_ROLES.intersection(self.roles))

    def all_addresses(self) -> list[IPAddress]:
        return [a for addrs in self.addresses.values() for a in addrs]


class Inventory(Strict):
    version: Literal[1] = 1
    organisation: str
    scope: Scope
    ssh: SshAccess
    networks: dict[Name, NetworkDef] = Field(min_length=1)
    tunnels: dict[Name, TunnelDef] = Field(default_factory=dict)
    hosts: dict[Name, HostDef] = Field(min_length=1)
    log_host: Name | None = None
    policy: AuditPolicy = Field(default_factory=AuditPolicy)

    @model_validator(mode="after")
    def _cross_references(self, info: ValidationInfo) -> Inventory:
        # Loaded from a file, the loader reports these with their line numbers instead.
        if info.context and "doc" in info.context:
            return self
        problems = self.cross_reference_problems()
        if problems:
            raise ValueError("; ".join(f"{'.'.join(map(str, loc))}: {m}" for loc, m in problems))
        return self

    def cross_reference_problems(self) -> list[Problem]:
        """Problems no single field can see: overlaps, dangling names, out-of-scope targets."""
        problems = [
            *self._check_networks_disjoint(),
            *self._check_tunnels(),
            *self._check_hosts(),
        ]
        if self.log_host is not None and self.log_host not in self.hosts:
            problems.append((("log_host",), f"no host named {self.log_host!r}"))
        return problems

    def _check_networks_disjoint(self) -> list[Problem]:
        problems: list[Problem] = []
        segments = [("networks", n, p) for n, d in self.networks.items() for p in d.prefixes]
        segments += [("tunnels", n, p) for n, t in self.tunnels.items() for p in t.prefixes]
        overlapping = earlier_overlaps([prefix for _, _, prefix in segments])
        for index, (kind, name, prefix) in enumerate(segments):
            loc = (kind, name, f"ipv{prefix.version}")
            for earlier in overlapping.get(index, []):
                _, other, other_prefix = segments[earlier]
                problems.append((loc, f"{prefix} overlaps {other} ({other_prefix})"))
            if not self.scope.permits(prefix):
                problems.append((loc, f"{prefix} is outside the authorized scope"))
        return problems

    def _check_tunnels(self) -> list[Problem]:
        problems: list[Problem] = []
        for name, tunnel in self.tunnels.items():
            if tunnel.over not in self.networks:
                problems.append((("tunnels", name, "over"), f"no network named {tunnel.over!r}"))
            problems += [
                (("tunnels", name, "endpoints", i), f"no host named {h!r}")
                for i, h in enumerate(tunnel.endpoints)
                if h not in self.hosts
            ]
        return problems

    def _segments(self) -> dict[str, list[IPNetwork]]:
        return {
            **{n: d.prefixes for n, d in self.networks.items()},
            **{n: t.prefixes for n, t in self.tunnels.items()},
        }

    def _check_hosts(self) -> list[Problem]:
        problems: list[Problem] = []
        segments = self._segments()
        for name, host in self.hosts.items():
            where = ("hosts", name)
            if host.is_organisation and host.ssh is None and host.os == "linux":
                problems.append(((*where, "roles"), "an organisation host needs an ssh address"))
            if host.ssh is not None and not self.scope.permits(host.ssh):
                problems.append(((*where, "ssh"), f"{host.ssh} is outside the authorized scope"))
            problems += self._check_host_addresses(where, host, segments)
            for i, service in enumerate(host.services):
                problems += [
                    ((*where, "services", i, "from"), f"no network or tunnel named {s!r}")
                    for s in service.sources
                    if s not in segments
                ]
        return problems

    @staticmethod
    def _check_host_addresses(
        where: tuple[str, str], host: HostDef, segments: dict[str, list[IPNetwork]]
    ) -> list[Problem]:
        problems: list[Problem] = []
        for segment, addrs in host.addresses.items():
            if segment not in segments:
                problems.append(
                    ((*where, "addresses", segment), "no network or tunnel by that name")
                )
                continue
            problems += [
                ((*where, "addresses", segment, i), f"{a} is not inside {segment}")
                for i, a in enumerate(addrs)
                if not any(a in p for p in segments[segment])
            ]
        return problems

    # -- questions the rest of the auditor asks ------------------------------------------
    def hosts_with(self, role: Role) -> list[str]:
        # Several controls ask this once per subject: a scan of every host each time made
        # them quadratic in the organisation's size.
        hosts = self.hosts
        by_role = _memo(self, "_hosts_by_role", (hosts,), lambda: _hosts_by_role(hosts))
        return list(by_role.get(role, ()))

    def organisation_hosts(self) -> list[str]:
        return sorted(n for n, h in self.hosts.items() if h.is_organisation)

    def networks_in(self, *zones: Zone) -> list[str]:
        return sorted(n for n, d in self.networks.items() if d.zone in zones)

    def network_of(self, address: IPAddress) -> str | None:
        """The network (else the tunnel) whose prefix holds the address: the first listed
        when several would (a valid inventory has no overlap)."""
        # Built once: network_of is asked for every interface address of every host, and a
        # scan over all networks made that quadratic in the organisation's size.
        networks, tunnels = self.networks, self.tunnels
        index = _memo(
            self, "_network_index", (networks, tunnels), lambda: _network_index(networks, tunnels)
        )
        return index.find(address)


def _hosts_by_role(hosts: dict[str, HostDef]) -> dict[Role, tuple[str, ...]]:
    found: dict[Role, list[str]] = {}
    for name, host in hosts.items():
        for role in host.roles:
            found.setdefault(role, []).append(name)
    return {role: tuple(sorted(names)) for role, names in found.items()}


def _network_index(networks: dict[str, NetworkDef], tunnels: dict[str, TunnelDef]) -> AddressIndex:
    entries = [(n, p) for n, d in networks.items() for p in d.prefixes]
    entries += [(n, p) for n, t in tunnels.items() for p in t.prefixes]
    return AddressIndex(entries)


def earlier_overlaps(prefixes: list[IPNetwork]) -> dict[int, list[int]]:
    """For each prefix (by position), the earlier-listed prefixes of its family that overlap
    it, in listing order.

    CIDR prefixes either nest or are disjoint. Swept in start order (the wider first on a
    tie), the prefixes still open at a start are a chain each holding the next, and every
    one of them holds the new prefix: O(n log n) plus one step per overlapping pair, where
    comparing every pair was quadratic in the number of networks.
    """
    found: dict[int, list[int]] = {}
    order = sorted(
        range(len(prefixes)),
        key=lambda i: (prefixes[i].version, prefixes[i].first, -prefixes[i].last, i),
    )
    open_chain: list[int] = []
    for i in order:
        prefix = prefixes[i]
        if open_chain and prefixes[open_chain[-1]].version != prefix.version:
            open_chain = []
        while open_chain and prefixes[open_chain[-1]].last < prefix.first:
            open_chain.pop()
        for j in open_chain:
            found.setdefault(max(i, j), []).append(min(i, j))
        open_chain.append(i)
    return {later: sorted(earlier) for later, earlier in found.items()}


class AddressIndex:
    """Which named prefix holds an address, by bisection over disjoint integer ranges.

    Entries earlier in the list win where prefixes overlap, as a scan in that order would.
    """

    def __init__(self, entries: list[tuple[str, IPNetwork]]) -> None:
        self._starts: dict[int, list[int]] = {4: [], 6: []}
        self._ranges: dict[int, list[tuple[int, int, str]]] = {4: [], 6: []}
        for name, prefix in entries:
            self._add(prefix.version, prefix.first, prefix.last, name)

    def _add(self, family: int, first: int, last: int, name: str) -> None:
        starts, ranges = self._starts[family], self._ranges[family]
        cursor = first
        i = max(0, bisect_right(starts, first) - 1)
        pieces: list[tuple[int, int, str]] = []
        # Keep only the parts no earlier entry covers.
        while cursor <= last and i < len(ranges):
            lo, hi, _ = ranges[i]
            if hi < cursor:
                i += 1
                continue
            if lo > last:
                break
            if lo > cursor:
                pieces.append((cursor, lo - 1, name))
            cursor = hi + 1
            i += 1
        if cursor <= last:
            pieces.append((cursor, last, name))
        for piece in pieces:
            at = bisect_right(starts, piece[0])
            starts.insert(at, piece[0])
            ranges.insert(at, piece)

    def find(self, address: IPAddress) -> str | None:
        family, value = address.version, int(address)
        i = bisect_right(self._starts[family], value) - 1
        if i < 0:
            return None
        _, last, name = self._ranges[family][i]
        return name if value <= last else None


#: The value ``auditor inventory draft`` leaves where only a person can decide. A file that
#: still holds one is refused: a guessed zone or role would make every verdict built on it
#: look better founded than it is.
TODO_MARK = "TODO"

#: What to decide, by the key that holds the TODO (the draft writes the same as a comment).
TODO_ADVICE: dict[str, str] = {
    "organisation": "the audited organisation's name, as it must appear on the reports",
    "zone": (
        "the zone: external (leads to other organisations or the Internet), protected "
        "(inside the certified area) or office (an ordinary office LAN)"
    ),
    "medium": (
        "the medium: internet, ip-vpn (a carrier's closed network), leased-line (a dedicated "
        "line) or lan; the line's contract says which, no probe can"
    ),
    "roles": (
        "the role: receiving, sending, processing, terminal or log for the organisation's own "
        "machines; router, office, external-party (another organisation's machine) or vantage "
        "(the auditor's own outside machine); or remove the host if it is not to be audited"
    ),
    "over": "the network that carries the tunnel's packets",
    "endpoints": "the host at this end of the tunnel (add it under hosts if it is missing)",
}


def todo_problems(doc: LocatedDocument) -> list[str]:
    """``file:line:col: key: still a TODO ...`` for every value still ``TODO``."""
    return [
        f"{doc.where(loc)}: {'.'.join(map(str, loc))}: still a TODO from `auditor inventory "
        f"draft`: decide {_todo_advice(loc)}"
        for loc in _todo_locations(doc.data, ())
    ]


def _todo_locations(value: Any, loc: Loc) -> list[Loc]:
    if isinstance(value, str):
        return [loc] if value.strip() == TODO_MARK else []
    if isinstance(value, dict):
        return [found for k, v in value.items() for found in _todo_locations(v, (*loc, k))]
    if isinstance(value, list):
        return [found for i, v in enumerate(value) for found in _todo_locations(v, (*loc, i))]
    return []


def _todo_advice(loc: Loc) -> str:
    keys = [part for part in loc if isinstance(part, str)]
    return TODO_ADVICE.get(keys[-1], "this value") if keys else "this value"


def load_inventory(path: Path) -> Inventory:
    """Load and validate an inventory; relative key paths are made relative to its folder.

    Raises ``SourceError`` whose message names the file, line and key of every problem, and
    of every value a draft left ``TODO``.
    """
    doc = load_located(path)
    todos = todo_problems(doc)
    if todos:
        raise SourceError(path, todos)
    inventory = validate_document(doc, Inventory)
    problems = inventory.cross_reference_problems()
    if problems:
        raise SourceError(
            path, [f"{doc.where(loc)}: {'.'.join(map(str, loc))}: {msg}" for loc, msg in problems]
        )
    base = path.parent
    ssh = inventory.ssh.model_copy(
        update={
            "key": (base / inventory.ssh.key).resolve(),
            "known_hosts": (base / inventory.ssh.known_hosts).resolve(),
        }
    )
    return inventory.model_copy(update={"ssh": ssh})


__all__ = [
    "ORGANISATION_ROLES",
    "TODO_ADVICE",
    "TODO_MARK",
    "HostDef",
    "Inventory",
    "Medium",
    "NetworkDef",
    "Role",
    "Scope",
    "ServiceDef",
    "SourceError",
    "SshAccess",
    "TunnelDef",
    "Zone",
    "load_inventory",
    "todo_problems",
]
