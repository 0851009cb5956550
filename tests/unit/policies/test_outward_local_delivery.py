"""proc-egress-only-via-gateways and recv-no-outbound when a host routes through a gateway
that does not route (docs/controls.md, "What counts as outside"), on the lab model.

A connection to the gateway's own address on an external network is delivered to the gateway
over the protected line (Linux's weak host model) and never crosses that network: not outward.
A gateway that forwards is (a packet that really crosses an external segment to an
organisation host's address there: tests/unit/topology/test_reach_local_delivery.py).
"""

from __future__ import annotations

import copy
from typing import Any

from auditor.domain.attempts import Attempt
from auditor.domain.facts import HostFacts, Route
from auditor.domain.findings import Finding, Status
from policies.checks import proc_egress_only_via_gateways as proc_check
from policies.checks import recv_no_outbound as recv_check
from policies.context import AuditContext
from policies.empirical import EgressAttempt, EgressObservation
from policies.model import load_controls
from policies.support.paths import inside_segments, model_inbound, outside_segments
from tests.unit.topology import lab_model as lab
from tests.unit.topology.topo_helpers import ruleset
from topology.graph import Topology

CONTROLS = load_controls()
PROC = CONTROLS["proc-egress-only-via-gateways"]
RECV = CONTROLS["recv-no-outbound"]


def quiet_egress(host: str) -> Attempt[EgressObservation]:
    """An egress test that saw nothing leave (the probe side passes)."""
    observation = EgressObservation(
        host,
        ("carrier-in", "carrier-out", "inet", "office"),
        (EgressAttempt("tcp", lab.v4("carrier-out", 1), 443, True, "timeout"),),
    )
    return Attempt.ok("egress", host, observation, [])


def context(*facts: HostFacts, extra: dict[str, dict[str, int]] | None = None) -> AuditContext:
    inventory = lab.inventory(extra)
    by_host = {f.host: f for f in facts}
    return AuditContext(
        inventory=inventory,
        collection={h: Attempt.ok("ssh-host", h, f, []) for h, f in by_host.items()},
        topology=Topology.build(inventory, by_host),
        egress={h: quiet_egress(h) for h in ("recv-srv", "proc-srv")},
    )


def only(findings: list[Finding], subject: str) -> Finding:
    (found,) = [f for f in findings if f.subject == subject]
    return found


def default_via(network: str, octet: int, device: str) -> list[Route]:
    return lab.default_routes(lab.v4(network, octet), lab.v6(network, octet), device)


def send_srv_forwarding() -> HostFacts:
    """send-srv with forwarding on and a forward chain accepting everything."""
    return lab.send_srv("open", forwarding=True)


# -- proc-egress-only-via-gateways -------------------------------------------------------------


def test_inside_segments_are_the_protected_networks() -> None:
    ctx = context(lab.proc_srv())
    assert inside_segments(ctx) == {"line-recv", "line-send", "term-lan"}


def test_proc_srv_routing_via_a_non_forwarding_send_srv_does_not_fail() -> None:
    # send-srv's input accepts SSH from line-send on every one of its addresses, its
    # carrier-out address included; its forward chain drops everything, forwarding is off.
    ctx = context(lab.proc_srv(routes=default_via("line-send", 20, "eth1")), lab.send_srv())
    finding = only(proc_check.check(ctx, PROC), "proc-srv")
    assert finding.model is not None
    assert finding.model.status is Status.PASS, finding.model.detail
    assert finding.status is not Status.FAIL
    assert finding.status is Status.PASS  # the probe saw nothing either
    assert finding.path == []


def test_proc_srv_routing_via_a_forwarding_send_srv_fails() -> None:
    ctx = context(lab.proc_srv(routes=default_via("line-send", 20, "eth1")), send_srv_forwarding())
    finding = only(proc_check.check(ctx, PROC), "proc-srv")
    assert finding.status is Status.FAIL
    assert finding.model is not None and finding.model.status is Status.FAIL
    assert "reach external networks" in finding.model.detail
    hops = [(h.host, h.network, h.direction) for h in finding.path]
    assert ("send-srv", "carrier-out", "forward") in hops
    assert hops[-1] == ("send-srv", "carrier-out", "link")


# -- recv-no-outbound: the same rule ----------------------------------------------------------


def recv_output_to_line_recv_only() -> dict[str, Any]:
    """The baseline recv-srv rule set plus ``oifname "eth1" accept`` in output: it may open
    connections on line-recv (toward proc-srv), nowhere else."""
    document = copy.deepcopy(ruleset("recv-srv"))
    rule = {
        "family": "inet",
        "table": "filter",
        "chain": "output",
        "handle": 900,
        "expr": [
            {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "eth1"}},
            {"accept": None},
        ],
    }
    document["nftables"].append({"rule": rule})
    return document


def recv_via_proc(proc_forwarding: bool) -> AuditContext:
    """recv-srv routes everything via proc-srv's line-recv address; proc-srv is also on the
    office LAN, accepts everything on input and forwards when asked."""
    recv = lab.recv_srv(routes=default_via("line-recv", 30, "eth1"))
    recv = recv.model_copy(update={"nftables": recv_output_to_line_recv_only()})
    ifaces = [
        lab.interface("eth0", "line-recv", 30),
        lab.interface("eth1", "line-send", 30),
        lab.interface("eth2", "term-lan", 30),
        lab.interface("eth3", "office", 30),
    ]
    proc = lab.facts("proc-srv", "open", ifaces, forwarding=proc_forwarding)
    return context(recv, proc, extra={"proc-srv": {"office": 30}})


def test_recv_srv_reaching_proc_srvs_office_address_over_the_line_does_not_fail() -> None:
    finding = only(recv_check.check(recv_via_proc(False), RECV), "recv-srv")
    assert finding.model is not None
    assert finding.model.status is Status.PASS, finding.model.detail
    assert finding.status is Status.PASS


def test_recv_srv_through_a_forwarding_proc_srv_fails() -> None:
    finding = only(recv_check.check(recv_via_proc(True), RECV), "recv-srv")
    assert finding.status is Status.FAIL
    assert finding.path[-1].host == "proc-srv"
    assert (finding.path[-1].network, finding.path[-1].direction) == ("office", "link")


# -- send-no-inbound: a certain fail is not hidden by an earlier undecided segment -----------


def _send_srv_inbound(unsure_on: str, open_on: str) -> HostFacts:
    """send-srv whose input may accept anything on ``unsure_on`` (a match the engine cannot
    read) and certainly accepts everything on ``open_on``."""
    table = {"family": "inet", "table": "f"}
    chain = {**table, "name": "input", "type": "filter", "hook": "input", "prio": 0}
    iif: dict[str, Any] = {"meta": {"key": "iifname"}}
    unreadable = {"xt": {"type": "match", "name": "recent"}}

    def rule(handle: int, *expr: dict[str, Any]) -> dict[str, Any]:
        return {"rule": {**table, "chain": "input", "handle": handle, "expr": list(expr)}}

    doc = {
        "nftables": [
            {"table": {"family": "inet", "name": "f"}},
            {"chain": {**chain, "policy": "drop"}},
            rule(1, {"match": {"op": "==", "left": iif, "right": unsure_on}}, unreadable,
                 {"accept": None}),
            rule(2, {"match": {"op": "==", "left": iif, "right": open_on}}, {"accept": None}),
        ]
    }  # fmt: skip
    return lab.send_srv().model_copy(update={"nftables": copy.deepcopy(doc)})


def test_send_no_inbound_fails_on_a_later_segment_after_an_undecided_one() -> None:
    ctx = context(_send_srv_inbound(unsure_on="eth1", open_on="wg-out"))
    segments = outside_segments(ctx, "send-srv")
    assert segments.index("carrier-out") < segments.index("wg-out")
    side = model_inbound(ctx, "send-srv")
    assert side.judgement.status is Status.FAIL, side.judgement.detail
    assert "wg-out" in side.judgement.detail
    # Alone, the undecided segment leaves the model side inconclusive (never a pass).
    alone = model_inbound(context(_send_srv_inbound(unsure_on="eth1", open_on="none")), "send-srv")
    assert alone.judgement.status is Status.INCONCLUSIVE
