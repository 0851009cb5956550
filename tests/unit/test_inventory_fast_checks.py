"""The inventory's fast checks answer exactly as the plain ones they replaced.

Overlaps are found by a sweep in start order instead of comparing every pair, the scope is
judged on merged integer ranges instead of netaddr sets, and answers derived from the
inventory are kept while the fields they come from are the same objects.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from netaddr import IPAddress, IPNetwork, IPSet

from auditor.domain.inventory import Inventory, Role, Scope, earlier_overlaps, load_inventory

LAB = Path(__file__).parents[1] / "data" / "inventory" / "lab.yaml"

_V4_BASES = [0x0A620000, 0x0A621500, 0x0A621580, 0x0A630000, 0x7F000000, 0x7F000001]
_V6_BASES = [0xFD98 << 112, (0xFD98 << 112) | (0x21 << 64), 1, 0]

prefixes = st.one_of(
    st.builds(
        lambda a, n: IPNetwork(f"{IPAddress(a, 4)}/{n}").cidr,
        st.sampled_from(_V4_BASES),
        st.integers(7, 32),
    ),
    st.builds(
        lambda a, n: IPNetwork(f"{IPAddress(a, 6)}/{n}").cidr,
        st.sampled_from(_V6_BASES),
        st.integers(15, 128),
    ),
)


def _pairwise(items: list[IPNetwork]) -> dict[int, list[int]]:
    """The check as it was: every prefix against every earlier one of its family."""
    found: dict[int, list[int]] = {}
    for later, prefix in enumerate(items):
        for earlier, other in enumerate(items[:later]):
            if prefix.version == other.version and (prefix in other or other in prefix):
                found.setdefault(later, []).append(earlier)
    return found


@settings(max_examples=400, deadline=None)
@given(st.lists(prefixes, max_size=12))
def test_the_sweep_finds_exactly_the_overlapping_pairs_in_listing_order(
    items: list[IPNetwork],
) -> None:
    assert earlier_overlaps(items) == _pairwise(items)


def test_identical_and_nested_prefixes_are_all_reported_against_each_earlier_one() -> None:
    items = [
        IPNetwork("10.98.0.0/16"),
        IPNetwork("fd98::/16"),
        IPNetwork("10.98.21.0/24"),
        IPNetwork("10.98.21.0/24"),
        IPNetwork("10.98.22.0/24"),
        IPNetwork("10.0.0.0/8"),
    ]
    assert earlier_overlaps(items) == {2: [0], 3: [0, 2], 4: [0], 5: [0, 2, 3, 4]}


def _reference_permits(scope: Scope, target: str | IPAddress | IPNetwork) -> bool:
    """The scope check as it was, on netaddr sets."""
    net = IPNetwork(str(target))
    if net.cidr in IPNetwork("127.0.0.0/8") or (
        net.version == 6 and net.cidr == IPNetwork("::1/128")
    ):
        return True
    return bool(IPSet([net.cidr]).issubset(IPSet(scope.authorized)))


targets = st.one_of(
    prefixes,
    prefixes.map(lambda p: p.ip + (1 if p.size > 1 else 0)),  # an address, host bits set
    prefixes.map(lambda p: f"{p.ip + (1 if p.size > 1 else 0)}/{p.prefixlen}"),  # text
)


@settings(max_examples=400, deadline=None)
@given(st.lists(prefixes, min_size=1, max_size=5), st.lists(targets, min_size=1, max_size=8))
def test_scope_permits_as_the_netaddr_sets_did(
    authorized: list[IPNetwork], asked: list[str | IPAddress | IPNetwork]
) -> None:
    scope = Scope(authorized=authorized)
    for target in asked:
        assert scope.permits(target) == _reference_permits(scope, target), target


def test_a_range_straddling_two_adjacent_authorized_prefixes_is_permitted() -> None:
    scope = Scope(authorized=["10.98.0.0/17", "10.98.128.0/17"])
    assert scope.permits("10.98.0.0/16")
    assert scope.permits(IPNetwork("10.98.0.0/16"))
    assert not scope.permits("10.98.0.0/15")
    assert scope.permits("127.1.2.3")
    assert scope.permits("::1")
    assert not scope.permits("::1/127")


def test_answers_kept_on_the_inventory_follow_a_copy_that_replaces_their_fields() -> None:
    lab = load_inventory(LAB)
    assert lab.hosts_with(Role.EXTERNAL_PARTY) == ["hospital", "recipient"]
    assert lab.network_of(IPAddress("10.98.21.20")) == "line-recv"
    assert lab.scope.permits("10.98.21.20")
    hosts = {n: h for n, h in lab.hosts.items() if n != "hospital"}
    networks = {n: d for n, d in lab.networks.items() if n != "line-recv"}
    copy: Inventory = lab.model_copy(update={"hosts": hosts, "networks": networks})
    assert copy.hosts_with(Role.EXTERNAL_PARTY) == ["recipient"]
    assert copy.network_of(IPAddress("10.98.21.20")) is None
    narrower = lab.scope.model_copy(update={"authorized": [IPNetwork("10.98.30.0/24")]})
    assert not narrower.permits("10.98.21.20")
    # The original keeps its own answers, and equality still ignores what is kept.
    assert lab.hosts_with(Role.EXTERNAL_PARTY) == ["hospital", "recipient"]
    assert lab == load_inventory(LAB)
