"""The interval sets agree with netaddr's IPSet and with Python's sets on every operation."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from netaddr import IPAddress, IPNetwork, IPSet

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

TOP = 63

spans = st.lists(
    st.tuples(st.integers(0, TOP), st.integers(0, TOP)).map(lambda t: (min(t), max(t))),
    max_size=6,
).map(lambda s: normalise(s, TOP))


def _members(s: tuple[tuple[int, int], ...]) -> set[int]:
    return {v for lo, hi in s for v in range(lo, hi + 1)}


@settings(max_examples=400, deadline=None)
@given(spans, spans)
def test_span_operations_match_python_sets(
    a: tuple[tuple[int, int], ...], b: tuple[tuple[int, int], ...]
) -> None:
    for result in (meet(a, b), minus(a, b), join(a, b), complement(a, TOP)):
        # Every result is normal: sorted, disjoint, not adjacent (equal sets, equal tuples).
        assert result == normalise(result, TOP)
    assert _members(meet(a, b)) == _members(a) & _members(b)
    assert _members(minus(a, b)) == _members(a) - _members(b)
    assert _members(join(a, b)) == _members(a) | _members(b)
    assert _members(complement(a, TOP)) == set(range(TOP + 1)) - _members(a)
    for value in range(TOP + 1):
        assert contains(a, value) == (value in _members(a))


def test_unchanged_results_are_the_argument_itself() -> None:
    a = ((0, 10),)
    b = ((0, 20),)
    assert meet(a, b) is a
    assert meet(b, a) is a
    assert minus(a, ((30, 40),)) is a
    assert join(a, ()) is a


def test_contains_on_many_spans_bisects_correctly() -> None:
    many = tuple((i * 10, i * 10 + 3) for i in range(50))
    for value in range(520):
        assert contains(many, value) == (value % 10 <= 3 and value < 500)


prefixes4 = st.builds(
    lambda a, n: IPNetwork(f"{IPAddress(a, 4)}/{n}").cidr,
    st.sampled_from([0x0A620000, 0x0A621500, 0x0A621510, 0xC0000200, 0]),
    st.integers(8, 32),
)
prefixes6 = st.builds(
    lambda a, n: IPNetwork(f"{IPAddress(a, 6)}/{n}").cidr,
    st.sampled_from([0xFD98 << 112, (0xFD98 << 112) | (0x21 << 64), 0x20010DB8 << 96]),
    st.integers(16, 128),
)
ipsets = st.lists(st.one_of(prefixes4, prefixes6), max_size=5).map(IPSet)


@settings(max_examples=300, deadline=None)
@given(ipsets, ipsets)
def test_address_sets_agree_with_netaddr(a: IPSet, b: IPSet) -> None:
    x, y = AddressSet.of(a), AddressSet.of(b)
    assert x.to_ipset() == a
    assert x == a  # compares equal to the IPSet it came from
    assert (x & y) == (a & b)
    assert (x | y) == (a | b)
    assert (x - y) == (a - b)
    assert bool(x) == bool(a)
    assert x.size == a.size
    assert x.issubset(y) == a.issubset(b)
    assert IPSet(x.cidrs()) == a
    for cidr in list(a.iter_cidrs())[:3]:
        assert cidr.ip in x
        assert cidr in x
    assert hash(x) == hash(AddressSet.of(a))


def test_address_set_construction_and_families() -> None:
    both = AddressSet.of("10.98.0.0/16", "fd98::1", IPAddress("10.99.0.1"))
    assert both.families() == {4, 6}
    assert both.in_family(4) == IPSet(["10.98.0.0/16", "10.99.0.1/32"])
    assert both.in_family(6) == IPSet(["fd98::1/128"])
    assert "10.98.3.4" in both and "10.97.0.1" not in both
    assert AddressSet.universe(4) is V4_ALL and AddressSet.universe(6) is V6_ALL
    assert AddressSet.coerce(both) is both
    assert list(AddressSet.of("10.0.0.0/31").addresses()) == [
        IPAddress("10.0.0.0"),
        IPAddress("10.0.0.1"),
    ]
    assert not AddressSet() and AddressSet().is_empty()


long_spans = st.lists(
    st.tuples(st.integers(0, 4 * TOP), st.integers(0, 8)).map(lambda t: (t[0], t[0] + t[1])),
    min_size=2,
    max_size=40,
).map(lambda s: normalise(s, 4 * TOP))
one_span = st.tuples(st.integers(0, 4 * TOP), st.integers(0, 4 * TOP)).map(
    lambda t: ((min(t), max(t)),)
)


@settings(max_examples=400, deadline=None)
@given(long_spans, one_span)
def test_many_spans_against_one_found_by_bisection(
    many: tuple[tuple[int, int], ...], one: tuple[tuple[int, int], ...]
) -> None:
    for result in (meet(many, one), meet(one, many)):
        assert result == normalise(result, 4 * TOP)
        assert _members(result) == _members(many) & _members(one)
    assert _members(minus(many, one)) == _members(many) - _members(one)
    assert _members(minus(one, many)) == _members(one) - _members(many)


few_spans = st.lists(
    st.tuples(st.integers(0, 4 * TOP), st.integers(0, 40)).map(lambda t: (t[0], t[0] + t[1])),
    min_size=2,
    max_size=8,
).map(lambda s: normalise(s, 4 * TOP))
very_long_spans = st.lists(
    st.tuples(st.integers(0, 4 * TOP), st.integers(0, 3)).map(lambda t: (t[0], t[0] + t[1])),
    min_size=40,
    max_size=80,
).map(lambda s: normalise(s, 4 * TOP))


@settings(max_examples=300, deadline=None)
@given(very_long_spans, few_spans)
def test_many_spans_against_a_few_by_windows(
    many: tuple[tuple[int, int], ...], few: tuple[tuple[int, int], ...]
) -> None:
    for result in (meet(many, few), meet(few, many), minus(many, few), minus(few, many)):
        assert result == normalise(result, 4 * TOP)
    assert _members(meet(many, few)) == _members(many) & _members(few)
    assert _members(meet(few, many)) == _members(many) & _members(few)
    assert _members(minus(many, few)) == _members(many) - _members(few)
    assert _members(minus(few, many)) == _members(few) - _members(many)
