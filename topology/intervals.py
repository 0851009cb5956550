"""Sets of integers and of IP addresses as sorted tuples of closed intervals.

The firewall walk intersects and subtracts address sets millions of times on a large
organisation. ``netaddr.IPSet`` does each operation by sorting CIDR objects with a generic key
(tens of microseconds even on tiny sets); a sorted tuple of ``(first, last)`` integer pairs does
the same in a single sweep, and the common case of one interval on each side in a few
comparisons. ``AddressSet`` keeps one such tuple per family; netaddr stays at the edges
(parsing the inventory and rule sets, showing CIDRs to people).

Every span tuple here is *normal*: sorted, disjoint, and with no two spans adjacent, so that
equal sets have equal tuples (equality and hashing are then plain tuple operations).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator

from netaddr import IPAddress, IPNetwork, IPRange, IPSet, iprange_to_cidrs

Span = tuple[int, int]
Spans = tuple[Span, ...]

V4_TOP = (1 << 32) - 1
V6_TOP = (1 << 128) - 1
#: Sorts after every span starting at the same value (for bisection by start).
_AFTER_ALL = 1 << 129
#: Below _FEW spans against above _MANY, bisected windows beat a linear sweep.
_FEW = 8
_MANY = 32
TOPS = {4: V4_TOP, 6: V6_TOP}

# -- operations on normal span tuples ----------------------------------------------------------


def normalise(spans: Iterable[Span], top: int) -> Spans:
    """Clip to ``[0, top]``, sort, and merge overlapping or adjacent spans."""
    clipped = sorted((max(0, lo), min(top, hi)) for lo, hi in spans if lo <= hi)
    merged: list[Span] = []
    for lo, hi in clipped:
        if lo > hi:
            continue
        if merged and lo <= merged[-1][1] + 1:
            if hi > merged[-1][1]:
                merged[-1] = (merged[-1][0], hi)
        else:
            merged.append((lo, hi))
    return tuple(merged)


def meet(a: Spans, b: Spans) -> Spans:
    """Intersection. Returns one of the arguments itself when it is the answer, so that
    callers can tell "unchanged" by identity."""
    if a is b or not a:
        return a
    if not b:
        return b
    if len(a) == 1 or len(b) == 1:
        return _meet_single(a, b)
    if len(b) <= _FEW and len(a) > _MANY:
        return _meet_windows(a, b)
    if len(a) <= _FEW and len(b) > _MANY:
        return _meet_windows(b, a)
    return _meet_sweep(a, b)


def _meet_sweep(a: Spans, b: Spans) -> Spans:
    out: list[Span] = []
    i = j = 0
    na, nb = len(a), len(b)
    # Two-pointer sweep: advance whichever span ends first.
    while i < na and j < nb:
        alo, ahi = a[i]
        blo, bhi = b[j]
        lo = alo if alo > blo else blo
        hi = ahi if ahi < bhi else bhi
        if lo <= hi:
            out.append((lo, hi))
        if ahi < bhi:
            i += 1
        else:
            j += 1
    result = tuple(out)
    if result == a:
        return a
    return b if result == b else result


def _meet_single(a: Spans, b: Spans) -> Spans:
    """At least one side is a single span (a prefix, a port range): the usual case."""
    if len(a) == 1 and len(b) == 1:
        return _meet_one(a, b)
    return _meet_window(a, b) if len(b) == 1 else _meet_window(b, a)


def _meet_windows(many: Spans, few: Spans) -> Spans:
    """A long list against a few spans: one bisected window per span. The spans of ``few``
    are disjoint and not adjacent, so the windows' concatenation is normal as it stands."""
    result: Spans = ()
    for span in few:
        result += _meet_window(many, (span,))
    if result == many:
        return many
    return few if result == few else result


def _meet_one(a: Spans, b: Spans) -> Spans:
    """The usual case, one prefix against one prefix: no loop, no list."""
    alo, ahi = a[0]
    blo, bhi = b[0]
    lo = alo if alo > blo else blo
    hi = ahi if ahi < bhi else bhi
    if lo > hi:
        return ()
    if lo == alo and hi == ahi:
        return a
    return b if lo == blo and hi == bhi else ((lo, hi),)


def _meet_window(many: Spans, one: Spans) -> Spans:
    """``many`` against a single span: only the spans of ``many`` overlapping it matter, found
    by bisection, so that a long destination list costs O(log n) per rule it meets."""
    lo, hi = one[0]
    # The first span that could reach lo is the last one starting at or before it.
    start = max(0, bisect_right(many, (lo, _AFTER_ALL)) - 1)
    if many[start][1] < lo:
        start += 1
    end = bisect_right(many, (hi, _AFTER_ALL))
    if start >= end:
        return ()
    if start == 0 and end == len(many) and many[0][0] >= lo and many[-1][1] <= hi:
        return many
    window = list(many[start:end])
    first_lo, first_hi = window[0]
    window[0] = (max(first_lo, lo), first_hi)
    last_lo, last_hi = window[-1]
    window[-1] = (last_lo, min(last_hi, hi))
    result = tuple(window)
    return one if result == one else result


def minus(a: Spans, b: Spans) -> Spans:
    """Difference ``a - b``; returns ``a`` itself when nothing is removed."""
    if not a or not b:
        return a
    if a is b:
        return ()
    if b[-1][1] < a[0][0] or a[-1][1] < b[0][0]:
        return a
    if len(b) == 1 or (len(b) <= _FEW and len(a) > _MANY):
        # Cutting each span out by slicing copies at C speed instead of sweeping in Python.
        result = a
        for span in b:
            result = _minus_window(result, span) if result else result
        return a if result == a else result
    out: list[Span] = []
    nb = len(b)
    # Skip, by bisection, the spans of b that end before a starts.
    j = max(0, bisect_right(b, (a[0][0], _AFTER_ALL)) - 1)
    for lo, hi in a:
        while j < nb and b[j][1] < lo:
            j += 1
        cursor = lo
        k = j
        while k < nb:
            blo, bhi = b[k]
            if blo > hi:
                break
            if blo > cursor:
                out.append((cursor, blo - 1))
            cursor = max(cursor, bhi + 1)
            if bhi >= hi:
                break
            k += 1
        if cursor <= hi:
            out.append((cursor, hi))
    result = tuple(out)
    return a if result == a else result


def _minus_window(a: Spans, cut: Span) -> Spans:
    """``a`` without one span: the spans before and after it are kept as slices."""
    lo, hi = cut
    start = max(0, bisect_right(a, (lo, _AFTER_ALL)) - 1)
    if a[start][1] < lo:
        start += 1
    end = bisect_right(a, (hi, _AFTER_ALL))
    if start >= end:
        return a
    kept: list[Span] = []
    if a[start][0] < lo:
        kept.append((a[start][0], lo - 1))
    if a[end - 1][1] > hi:
        kept.append((hi + 1, a[end - 1][1]))
    return a[:start] + tuple(kept) + a[end:]


def join(a: Spans, b: Spans) -> Spans:
    """Union."""
    if not b or a is b:
        return a
    if not a:
        return b
    merged: list[Span] = []
    for lo, hi in sorted(a + b):
        if merged and lo <= merged[-1][1] + 1:
            if hi > merged[-1][1]:
                merged[-1] = (merged[-1][0], hi)
        else:
            merged.append((lo, hi))
    return tuple(merged)


def complement(a: Spans, top: int) -> Spans:
    out: list[Span] = []
    start = 0
    for lo, hi in a:
        if lo > start:
            out.append((start, lo - 1))
        start = hi + 1
    if start <= top:
        out.append((start, top))
    return tuple(out)


def contains(spans: Spans, value: int) -> bool:
    if len(spans) <= 8:
        # The usual handful of prefixes: a scan costs less than setting up a bisection.
        return any(lo <= value <= hi for lo, hi in spans)
    # The last span starting at or before value is the only candidate.
    i = bisect_right(spans, (value, _AFTER_ALL)) - 1
    return i >= 0 and spans[i][1] >= value


def count(spans: Spans) -> int:
    return sum(hi - lo + 1 for lo, hi in spans)


# -- addresses ---------------------------------------------------------------------------------


class AddressSet:
    """An immutable set of IPv4 and IPv6 addresses: one normal span tuple per family.

    Compares equal to a ``netaddr.IPSet`` with the same addresses, so that code at the
    boundary (tests, callers holding netaddr objects) can compare either way.
    """

    __slots__ = ("_hash", "v4", "v6")

    v4: Spans
    v6: Spans
    _hash: int | None

    def __init__(self, v4: Spans = (), v6: Spans = ()) -> None:
        object.__setattr__(self, "v4", v4)
        object.__setattr__(self, "v6", v6)
        object.__setattr__(self, "_hash", None)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("AddressSet is immutable")

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def universe(cls, family: int) -> AddressSet:
        return V4_ALL if family == 4 else V6_ALL

    @classmethod
    def of(cls, *items: str | IPAddress | IPNetwork | IPRange | IPSet | AddressSet) -> AddressSet:
        """From addresses, prefixes (text or netaddr), ranges and sets, mixed freely."""
        spans: dict[int, list[Span]] = {4: [], 6: []}
        for item in items:
            if isinstance(item, AddressSet):
                spans[4] += item.v4
                spans[6] += item.v6
            elif isinstance(item, IPSet):
                for r in item.iter_ipranges():
                    spans[r.version].append((r.first, r.last))
            elif isinstance(item, IPAddress):
                spans[item.version].append((int(item), int(item)))
            elif isinstance(item, IPNetwork | IPRange):
                spans[item.version].append((item.first, item.last))
            else:
                net = IPNetwork(str(item))
                spans[net.version].append((net.first, net.last))
        return cls(normalise(spans[4], V4_TOP), normalise(spans[6], V6_TOP))

    @classmethod
    def coerce(cls, value: AddressSet | IPSet) -> AddressSet:
        """An ``AddressSet`` as is; anything else (an ``IPSet``) converted."""
        return value if isinstance(value, AddressSet) else cls.of(value)

    def to_ipset(self) -> IPSet:
        out = IPSet()
        for family, spans in ((4, self.v4), (6, self.v6)):
            for lo, hi in spans:
                out.add(IPRange(IPAddress(lo, family), IPAddress(hi, family)))
        return out

    # -- questions -------------------------------------------------------------------------
    def spans(self, family: int) -> Spans:
        return self.v4 if family == 4 else self.v6

    def families(self) -> set[int]:
        return {f for f, s in ((4, self.v4), (6, self.v6)) if s}

    def __bool__(self) -> bool:
        return bool(self.v4 or self.v6)

    def is_empty(self) -> bool:
        return not (self.v4 or self.v6)

    @property
    def size(self) -> int:
        return count(self.v4) + count(self.v6)

    def __contains__(self, item: object) -> bool:
        if isinstance(item, str):
            item = IPAddress(item)
        if isinstance(item, IPAddress):
            return contains(self.spans(item.version), int(item))
        if isinstance(item, IPNetwork):
            return self.issuperset(AddressSet.of(item))
        return False

    def issubset(self, other: AddressSet) -> bool:
        return not (self - other)

    def issuperset(self, other: AddressSet) -> bool:
        return not (other - self)

    def in_family(self, family: int) -> AddressSet:
        if family == 4:
            return self if not self.v6 else AddressSet(self.v4, ())
        return self if not self.v4 else AddressSet((), self.v6)

    def addresses(self) -> Iterator[IPAddress]:
        """Every address, one by one: for small sets only."""
        for family, spans in ((4, self.v4), (6, self.v6)):
            for lo, hi in spans:
                for value in range(lo, hi + 1):
                    yield IPAddress(value, family)

    def integers(self) -> Iterator[tuple[int, int]]:
        """Every address as (family, integer), one by one: for small sets only."""
        for family, spans in ((4, self.v4), (6, self.v6)):
            for lo, hi in spans:
                for value in range(lo, hi + 1):
                    yield family, value

    def cidrs(self) -> list[IPNetwork]:
        """The smallest list of CIDR prefixes covering exactly this set (for display)."""
        found: list[IPNetwork] = []
        for family, spans in ((4, self.v4), (6, self.v6)):
            for lo, hi in spans:
                found += iprange_to_cidrs(IPAddress(lo, family), IPAddress(hi, family))
        return found

    # -- algebra ---------------------------------------------------------------------------
    def __and__(self, other: AddressSet) -> AddressSet:
        if other is self:
            return self
        v4, v6 = meet(self.v4, other.v4), meet(self.v6, other.v6)
        if v4 is self.v4 and v6 is self.v6:
            return self
        if v4 is other.v4 and v6 is other.v6:
            return other
        return AddressSet(v4, v6)

    def __or__(self, other: AddressSet) -> AddressSet:
        v4, v6 = join(self.v4, other.v4), join(self.v6, other.v6)
        if v4 is self.v4 and v6 is self.v6:
            return self
        return AddressSet(v4, v6)

    def __sub__(self, other: AddressSet) -> AddressSet:
        v4, v6 = minus(self.v4, other.v4), minus(self.v6, other.v6)
        if v4 is self.v4 and v6 is self.v6:
            return self
        return AddressSet(v4, v6)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, IPSet):
            other = AddressSet.of(other)
        if not isinstance(other, AddressSet):
            return NotImplemented
        return self.v4 == other.v4 and self.v6 == other.v6

    def __hash__(self) -> int:
        cached: int | None = self._hash
        if cached is None:
            cached = hash((self.v4, self.v6))
            object.__setattr__(self, "_hash", cached)
        return cached

    def __repr__(self) -> str:
        return f"AddressSet({', '.join(str(c) for c in self.cidrs())})"

    def __reduce__(self) -> tuple[type[AddressSet], Spans]:
        return (AddressSet, (self.v4, self.v6))  # type: ignore[return-value]


V4_ALL = AddressSet(((0, V4_TOP),), ())
V6_ALL = AddressSet((), ((0, V6_TOP),))
EMPTY = AddressSet()
