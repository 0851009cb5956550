"""The scope guard refuses every target outside the inventory's authorized scope."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from netaddr import IPAddress

from auditor.audit.scope import OutOfScopeError, ScopeGuard
from auditor.domain.inventory import Scope, load_inventory

LAB = Path(__file__).parents[1] / "data" / "inventory" / "lab.yaml"


@pytest.fixture(scope="module")
def guard() -> ScopeGuard:
    return ScopeGuard.from_inventory(load_inventory(LAB))


@pytest.mark.parametrize(
    "target",
    [
        "10.98.21.20",
        "10.98.0.0/16",
        "10.98.21.0/24",
        "10.98.21.5/24",  # host bits: the scanner would cover the whole /24, which is in scope
        "fd98:0:0:21::20",
        "fd98::/16",
        "FD98:0:0:21::/64",
        "::ffff:10.98.21.20",  # IPv4-mapped: reaches 10.98.21.20
        "127.0.0.1",
        "127.0.0.0/8",
        "::1",
        "recv-srv",  # an inventory host: its declared addresses are all in scope
        "hospital",
        "inet-canary",
    ],
)
def test_targets_inside_scope_are_permitted(guard: ScopeGuard, target: str) -> None:
    guard.check(target)
    assert guard.permits(target)


@pytest.mark.parametrize(
    "target",
    [
        "10.99.0.1",
        "192.0.2.1",  # the lab machine's own LAN here
        "8.8.8.8",
        "10.98.0.0/15",  # half outside
        "10.0.0.0/8",
        "0.0.0.0/0",
        "::/0",
        "fd00::1",  # the lab machine's own IPv6 prefix
        "fd98::/15",
        "2001:db8::1",
        "::ffff:8.8.8.8",
        "::ffff:0:0/96",  # the whole mapped range is not an address of ours
        "0.0.0.0",
        "::",
        "255.255.255.255",
        "224.0.0.1",
        "ff02::1",
    ],
)
def test_targets_outside_scope_are_refused(guard: ScopeGuard, target: str) -> None:
    with pytest.raises(OutOfScopeError) as caught:
        guard.check(target)
    assert caught.value.target == target
    message = str(caught.value)
    assert repr(target) in message
    assert "10.98.0.0/16" in message and "fd98::/16" in message


@pytest.mark.parametrize(
    "target",
    [
        "",
        " 10.98.21.20",
        "10.98.21.20 ",
        "10.98.21.20\n",
        "010.098.021.020",  # leading zeros: octal to some parsers
        "10.98.21",
        "167924244",  # 10.2.55.20 as an integer, to inet_aton
        "10.98.21.20/33",
        "10.98.21.1-20",
        "fe80::1%eth0",
        "fd98::1%eth0",
        "[fd98::1]",
        "recv-srv.",  # a DNS name, not the inventory's host name
        "RECV-SRV",
        "recv-srv.lab.example",
        "localhost",  # would need resolution
        "example.com",
        "10.98.21.20:22",
        "not a host",
        "\x00",
    ],
)
def test_garbage_and_unknown_names_are_refused(guard: ScopeGuard, target: str) -> None:
    with pytest.raises(OutOfScopeError, match="not an address, a network or an inventory host"):
        guard.check(target)


def test_a_network_partly_outside_names_the_outside_part_in_its_message() -> None:
    guard = ScopeGuard(Scope(authorized=["10.98.0.0/24"]))
    with pytest.raises(OutOfScopeError) as caught:
        guard.check("10.98.0.0/23")
    assert "10.98.0.0/23 is not entirely inside the authorized scope" in str(caught.value)
    assert caught.value.authorized == ["10.98.0.0/24"]


def test_a_network_spanning_two_adjacent_authorized_ranges_is_permitted() -> None:
    guard = ScopeGuard(Scope(authorized=["10.98.0.0/24", "10.98.1.0/24", "fd98:1::/64"]))
    guard.check("10.98.0.0/23")
    with pytest.raises(OutOfScopeError):
        guard.check("10.98.0.0/22")


def test_a_host_with_any_address_outside_scope_is_refused() -> None:
    guard = ScopeGuard(
        Scope(authorized=["10.98.21.0/24"]),
        hosts={
            "proc-srv": [IPAddress("10.98.21.30"), IPAddress("10.98.22.30")],
            "bare": [],
        },
    )
    with pytest.raises(OutOfScopeError) as caught:
        guard.check("proc-srv")
    assert "10.98.22.30/32" in str(caught.value)
    with pytest.raises(OutOfScopeError, match="declares no address"):
        guard.check("bare")


def test_an_ip_literal_is_judged_as_itself_even_if_a_host_bears_that_name() -> None:
    guard = ScopeGuard(
        Scope(authorized=["10.98.21.0/24"]),
        hosts={"8.8.8.8": [IPAddress("10.98.21.30")]},
    )
    with pytest.raises(OutOfScopeError):
        guard.check("8.8.8.8")


def test_host_names_map_to_their_declared_addresses(guard: ScopeGuard) -> None:
    assert guard.addresses_of("recv-srv") == [
        "10.98.10.20",
        "fd98:0:0:10::20",
        "10.98.21.20",
        "fd98:0:0:21::20",
        "10.98.100.20",
    ]
    assert guard.addresses_of("10.98.21.0/24") == ["10.98.21.0/24"]


def test_filter_keeps_permitted_targets_in_order(guard: ScopeGuard) -> None:
    targets = ["10.98.21.20", "8.8.8.8", "proc-srv", "bogus name", "::1", "10.0.0.0/8"]
    assert guard.filter(targets) == ["10.98.21.20", "proc-srv", "::1"]


def test_loopback_is_permitted_even_with_a_narrow_scope() -> None:
    guard = ScopeGuard(Scope(authorized=["10.98.21.0/24"]))
    for target in ("127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"):
        guard.check(target)
    with pytest.raises(OutOfScopeError):
        guard.check("126.255.255.255")


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=60), st.ip_addresses().map(str)))
def test_check_either_permits_or_refuses_and_never_crashes(target: str) -> None:
    guard = ScopeGuard(Scope(authorized=["10.98.0.0/16", "fd98::/16"]))
    try:
        guard.check(target)
    except OutOfScopeError:
        assert not guard.permits(target)
    else:
        assert guard.permits(target)


@settings(max_examples=300, deadline=None)
@given(st.ip_addresses(v=4))
def test_ipv4_verdicts_agree_with_plain_arithmetic(address: object) -> None:
    guard = ScopeGuard(Scope(authorized=["10.98.0.0/16"]))
    text = str(address)
    first, second = (int(part) for part in text.split(".")[:2])
    expected = (first, second) == (10, 98) or first == 127
    assert guard.permits(text) is expected
