"""Defence depth in the findings of the no-path controls, judged from the recorded lab runs
(tests/data/contexts): real rule sets, real topology, the checks as an audit runs them."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest

from auditor.domain.findings import Finding, Status
from policies.registry import evaluate_all
from policies.snapshot import Observations, restore_context
from tests.lab_scenarios import SCENARIOS, recording

NO_PATH_CONTROLS = (
    "recv-no-outbound",
    "send-no-inbound",
    "proc-egress-only-via-gateways",
    "unauthorized-access-prevention",
)


def judged(
    scenario: str, observations: Observations | None = None
) -> dict[tuple[str, str], Finding]:
    inventory, recorded = recording(scenario)
    findings = evaluate_all(restore_context(inventory, observations or recorded))
    return {(f.control, f.subject): f for f in findings}


def with_output_chain(scenario: str, host: str, *, policy: str, last_rule: str) -> Observations:
    """The recording with ``host``'s output chain given ``policy`` and a final rule whose
    only statement is ``last_rule`` ("drop", "accept")."""
    _, observations = recording(scenario)
    attempt = observations.collection[host]
    assert attempt.value is not None and attempt.value.nftables is not None
    document: dict[str, Any] = copy.deepcopy(attempt.value.nftables)
    for item in document["nftables"]:
        chain = item.get("chain")
        if chain and chain["name"] == "output":
            chain["policy"] = policy
    rule = {"family": "inet", "table": "filter", "chain": "output", "handle": 999}
    document["nftables"].append({"rule": {**rule, "expr": [{last_rule: None}]}})
    facts = attempt.value.model_copy(update={"nftables": document})
    collection = {**observations.collection, host: dataclasses.replace(attempt, value=facts)}
    return dataclasses.replace(observations, collection=collection)


@pytest.fixture(scope="module")
def baseline() -> dict[tuple[str, str], Finding]:
    return judged("baseline")


def test_the_receiving_server_is_held_by_its_output_policy_alone(
    baseline: dict[tuple[str, str], Finding],
) -> None:
    finding = baseline[("recv-no-outbound", "recv-srv")]
    assert finding.status is Status.PASS
    assert finding.defence is not None
    assert finding.defence.depth == "single"
    [point] = finding.defence.single_points
    assert (point.host, point.rule, point.rule_ref) == (
        "recv-srv",
        "policy drop",
        "inet filter/output policy",
    )
    assert point.opens.startswith("new connections from recv-srv to external networks: ")


def test_the_sending_server_is_held_by_its_input_policy_alone(
    baseline: dict[tuple[str, str], Finding],
) -> None:
    defence = baseline[("send-no-inbound", "send-srv")].defence
    assert defence is not None and defence.depth == "single"
    assert [(p.host, p.rule_ref) for p in defence.single_points] == [
        ("send-srv", "inet filter/input policy")
    ]
    assert "accepted by send-srv" in defence.single_points[0].opens


def test_the_processing_server_rests_on_routing_which_is_not_counted(
    baseline: dict[tuple[str, str], Finding],
) -> None:
    defence = baseline[("proc-egress-only-via-gateways", "proc-srv")].defence
    assert defence is not None
    assert (defence.depth, defence.examined, defence.single_points) == ("layered", 0, [])
    assert "routing or forwarding" in defence.note


def test_listener_exposure_names_the_rule_keeping_undeclared_networks_out(
    baseline: dict[tuple[str, str], Finding],
) -> None:
    defence = baseline[("unauthorized-access-prevention", "proc-srv")].defence
    assert defence is not None and defence.depth == "single"
    [point] = defence.single_points
    assert point.rule_ref == "inet filter/input policy"
    assert " on proc-srv from " in point.opens


def test_a_catch_all_drop_before_a_drop_policy_is_a_second_layer() -> None:
    observations = with_output_chain("baseline", "recv-srv", policy="drop", last_rule="drop")
    finding = judged("baseline", observations)[("recv-no-outbound", "recv-srv")]
    assert finding.status is Status.PASS
    assert finding.defence is not None
    assert finding.defence.depth == "layered"
    assert finding.defence.examined == 1  # the rule; the policy behind it saw no packet


def test_a_catch_all_drop_before_an_accept_policy_is_the_single_point() -> None:
    observations = with_output_chain("baseline", "recv-srv", policy="accept", last_rule="drop")
    finding = judged("baseline", observations)[("recv-no-outbound", "recv-srv")]
    assert finding.defence is not None and finding.defence.depth == "single"
    assert [p.rule_ref for p in finding.defence.single_points] == ["inet filter/output/999"]
    assert finding.defence.single_points[0].rule == "drop"


def test_a_model_fail_has_no_defence() -> None:
    observations = with_output_chain("baseline", "recv-srv", policy="drop", last_rule="accept")
    finding = judged("baseline", observations)[("recv-no-outbound", "recv-srv")]
    assert finding.model is not None and finding.model.status is Status.FAIL
    assert finding.defence is None


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_defence_is_given_exactly_for_model_passes_of_the_no_path_controls(
    scenario: str,
) -> None:
    for (control, subject), finding in judged(scenario).items():
        model_passed = finding.model is not None and finding.model.status is Status.PASS
        if finding.defence is not None:
            assert control in NO_PATH_CONTROLS and model_passed, (control, subject)
        elif control in ("recv-no-outbound", "send-no-inbound") and model_passed:
            pytest.fail(f"{scenario}: {control} {subject} passed on the model without a defence")
