"""OSCAL assessment results, validated against NIST's official JSON schema."""

from __future__ import annotations

import copy
import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from auditor.report import render_reports
from auditor.report.oscal import OSCAL_FILE, OSCAL_VERSION, referenced_hashes
from auditor.report.run import load_run

SCHEMA = Path(__file__).parent / "data" / "oscal_assessment-results_schema.json"
SCHEMA_SHA256 = "d8faf5a7510d66c911c5f88e6875d52e7e8223fb58b2283f1f095366369296f9"


@cache
def validator() -> Any:
    return jsonschema_rs.validator_for(json.loads(SCHEMA.read_text(encoding="utf-8")))


def errors(document: dict[str, Any]) -> list[str]:
    return [f"{list(e.instance_path)}: {e.message}" for e in validator().iter_errors(document)]


def load(run_dir: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((run_dir / OSCAL_FILE).read_text(encoding="utf-8"))
    return document


def test_the_vendored_schema_is_the_official_one_of_our_version() -> None:
    assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() == SCHEMA_SHA256
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    assert schema["$id"] == f"http://csrc.nist.gov/ns/oscal/{OSCAL_VERSION}/oscal-ar-schema.json"


@pytest.mark.parametrize("which", ["baseline_run", "failing_run"])
def test_the_document_is_valid_oscal(which: str, request: pytest.FixtureRequest) -> None:
    document = load(request.getfixturevalue(which))
    assert errors(document) == []
    assert document["assessment-results"]["metadata"]["oscal-version"] == OSCAL_VERSION


def test_the_validator_does_reject_a_broken_document(failing_run: Path) -> None:
    """The check above could fail: a document missing required parts is refused."""
    document = load(failing_run)
    broken = copy.deepcopy(document)
    del broken["assessment-results"]["import-ap"]
    broken["assessment-results"]["results"][0]["findings"][0]["target"]["type"] = "no such"
    broken["assessment-results"]["uuid"] = "not-a-uuid"
    found = errors(broken)
    assert any("import-ap" in e for e in found)
    assert any("uuid" in e for e in found)


def test_every_artifact_is_an_observation_pointing_at_its_object(failing_run: Path) -> None:
    document = load(failing_run)
    run = load_run(failing_run)
    observations = document["assessment-results"]["results"][0]["observations"]
    assert len(observations) == len(run.artifacts)
    for observation, record in zip(observations, run.artifacts, strict=True):
        evidence = observation["relevant-evidence"][0]
        target = failing_run / evidence["href"]
        assert hashlib.sha256(target.read_bytes()).hexdigest() == record.sha256
        assert record.ref in evidence["description"]
    assert referenced_hashes(document) == {r.sha256 for r in run.artifacts}


def test_findings_carry_verdicts_and_link_their_evidence(failing_run: Path) -> None:
    result = load(failing_run)["assessment-results"]["results"][0]
    run = load_run(failing_run)
    findings = result["findings"]
    assert len(findings) == len(run.findings)
    observation_uuids = {o["uuid"] for o in result["observations"]}
    by_title = {f["title"]: f for f in findings}
    failed = by_title["recv-no-outbound: recv-srv"]
    assert failed["target"]["status"]["state"] == "not-satisfied"
    assert failed["target"]["target-id"] == "recv-no-outbound"
    related = {r["observation-uuid"] for r in failed["related-observations"]}
    assert related and related <= observation_uuids
    assert "default via 10.98.10.1 dev eth0" in failed["description"]
    unsure = by_title["links-encrypted: send-srv"]
    assert {"name": "verdict", "ns": "urn:anon-infra-auditor:oscal", "value": "inconclusive"} in (
        unsure["props"]
    )
    assert unsure["target"]["status"]["state"] == "not-satisfied"
    passed = by_title["send-separate-host: send-srv"]
    assert passed["target"]["status"] == {
        "state": "satisfied",
        "reason": "pass",
        "remarks": "verdict: pass",
    }


def test_uuids_are_stable_across_renders(failing_run: Path) -> None:
    first = load(failing_run)
    render_reports(failing_run)
    assert load(failing_run) == first
