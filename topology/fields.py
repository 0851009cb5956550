"""Value sets for the header fields of a symbolic packet space.

Each field of a packet class is a set of values, not a value: integer fields (protocol numbers,
ports, ICMP types) are unions of closed intervals, interface names are finite or co-finite sets
of strings, addresses are ``AddressSet`` (integer intervals per family, see
``topology/intervals.py``). Every set type offers the same few operations (intersection,
difference, emptiness) so that a cube of them can be split generically.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from netaddr import IPNetwork, IPSet

from topology.intervals import V4_ALL, V6_ALL, AddressSet, complement, join, meet, minus, normalise

# -- integer intervals ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IntervalSet:
    """A set of integers in ``[0, top]`` kept as sorted, disjoint, non-adjacent intervals."""

    intervals: tuple[tuple[int, int], ...]
    top: int

    @classmethod
    def of(cls, top: int, items: Iterable[int | tuple[int, int]] = ()) -> IntervalSet:
        spans = [(i, i) if isinstance(i, int) else i for i in items]
        return cls(normalise(spans, top), top)

    @classmethod
    def full(cls, top: int) -> IntervalSet:
        return cls(((0, top),), top)

    def is_empty(self) -> bool:
        return not self.intervals

    def is_full(self) -> bool:
        return self.intervals == ((0, self.top),)

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and any(lo <= value <= hi for lo, hi in self.intervals)

    def __and__(self, other: IntervalSet) -> IntervalSet:
        spans = meet(self.intervals, other.intervals)
        if spans is self.intervals:
            return self
        return other if spans is other.intervals else IntervalSet(spans, self.top)

    def __or__(self, other: IntervalSet) -> IntervalSet:
        spans = join(self.intervals, other.intervals)
        return self if spans is self.intervals else IntervalSet(spans, self.top)

    def complement(self) -> IntervalSet:
        return IntervalSet(complement(self.intervals, self.top), self.top)

    def __sub__(self, other: IntervalSet) -> IntervalSet:
        spans = minus(self.intervals, other.intervals)
        return self if spans is self.intervals else IntervalSet(spans, self.top)

    def values(self) -> Iterator[int]:
        for lo, hi in self.intervals:
            yield from range(lo, hi + 1)

    def smallest(self) -> int | None:
        return self.intervals[0][0] if self.intervals else None

    def __str__(self) -> str:
        if self.is_full():
            return "any"
        return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in self.intervals)


PORT_TOP = 65535
BYTE_TOP = 255


def ports(*items: int | tuple[int, int]) -> IntervalSet:
    return IntervalSet.of(PORT_TOP, items)


def protos(*items: int | tuple[int, int]) -> IntervalSet:
    return IntervalSet.of(BYTE_TOP, items)


ALL_PORTS = IntervalSet.full(PORT_TOP)
ALL_PROTOS = IntervalSet.full(BYTE_TOP)
ALL_ICMP_TYPES = IntervalSet.full(BYTE_TOP)

# -- interface names ------------------------------------------------------------------------

#: The value of iifname/oifname where the hook has no such device (oif on input, iif on
#: output). nftables' meta expression breaks there, so neither ``==`` nor ``!=`` matches it.
NO_DEVICE = ""


@dataclass(frozen=True, slots=True)
class NameSet:
    """A finite set of names, or (``cofinite``) every name except the listed ones."""

    names: frozenset[str]
    cofinite: bool = False

    @classmethod
    def of(cls, *names: str) -> NameSet:
        return cls(frozenset(names))

    @classmethod
    def anything(cls) -> NameSet:
        return cls(frozenset(), cofinite=True)

    @classmethod
    def all_but(cls, *names: str) -> NameSet:
        return cls(frozenset(names), cofinite=True)

    def is_empty(self) -> bool:
        return not self.cofinite and not self.names

    def __contains__(self, name: object) -> bool:
        return (name not in self.names) if self.cofinite else (name in self.names)

    def complement(self) -> NameSet:
        return NameSet(self.names, not self.cofinite)

    def __and__(self, other: NameSet) -> NameSet:
        # Returns self itself when nothing is taken away, as the other set types do, so
        # that a cube can tell "unchanged" by identity.
        if not self.cofinite and not other.cofinite:
            names = self.names & other.names
        elif self.cofinite and other.cofinite:
            names = self.names | other.names
        else:
            finite, cofinite = (self, other) if not self.cofinite else (other, self)
            names = finite.names - cofinite.names
            if finite is not self:
                return NameSet(names)
        return self if len(names) == len(self.names) else NameSet(names, self.cofinite)

    def __or__(self, other: NameSet) -> NameSet:
        return (self.complement() & other.complement()).complement()

    def __sub__(self, other: NameSet) -> NameSet:
        return self & other.complement()

    def example(self) -> str:
        """One member, for concrete sampling; a made-up name when the set is co-finite."""
        if not self.cofinite:
            return min(self.names)
        i = 0
        while f"if{i}" in self.names:
            i += 1
        return f"if{i}"

    def __str__(self) -> str:
        listed = ",".join(sorted(repr(n) if n else "(none)" for n in self.names))
        if self.cofinite:
            return f"not {{{listed}}}" if self.names else "any"
        return f"{{{listed}}}"


# -- addresses ------------------------------------------------------------------------------


def family_universe(family: int) -> AddressSet:
    return V4_ALL if family == 4 else V6_ALL


def ipset_of(*items: str | IPNetwork) -> AddressSet:
    return AddressSet.of(*items)


def describe_ipset(addresses: AddressSet | IPSet, limit: int = 6) -> str:
    if addresses in (V4_ALL, V6_ALL):
        return "any"
    cidrs = AddressSet.coerce(addresses).cidrs()
    shown = ",".join(str(c) for c in cidrs[:limit])
    return shown + (f",… (+{len(cidrs) - limit})" if len(cidrs) > limit else "")


# -- protocol vocabulary --------------------------------------------------------------------

PROTO_NUMBERS: dict[str, int] = {
    "icmp": 1,
    "igmp": 2,
    "tcp": 6,
    "udp": 17,
    "dccp": 33,
    "ipv6": 41,
    "gre": 47,
    "esp": 50,
    "ah": 51,
    "icmpv6": 58,
    "ipv6-icmp": 58,
    "sctp": 132,
    "udplite": 136,
}
PROTO_NAMES: dict[int, str] = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp"}
TCP, UDP, ICMP, ICMPV6 = 6, 17, 1, 58
#: Protocols whose transport header starts with source and destination ports (``th``).
PORT_PROTOS = protos(6, 17, 33, 132, 136)

ICMP_TYPES: dict[str, int] = {
    "echo-reply": 0,
    "destination-unreachable": 3,
    "source-quench": 4,
    "redirect": 5,
    "echo-request": 8,
    "router-advertisement": 9,
    "router-solicitation": 10,
    "time-exceeded": 11,
    "parameter-problem": 12,
    "timestamp-request": 13,
    "timestamp-reply": 14,
    "info-request": 15,
    "info-reply": 16,
    "address-mask-request": 17,
    "address-mask-reply": 18,
}
ICMPV6_TYPES: dict[str, int] = {
    "destination-unreachable": 1,
    "packet-too-big": 2,
    "time-exceeded": 3,
    "parameter-problem": 4,
    "echo-request": 128,
    "echo-reply": 129,
    "mld-listener-query": 130,
    "mld-listener-report": 131,
    "mld-listener-done": 132,
    "mld-listener-reduction": 132,
    "nd-router-solicit": 133,
    "nd-router-advert": 134,
    "nd-neighbor-solicit": 135,
    "nd-neighbor-advert": 136,
    "nd-redirect": 137,
    "router-renumbering": 138,
    "ind-neighbor-solicit": 141,
    "ind-neighbor-advert": 142,
    "mld2-listener-report": 143,
}

CT_STATES = frozenset({"new", "established", "related", "invalid", "untracked"})


def describe_protos(values: IntervalSet) -> str:
    if values.is_full():
        return "any protocol"
    names = []
    for lo, hi in values.intervals:
        if hi - lo > 8:
            names.append(f"{lo}-{hi}")
            continue
        names += [PROTO_NAMES.get(v, str(v)) for v in range(lo, hi + 1)]
    return ",".join(names)
