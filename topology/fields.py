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

from topology.intervals import (
    V4_ALL,
    V6_ALL,
    AddressSet,
    complement,
    contains,
    join,
    meet,
    minus,
    normalise,
)

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
#: output). The kernel (verified on 6.x, see tests/unit/topology/test_kernel_oracle.py) reads
#: an empty name (and ifindex 0) there: ``iifname "x"`` does not match it, ``!= "x"`` does.
NO_DEVICE = ""

#: Interface names are at most IFNAMSIZ - 1 = 15 bytes, each byte 1-255 (no NUL).
NAME_MAX = 15
_ALPHABET = 255


def _subtree_sizes() -> tuple[int, ...]:
    """How many names (of at most NAME_MAX bytes) start with a given name of length d."""
    sizes = [1]
    for _ in range(NAME_MAX):
        sizes.append(1 + _ALPHABET * sizes[-1])
    return tuple(reversed(sizes))


_SUBTREE = _subtree_sizes()
_NAME_TOP = _SUBTREE[0] - 1


def _encode(name: str) -> bytes:
    raw = name.encode()
    if len(raw) > NAME_MAX or 0 in raw:
        raise ValueError(f"not an interface name: {name!r}")
    return raw


def _rank(name: str) -> int:
    """The position of ``name`` among all names in byte-wise lexicographic order ("" first):
    every name starting with a prefix then lies in one interval (``_prefix_span``)."""
    rank = 0
    for depth, byte in enumerate(_encode(name), start=1):
        rank += 1 + (byte - 1) * _SUBTREE[depth]
    return rank


def _unrank(rank: int) -> str:
    out = bytearray()
    depth = 0
    while rank:
        depth += 1
        rank -= 1
        byte, rank = divmod(rank, _SUBTREE[depth])
        out.append(byte + 1)
    return out.decode(errors="replace")


def _prefix_span(prefix: str) -> tuple[int, int]:
    first = _rank(prefix)
    return first, first + _SUBTREE[len(_encode(prefix))] - 1


@dataclass(frozen=True, slots=True)
class NameSet:
    """A set of interface names: any finite union of single names and of prefixes (nft's
    wildcard ``"eth*"``: every name starting with ``eth``, ``eth`` included), and complements.

    Names are numbered in lexicographic order, so that a prefix's names form one interval:
    the set is a normal tuple of intervals of those numbers, and the operations are the
    interval operations of ``topology/intervals.py`` (exact, and canonical: equal sets are
    equal tuples).
    """

    spans: tuple[tuple[int, int], ...]

    @classmethod
    def of(cls, *names: str) -> NameSet:
        return cls(normalise([(r, r) for r in map(_rank, names)], _NAME_TOP))

    @classmethod
    def prefixed(cls, *prefixes: str) -> NameSet:
        """Every name starting with one of the prefixes (nft's ``"eth*"`` is ``eth``)."""
        return cls(normalise([_prefix_span(p) for p in prefixes], _NAME_TOP))

    @classmethod
    def anything(cls) -> NameSet:
        return _ANY_NAME

    @classmethod
    def all_but(cls, *names: str) -> NameSet:
        return cls.of(*names).complement()

    def is_empty(self) -> bool:
        return not self.spans

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            return contains(self.spans, _rank(name))
        except ValueError:
            return False

    def complement(self) -> NameSet:
        return NameSet(complement(self.spans, _NAME_TOP))

    # Each operation returns an operand itself when nothing changes, as the other set types
    # do, so that a cube can tell "unchanged" by identity.
    def __and__(self, other: NameSet) -> NameSet:
        spans = meet(self.spans, other.spans)
        if spans is self.spans:
            return self
        return other if spans is other.spans else NameSet(spans)

    def __or__(self, other: NameSet) -> NameSet:
        spans = join(self.spans, other.spans)
        return self if spans is self.spans else NameSet(spans)

    def __sub__(self, other: NameSet) -> NameSet:
        spans = minus(self.spans, other.spans)
        return self if spans is self.spans else NameSet(spans)

    def example(self) -> str:
        """One member, for concrete sampling; a made-up name when the set is co-finite."""
        if self.spans and self.spans[-1][1] == _NAME_TOP:
            for i in range(1000):
                if f"if{i}" in self:
                    return f"if{i}"
        return _unrank(self.spans[0][0])

    def __str__(self) -> str:
        if self.spans == _ANY_NAME.spans:
            return "any"
        listed = _listing(self.spans)
        if listed is not None and (not self.spans or self.spans[-1][1] != _NAME_TOP):
            return "{" + listed + "}"
        negated = _listing(complement(self.spans, _NAME_TOP))
        if negated is not None:
            return "not {" + negated + "}"
        return "{" + (listed or f"{len(self.spans)} name ranges") + "}"


_ANY_NAME = NameSet(((0, _NAME_TOP),))


def _listing(spans: tuple[tuple[int, int], ...], limit: int = 32) -> str | None:
    """The names and prefixes making up the spans, as text; None when there are too many."""
    items: list[str] = []
    for first, hi in spans:
        at = first
        while at <= hi:
            if len(items) >= limit:
                return None
            name = _unrank(at)
            size = _SUBTREE[len(name.encode())]
            shown = repr(name) if name else "(none)"
            whole = size > 1 and at + size - 1 <= hi
            items.append(shown + "*" if whole else shown)
            at += size if whole else 1
    return ",".join(sorted(items))


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
