"""The seal of an audit's run folder: findings.json, facts.json, observations.json, the inventory
copy and every report are hashed into the evidence at the end of the audit, so that verify
catches a change to any of them, and `auditor report` renews the seal for what it renders."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from auditor.audit import orchestrator as audit
from auditor.audit.observer import SilentObserver
from auditor.audit.options import AuditOptions
from auditor.audit.orchestrator import AuditError, run_audit
from auditor.cli.exitcodes import ExitCode
from auditor.cli.report import register as register_report
from auditor.cli.verify import register as register_verify
from auditor.evidence.store import EvidenceStore
from auditor.evidence.verify import VerificationReport, verify_run
from auditor.report import written_names
from policies.snapshot import OBSERVATIONS_FILE
from tests.lab_scenarios import INVENTORY_FILE, RECORDINGS, recording

SEALED = {"findings.json", "facts.json", OBSERVATIONS_FILE, *written_names()}


@pytest.fixture
def audited(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A whole run_audit, offline: the baseline's recorded collection, no network probes. Its
    findings cite the recorded artifacts, which this offline run did not store: the checks
    below leave that one check out (``problems``)."""
    _, recorded = recording("baseline")
    monkeypatch.setattr(audit, "collect_inventory", lambda *_: dict(recorded.collection))
    monkeypatch.setattr(audit, "collect_windows_inventory", lambda *_: {})
    inventory = RECORDINGS / "baseline" / INVENTORY_FILE
    run_audit(inventory, tmp_path / "run", SilentObserver(), AuditOptions(network_probes=False))
    return tmp_path / "run"


def problems(report: VerificationReport) -> list[tuple[str, str]]:
    return [(p.check, p.subject) for p in report.problems if p.check != "findings"]


def test_an_audit_seals_every_file_of_its_run(audited: Path) -> None:
    report = verify_run(audited)
    assert problems(report) == []
    assert report.closed and report.seal_generation == 1
    with EvidenceStore.open(audited) as store:
        seal = store.seal_document()
    assert seal is not None
    assert {entry["path"] for entry in seal["files"]} == SEALED
    assert seal["count"] == report.artifact_count and seal["chain_head"] == report.chain_head


@pytest.mark.parametrize("name", sorted(SEALED))
def test_any_changed_or_missing_file_of_an_audited_run_fails_verify(
    audited: Path, name: str
) -> None:
    path = audited / name
    original = path.read_bytes()
    path.chmod(0o600)
    path.write_bytes(original + b"\n")
    assert ("seal", name) in problems(verify_run(audited))
    path.unlink()
    assert ("seal", name) in problems(verify_run(audited))
    path.write_bytes(original)
    assert problems(verify_run(audited)) == []


def cli() -> typer.Typer:
    app = typer.Typer()
    register_report(app)
    register_verify(app)
    return app


def test_auditor_report_renews_the_seal_only_for_what_it_renders(audited: Path) -> None:
    runner = CliRunner()
    oscal = audited / "oscal-assessment-results.json"
    oscal.write_text(json.dumps({"forged": True}))
    assert ("seal", oscal.name) in problems(verify_run(audited))
    # Rendering again puts a true report back (the HTML now names the run's inventory copy,
    # not the path the audit read): the seal is renewed for the reports.
    assert runner.invoke(cli(), ["report", str(audited)]).exit_code == 0
    report = verify_run(audited)
    assert problems(report) == [] and report.seal_generation == 2
    # The same reports rendered once more: the seal stands as it is.
    assert runner.invoke(cli(), ["report", str(audited)]).exit_code == 0
    assert verify_run(audited).seal_generation == 2

    # A forged findings.json is rendered into the reports, which are sealed again; the forged
    # findings.json itself keeps failing against the hash the audit sealed.
    findings = audited / "findings.json"
    document = json.loads(findings.read_text())
    document["findings"][0]["status"] = "fail"
    findings.write_text(json.dumps(document))
    assert runner.invoke(cli(), ["report", str(audited)]).exit_code == 0
    report = verify_run(audited)
    assert report.seal_generation == 3
    assert problems(report) == [("seal", "findings.json")]
    result = runner.invoke(cli(), ["verify", str(audited)], env={"COLUMNS": "200"})
    assert result.exit_code == ExitCode.FAIL and "findings.json" in result.output


def test_a_link_planted_at_a_sealed_name_is_refused_not_sealed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Someone plants a link where the audit will write: the reports are not written through
    it, the seal refuses to vouch for what it points at, and verify names the link."""
    _, recorded = recording("baseline")
    secret = tmp_path / "secret"
    secret.write_text("not the auditor's")

    def collect_and_plant(*_: object) -> dict[str, object]:
        os.symlink(secret, tmp_path / "run" / "report.ja.html")
        return dict(recorded.collection)

    monkeypatch.setattr(audit, "collect_inventory", collect_and_plant)
    monkeypatch.setattr(audit, "collect_windows_inventory", lambda *_: {})
    inventory = RECORDINGS / "baseline" / INVENTORY_FILE
    with pytest.raises(AuditError, match="could not be sealed"):
        run_audit(inventory, tmp_path / "run", SilentObserver(), AuditOptions(network_probes=False))
    report = verify_run(tmp_path / "run")
    assert report.closed and report.seal_generation is None
    assert any("not sealed" in note for note in report.notes)
    assert ("layout", "report.ja.html") in problems(report)
    assert secret.read_text() == "not the auditor's"
