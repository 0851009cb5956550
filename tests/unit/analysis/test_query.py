"""Path queries answered on the recorded lab contexts (tests/data/contexts): what the model of a
real audit of each scenario says, with the rule that decided each hop."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

import pytest
from netaddr import IPSet

from auditor.analysis.query import (
    EndpointKind,
    Proto,
    QueryAnswer,
    QueryError,
    packet_space,
    query_inbound,
    query_path,
    resolve_target,
)
from auditor.analysis.stored import load_stored_model
from topology.fields import ICMP, ICMPV6, TCP, UDP, ports, protos
from topology.graph import Topology
from topology.reach import Reachability

CONTEXTS = Path(__file__).parents[2] / "data" / "contexts"


@cache
def topology(scenario: str) -> Topology:
    """Rebuilt once per scenario: queries never change the model."""
    return load_stored_model(CONTEXTS / scenario).topology


def hops_of(answer: QueryAnswer) -> list[tuple[str, str | None, str, str | None]]:
    return [(h.host, h.network, h.direction, h.rule_ref) for p in answer.paths for h in p.hops]


# -- the lab's baseline: the receiving server is closed to the outside -------------------------


def test_baseline_recv_srv_cannot_reach_the_internet() -> None:
    answer = query_path(topology("baseline"), "recv-srv", "inet")
    assert answer.reachable is Reachability.NO
    assert answer.paths == ()
    assert answer.packets == ()


def test_baseline_line_recv_reaches_sshd_by_the_line_recv_rule() -> None:
    answer = query_path(topology("baseline"), "line-recv", "recv-srv", Proto.TCP, 22)
    assert answer.reachable is Reachability.YES
    assert answer.source.kind is EndpointKind.NETWORK
    # The input rule of recv-srv that accepts ssh on line-recv, by its table/chain/handle.
    decisive = [h for h in hops_of(answer) if h[0] == "recv-srv"]
    assert decisive
    assert all(d == ("recv-srv", "line-recv", "input", "inet filter/input/12") for d in decisive)
    assert all("dport 22" in line for line in answer.packets)


def test_the_packet_classes_list_every_address() -> None:
    """A device on line-recv not in the inventory: any address of the line but those of the
    hosts the inventory places there, listed in full (the text summary abbreviates them)."""
    t = topology("baseline")
    answer = query_path(t, "line-recv", "recv-srv", Proto.TCP, 22)
    members = IPSet()
    for name in t.members("line-recv"):
        members |= t.hosts[name].addresses_on("line-recv").to_ipset()
    for family, prefix in ((4, "10.98.21.0/24"), (6, "fd98:0:0:21::/64")):
        (found,) = [c for c in answer.classes if c.family == family]
        assert found.certain and (found.protocols, found.dport) == ("tcp", "22")
        assert IPSet(found.sources) == IPSet([prefix]) - members
        # recv-srv's own addresses, its address on the line among them.
        on_line = t.hosts["recv-srv"].addresses_on("line-recv", family).to_ipset()
        own = t.hosts["recv-srv"].answering_addresses.to_ipset()
        assert on_line <= IPSet(found.destinations) <= own
    assert members and len(answer.classes) == 2


def test_baseline_the_same_line_gets_no_other_port() -> None:
    answer = query_path(topology("baseline"), "line-recv", "recv-srv", Proto.TCP, 23)
    assert answer.reachable is Reachability.NO


def test_baseline_a_device_on_the_tunnel_is_not_the_hospital() -> None:
    """recv-srv accepts ssh on wg-in only from hospital's tunnel address, and a device there
    that the inventory does not list has any address of the tunnel but that one."""
    answer = query_path(topology("baseline"), "wg-in", "recv-srv", Proto.TCP, 22)
    assert answer.source.kind is EndpointKind.TUNNEL
    assert answer.reachable is Reachability.NO


def test_baseline_an_uncollected_source_is_unknown_with_its_reasons() -> None:
    answer = query_path(topology("baseline"), "hospital", "recv-srv")
    assert answer.reachable is Reachability.UNKNOWN
    assert "hospital: routes not collected" in answer.reasons
    assert all(not p.certain for p in answer.paths)
    # recv-srv's own rules still decide: only what it accepts from hospital is listed.
    refs = {h[3] for h in hops_of(answer) if h[0] == "recv-srv"}
    assert refs and all(r is not None and r.startswith("inet filter/input/") for r in refs)


# -- recv-egress: recv-srv's output accepts everything ------------------------------------------


def test_recv_egress_recv_srv_reaches_the_carrier_network() -> None:
    answer = query_path(topology("recv-egress"), "recv-srv", "carrier-in")
    assert answer.reachable is Reachability.YES
    assert all(p.certain for p in answer.paths)
    # The accepting rule is the output chain's policy (scenario recv-nftables.conf).
    outputs = {(h[0], h[2], h[3]) for h in hops_of(answer) if h[2] == "output"}
    assert outputs == {("recv-srv", "output", "inet filter/output policy")}
    assert any(h[2] == "link" and h[1] == "carrier-in" for h in hops_of(answer))


def test_baseline_is_the_contrast_for_recv_egress() -> None:
    assert query_path(topology("baseline"), "recv-srv", "carrier-in").reachable is Reachability.NO


def test_recv_egress_an_uncollected_target_host_makes_it_unknown() -> None:
    answer = query_path(topology("recv-egress"), "recv-srv", "hospital")
    assert answer.reachable is Reachability.UNKNOWN
    assert answer.reasons == ("hospital: no facts collected, it may accept or forward anything",)
    last_hops = {p.hops[-1].host for p in answer.paths}
    assert last_hops == {"hospital"}


def test_recv_egress_an_unknown_gateway_toward_the_internet_is_unknown() -> None:
    answer = query_path(topology("recv-egress"), "recv-srv", "inet")
    assert answer.reachable is Reachability.UNKNOWN
    assert "gateway 10.98.10.1 on carrier-in is not in the inventory" in answer.reasons


def test_an_address_target_is_answered_like_the_network_it_lies_in() -> None:
    by_name = query_path(topology("recv-egress"), "recv-srv", "carrier-in", Proto.UDP)
    by_prefix = query_path(topology("recv-egress"), "recv-srv", "10.98.10.0/24", Proto.UDP)
    assert by_prefix.target.kind is EndpointKind.ADDRESSES
    assert by_prefix.reachable is Reachability.YES
    assert {line for line in by_prefix.packets if "IPv4" in line} == {
        line for line in by_name.packets if "IPv4" in line
    }
    assert not any("IPv6" in line for line in by_prefix.packets)


def test_a_hosts_address_is_asked_as_the_host() -> None:
    """recv-srv's input takes TCP 22 on line-recv but not 23: asked by its address, only the
    first gets there, while the line's prefix is reached on its wire whatever the port."""
    t = topology("baseline")
    ssh = query_path(t, "proc-srv", "10.98.21.20", Proto.TCP, 22)
    telnet = query_path(t, "proc-srv", "10.98.21.20", Proto.TCP, 23)
    wire = query_path(t, "proc-srv", "10.98.21.0/24", Proto.TCP, 23)
    assert ssh.target.owner == telnet.target.owner == "recv-srv"
    assert wire.target.owner is None
    assert ssh.reachable is Reachability.YES
    assert ("recv-srv", "line-recv", "input", "inet filter/input/12") in hops_of(ssh)
    assert telnet.reachable is Reachability.NO
    assert wire.reachable is Reachability.YES
    assert {h[2] for h in hops_of(wire)} >= {"link"}


def test_a_host_asked_about_itself_says_so() -> None:
    answer = query_path(topology("baseline"), "recv-srv", "10.98.21.20")
    assert answer.reachable is Reachability.NO
    assert answer.remarks == (
        "recv-srv is both source and target: its own addresses are not a path",
    )
    assert query_path(topology("baseline"), "proc-srv", "recv-srv").remarks == ()


def test_an_ipv6_address_target() -> None:
    answer = query_path(topology("recv-egress"), "recv-srv", "fd98:0:0:10::99", Proto.TCP, 443)
    assert answer.reachable is Reachability.YES
    assert answer.packets and all("IPv6 tcp dport 443" in line for line in answer.packets)


# -- inbound: who can open a connection to a host -----------------------------------------------


def test_inbound_lists_exactly_those_that_can_reach_sshd() -> None:
    inbound = query_inbound(topology("baseline"), "recv-srv", Proto.TCP, 22)
    by_source = {a.source.name: a.reachable for a in inbound.answers}
    assert by_source["line-recv"] is Reachability.YES
    assert by_source["proc-srv"] is Reachability.YES
    assert "inet" not in by_source and "office" not in by_source
    assert all(r is not Reachability.NO for r in by_source.values())
    assert "recv-srv" not in by_source
    # Every network and tunnel, and every other collected host, was asked.
    t = topology("baseline")
    collected = [h for h, m in t.hosts.items() if m.facts_known and h != "recv-srv"]
    assert inbound.sources_asked == len(t.segments) + len(collected)


def test_inbound_answers_agree_with_the_single_queries() -> None:
    inbound = query_inbound(topology("recv-egress"), "recv-srv", Proto.TCP, 22)
    for answer in inbound.answers:
        alone = query_path(topology("recv-egress"), answer.source.name, "recv-srv", Proto.TCP, 22)
        assert alone.reachable is answer.reachable
        assert alone.packets == answer.packets


# -- the packets asked about --------------------------------------------------------------------


def test_a_port_alone_means_tcp_and_udp_to_it() -> None:
    space = packet_space(None, 53)
    assert space.where(proto=protos(TCP), dport=ports(53))
    assert space.where(proto=protos(UDP), dport=ports(53))
    assert not space.where(proto=protos(ICMP, ICMPV6))
    assert not space.where(dport=ports(54))


def test_icmp_means_echo_requests_of_both_families() -> None:
    space = packet_space(Proto.ICMP)
    assert space.families() == {4, 6}
    assert not space.where(proto=protos(TCP, UDP))
    assert {str(c.icmp_type) for c in space} == {"8", "128"}


def test_icmp_with_a_port_cannot_be_asked() -> None:
    with pytest.raises(QueryError, match="--port"):
        packet_space(Proto.ICMP, 22)


# -- names --------------------------------------------------------------------------------------


def test_an_unknown_name_lists_close_names() -> None:
    with pytest.raises(QueryError) as caught:
        query_path(topology("baseline"), "recv-srvv", "inet")
    message = str(caught.value)
    assert "unknown source 'recv-srvv'" in message
    assert "recv-srv" in message


def test_an_unknown_target_is_not_read_as_an_address() -> None:
    with pytest.raises(QueryError, match="unknown target '42'"):
        resolve_target(topology("baseline"), "42")
    with pytest.raises(QueryError, match=re.escape("unknown target '10.98.300.1'")):
        resolve_target(topology("baseline"), "10.98.300.1")


def test_an_address_cannot_be_a_source() -> None:
    with pytest.raises(QueryError, match=re.escape("unknown source '10.98.21.20'")):
        query_path(topology("baseline"), "10.98.21.20", "inet")


def test_a_route_is_listed_once_whatever_the_addresses_it_carries() -> None:
    """The search may record one route several times (packets to each of the target's
    addresses); the answer lists each route, hop by hop, once, with all of its packets."""
    for scenario, source, target in (
        ("baseline", "line-recv", "recv-srv"),
        ("baseline", "proc-srv", "recv-srv"),
        ("recv-egress", "recv-srv", "hospital"),
    ):
        answer = query_path(topology(scenario), source, target)
        routes = [(p.hops, p.certain) for p in answer.paths]
        assert answer.paths and len(set(routes)) == len(routes), (scenario, source, target)


# -- JSON ---------------------------------------------------------------------------------------


def test_the_json_form_has_every_path_as_its_hops() -> None:
    answer = query_path(topology("recv-egress"), "recv-srv", "hospital")
    document = json.loads(json.dumps(answer.to_json()))
    assert document["reachable"] == "unknown"
    assert document["from"]["name"] == "recv-srv" and document["to"]["kind"] == "host"
    assert len(document["paths"]) == len(answer.paths) == len(document["path_details"])
    for hops, path in zip(document["paths"], answer.paths, strict=True):
        assert [h["host"] for h in hops] == [h.host for h in path.hops]
        assert set(hops[0]) == {"host", "network", "direction", "rule", "rule_ref"}
    assert document["reasons"] == list(answer.reasons)
    assert document["packets"] == list(answer.packets)
