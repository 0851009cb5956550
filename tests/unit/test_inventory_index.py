"""The address -> network index answers exactly as a scan of the prefixes in order would."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from netaddr import IPAddress, IPNetwork

from auditor.domain.inventory import AddressIndex

prefixes = st.one_of(
    st.builds(
        lambda a, n: IPNetwork(f"{IPAddress(a, 4)}/{n}").cidr,
        st.sampled_from([0x0A620000, 0x0A621500, 0x0A621580, 0x0A630000]),
        st.integers(16, 32),
    ),
    st.builds(
        lambda a, n: IPNetwork(f"{IPAddress(a, 6)}/{n}").cidr,
        st.sampled_from([0xFD98 << 112, (0xFD98 << 112) | (0x21 << 64)]),
        st.integers(16, 128),
    ),
)
entries = st.lists(st.tuples(st.sampled_from("abcdef"), prefixes), max_size=8)


def _scan(items: list[tuple[str, IPNetwork]], address: IPAddress) -> str | None:
    return next((name for name, prefix in items if address in prefix), None)


@settings(max_examples=300, deadline=None)
@given(entries)
def test_index_matches_a_scan_in_order(items: list[tuple[str, IPNetwork]]) -> None:
    index = AddressIndex(items)
    probes = [IPAddress("10.98.21.129"), IPAddress("fd98::1"), IPAddress("192.0.2.1")]
    for _, prefix in items:
        # Both ends of every prefix and the addresses just outside them.
        for value in (prefix.first - 1, prefix.first, prefix.last, prefix.last + 1):
            if 0 <= value < (1 << (32 if prefix.version == 4 else 128)):
                probes.append(IPAddress(value, prefix.version))
    for address in probes:
        assert index.find(address) == _scan(items, address)


def test_first_listed_wins_on_overlap() -> None:
    index = AddressIndex(
        [("small", IPNetwork("10.98.21.0/24")), ("large", IPNetwork("10.98.0.0/16"))]
    )
    assert index.find(IPAddress("10.98.21.5")) == "small"
    assert index.find(IPAddress("10.98.22.5")) == "large"
    assert index.find(IPAddress("10.99.0.1")) is None
