"""Waivers in every output: findings.json, SARIF (a suppression), JUnit (a skip), OSCAL (an
approved deviation, validated by compliance-trestle and NIST's schema), the seal of the run
folder, and the audit, report and watch commands (docs/waivers.md).

Runs are real: the sample failing run made with the real evidence store and sealed
(tests/data/runs/sample_runs.py), and whole offline audits of a recorded lab scenario."""

from __future__ import annotations

import json
import textwrap
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from auditor.audit import orchestrator as audit
from auditor.audit.observer import SilentObserver
from auditor.audit.options import AuditOptions
from auditor.audit.orchestrator import run_audit
from auditor.cli.exitcodes import ExitCode
from auditor.cli.main import app
from auditor.domain.findings import Status, read_findings
from auditor.domain.waivers import WAIVERS_COPY, load_waivers
from auditor.evidence.store import EvidenceStore
from auditor.evidence.verify import VerificationReport, verify_run
from auditor.report import render_reports
from auditor.report.junit import JUNIT_FILE
from auditor.report.oscal import OSCAL_FILE
from auditor.report.run import RunReadError
from auditor.report.sarif import SARIF_FILE
from auditor.watch.watcher import real_audit
from tests.data.runs import sample_runs
from tests.lab_scenarios import INVENTORY_FILE, RECORDING_FILE, RECORDINGS, recording
from tests.unit.report.test_oscal import errors as oscal_schema_errors
from tests.unit.report.test_oscal import trestle_errors
from tests.unit.report.test_sarif_junit import sarif_problems
from tests.unit.watch.watch_helpers import watch_app

TODAY = date(2026, 11, 26)  # the sample run's day

#: For the sample failing run: one fail waived, one whose waiver expired, an inconclusive
#: finding named (never waived), and a fail left alone (proc-egress-only-via-gateways).
SAMPLE_WAIVERS = """
waivers:
  - control: recv-no-outbound
    subject: recv-srv
    justification: carrier maintenance window, ticket OPS-12
    approved_by: CISO Sato
    expires: 2026-12-31
    finding: recv-srv can open new connections to carrier-in (external)
  - control: send-no-inbound
    subject: send-srv
    justification: migration of the sending server
    approved_by: CISO Sato
    expires: 2026-11-25
  - control: links-encrypted
    subject: send-srv
    justification: no capture is possible on carrier-out
    approved_by: CISO Sato
    expires: 2026-12-31
"""


def write_waivers(folder: Path, text: str) -> Path:
    path = folder / "accepted.yaml"
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def seal_problems(report: VerificationReport) -> list[tuple[str, str]]:
    return [(p.check, p.subject) for p in report.problems if p.check != "findings"]


@pytest.fixture
def waived_run(tmp_path: Path) -> Path:
    """The sample failing run (sealed by its audit), rendered again with the waivers."""
    run_dir = sample_runs.make_failing(tmp_path / "failing")
    render_reports(run_dir)
    accepted = load_waivers(write_waivers(tmp_path, SAMPLE_WAIVERS))
    render_reports(run_dir, waivers=accepted, today=TODAY)
    return run_dir


def result_of(sarif: dict[str, Any], control: str, subject: str) -> dict[str, Any]:
    results: list[dict[str, Any]] = sarif["runs"][0]["results"]
    return next(
        r
        for r in results
        if r["partialFingerprints"]["controlSubject/v1"] == f"{control}/{subject}"
    )


# -- findings.json --------------------------------------------------------------------------


def test_findings_json_carries_each_waiver_and_the_files_warnings(waived_run: Path) -> None:
    document = read_findings(waived_run / "findings.json")
    by_pair = {(f.control, f.subject): f for f in document.findings}
    accepted = by_pair["recv-no-outbound", "recv-srv"]
    assert accepted.status is Status.FAIL
    assert accepted.waiver is not None and accepted.waiver.in_force
    assert accepted.waiver.approved_by == "CISO Sato"
    expired = by_pair["send-no-inbound", "send-srv"]
    assert expired.waiver is not None and not expired.waiver.in_force
    assert by_pair["links-encrypted", "send-srv"].waiver is None  # inconclusive: never
    assert by_pair["proc-egress-only-via-gateways", "proc-srv"].waiver is None
    assert [(w.kind, w.control) for w in document.waiver_warnings or []] == [
        ("expired", "send-no-inbound"),
        ("unmatched", "links-encrypted"),
    ]
    raw = json.loads((waived_run / "findings.json").read_text(encoding="utf-8"))
    assert sum("waiver" in f for f in raw["findings"]) == 2  # unwaived findings: as before
    assert (waived_run / WAIVERS_COPY).read_text(encoding="utf-8").startswith("waivers:")


def test_a_run_without_waivers_writes_findings_json_as_before(tmp_path: Path) -> None:
    run_dir = sample_runs.make_failing(tmp_path / "failing")
    raw = json.loads((run_dir / "findings.json").read_text(encoding="utf-8"))
    assert "waiver_warnings" not in raw
    assert not any("waiver" in f for f in raw["findings"])


# -- SARIF, JUnit, OSCAL ----------------------------------------------------------------------


def test_sarif_gives_a_waived_fail_an_accepted_external_suppression(waived_run: Path) -> None:
    sarif = json.loads((waived_run / SARIF_FILE).read_text(encoding="utf-8"))
    assert sarif_problems(sarif) == []
    accepted = result_of(sarif, "recv-no-outbound", "recv-srv")
    assert accepted["kind"] == "fail"
    [suppression] = accepted["suppressions"]
    assert suppression["kind"] == "external" and suppression["status"] == "accepted"
    assert suppression["justification"] == (
        "carrier maintenance window, ticket OPS-12 (approved by CISO Sato until 2026-12-31)"
    )
    assert suppression["properties"]["expires"] == "2026-12-31"
    [expired] = result_of(sarif, "send-no-inbound", "send-srv")["suppressions"]
    assert expired["status"] == "rejected" and expired["justification"].startswith("expired: ")
    for control, subject in (
        ("proc-egress-only-via-gateways", "proc-srv"),
        ("links-encrypted", "send-srv"),
    ):
        assert "suppressions" not in result_of(sarif, control, subject)


def test_junit_skips_a_waived_fail_with_its_reason_and_fails_an_expired_one(
    waived_run: Path,
) -> None:
    root = ET.parse(waived_run / JUNIT_FILE).getroot()

    def case(control: str, subject: str) -> ET.Element:
        found = root.find(f"testsuite[@name='{control}']/testcase[@name='{subject}']")
        assert found is not None
        return found

    skipped = case("recv-no-outbound", "recv-srv").find("skipped")
    assert skipped is not None and case("recv-no-outbound", "recv-srv").find("failure") is None
    assert skipped.get("message") == (
        "waived: carrier maintenance window, ticket OPS-12 (approved by CISO Sato until 2026-12-31)"
    )
    failure = case("send-no-inbound", "send-srv").find("failure")
    assert failure is not None and "waiver expired on 2026-11-25" in (failure.text or "")
    assert case("links-encrypted", "send-srv").find("error") is not None
    assert (root.get("failures"), root.get("skipped"), root.get("errors")) == ("2", "1", "1")
    suite = root.find("testsuite[@name='recv-no-outbound']")
    assert suite is not None and (suite.get("failures"), suite.get("skipped")) == ("0", "1")


def test_oscal_relates_a_waived_fail_to_an_approved_deviation(waived_run: Path) -> None:
    path = waived_run / OSCAL_FILE
    document = json.loads(path.read_text(encoding="utf-8"))
    assert trestle_errors(path) == {str(path): []}
    assert oscal_schema_errors(document) == []
    result = document["assessment-results"]["results"][0]
    risks = {r["uuid"]: r for r in result["risks"]}
    findings = {f["title"]: f for f in result["findings"]}

    accepted = findings["recv-no-outbound: recv-srv"]
    [related] = accepted["related-risks"]
    risk = risks[related["risk-uuid"]]
    assert risk["status"] == "deviation-approved"
    assert risk["deadline"].startswith("2026-12-31T23:59:59")
    [entry] = risk["risk-log"]["entries"]
    assert entry["status-change"] == "deviation-approved"
    assert "approved by CISO Sato" in entry["description"]
    assert accepted["target"]["status"]["state"] == "not-satisfied"  # still a fail

    expired = risks[findings["send-no-inbound: send-srv"]["related-risks"][0]["risk-uuid"]]
    assert expired["status"] == "open" and expired["statement"].endswith("(expired)")
    assert expired["risk-log"]["entries"][0]["status-change"] == "open"
    assert "related-risks" not in findings["links-encrypted: send-srv"]
    assert "related-risks" not in findings["proc-egress-only-via-gateways: proc-srv"]
    assert len(risks) == 2


# -- the seal ---------------------------------------------------------------------------------


def test_report_with_waivers_seals_findings_and_waivers_and_verify_catches_an_edit(
    waived_run: Path,
) -> None:
    report = verify_run(waived_run)
    assert seal_problems(report) == [] and report.seal_generation == 3
    with EvidenceStore.open(waived_run) as store:
        seal = store.seal_document()
    assert seal is not None and WAIVERS_COPY in {e["path"] for e in seal["files"]}
    copy = waived_run / WAIVERS_COPY
    copy.write_text(copy.read_text(encoding="utf-8").replace("2026-12-31", "2036-12-31"))
    assert ("seal", WAIVERS_COPY) in seal_problems(verify_run(waived_run))


def test_waivers_are_not_applied_to_a_findings_json_the_seal_does_not_hold(
    tmp_path: Path,
) -> None:
    """Rewriting findings.json renews its hash: a forged one must not be blessed that way."""
    run_dir = sample_runs.make_failing(tmp_path / "failing")
    findings = run_dir / "findings.json"
    document = json.loads(findings.read_text(encoding="utf-8"))
    document["findings"][0]["status"] = "pass"
    findings.write_text(json.dumps(document), encoding="utf-8")
    accepted = load_waivers(write_waivers(tmp_path, SAMPLE_WAIVERS))
    with pytest.raises(RunReadError, match="not the findings the run's seal vouches for"):
        render_reports(run_dir, waivers=accepted, today=TODAY)
    assert ("seal", "findings.json") in seal_problems(verify_run(run_dir))


# -- the audit --------------------------------------------------------------------------------

TERMINAL_WAIVER = """
waivers:
  - control: terminal-removable-media-blocked
    subject: term-2
    justification: USB storage for the annual key ceremony
    approved_by: CISO Sato
    expires: {expires}
"""


@pytest.fixture
def offline_terminal_usb(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Collection replaced by the terminal-usb scenario's recording (term-2 fails the
    removable-media control), which is stored as the run's one artifact (an audit that stores
    nothing cannot run); no network probes, so the network controls are inconclusive."""
    _, recorded = recording("terminal-usb")
    recorded_file = RECORDINGS / "terminal-usb" / RECORDING_FILE

    def replay(_inventory: object, store: EvidenceStore, _scope: object) -> dict[str, Any]:
        now = datetime.now(UTC)
        store.add(
            recorded_file.read_bytes(),
            probe="recording",
            command=f"replay {recorded_file.name}",
            host=None,
            started=now,
            finished=now,
            media_type="application/gzip",
        )
        return dict(recorded.collection)

    monkeypatch.setattr(audit, "collect_inventory", replay)
    monkeypatch.setattr(audit, "collect_windows_inventory", lambda *_: {})
    return RECORDINGS / "terminal-usb" / INVENTORY_FILE


def test_an_audit_applies_the_waivers_copies_them_and_seals_the_copy(
    offline_terminal_usb: Path, tmp_path: Path
) -> None:
    path = write_waivers(tmp_path, TERMINAL_WAIVER.format(expires="2999-12-31"))
    result = run_audit(
        offline_terminal_usb,
        tmp_path / "run",
        SilentObserver(),
        AuditOptions(network_probes=False),
        waivers=path,
    )
    [fail] = [f for f in result.findings if f.status is Status.FAIL]
    assert fail.waiver is not None and fail.waiver.in_force
    assert result.waiver_warnings == []
    run_dir = tmp_path / "run"
    assert read_findings(run_dir / "findings.json").findings == result.findings
    assert (run_dir / WAIVERS_COPY).read_bytes() == path.read_bytes()
    assert seal_problems(verify_run(run_dir)) == []
    (run_dir / WAIVERS_COPY).write_text("waivers: []\n", encoding="utf-8")
    assert ("seal", WAIVERS_COPY) in seal_problems(verify_run(run_dir))


@pytest.mark.parametrize(
    ("expires", "code", "shown"),
    [
        # inconclusive network controls remain: 2, no longer 1
        ("2999-12-31", ExitCode.INCONCLUSIVE, "waived fail: 1"),
        ("2000-01-01", ExitCode.FAIL, "expired on 2000-01-01"),
    ],
)
def test_auditor_audit_exit_code_counts_only_unwaived_fails(
    offline_terminal_usb: Path, tmp_path: Path, expires: str, code: ExitCode, shown: str
) -> None:
    path = write_waivers(tmp_path, TERMINAL_WAIVER.format(expires=expires))
    args = ["audit", "-i", str(offline_terminal_usb), "-o", str(tmp_path / "run")]
    result = CliRunner().invoke(
        app, [*args, "--no-network", "--waivers", str(path)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == code, result.output
    assert shown in result.output


def test_auditor_audit_refuses_a_malformed_waivers_file_before_collecting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    collected: list[object] = []

    def collect(*args: object) -> dict[str, Any]:
        collected.append(args)
        return {}

    monkeypatch.setattr(audit, "collect_inventory", collect)
    path = write_waivers(tmp_path, "waivers:\n  - control: x\n    expire: 2026-12-31\n")
    inventory = RECORDINGS / "terminal-usb" / INVENTORY_FILE
    result = CliRunner().invoke(
        app,
        ["audit", "-i", str(inventory), "-o", str(tmp_path / "run"), "--waivers", str(path)],
        env={"COLUMNS": "300"},
    )
    assert result.exit_code == ExitCode.CANNOT_RUN
    assert "invalid waivers" in result.output
    assert f"{path}:3:5: waivers.0.expire: unknown key" in result.output
    assert collected == [] and not (tmp_path / "run").exists()


# -- auditor report and auditor watch ---------------------------------------------------------


def test_auditor_report_waivers_applies_them_and_says_what_is_wrong_with_them(
    tmp_path: Path,
) -> None:
    run_dir = sample_runs.make_failing(tmp_path / "failing")
    path = write_waivers(tmp_path, SAMPLE_WAIVERS)
    result = CliRunner().invoke(
        app, ["report", str(run_dir), "--waivers", str(path)], env={"COLUMNS": "300"}
    )
    assert result.exit_code == 0, result.output
    assert "waived: recv-no-outbound on recv-srv, approved by CISO Sato until 2026-12-31" in (
        result.output
    )
    assert "warning: waiver send-no-inbound on send-srv: expired on 2026-11-25" in result.output
    assert read_findings(run_dir / "findings.json").waiver_warnings is not None

    broken = write_waivers(tmp_path, "waivers: {}\n")
    refused = CliRunner().invoke(app, ["report", str(run_dir), "--waivers", str(broken)])
    assert refused.exit_code == ExitCode.CANNOT_RUN
    assert "invalid waivers" in refused.output
    assert "accepted.yaml:1:1: waivers: Input should be a valid list" in refused.output


def test_the_watch_audit_applies_the_waivers_read_at_each_run(
    offline_terminal_usb: Path, tmp_path: Path
) -> None:
    path = write_waivers(tmp_path, TERMINAL_WAIVER.format(expires="2999-12-31"))
    run = real_audit(0.0, SilentObserver(), network_probes=False, waivers=path)
    run(offline_terminal_usb, tmp_path / "first")
    first = read_findings(tmp_path / "first" / "findings.json")
    assert [f.waiver is not None for f in first.findings if f.status is Status.FAIL] == [True]
    # Edited between two runs: the next run applies the file as it is then.
    path.write_text("waivers: []\n", encoding="utf-8")
    run(offline_terminal_usb, tmp_path / "second")
    second = read_findings(tmp_path / "second" / "findings.json")
    assert all(f.waiver is None for f in second.findings)
    assert second.waiver_warnings == []


def test_auditor_watch_refuses_a_malformed_waivers_file_at_the_start(tmp_path: Path) -> None:
    path = write_waivers(tmp_path, "waivers:\n  - control: x\n    expires: soon\n")
    inventory = RECORDINGS / "terminal-usb" / INVENTORY_FILE
    args = ["watch", "-i", str(inventory), "--state", str(tmp_path / "state"), "--once"]
    result = CliRunner().invoke(
        watch_app(), [*args, "--waivers", str(path)], env={"COLUMNS": "300"}
    )
    assert result.exit_code == ExitCode.CANNOT_RUN
    assert "invalid waivers" in result.output and f"{path}:3:5" in result.output
    assert not (tmp_path / "state").exists()
