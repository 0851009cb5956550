"""Reachability on small graphs modelled on the reference lab (see lab_model)."""

from __future__ import annotations

import gc
import weakref

from netaddr import IPSet

from auditor.domain.facts import HostFacts, Listener, Route
from tests.unit.topology import lab_model as lab
from topology.fields import ports, protos
from topology.graph import Topology
from topology.reach import (
    Reachability,
    inbound,
    listener_exposure,
    reach,
    reach_segment,
)
from topology.space import PacketSpace

YES, NO, UNKNOWN = Reachability.YES, Reachability.NO, Reachability.UNKNOWN


def build(*facts: HostFacts) -> Topology:
    extra = (
        {"proc-srv": {"office": 30}}
        if any(
            f.host == "proc-srv" and f.interfaces and any(i.name == "eth3" for i in f.interfaces)
            for f in facts
        )
        else None
    )
    return Topology.build(lab.inventory(extra), {f.host: f for f in facts})


def to_carrier_in_gateway() -> list[Route]:
    return lab.default_routes("10.98.10.1", "fd98:0:0:10::1", "eth0")


def test_graph_has_hosts_segments_and_tunnels() -> None:
    topo = build(lab.recv_srv(), lab.proc_srv())
    graph = topo.graph
    assert graph.has_edge("host:recv-srv", "segment:wg-in")
    assert graph.edges["host:recv-srv", "segment:carrier-in"]["interface"] == "eth0"
    assert graph.has_edge("segment:wg-in", "segment:carrier-in")  # the tunnel's underlay
    # A host without facts is attached by its declared addresses, interface unknown.
    assert graph.edges["host:office-gw", "segment:inet"]["interface"] is None
    assert topo.segments["wg-in"].zone is not None
    assert topo.hosts["proc-srv"].routes is not None
    assert topo.hosts["office-gw"].routes is None


def test_recv_srv_established_only_reaches_nothing_outside() -> None:
    topo = build(lab.recv_srv(routes=to_carrier_in_gateway()))
    for network in ("carrier-in", "inet", "office"):
        result = reach_segment(topo, "recv-srv", network)
        assert result.reachable is NO, (network, result.summary())
        assert not result.paths


def test_recv_srv_with_open_output_reaches_carrier_in_hosts() -> None:
    topo = build(lab.recv_srv("recv-srv-open"))
    result = reach_segment(topo, "recv-srv", "carrier-in")
    assert result.reachable is YES
    hospital = IPSet([lab.v4("carrier-in", 10), lab.v6("carrier-in", 10)])
    assert hospital.issubset(result.reached.addresses("daddr"))
    assert result.reached.families() == {4, 6}
    path = result.paths[0]
    assert [h.direction for h in path.hops] == ["route", "output", "link"]
    assert path.hops[1].rule == "policy accept"
    assert path.hops[1].network == "carrier-in"
    # Without a default route the Internet stays out of reach.
    assert reach_segment(topo, "recv-srv", "inet").reachable is NO


def test_recv_srv_default_route_via_unknown_gateway_is_uncertain() -> None:
    topo = build(lab.recv_srv("recv-srv-open", routes=to_carrier_in_gateway()))
    result = reach_segment(topo, "recv-srv", "inet")
    assert result.reachable is UNKNOWN
    assert any("not in the inventory" in r for p in result.paths for r in p.reasons)


def test_proc_srv_with_connected_routes_reaches_only_its_segments() -> None:
    topo = build(lab.proc_srv(), lab.recv_srv())
    for network in ("line-recv", "line-send", "term-lan"):
        assert reach_segment(topo, "proc-srv", network).reachable is YES, network
    for network in ("carrier-in", "carrier-out", "inet", "office", "wg-in"):
        result = reach_segment(topo, "proc-srv", network)
        assert result.reachable is NO, (network, result.summary())


def test_proc_srv_via_unknown_office_router_may_reach_inet() -> None:
    routes = lab.default_routes(lab.v4("office", 254), lab.v6("office", 254), "eth3")
    topo = build(lab.proc_srv(office=True, routes=routes))
    assert reach_segment(topo, "proc-srv", "office").reachable is YES
    result = reach_segment(topo, "proc-srv", "inet")
    assert result.reachable is UNKNOWN
    hosts = [h.host for p in result.paths for h in p.hops]
    assert "office-gw" in hosts
    assert any("no facts collected" in r for p in result.paths for r in p.reasons)


def test_proc_srv_via_known_nat_router_reaches_inet() -> None:
    routes = lab.default_routes(lab.v4("office", 254), lab.v6("office", 254), "eth3")
    topo = build(lab.proc_srv(office=True, routes=routes), lab.office_gw())
    result = reach_segment(topo, "proc-srv", "inet")
    assert result.reachable is YES
    assert result.reached.families() == {4, 6}
    path = next(p for p in result.paths if p.certain and p.space.families() == {4})
    forward = next(h for h in path.hops if h.direction == "forward")
    assert forward.host == "office-gw" and forward.network == "inet"
    assert 'iifname "eth0" oifname "eth1" accept' in (forward.rule or "")
    assert "masquerade" in (forward.rule or "")
    # Masqueraded: the packets arrive from the router's inet address.
    assert path.delivered.addresses("saddr") == IPSet([lab.v4("inet", 254)])
    # Sent from any of proc-srv's own addresses (a program may bind any of them).
    assert lab.v4("office", 30) in path.space.addresses("saddr")


def test_router_with_forwarding_off_does_not_forward() -> None:
    routes = lab.default_routes(lab.v4("office", 254), lab.v6("office", 254), "eth3")
    topo = build(lab.proc_srv(office=True, routes=routes), lab.office_gw(forwarding=False))
    assert reach_segment(topo, "proc-srv", "inet").reachable is NO
    assert reach_segment(topo, "proc-srv", "office").reachable is YES


def test_ipv6_path_alone() -> None:
    routes = lab.default_routes(None, lab.v6("office", 254), "eth3")
    topo = build(lab.proc_srv(office=True, routes=routes), lab.office_gw())
    space = PacketSpace.connection_attempts(families=[6])
    result = reach(topo, "proc-srv", IPSet([lab.prefix6("inet")]), space)
    assert result.reachable is YES
    assert result.reached.families() == {6}
    v4_only = reach(topo, "proc-srv", IPSet([lab.prefix4("inet")]))
    assert v4_only.reachable is NO  # no IPv4 default route


def test_send_srv_baseline_accepts_nothing_from_outside() -> None:
    topo = build(lab.send_srv())
    for segment in ("carrier-out", "wg-out"):
        result = inbound(topo, "send-srv", segment)
        assert result.reachable is NO, (segment, result.summary())
    assert inbound(topo, "send-srv", "line-send").reachable is YES


def test_send_srv_opened_on_8443_accepts_it_from_outside() -> None:
    topo = build(lab.send_srv("send-srv-8443"))
    for segment in ("carrier-out", "wg-out"):
        result = inbound(topo, "send-srv", segment)
        assert result.reachable is YES
        only_8443 = result.reached.where(proto=protos(6), dport=ports(8443))
        assert result.reached.subtract(only_8443).is_empty()
        hop = result.paths[0].hops[-1]
        assert (hop.host, hop.direction, hop.rule) == ("send-srv", "input", "tcp dport 8443 accept")
    peer = IPSet(["10.98.101.10/32"])
    from_peer = inbound(topo, "send-srv", "wg-out", sources=peer)
    assert from_peer.reached.addresses("saddr") == peer


def test_port_forward_through_a_nat_router() -> None:
    canary = lab.facts("inet-canary", "open", [lab.interface("eth0", "inet", 100)])
    topo = build(canary, lab.office_gw())
    office_pc = IPSet([lab.v4("office", 20)])
    result = reach(topo, "inet-canary", office_pc)
    assert result.reachable is YES
    (cube,) = [c for p in result.paths if p.certain for c in p.space]
    # Sent to the router's 8443, delivered to office-pc's 22.
    assert list(cube.dport.values()) == [8443]
    assert cube.daddr == IPSet([lab.v4("inet", 254)])


def test_listeners_exposed_per_segment_loopback_excluded() -> None:
    listeners = [
        Listener(proto="tcp", address="0.0.0.0", port=22, process="sshd"),
        Listener(proto="tcp", address="::", port=22, process="sshd"),
        Listener(proto="tcp", address="127.0.0.1", port=631, process="cupsd"),
    ]
    topo = build(lab.send_srv(listeners=listeners))
    exposures = listener_exposure(topo, "send-srv")
    assert exposures is not None
    assert {e.listener.port for e in exposures} == {22}
    by_segment = {(e.listener.address, e.segment): e.result.reachable for e in exposures}
    assert by_segment[("0.0.0.0", "line-send")] is YES
    assert by_segment[("::", "line-send")] is YES
    assert by_segment[("0.0.0.0", "carrier-out")] is NO
    assert by_segment[("::", "wg-out")] is NO


def test_missing_facts_are_unknown_not_reachable_or_safe() -> None:
    no_rules = lab.recv_srv().model_copy(update={"nftables": None})
    topo = build(no_rules)
    assert reach_segment(topo, "recv-srv", "carrier-in").reachable is UNKNOWN
    listeners_missing = build(lab.send_srv())
    assert listener_exposure(listeners_missing, "send-srv") is None


def test_a_topology_queried_is_freed_once_dropped() -> None:
    """The per-topology memos are weakly keyed: a long-running watch must not keep every
    topology it ever built (a memo's value holding its topology would)."""
    listeners = [Listener(proto="tcp", address="0.0.0.0", port=22, process="sshd")]
    topo = build(lab.recv_srv(routes=to_carrier_in_gateway()), lab.send_srv(listeners=listeners))
    reach_segment(topo, "recv-srv", "carrier-in")
    listener_exposure(topo, "send-srv")
    alive = weakref.ref(topo)
    del topo
    gc.collect()
    assert alive() is None
