"""unauthorized-access-prevention: default-deny and listener exposure on rule sets and sockets
recorded from the lab (baseline, remote-control, send-inbound), and the scan side."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from auditor.domain.attempts import Attempt, ErrorReason
from auditor.domain.facts import HostFacts
from auditor.domain.findings import Status
from auditor.domain.inventory import load_inventory
from policies.checks import unauthorized_access_prevention as access
from policies.context import AuditContext
from policies.empirical import OpenPort, ScanObservation
from policies.model import load_controls
from topology.firewall import Firewall
from topology.graph import Topology

DATA = Path(__file__).parents[2] / "data"
HOSTCONTROLS = DATA / "hostcontrols"
CONTROL = load_controls()["unauthorized-access-prevention"]
ORGANISATION = ["recv-srv", "proc-srv", "send-srv", "term-1", "term-2"]


def lab_facts(scenario: str, host: str) -> HostFacts:
    return HostFacts.model_validate_json((HOSTCONTROLS / scenario / f"{host}.json").read_text())


def lab_context(scenario: str) -> AuditContext:
    inventory = load_inventory(HOSTCONTROLS / scenario / "inventory.yaml")
    facts = {p.stem: lab_facts(scenario, p.stem) for p in (HOSTCONTROLS / scenario).glob("*.json")}
    return AuditContext(
        inventory=inventory,
        collection={h: Attempt.ok("ssh-host", h, f, []) for h, f in facts.items()},
        topology=Topology.build(inventory, facts),
    )


def model_verdicts(ctx: AuditContext) -> dict[str, Status]:
    return {h: access.model_side(ctx, h).judgement.status for h in ORGANISATION}


def with_input_policy(ruleset: dict[str, Any], policy: str) -> dict[str, Any]:
    changed = copy.deepcopy(ruleset)
    for item in changed["nftables"]:
        chain = item.get("chain")
        if chain and chain.get("hook") == "input":
            chain["policy"] = policy
    return changed


# -- default-deny -------------------------------------------------------------------------------


def test_recorded_lab_rulesets_are_default_deny_in_both_families() -> None:
    ruleset = lab_facts("baseline", "proc-srv").nftables
    assert ruleset is not None
    firewall = Firewall.from_nft_json(ruleset)
    for family in (4, 6):
        judgement = access.default_deny(firewall, family)
        assert judgement.status is Status.PASS, judgement.detail
        assert "policy drop" in judgement.detail


def test_policy_accept_is_not_default_deny_and_names_the_policy() -> None:
    ruleset = lab_facts("baseline", "send-srv").nftables
    assert ruleset is not None
    judgement = access.default_deny(Firewall.from_nft_json(with_input_policy(ruleset, "accept")), 6)
    assert judgement.status is Status.FAIL
    assert "IPv6 input is not default-deny" in judgement.detail
    assert "policy accept" in judgement.detail


def test_a_final_catch_all_drop_is_default_deny_and_no_ruleset_is_not() -> None:
    ruleset = lab_facts("baseline", "term-1").nftables
    assert ruleset is not None
    opened = with_input_policy(ruleset, "accept")
    handle = max(int(i["rule"]["handle"]) for i in opened["nftables"] if "rule" in i) + 1
    opened["nftables"].append({"rule": {"family": "inet", "table": "filter", "chain": "input",
                                        "handle": handle, "expr": [{"drop": None}]}})  # fmt: skip
    assert access.default_deny(Firewall.from_nft_json(opened), 4).status is Status.PASS
    empty = json.loads((DATA / "nft" / "empty.json").read_text())
    judgement = access.default_deny(Firewall.from_nft_json(empty), 4)
    assert judgement.status is Status.FAIL and "no base chain" in judgement.detail
    assert access.default_deny(Firewall.unknown(), 4).status is Status.INCONCLUSIVE


# -- listeners against the inventory ------------------------------------------------------------


def test_baseline_model_passes_every_host() -> None:
    ctx = lab_context("baseline")
    assert model_verdicts(ctx) == dict.fromkeys(ORGANISATION, Status.PASS)
    detail = access.model_side(ctx, "recv-srv").judgement.detail
    assert "each declared in the inventory" in detail


def test_remote_control_vnc_reachable_from_term_lan_is_named() -> None:
    ctx = lab_context("remote-control")
    assert model_verdicts(ctx) == {
        **dict.fromkeys(ORGANISATION, Status.PASS),
        "proc-srv": Status.FAIL,
    }
    side = access.model_side(ctx, "proc-srv")
    assert (
        "tcp/5900 (Xtigervnc on 0.0.0.0) reachable from term-lan, declared for nothing"
        in side.judgement.detail
    )
    assert side.path and side.path[-1].host == "proc-srv"
    assert any("5900" in (hop.rule or "") for hop in side.path)


def test_send_inbound_web_server_reachable_from_carrier_out_is_named() -> None:
    ctx = lab_context("send-inbound")
    assert model_verdicts(ctx) == {
        **dict.fromkeys(ORGANISATION, Status.PASS),
        "send-srv": Status.FAIL,
    }
    detail = access.model_side(ctx, "send-srv").judgement.detail
    assert "tcp/8443" in detail and "reachable from carrier-out, declared for nothing" in detail


def test_missing_listeners_make_the_model_inconclusive() -> None:
    ctx = lab_context("baseline")
    facts = lab_facts("baseline", "term-1").model_copy(
        update={"listeners": None, "errors": {"listeners": "timeout: ss did not finish"}}
    )
    ctx.collection["term-1"] = Attempt.ok("ssh-host", "term-1", facts, [])
    side = access.model_side(ctx, "term-1")
    assert side.judgement.status is Status.INCONCLUSIVE
    assert "listeners (timeout: ss did not finish)" in side.judgement.detail


# -- scans --------------------------------------------------------------------------------------


def scans(ctx: AuditContext, extra: dict[str, list[OpenPort]]) -> None:
    """Scans of every network from the auditor's address there, as the orchestrator records
    them: the declared sshd open where the firewall admits it, plus ``extra``."""
    for network, definition in ctx.inventory.networks.items():
        targets = tuple(
            str(a) for h in ORGANISATION for a in ctx.inventory.hosts[h].addresses.get(network, [])
        )
        open_ports = list(extra.get(network, []))
        ctx.scans[network] = Attempt.ok("scan", network, ScanObservation(
            network=network, vantage=f"local {definition.auditor.ipv4 if definition.auditor else '?'}",
            targets=targets, open_ports=tuple(open_ports), evidence=("sha256:" + "0" * 64,)), [])  # fmt: skip


def test_scan_side_passes_declared_ports_and_fails_undeclared_ones() -> None:
    ctx = lab_context("baseline")
    sshd = [OpenPort("10.98.30.30", "tcp", 22, "open"), OpenPort("10.98.30.41", "tcp", 22, "open")]
    scans(ctx, {"term-lan": sshd})
    assert access.scan_side(ctx, "proc-srv").judgement.status is Status.PASS
    scans(ctx, {"term-lan": [*sshd, OpenPort("10.98.30.30", "tcp", 5900, "open", "vnc")]})
    side = access.scan_side(ctx, "proc-srv")
    assert side.judgement.status is Status.FAIL
    assert "tcp/5900 open on 10.98.30.30 from local 10.98.30.1 (term-lan)" in side.judgement.detail
    assert side.evidence


def test_a_network_without_a_scan_is_inconclusive_and_the_finding_combines_both() -> None:
    ctx = lab_context("remote-control")
    assert access.scan_side(ctx, "proc-srv").judgement.status is Status.INCONCLUSIVE
    scans(ctx, {})
    ctx.scans["line-send"] = Attempt.failed(
        "scan", "line-send", ErrorReason.TOOL_MISSING, "nmap absent"
    )
    side = access.scan_side(ctx, "proc-srv")
    assert (
        side.judgement.status is Status.INCONCLUSIVE
        and "line-send: nmap absent" in side.judgement.detail
    )
    findings = {f.subject: f for f in access.check(ctx, CONTROL)}
    assert findings["proc-srv"].status is Status.FAIL  # the model's fail stands alone
    assert findings["term-1"].status is Status.PASS
    assert findings["recv-srv"].status is Status.PASS


@pytest.mark.parametrize("scenario", ["baseline", "send-inbound"])
def test_full_verdicts_with_scans_agreeing_with_the_model(scenario: str) -> None:
    ctx = lab_context(scenario)
    extra = (
        {"carrier-out": [OpenPort("10.98.11.20", "tcp", 8443, "open")]}
        if scenario == "send-inbound"
        else {}
    )
    scans(ctx, extra)
    statuses = {f.subject: f.status for f in access.check(ctx, CONTROL)}
    failing = {"send-srv"} if scenario == "send-inbound" else set()
    assert statuses == {h: Status.FAIL if h in failing else Status.PASS for h in ORGANISATION}
