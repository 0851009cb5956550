"""Every control judged offline on what the audit observed on the live lab, scenario by scenario.

tests/data/contexts/<scenario>/ holds the lab's inventory and the observations of a real audit
of that scenario (recorded by tests/data/contexts/record.py). Here the topology is rebuilt from
the recorded facts and every control judged: exactly the scenario's ``expect.fail`` pairs must
fail and nothing may be inconclusive, the lab matrix's rule (tests/lab/test_audit_matrix.py),
but in seconds and without the lab. The tests after the matrix show that the rule bites: take
away one observation and the verdict it supported cannot stand.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache

import pytest

from auditor.domain.attempts import Attempt, ErrorReason
from auditor.domain.findings import Finding, Status
from auditor.domain.inventory import Inventory
from policies.registry import evaluate_all
from policies.snapshot import Observations, restore_context
from tests.data.contexts.rejudge import judged_text, stored_text
from tests.lab_scenarios import (
    RECORDING_FILE,
    RECORDINGS,
    SCENARIOS,
    expected_failures,
    mismatch,
    recording,
    undecided_mismatch,
    verdicts_of,
)


@cache
def recorded(scenario: str) -> tuple[Inventory, Observations]:
    """Read once per session (the observations are never edited in place, only copied)."""
    return recording(scenario)


def judge(scenario: str, observations: Observations | None = None) -> list[Finding]:
    """Every control on the scenario's recording (or on an edited copy of its observations)."""
    inventory, kept = recorded(scenario)
    return evaluate_all(restore_context(inventory, kept if observations is None else observations))


def finding(findings: list[Finding], control: str, subject: str) -> Finding:
    matches = [f for f in findings if (f.control, f.subject) == (control, subject)]
    assert len(matches) == 1, f"{len(matches)} findings for {control} {subject}"
    return matches[0]


def as_json(findings: list[Finding]) -> list[dict[str, object]]:
    return [f.model_dump(mode="json") for f in findings]


def test_every_lab_scenario_has_a_recording() -> None:
    missing = [s for s in SCENARIOS if not (RECORDINGS / s / RECORDING_FILE).is_file()]
    assert missing == [], "record them: see tests/data/contexts/README.md"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_recorded_audit_fails_exactly_the_expected_pairs(scenario: str) -> None:
    verdicts = verdicts_of(as_json(judge(scenario)))
    assert undecided_mismatch(scenario, verdicts) is None
    assert verdicts.failed == expected_failures(scenario)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_network_controls_rest_on_the_recorded_observations(scenario: str) -> None:
    """The recording holds the network phases' results, not only the facts: every scenario's
    run made egress tests, scans, captures and discovery sweeps, all of which succeeded."""
    _, observations = recorded(scenario)
    for kind in ("egress", "scans", "links", "discovery"):
        attempts: dict[str, Attempt[object]] = getattr(observations, kind)
        assert attempts, f"no {kind} observation in {scenario}"
        failed = {n: a.error for n, a in attempts.items() if not a.succeeded}
        assert failed == {}, f"{kind} in {scenario}"


# -- the rule bites ---------------------------------------------------------------------------


def test_the_rule_catches_a_scenario_judged_against_another_ones_expectations() -> None:
    verdicts = verdicts_of(as_json(judge("recv-egress")))
    assert mismatch("recv-egress", verdicts) is None
    assert mismatch("baseline", verdicts) == (
        "baseline: unexpected fail: [('recv-no-outbound', 'recv-srv')]"
    )


def test_without_the_egress_test_the_receiving_server_cannot_pass() -> None:
    """Baseline: the model says recv-srv cannot send outward, but a pass needs the probe too."""
    _, observations = recorded("baseline")
    egress = {h: a for h, a in observations.egress.items() if h != "recv-srv"}
    judged = judge("baseline", replace(observations, egress=egress))
    outcome = finding(judged, "recv-no-outbound", "recv-srv")
    assert outcome.status is Status.INCONCLUSIVE
    assert outcome.reason is not None and "no egress test was made" in outcome.reason
    assert finding(judge("baseline"), "recv-no-outbound", "recv-srv").status is Status.PASS


def test_without_the_egress_test_an_open_receiving_server_still_fails_on_its_model() -> None:
    """recv-egress: a fail from either side fails, so the model alone keeps the fail; the probe
    side shows it is missing instead of showing a clean result."""
    _, observations = recorded("recv-egress")
    egress = {h: a for h, a in observations.egress.items() if h != "recv-srv"}
    outcome = finding(
        judge("recv-egress", replace(observations, egress=egress)), "recv-no-outbound", "recv-srv"
    )
    assert outcome.status is Status.FAIL
    assert outcome.model is not None and outcome.model.status is Status.FAIL
    assert outcome.empirical is not None and outcome.empirical.status is Status.INCONCLUSIVE


def test_a_failed_collection_makes_the_terminal_control_inconclusive_with_its_reason() -> None:
    _, observations = recorded("terminal-usb")
    collection = dict(observations.collection)
    collection["term-2"] = Attempt.failed(
        "ssh-host", "term-2", ErrorReason.TIMEOUT, "no answer within 30 s"
    )
    judged = judge("terminal-usb", replace(observations, collection=collection))
    outcome = finding(judged, "terminal-removable-media-blocked", "term-2")
    assert outcome.status is Status.INCONCLUSIVE
    assert outcome.reason is not None and "no answer within 30 s" in outcome.reason


def test_a_failed_discovery_sweep_leaves_the_rogue_device_undecided_not_passed() -> None:
    _, observations = recorded("rogue-device")
    discovery = dict(observations.discovery)
    discovery["line-recv"] = Attempt.failed(
        "discovery", "line-recv", ErrorReason.NOT_PERMITTED, "raw sockets refused"
    )
    judged = judge("rogue-device", replace(observations, discovery=discovery))
    assert finding(judged, "inventory-complete", "line-recv").status is Status.INCONCLUSIVE


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_recorded_contexts_judge_to_their_stored_findings(scenario: str) -> None:
    """Byte for byte what tests/data/contexts/rejudge.py --write last kept: a refactor that
    means to change nothing shows here that it changed nothing."""
    assert judged_text(scenario) == stored_text(scenario), (
        f"{scenario}: findings changed; if meant, run tests/data/contexts/rejudge.py --write"
    )


def test_a_control_whose_subjects_the_inventory_lacks_is_not_applicable_not_left_out() -> None:
    """The baseline without its sending server: send-no-inbound and send-separate-host have
    nobody to judge, so each says so once; the receiving server is judged as before."""
    inventory, observations = recorded("baseline")
    hosts = {n: h for n, h in inventory.hosts.items() if n != "send-srv"}
    without_sender = inventory.model_copy(update={"hosts": hosts})
    collection = {h: a for h, a in observations.collection.items() if h != "send-srv"}
    judged = evaluate_all(
        restore_context(without_sender, replace(observations, collection=collection))
    )
    for control in ("send-no-inbound", "send-separate-host"):
        outcome = finding(judged, control, "(no sending host)")
        assert outcome.status is Status.NOT_APPLICABLE
        assert outcome.summary == "not applicable: the inventory has no sending host"
    assert finding(judged, "recv-no-outbound", "recv-srv").status is Status.PASS
