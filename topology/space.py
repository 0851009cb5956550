"""Symbolic packet spaces: unions of cubes, each cube a product of per-field value sets.

A *cube* fixes one address family and, for every other header field, a set of values: the
packets it stands for are all combinations. A *constraint* is a partial cube (only the fields a
match expression looks at). Matching a cube against a constraint splits it into the part inside
and a few disjoint cubes outside, so a rule set can be walked once per class of packets instead
of once per packet. Ports and ICMP types are "don't care" for protocols without them: every
match on a port also constrains the protocol, so a cube never mixes the two meanings.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from netaddr import IPAddress, IPSet

from topology.fields import (
    ALL_ICMP_TYPES,
    ALL_PORTS,
    ALL_PROTOS,
    CT_STATES,
    ICMP,
    ICMPV6,
    PORT_PROTOS,
    TCP,
    UDP,
    IntervalSet,
    NameSet,
    describe_ipset,
    describe_protos,
    family_universe,
)
from topology.intervals import AddressSet

_ECHO4 = IntervalSet.of(255, [8])
_ECHO6 = IntervalSet.of(255, [128])

#: The header fields of a cube, in the order constraints are applied when splitting.
FIELDS = ("family", "proto", "saddr", "daddr", "sport", "dport", "iif", "oif", "ct", "icmp_type")
_FIELD_SET = frozenset(FIELDS)
_ADDRESS_FIELDS = ("saddr", "daddr")


def _is_empty(value: Any) -> bool:
    # frozensets (family, ct) are empty when falsy; the set types say so themselves.
    return not value if type(value) is frozenset else bool(value.is_empty())


def is_empty_value(value: Any) -> bool:
    """Is a field's value set (of any of the field types) empty?"""
    return _is_empty(value)


def _same(before: Any, after: Any) -> bool:
    """Is ``after`` (a subset of ``before``) still all of it? Cheap: identity, or a size."""
    if after is before:
        return True
    return type(after) is frozenset and len(after) == len(before)


def _addresses_in(values: Mapping[str, Any]) -> Mapping[str, Any]:
    """Address fields given as ``netaddr.IPSet`` (callers at the edge) become AddressSets."""
    saddr, daddr = values.get("saddr"), values.get("daddr")
    # Checked by exact type first: this runs for every constraint and translation.
    if (saddr is None or type(saddr) is AddressSet) and (
        daddr is None or type(daddr) is AddressSet
    ):
        return values
    return {n: AddressSet.coerce(v) if n in _ADDRESS_FIELDS else v for n, v in values.items()}


def _meet(a: Any, b: Any) -> Any:
    return a & b


@dataclass(frozen=True)
class Constraint:
    """A partial cube: the fields it names must take one of the given values."""

    values: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _FIELD_SET.issuperset(self.values):
            unknown = set(self.values) - _FIELD_SET
            raise ValueError(f"unknown packet fields {sorted(unknown)}")
        object.__setattr__(self, "values", _addresses_in(self.values))

    def meet(self, other: Constraint) -> Constraint | None:
        """Both constraints at once, or None when no packet can satisfy both."""
        merged = dict(self.values)
        for name, value in other.values.items():
            merged[name] = _meet(merged[name], value) if name in merged else value
            if _is_empty(merged[name]):
                return None
        return Constraint(merged)


TOP = Constraint()


@dataclass(frozen=True, slots=True)
class Cube:
    """One class of packets of one address family: every combination of the field values."""

    family: frozenset[int]
    proto: IntervalSet
    saddr: AddressSet
    daddr: AddressSet
    sport: IntervalSet
    dport: IntervalSet
    iif: NameSet
    oif: NameSet
    ct: frozenset[str]
    icmp_type: IntervalSet

    @classmethod
    def full(cls, family: int) -> Cube:
        return cls(
            family=frozenset({family}),
            proto=ALL_PROTOS,
            saddr=family_universe(family),
            daddr=family_universe(family),
            sport=ALL_PORTS,
            dport=ALL_PORTS,
            iif=NameSet.anything(),
            oif=NameSet.anything(),
            ct=CT_STATES,
            icmp_type=ALL_ICMP_TYPES,
        )

    @property
    def version(self) -> int:
        """The cube's address family (cubes never mix families)."""
        return next(iter(self.family))

    def is_empty(self) -> bool:
        # Written out (not a loop over FIELDS): asked of every cube every space is made of.
        return (
            not self.family
            or not self.ct
            or self.proto.is_empty()
            or self.saddr.is_empty()
            or self.daddr.is_empty()
            or self.sport.is_empty()
            or self.dport.is_empty()
            or self.iif.is_empty()
            or self.oif.is_empty()
            or self.icmp_type.is_empty()
        )

    def shape_key(self) -> tuple[object, ...]:
        """Every field but the addresses, as plain values (hashed and compared in C)."""
        return (
            self.family,
            self.proto.intervals,
            self.sport.intervals,
            self.dport.intervals,
            self.iif.spans,
            self.oif.spans,
            self.ct,
            self.icmp_type.intervals,
        )

    def shape(self) -> Cube:
        """The same packets from and to any address of the family."""
        universe = family_universe(self.version)
        return self._with({"saddr": universe, "daddr": universe})

    def with_fields(self, **values: Any) -> Cube:
        return self._with(_addresses_in(values))

    def _with(self, values: Mapping[str, Any]) -> Cube:
        """A copy with some fields replaced. Written out because ``dataclasses.replace``
        (which introspects the fields on every call) was a tenth of the firewall walk."""
        get = values.get
        return Cube(
            get("family", self.family),
            get("proto", self.proto),
            get("saddr", self.saddr),
            get("daddr", self.daddr),
            get("sport", self.sport),
            get("dport", self.dport),
            get("iif", self.iif),
            get("oif", self.oif),
            get("ct", self.ct),
            get("icmp_type", self.icmp_type),
        )

    def intersect(self, constraint: Constraint) -> Cube | None:
        updates: dict[str, Any] = {}
        for name, value in constraint.values.items():
            mine = getattr(self, name)
            met = mine & value
            if met is mine:
                # Unchanged (the set types return themselves then): the usual case.
                continue
            if _is_empty(met):
                return None
            if not _same(mine, met):
                updates[name] = met
        return self._with(updates) if updates else self

    def subtract(self, constraint: Constraint) -> list[Cube]:
        """Disjoint cubes covering exactly the packets of self outside the constraint."""
        pieces: list[Cube] = []
        current = self
        for name, value in constraint.values.items():
            mine = getattr(current, name)
            outside = mine - value
            if not _is_empty(outside):
                pieces.append(current._with({name: outside}))
            inside = mine & value
            if _is_empty(inside):
                return pieces
            if not _same(mine, inside):
                current = current._with({name: inside})
        return pieces

    def as_constraint(self) -> Constraint:
        return Constraint({name: getattr(self, name) for name in FIELDS})

    def describe(self) -> str:
        parts = [f"IPv{self.version}", describe_protos(self.proto)]
        carries_ports = not (self.proto & PORT_PROTOS).is_empty()
        if carries_ports and not self.sport.is_full():
            parts.append(f"sport {self.sport}")
        if carries_ports and not self.dport.is_full():
            parts.append(f"dport {self.dport}")
        icmpish = not (self.proto & IntervalSet.of(255, [ICMP, ICMPV6])).is_empty()
        if icmpish and not self.icmp_type.is_full():
            parts.append(f"icmp type {self.icmp_type}")
        parts.append(f"from {describe_ipset(self.saddr)} to {describe_ipset(self.daddr)}")
        if self.iif != NameSet.anything():
            parts.append(f"iif {self.iif}")
        if self.oif != NameSet.anything():
            parts.append(f"oif {self.oif}")
        if self.ct != CT_STATES:
            parts.append("ct " + ",".join(sorted(self.ct)))
        return " ".join(parts)


def split(cubes: Iterable[Cube], terms: Iterable[Constraint]) -> tuple[list[Cube], list[Cube]]:
    """Split cubes by a disjunction of constraints into (inside, outside), both disjoint."""
    inside: list[Cube] = []
    outside = list(cubes)
    for term in terms:
        rest: list[Cube] = []
        for cube in outside:
            hit = cube.intersect(term)
            if hit is None:
                rest.append(cube)
                continue
            inside.append(hit)
            rest += cube.subtract(term)
        outside = rest
    return inside, outside


@dataclass(frozen=True)
class PacketSpace:
    """A union of cubes (they may overlap); the unit every query works on."""

    cubes: tuple[Cube, ...] = ()

    @classmethod
    def empty(cls) -> PacketSpace:
        return _NOTHING

    @classmethod
    def everything(cls, families: Iterable[int] = (4, 6)) -> PacketSpace:
        return cls(tuple(Cube.full(f) for f in families))

    @classmethod
    def of(cls, cubes: Iterable[Cube]) -> PacketSpace:
        return cls(tuple(c for c in cubes if not c.is_empty()))

    @classmethod
    def new_connections(
        cls,
        families: Iterable[int] = (4, 6),
        protocols: IntervalSet = ALL_PROTOS,
        dports: IntervalSet = ALL_PORTS,
    ) -> PacketSpace:
        """The first packets of new connections: ct state new, the given protocols and ports."""
        constraint = Constraint({"ct": frozenset({"new"}), "proto": protocols, "dport": dports})
        return cls.everything(families).restrict(constraint)

    @classmethod
    def connection_attempts(cls, families: Iterable[int] = (4, 6)) -> PacketSpace:
        """What docs/controls.md calls a new connection: TCP, UDP, or an ICMP/ICMPv6 echo."""
        new = frozenset({"new"})
        transport = Constraint({"ct": new, "proto": IntervalSet.of(255, [TCP, UDP])})
        echo4 = Constraint({"ct": new, "proto": IntervalSet.of(255, [ICMP]), "icmp_type": _ECHO4})
        echo6 = Constraint({"ct": new, "proto": IntervalSet.of(255, [ICMPV6]), "icmp_type": _ECHO6})
        everything = cls.everything(families)
        return (
            everything.restrict(transport)
            .union(everything.where(family=frozenset({4})).restrict(echo4))
            .union(everything.where(family=frozenset({6})).restrict(echo6))
        )

    def __iter__(self) -> Iterator[Cube]:
        return iter(self.cubes)

    def __bool__(self) -> bool:
        return not self.is_empty()

    def is_empty(self) -> bool:
        return not self.cubes

    def families(self) -> set[int]:
        return {c.version for c in self.cubes}

    # Spaces are immutable: where an operation changes nothing, the operand itself is the
    # answer (results are kept by the thousand on a large organisation: no needless copies).
    def union(self, other: PacketSpace) -> PacketSpace:
        if not other.cubes:
            return self
        return other if not self.cubes else PacketSpace(self.cubes + other.cubes)

    def restrict(self, constraint: Constraint) -> PacketSpace:
        return PacketSpace.of(c for c in (cube.intersect(constraint) for cube in self) if c)

    def where(self, **values: Any) -> PacketSpace:
        """Shorthand for restrict: ``space.where(proto=protos(6), dport=ports(22))``."""
        return self.restrict(Constraint(values))

    def intersect(self, other: PacketSpace) -> PacketSpace:
        return PacketSpace.of(
            hit for a in self for b in other if (hit := a.intersect(b.as_constraint()))
        )

    def subtract(self, other: PacketSpace) -> PacketSpace:
        if not other.cubes:
            return self
        remaining = list(self.cubes)
        for cube in other:
            _, remaining = split(remaining, [cube.as_constraint()])
        return PacketSpace(tuple(remaining))

    def map(self, **values: Any) -> PacketSpace:
        """Set fields to new values (a translation), keeping the rest of every cube."""
        return PacketSpace.of(cube.with_fields(**values) for cube in self)

    def address_set(self, which: str = "daddr") -> AddressSet:
        out = AddressSet()
        for cube in self:
            out = out | getattr(cube, which)
        return out

    def addresses(self, which: str = "daddr") -> IPSet:
        """The addresses of one field over all cubes, as netaddr sees them (for callers)."""
        return self.address_set(which).to_ipset()

    def contains(self, packet: Packet) -> bool:
        point = packet.as_cube().as_constraint()
        return any(cube.intersect(point) is not None for cube in self)

    def simplified(self) -> PacketSpace:
        """Merge cubes that differ in one field only; fewer, more readable cubes."""
        cubes = list(self.cubes)
        merged, changed = True, False
        while merged and len(cubes) <= 256:
            merged = False
            for i in range(len(cubes)):
                for j in range(i + 1, len(cubes)):
                    joined = _join(cubes[i], cubes[j])
                    if joined is not None:
                        cubes[i] = joined
                        del cubes[j]
                        merged = changed = True
                        break
                if merged:
                    break
        return PacketSpace(tuple(cubes)) if changed else self

    def describe(self) -> list[str]:
        seen: dict[str, None] = {}
        for cube in self.simplified():
            seen.setdefault(cube.describe())
        return list(seen)


_NOTHING = PacketSpace(())


def _join(a: Cube, b: Cube) -> Cube | None:
    differing = [n for n in FIELDS if getattr(a, n) != getattr(b, n)]
    if not differing:
        return a
    if len(differing) != 1 or differing[0] == "family":
        return None
    name = differing[0]
    return a._with({name: getattr(a, name) | getattr(b, name)})


#: Stands for "some interface no rule names" in a concrete packet.
UNNAMED_DEVICE = "unnamed-device"


@dataclass(frozen=True)
class Packet:
    """One concrete packet, for ``Firewall.decision_for`` and for tests."""

    family: int
    proto: int
    saddr: str
    daddr: str
    sport: int = 0
    dport: int = 0
    iif: str | None = None  #: None: a device no rule names (or none, where the hook has none)
    oif: str | None = None
    ct: str = "new"
    icmp_type: int = 0

    def as_cube(self) -> Cube:
        return Cube(
            family=frozenset({self.family}),
            proto=IntervalSet.of(255, [self.proto]),
            saddr=AddressSet.of(IPAddress(self.saddr)),
            daddr=AddressSet.of(IPAddress(self.daddr)),
            sport=IntervalSet.of(65535, [self.sport]),
            dport=IntervalSet.of(65535, [self.dport]),
            iif=NameSet.of(self.iif if self.iif is not None else UNNAMED_DEVICE),
            oif=NameSet.of(self.oif if self.oif is not None else UNNAMED_DEVICE),
            ct=frozenset({self.ct}),
            icmp_type=IntervalSet.of(255, [self.icmp_type]),
        )
