"""OSCAL assessment results (1.1.3), validated with compliance-trestle's OSCAL 1.1.x models and
against NIST's official 1.2.1 JSON schema (the document is valid in both)."""

from __future__ import annotations

import copy
import hashlib
import json
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from auditor.report import render_reports
from auditor.report.oscal import NS, OSCAL_FILE, OSCAL_VERSION, referenced_hashes
from auditor.report.run import load_run

SCHEMA = Path(__file__).parent / "data" / "oscal_assessment-results_schema.json"
SCHEMA_SHA256 = "d8faf5a7510d66c911c5f88e6875d52e7e8223fb58b2283f1f095366369296f9"
SCHEMA_VERSION = "1.2.1"
REPO = Path(__file__).resolve().parents[3]
#: compliance-trestle's interpreter, in a venv of its own (Makefile: oscal-validator).
TRESTLE_PYTHON = REPO / ".venv-oscal" / "bin" / "python"
TRESTLE_CHECK = Path(__file__).parent / "oscal_trestle_check.py"


@cache
def validator() -> Any:
    return jsonschema_rs.validator_for(json.loads(SCHEMA.read_text(encoding="utf-8")))


def errors(document: dict[str, Any]) -> list[str]:
    return [f"{list(e.instance_path)}: {e.message}" for e in validator().iter_errors(document)]


def load(run_dir: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((run_dir / OSCAL_FILE).read_text(encoding="utf-8"))
    return document


def trestle_errors(*paths: Path) -> dict[str, list[str]]:
    """Each file's errors according to compliance-trestle's OSCAL 1.1.x models."""
    assert TRESTLE_PYTHON.exists(), f"{TRESTLE_PYTHON} is missing: run `make setup`"
    done = subprocess.run(
        [str(TRESTLE_PYTHON), str(TRESTLE_CHECK), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr
    found: dict[str, list[str]] = json.loads(done.stdout)
    return found


def test_the_vendored_schema_is_the_official_one() -> None:
    assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() == SCHEMA_SHA256
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    assert schema["$id"] == f"http://csrc.nist.gov/ns/oscal/{SCHEMA_VERSION}/oscal-ar-schema.json"


@pytest.mark.parametrize("which", ["baseline_run", "failing_run"])
def test_the_document_is_valid_oscal(which: str, request: pytest.FixtureRequest) -> None:
    run_dir = request.getfixturevalue(which)
    document = load(run_dir)
    assert document["assessment-results"]["metadata"]["oscal-version"] == OSCAL_VERSION == "1.1.3"
    assert trestle_errors(run_dir / OSCAL_FILE) == {str(run_dir / OSCAL_FILE): []}
    assert errors(document) == []


def test_the_trestle_models_do_reject_a_broken_or_foreign_document(
    failing_run: Path, tmp_path: Path
) -> None:
    """The 1.1.x check above could fail: an unknown field, a missing required part, a property
    namespace that is no URL and a document of another OSCAL version are each refused."""
    document = load(failing_run)
    cases: dict[str, tuple[str, dict[str, Any]]] = {}
    for name, expected in [
        ("unknown-field", "extra fields not permitted"),
        ("missing-import-ap", "import-ap"),
        ("urn-namespace", "URL scheme"),
        ("version-1.2.1", "oscal-version '1.2.1'"),
    ]:
        cases[name] = (expected, copy.deepcopy(document))
    cases["unknown-field"][1]["assessment-results"]["results"][0]["no-such-field"] = 1
    del cases["missing-import-ap"][1]["assessment-results"]["import-ap"]
    cases["urn-namespace"][1]["assessment-results"]["metadata"]["props"][0]["ns"] = "urn:x:y"
    cases["version-1.2.1"][1]["assessment-results"]["metadata"]["oscal-version"] = "1.2.1"
    paths = {}
    for name, (_expected, broken) in cases.items():
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(broken), encoding="utf-8")
    found = trestle_errors(*paths.values())
    for name, (expected, _broken) in cases.items():
        assert any(expected in e for e in found[str(paths[name])]), (name, found[str(paths[name])])


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
    assert {"name": "verdict", "ns": NS, "value": "inconclusive"} in (unsure["props"])
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
