"""Local delivery versus crossing a segment (``reach(..., local_over=...)``), on the lab model.

Linux accepts a packet for any of its addresses on any interface (weak host model): a packet
that proc-srv sends through send-srv to send-srv's own carrier-out address is delivered to
send-srv over line-send and never crosses carrier-out. A packet that does cross an external
segment still reaches it, whatever organisation host's address it is sent to.
"""

from __future__ import annotations

from auditor.domain.facts import HostFacts, Route
from auditor.domain.inventory import Zone
from tests.unit.topology import lab_model as lab
from topology.graph import Topology
from topology.intervals import AddressSet
from topology.reach import Direction, Reachability, reach

YES, NO, UNKNOWN = Reachability.YES, Reachability.NO, Reachability.UNKNOWN

SEND_CARRIER_OUT = AddressSet.of(lab.v4("carrier-out", 20), lab.v6("carrier-out", 20))


def external(topo: Topology) -> AddressSet:
    outside = [s for s in topo.segments.values() if s.kind == "network"]
    return AddressSet.of(
        *(p for s in outside if s.zone in (Zone.EXTERNAL, Zone.OFFICE) for p in s.prefixes)
    )


def protected(topo: Topology) -> frozenset[str]:
    return frozenset(n for n, s in topo.segments.items() if s.zone is Zone.PROTECTED)


def via_send_srv() -> list[Route]:
    return lab.default_routes(lab.v4("line-send", 20), lab.v6("line-send", 20), "eth1")


def send_srv_forwarding() -> HostFacts:
    """send-srv routing: forwarding on and a forward chain that accepts everything."""
    return lab.send_srv("open", forwarding=True)


def build(*facts: HostFacts, extra: dict[str, dict[str, int]] | None = None) -> Topology:
    return Topology.build(lab.inventory(extra), {f.host: f for f in facts})


def test_own_address_of_the_gateway_on_carrier_out_is_delivered_locally() -> None:
    topo = build(lab.proc_srv(routes=via_send_srv()), lab.send_srv())
    # Without the distinction, send-srv's input (tcp 22 from line-send) "reaches" carrier-out.
    before = reach(topo, "proc-srv", external(topo))
    assert before.reachable is YES
    assert before.reached.address_set().issubset(SEND_CARRIER_OUT)
    assert before.paths[0].hops[-1].direction is Direction.INPUT
    assert before.paths[0].hops[-1].network == "line-send"
    # Delivered over line-send, a protected segment: local to send-srv, nothing outside.
    after = reach(topo, "proc-srv", external(topo), local_over=protected(topo))
    assert after.reachable is NO, after.summary()
    assert not after.paths


def test_a_forwarding_gateway_still_takes_proc_srv_outside() -> None:
    topo = build(lab.proc_srv(routes=via_send_srv()), send_srv_forwarding())
    result = reach(topo, "proc-srv", external(topo), local_over=protected(topo))
    assert result.reachable is YES
    recipient = AddressSet.of(lab.v4("carrier-out", 10), lab.v6("carrier-out", 10))
    assert recipient.issubset(result.reached.address_set())
    assert result.reached.families() == {4, 6}
    # send-srv's own carrier-out address is still not "reached" from line-send.
    assert not (result.reached.address_set() & SEND_CARRIER_OUT)
    path = result.paths[0]
    assert [(h.host, h.direction) for h in path.hops][-2:] == [
        ("send-srv", Direction.FORWARD),
        ("send-srv", Direction.LINK),
    ]
    assert path.hops[-1].network == "carrier-out"


def dual_homed_topology(route_via: str) -> Topology:
    """proc-srv and send-srv both on the office LAN; proc-srv routes carrier-out via
    send-srv's address on ``route_via`` (office: across the external LAN; line-send: not)."""
    extra = {"proc-srv": {"office": 30}, "send-srv": {"office": 21}}
    device = "eth3" if route_via == "office" else "eth1"
    octet = 21 if route_via == "office" else 20
    gateways = {4: lab.v4(route_via, octet), 6: lab.v6(route_via, octet)}
    prefixes = {4: lab.prefix4("carrier-out"), 6: lab.prefix6("carrier-out")}
    routes = [
        Route(family=f, destination=prefixes[f], gateway=gateways[f], device=device) for f in (4, 6)
    ]
    send = lab.facts(
        "send-srv",
        "open",
        [
            lab.interface("eth0", "line-send", 20),
            lab.interface("eth1", "carrier-out", 20),
            lab.interface("eth2", "office", 21),
        ],
    )
    proc = lab.proc_srv(office=True, routes=routes)
    return Topology.build(lab.inventory(extra), {"proc-srv": proc, "send-srv": send})


def test_crossing_an_external_segment_to_an_organisation_host_still_counts() -> None:
    topo = dual_homed_topology("office")
    result = reach(topo, "proc-srv", SEND_CARRIER_OUT, local_over=protected(topo))
    assert result.reachable is YES
    assert result.reached.address_set() == SEND_CARRIER_OUT
    last = result.paths[0].hops[-1]
    assert (last.host, last.network, last.direction) == ("send-srv", "office", Direction.INPUT)


def test_the_same_address_over_the_protected_line_does_not() -> None:
    topo = dual_homed_topology("line-send")
    result = reach(topo, "proc-srv", SEND_CARRIER_OUT, local_over=protected(topo))
    assert result.reachable is NO, result.summary()


def test_on_link_delivery_to_an_organisation_address_on_an_external_segment_counts() -> None:
    topo = dual_homed_topology("line-send")
    send_office = AddressSet.of(lab.v4("office", 21), lab.v6("office", 21))
    result = reach(topo, "proc-srv", send_office, local_over=protected(topo))
    assert result.reachable is YES
    assert result.reached.address_set() == send_office
    last = result.paths[0].hops[-1]
    assert (last.network, last.direction) == ("office", Direction.LINK)


def test_an_uncollected_gateway_stays_uncertain() -> None:
    # send-srv without facts: it may deliver, forward or translate anything.
    topo = build(lab.proc_srv(routes=via_send_srv()))
    result = reach(topo, "proc-srv", external(topo), local_over=protected(topo))
    assert result.reachable is UNKNOWN
    assert SEND_CARRIER_OUT.issubset(result.maybe_reached.address_set())
