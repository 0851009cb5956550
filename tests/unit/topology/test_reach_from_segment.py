"""``reach_from_segment``: a device on a network that the inventory does not know, on the
recorded baseline of the lab (real facts) and on the hand-built lab model."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditor.analysis.stored import load_stored_model
from topology.fields import ports, protos
from topology.graph import Topology
from topology.intervals import AddressSet
from topology.reach import ANY_DEVICE, Direction, Reachability, reach_from_segment
from topology.space import PacketSpace

BASELINE = Path(__file__).parents[2] / "data" / "contexts" / "baseline"


@pytest.fixture(scope="module")
def topology() -> Topology:
    return load_stored_model(BASELINE).topology


def test_nothing_from_the_internet_reaches_a_protected_network(topology: Topology) -> None:
    for protected in ("line-recv", "line-send", "term-lan"):
        result = reach_from_segment(topology, "inet", topology.segment_addresses(protected))
        assert result.reachable is Reachability.NO, (protected, result.summary())


def test_a_device_on_the_terminal_lan_reaches_only_ssh_on_the_processing_server(
    topology: Topology,
) -> None:
    proc = topology.hosts["proc-srv"]
    result = reach_from_segment(topology, "term-lan", proc.answering_addresses, to_input=True)
    assert result.reachable is Reachability.YES
    assert result.reached.address_set().issubset(proc.answering_addresses)
    only_ssh = PacketSpace.everything().where(proto=protos(6), dport=ports(22))
    assert result.reached.subtract(only_ssh).is_empty(), result.summary()
    path = result.paths[0]
    assert path.hops[0].host == ANY_DEVICE and path.hops[0].network == "term-lan"
    last = path.hops[-1]
    assert (last.host, last.direction) == ("proc-srv", Direction.INPUT)
    assert last.rule_ref is not None  # the accepting rule is named


def test_the_device_never_borrows_an_inventory_hosts_address(topology: Topology) -> None:
    proc = topology.hosts["proc-srv"]
    result = reach_from_segment(topology, "term-lan", proc.answering_addresses, to_input=True)
    members = AddressSet.of()
    for name in topology.members("term-lan"):
        members = members | topology.hosts[name].addresses_on("term-lan")
    for path in result.paths:
        for cube in path.space:
            assert not (cube.saddr & members)


def test_an_uncollected_router_makes_the_answer_unknown_with_the_reason(
    topology: Topology,
) -> None:
    result = reach_from_segment(topology, "office", topology.segment_addresses("inet"))
    assert result.reachable is Reachability.UNKNOWN
    reasons = {r for p in result.paths for r in p.reasons}
    assert any("office-gw" in r and "no facts" in r for r in reasons), reasons


def test_a_host_on_the_segment_accepts_a_packet_for_any_of_its_own_addresses(
    topology: Topology,
) -> None:
    """recv-srv does not forward, but a device on line-recv routing via recv-srv's line-recv
    address reaches its sshd on the carrier-in address too (Linux's weak host model)."""
    recv = topology.hosts["recv-srv"]
    carrier_side = recv.addresses_on("carrier-in")
    result = reach_from_segment(topology, "line-recv", carrier_side, to_input=True)
    assert result.reachable is Reachability.YES, result.summary()
    assert result.reached.address_set().issubset(carrier_side)
    last = result.paths[0].hops[-1]
    assert (last.host, last.network, last.direction) == ("recv-srv", "line-recv", Direction.INPUT)


def test_on_the_wire_a_hosts_other_address_is_not_its_network(topology: Topology) -> None:
    """Asked which networks the device gets into, recv-srv answering for its carrier-in
    address over line-recv is not carrier-in: the packet never crosses carrier-in."""
    carrier_in = topology.segment_addresses("carrier-in")
    host_view = reach_from_segment(topology, "line-recv", carrier_in)
    assert host_view.reachable is Reachability.YES
    network_view = reach_from_segment(topology, "line-recv", carrier_in, on_the_wire=True)
    assert network_view.reachable is Reachability.NO, network_view.summary()
