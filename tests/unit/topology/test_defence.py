"""Defence depth (topology.defence) on small hand-built topologies.

One server ``srv`` on a LAN sends through a router ``gw`` to an external network; the question
is always "does any new connection from srv reach the external network?", answered no by
different arrangements of drop rules on the two hosts.
"""

from __future__ import annotations

from typing import Any

from netaddr import IPAddress, IPNetwork

from auditor.domain.inventory import Role
from topology.defence import (
    MAX_CANDIDATES,
    OPENS_WIDTH,
    Depth,
    Question,
    defence_depth,
    hook_question,
    opens_summary,
    without_drop,
)
from topology.fields import protos
from topology.firewall import Firewall, Hook
from topology.graph import Attachment, HostModel, RouteEntry, RouteTable, Segment, Topology
from topology.intervals import AddressSet
from topology.reach import Reachability, ReachResult, inbound, reach
from topology.space import PacketSpace

LAN = IPNetwork("10.98.1.0/24")
EXT = IPNetwork("10.98.2.0/24")
#: The external network's hosts (the router's own address there is not outside: packets to it
#: end on the router, which the lab's controls handle by ``local_over``).
EXTERNAL = AddressSet.of(EXT) - AddressSet.of(IPAddress("10.98.2.1"))
TABLE = "f"

# -- rule sets, as nft -j lists them ------------------------------------------------------------


def _chain(name: str, hook: str, policy: str) -> dict[str, Any]:
    return {
        "chain": {
            "family": "inet",
            "table": TABLE,
            "name": name,
            "type": "filter",
            "hook": hook,
            "prio": 0,
            "policy": policy,
        }
    }


def _rule(chain: str, handle: int, exprs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "rule": {"family": "inet", "table": TABLE, "chain": chain, "handle": handle, "expr": exprs}
    }


def _to_external() -> dict[str, Any]:
    right = {"prefix": {"addr": str(EXT.network), "len": EXT.prefixlen}}
    return {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                      "right": right}}  # fmt: skip


def _tcp() -> dict[str, Any]:
    return {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "tcp"}}


def _dport(port: int) -> dict[str, Any]:
    return {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                      "right": port}}  # fmt: skip


def ruleset(*, policies: dict[str, str], rules: list[dict[str, Any]]) -> Firewall:
    """A table ``inet f`` with filter chains input/forward/output of the given policies."""
    doc: list[dict[str, Any]] = [{"table": {"family": "inet", "name": TABLE}}]
    doc += [_chain(name, name, policy) for name, policy in policies.items()]
    return Firewall.from_nft_json({"nftables": doc + rules})


OPEN = {"input": "accept", "forward": "accept", "output": "accept"}


# -- the topology ---------------------------------------------------------------------------------


def _routes(*entries: RouteEntry) -> RouteTable:
    connected = [
        RouteEntry(LAN, device="eth0"),
        RouteEntry(IPNetwork("fd98:1::/64"), device="eth0"),
    ]
    return RouteTable([*connected, *entries])


def server(firewall: Firewall) -> HostModel:
    return HostModel(
        name="srv",
        roles=(Role.RECEIVING,),
        firewall=firewall,
        routes=_routes(
            RouteEntry(IPNetwork("0.0.0.0/0"), gateway=IPAddress("10.98.1.1"), device="eth0")
        ),
        forwarding={4: False, 6: False},
        attachments=[Attachment("srv", "lan", "eth0", (IPAddress("10.98.1.10"),))],
        facts_known=True,
    )


def router(firewall: Firewall, *, collected: bool = True) -> HostModel:
    return HostModel(
        name="gw",
        roles=(Role.ROUTER,),
        firewall=firewall if collected else Firewall.unknown(),
        routes=_routes(RouteEntry(EXT, device="eth1")) if collected else None,
        forwarding={4: True, 6: False} if collected else {4: None, 6: None},
        attachments=[
            Attachment("gw", "lan", "eth0" if collected else None, (IPAddress("10.98.1.1"),)),
            Attachment("gw", "ext", "eth1" if collected else None, (IPAddress("10.98.2.1"),)),
        ],
        facts_known=collected,
    )


def topology(srv: Firewall, gw: Firewall, *, gw_collected: bool = True) -> Topology:
    segments = {
        "lan": Segment("lan", "network", (LAN,)),
        "ext": Segment("ext", "network", (EXT,)),
    }
    hosts = {"srv": server(srv), "gw": router(gw, collected=gw_collected)}
    return Topology(segments, hosts)


def outbound_question(topo: Topology) -> Question:
    def ask(asked: Topology) -> ReachResult:
        return reach(asked, "srv", EXTERNAL)

    return Question("new connections from srv to ext", ask, ask(topo))


def ref(chain: str, handle: int | str) -> str:
    return (
        f"inet {TABLE}/{chain}/{handle}" if handle != "policy" else f"inet {TABLE}/{chain} policy"
    )


# -- the tests -------------------------------------------------------------------------------------


def test_the_search_reports_the_drops_it_met_with_host_hook_and_rule() -> None:
    srv = ruleset(policies={**OPEN, "output": "drop"}, rules=[])
    topo = topology(srv, ruleset(policies=OPEN, rules=[]))
    result = reach(topo, "srv", EXTERNAL)
    assert result.reachable is Reachability.NO
    [drop] = result.drops
    assert (drop.host, drop.hook, drop.ref, drop.text) == (
        "srv",
        Hook.OUTPUT,
        ref("output", "policy"),
        "policy drop",
    )


def test_a_control_held_by_one_rule_is_single_with_that_rule() -> None:
    srv = ruleset(policies=OPEN, rules=[_rule("output", 5, [_to_external(), {"drop": None}])])
    topo = topology(srv, ruleset(policies=OPEN, rules=[]))
    question = outbound_question(topo)
    assert question.answer.reachable is Reachability.NO

    depth = defence_depth(topo, [question])

    assert depth.depth is Depth.SINGLE
    [point] = depth.single_points
    assert (point.host, point.hook, point.ref) == ("srv", Hook.OUTPUT, ref("output", 5))
    assert "daddr 10.98.2.0/24" in point.text and "drop" in point.text
    assert point.opens.startswith("new connections from srv to ext: certain:")
    assert "from 10.98.1.10/32 to 10.98.2.0/32,10.98.2.2/31" in point.opens
    assert depth.examined == 1


def test_reject_counts_as_a_drop() -> None:
    srv = ruleset(policies=OPEN, rules=[_rule("output", 5, [_to_external(), {"reject": None}])])
    topo = topology(srv, ruleset(policies=OPEN, rules=[]))
    depth = defence_depth(topo, [outbound_question(topo)])
    assert depth.depth is Depth.SINGLE
    assert [p.ref for p in depth.single_points] == [ref("output", 5)]


def test_a_rule_on_the_host_and_a_drop_on_the_router_are_layered() -> None:
    srv = ruleset(policies=OPEN, rules=[_rule("output", 5, [_to_external(), {"drop": None}])])
    gw = ruleset(policies={**OPEN, "forward": "drop"}, rules=[])
    topo = topology(srv, gw)

    depth = defence_depth(topo, [outbound_question(topo)])

    assert depth.depth is Depth.LAYERED
    assert depth.single_points == ()
    # The router's policy was never met by the original search (srv dropped everything), so
    # only srv's rule was a candidate; without it the router's policy still holds.
    assert depth.examined == 1
    assert depth.note == ""


def test_the_routers_drop_alone_is_a_single_point_when_the_host_lets_everything_out() -> None:
    gw = ruleset(policies={**OPEN, "forward": "drop"}, rules=[])
    topo = topology(ruleset(policies=OPEN, rules=[]), gw)
    depth = defence_depth(topo, [outbound_question(topo)])
    assert depth.depth is Depth.SINGLE
    assert [(p.host, p.hook, p.ref) for p in depth.single_points] == [
        ("gw", Hook.FORWARD, ref("forward", "policy"))
    ]


def test_a_drop_whose_packets_fall_to_a_later_drop_of_the_same_chain_is_not_single() -> None:
    srv = ruleset(
        policies={**OPEN, "output": "drop"},
        rules=[_rule("output", 5, [_to_external(), {"drop": None}])],
    )
    topo = topology(srv, ruleset(policies=OPEN, rules=[]))
    question = outbound_question(topo)
    # Only the rule dropped packets: the policy behind it never saw any.
    assert [d.ref for d in question.answer.drops] == [ref("output", 5)]

    depth = defence_depth(topo, [question])

    assert depth.depth is Depth.LAYERED
    assert depth.examined == 1


def test_of_two_drops_only_the_one_nothing_backs_is_a_single_point() -> None:
    # TCP is dropped twice (rule 5, then rule 6); UDP and ICMP only by rule 6.
    srv = ruleset(
        policies=OPEN,
        rules=[
            _rule("output", 5, [_to_external(), _tcp(), {"drop": None}]),
            _rule("output", 6, [_to_external(), {"drop": None}]),
        ],
    )
    topo = topology(srv, ruleset(policies=OPEN, rules=[]))
    question = outbound_question(topo)

    depth = defence_depth(topo, [question])

    assert depth.depth is Depth.SINGLE
    assert [p.ref for p in depth.single_points] == [ref("output", 6)]
    assert depth.examined == 2
    assert "tcp" not in depth.single_points[0].opens.split(":", 2)[2]


def test_past_the_bound_without_a_single_point_the_depth_is_unknown() -> None:
    srv = ruleset(
        policies=OPEN,
        rules=[
            _rule("output", 5, [_to_external(), _tcp(), {"drop": None}]),
            _rule("output", 6, [_to_external(), {"drop": None}]),
        ],
    )
    topo = topology(srv, ruleset(policies=OPEN, rules=[]))

    depth = defence_depth(topo, [outbound_question(topo)], limit=1)

    assert depth.depth is Depth.UNKNOWN
    assert depth.examined == 1
    assert "1 more drop decision(s) not tried (bound: 1)" in depth.note
    assert MAX_CANDIDATES >= 2


def test_a_removal_that_makes_the_answer_unknown_is_a_single_point() -> None:
    srv = ruleset(policies=OPEN, rules=[_rule("output", 5, [_to_external(), {"drop": None}])])
    topo = topology(srv, ruleset(policies=OPEN, rules=[]), gw_collected=False)

    depth = defence_depth(topo, [outbound_question(topo)])

    assert depth.depth is Depth.SINGLE
    [point] = depth.single_points
    assert point.ref == ref("output", 5)
    assert ": uncertain:" in point.opens


def test_a_question_not_answered_no_is_not_examined() -> None:
    topo = topology(ruleset(policies=OPEN, rules=[]), ruleset(policies=OPEN, rules=[]))
    question = outbound_question(topo)
    assert question.answer.reachable is Reachability.YES
    depth = defence_depth(topo, [question])
    assert depth.depth is Depth.UNKNOWN
    assert "not answered no" in depth.note
    assert defence_depth(topo, []).depth is Depth.UNKNOWN


def test_an_answer_held_by_routing_alone_is_layered_and_says_so() -> None:
    # The router does not forward IPv4: no rule ever drops the packets.
    topo = topology(ruleset(policies=OPEN, rules=[]), ruleset(policies=OPEN, rules=[]))
    topo.hosts["gw"].forwarding[4] = False
    depth = defence_depth(topo, [outbound_question(topo)])
    assert depth.depth is Depth.LAYERED
    assert depth.examined == 0
    assert "routing or forwarding" in depth.note


def test_only_the_questions_that_met_a_drop_are_asked_again() -> None:
    srv = ruleset(policies=OPEN, rules=[_rule("output", 5, [_to_external(), {"drop": None}])])
    topo = topology(srv, ruleset(policies=OPEN, rules=[]))
    asked: list[str] = []
    held = outbound_question(topo)

    def counting(label: str, question: Question) -> Question:
        def ask(asked_of: Topology) -> ReachResult:
            asked.append(label)
            return question.ask(asked_of)

        return Question(label, ask, question.answer)

    other_answer = reach(topo, "srv", AddressSet.of(IPNetwork("10.98.3.0/24")))
    assert other_answer.drops == ()  # no route there: nothing met
    other = Question("elsewhere", lambda t: reach(t, "srv", EXTERNAL), other_answer)

    defence_depth(topo, [counting("held", held), counting("elsewhere", other)])

    assert asked == ["held"]


def test_the_removal_changes_only_a_copy() -> None:
    srv = ruleset(policies=OPEN, rules=[_rule("output", 5, [_to_external(), {"drop": None}])])
    topo = topology(srv, ruleset(policies=OPEN, rules=[]))
    question = outbound_question(topo)
    [drop] = question.answer.drops
    derived = without_drop(topo, drop)
    assert derived is not None
    assert reach(derived, "srv", EXTERNAL).reachable is Reachability.YES
    assert reach(topo, "srv", EXTERNAL).reachable is Reachability.NO
    assert topo.hosts["srv"].firewall is srv
    assert derived.hosts["gw"] is topo.hosts["gw"]


def test_a_firewall_without_a_rule_or_a_policy() -> None:
    fw = ruleset(
        policies={**OPEN, "input": "drop"},
        rules=[_rule("input", 5, [_tcp(), _dport(22), {"accept": None}])],
    )
    ssh = PacketSpace.new_connections().where(daddr=AddressSet.of(IPAddress("10.98.1.10")))
    assert fw.without("inet f/input/99") is None  # no such rule
    assert fw.without("inet f/output policy") is None  # an accept policy is no barrier
    assert Firewall.unknown().without("inet f/input policy") is None
    opened = fw.without("inet f/input policy")
    assert opened is not None and opened is fw.without("inet f/input policy")  # kept
    assert not fw.certainly_accepts(Hook.INPUT, ssh).subtract(
        PacketSpace.everything().where(proto=protos(6))
    )
    assert opened.certainly_accepts(Hook.INPUT, ssh) == opened.accepts(Hook.INPUT, ssh)
    assert opened.accepts(Hook.INPUT, ssh).subtract(fw.accepts(Hook.INPUT, ssh))
    without_ssh = fw.without("inet f/input/5")
    assert without_ssh is not None
    assert not without_ssh.accepts(Hook.INPUT, ssh)


def test_a_hook_question_on_the_routers_forward_hook() -> None:
    gw = ruleset(
        policies={**OPEN, "forward": "drop"},
        rules=[_rule("forward", 7, [_to_external(), _tcp(), {"drop": None}])],
    )
    topo = topology(ruleset(policies=OPEN, rules=[]), gw)
    space = PacketSpace.connection_attempts(families=(4,)).where(daddr=EXTERNAL)
    question = hook_question(topo, "forwarded by gw", "gw", Hook.FORWARD, space)
    assert question.answer.reachable is Reachability.NO
    assert {d.ref for d in question.answer.drops} == {ref("forward", 7), ref("forward", "policy")}

    depth = defence_depth(topo, [question])

    # TCP meets the rule then (without it) the policy; everything else only the policy.
    assert depth.depth is Depth.SINGLE
    assert [p.ref for p in depth.single_points] == [ref("forward", "policy")]
    assert depth.examined == 2


def test_an_inbound_question_counts_only_the_hosts_own_rules() -> None:
    srv = ruleset(
        policies={**OPEN, "input": "drop"},
        rules=[_rule("input", 5, [_tcp(), _dport(22), {"drop": None}])],
    )
    topo = topology(srv, ruleset(policies=OPEN, rules=[]))
    ssh = PacketSpace.new_connections().where(proto=protos(6))

    def ask(asked: Topology) -> ReachResult:
        return inbound(asked, "srv", "lan", ssh)

    question = Question("ssh into srv from lan", ask, ask(topo))
    assert question.answer.reachable is Reachability.NO

    depth = defence_depth(topo, [question])

    # Port 22 is dropped by the rule and, without it, by the policy; other TCP ports only by
    # the policy.
    assert depth.depth is Depth.SINGLE
    assert [(p.host, p.hook, p.ref) for p in depth.single_points] == [
        ("srv", Hook.INPUT, ref("input", "policy"))
    ]


def test_opens_is_one_line_of_bounded_width() -> None:
    # Many scattered destinations: the description of what gets through is long.
    scattered = AddressSet.of(*[IPAddress(f"10.98.2.{n}") for n in range(2, 250, 3)])
    topo = topology(ruleset(policies={**OPEN, "output": "drop"}, rules=[]), ruleset(
        policies=OPEN, rules=[]))  # fmt: skip
    result = reach(without_drop(topo, reach(topo, "srv", scattered).drops[0]) or topo, "srv",
                   scattered)  # fmt: skip
    assert result.reachable is Reachability.YES
    short = opens_summary("to scattered hosts", result)
    assert short.startswith("to scattered hosts: certain: IPv4 tcp,udp from 10.98.1.10/32 to ")
    assert short.endswith(" (+1 more)")  # ICMP echo: the second packet class
    long_label = "to scattered hosts " + "of a long-named segment " * 6
    cut = opens_summary(long_label, result)
    assert "\n" not in cut
    assert len(cut) == OPENS_WIDTH
    assert cut.endswith("… (+1 more)")
