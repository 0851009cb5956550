"""``auditor whatif --waivers``: the waivers applied to the what-if's findings as ``audit``
applies them (docs/waivers.md), the file kept beside them, the exit code counting unwaived
fails only; and the what-if's findings.json saying which run and which changes it was made of.

The run is the lab baseline's recording made a run folder (tests/unit/analysis/test_whatif.py);
the change is the recv-egress scenario's rule set and routes, as recorded nft -j JSON (so no
network namespace is needed), which makes recv-no-outbound fail on recv-srv.
"""

from __future__ import annotations

import json
import textwrap
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from auditor.analysis.changes import Change, RulesetChange
from auditor.analysis.whatif import command_line, run_whatif
from auditor.cli.exitcodes import ExitCode
from auditor.cli.main import app
from auditor.cli.summary import exit_code_for
from auditor.domain.findings import (
    AppliedWaiver,
    Finding,
    FindingsDocument,
    RunInfo,
    Status,
    read_findings,
    write_findings,
)
from auditor.domain.waivers import WAIVERS_COPY, load_waivers
from tests.unit.analysis.test_whatif import judged, make_run, scenario_changes

TODAY = date(2026, 12, 6)
FAILING = ("recv-no-outbound", "recv-srv")

WAIVERS = """
waivers:
  - control: recv-no-outbound
    subject: recv-srv
    justification: carrier maintenance window, ticket OPS-12
    approved_by: CISO Sato
    expires: {expires}
  - control: send-no-inbound
    subject: send-srv
    justification: an exception of last year
    approved_by: CISO Sato
    expires: 2026-12-31
"""


@pytest.fixture
def baseline_run(tmp_path: Path) -> Path:
    return make_run("baseline", tmp_path / "baseline-run")


@pytest.fixture
def recv_egress(tmp_path: Path) -> list[Change]:
    changes = scenario_changes("recv-egress", tmp_path)
    assert any(isinstance(c, RulesetChange) for c in changes)
    return changes


def waivers_file(tmp_path: Path, expires: str = "2026-12-31") -> Path:
    path = tmp_path / "accepted.yaml"
    path.write_text(textwrap.dedent(WAIVERS.format(expires=expires)).lstrip(), encoding="utf-8")
    return path


def the(findings: list[Finding], pair: tuple[str, str]) -> Finding:
    return next(f for f in findings if (f.control, f.subject) == pair)


# -- run_whatif with waivers -------------------------------------------------------------------


def test_a_waiver_in_force_accepts_the_whatifs_fail_and_the_exit_code_ignores_it(
    baseline_run: Path, recv_egress: list[Change], tmp_path: Path
) -> None:
    path = waivers_file(tmp_path)
    out = tmp_path / "out"
    without = run_whatif(baseline_run, tmp_path / "plain", recv_egress)
    assert exit_code_for(without.findings) is ExitCode.FAIL
    result = run_whatif(baseline_run, out, recv_egress, load_waivers(path), today=TODAY)
    fail = the(result.findings, FAILING)
    assert fail.status is Status.FAIL  # a fail stays a fail
    assert fail.waiver == AppliedWaiver(
        justification="carrier maintenance window, ticket OPS-12",
        approved_by="CISO Sato",
        expires=date(2026, 12, 31),
        in_force=True,
    )
    assert exit_code_for(result.findings) is ExitCode.OK
    # The waiver of a pass is said, never silently dropped.
    assert [(w.kind, w.control) for w in result.waiver_warnings or []] == [
        ("unmatched", "send-no-inbound")
    ]
    document = read_findings(out / "findings.json")
    assert document.findings == result.findings
    assert document.waiver_warnings == result.waiver_warnings
    assert (out / WAIVERS_COPY).read_bytes() == path.read_bytes()


def test_an_expired_waiver_accepts_nothing_and_the_fail_counts(
    baseline_run: Path, recv_egress: list[Change], tmp_path: Path
) -> None:
    accepted = load_waivers(waivers_file(tmp_path, expires="2026-12-05"))
    result = run_whatif(baseline_run, tmp_path / "out", recv_egress, accepted, today=TODAY)
    fail = the(result.findings, FAILING)
    assert fail.waiver is not None and not fail.waiver.in_force
    assert exit_code_for(result.findings) is ExitCode.FAIL
    assert ("expired", "recv-no-outbound") in {
        (w.kind, w.control) for w in result.waiver_warnings or []
    }


def test_a_whatif_without_waivers_leaves_no_waivers_of_an_earlier_one_in_its_folder(
    baseline_run: Path, recv_egress: list[Change], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    accepted = load_waivers(waivers_file(tmp_path))
    run_whatif(baseline_run, out, recv_egress, accepted, today=TODAY)
    assert (out / WAIVERS_COPY).is_file()
    result = run_whatif(baseline_run, out, recv_egress)  # written over, no waivers this time
    assert not (out / WAIVERS_COPY).exists()
    assert all(f.waiver is None for f in result.findings)
    raw = json.loads((out / "findings.json").read_text(encoding="utf-8"))
    assert "waiver_warnings" not in raw
    assert not any("waiver" in f for f in raw["findings"])


def test_a_carried_finding_does_not_keep_the_stored_runs_waiver(tmp_path: Path) -> None:
    """A probe-only verdict is carried from the run; the waiver the run's finding carried is
    not: only the waivers given to the what-if apply to it."""
    run = tmp_path / "run"
    make_run("baseline", run)
    stored = read_findings(run / "findings.json")
    carried = next(f for f in stored.findings if f.control == "inventory-complete")
    waived = carried.model_copy(
        update={
            "status": Status.FAIL,
            "waiver": AppliedWaiver(
                justification="x", approved_by="y", expires=date(2999, 1, 1), in_force=True
            ),
        }
    )
    stored.findings = [waived if f is carried else f for f in stored.findings]
    write_findings(run / "findings.json", stored)
    result = run_whatif(run, tmp_path / "out", [])
    again = the(result.findings, (carried.control, carried.subject))
    assert again.status is Status.FAIL and again.waiver is None
    assert exit_code_for(result.findings) is ExitCode.FAIL


# -- findings.json of a what-if: the run it was made of and its changes ------------------------


def test_a_whatifs_findings_json_names_its_stored_run_and_its_changes(
    baseline_run: Path, recv_egress: list[Change], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    run_whatif(baseline_run, out, recv_egress)
    run = json.loads((out / "findings.json").read_text(encoding="utf-8"))["run"]
    assert run["whatif_of"] == "recorded-baseline"
    assert run["changes"] == [command_line(c) for c in recv_egress]
    assert run["changes"][0].startswith("--ruleset recv-srv=")
    assert any(c.startswith("--route recv-srv=") for c in run["changes"])
    assert read_findings(out / "findings.json").run.whatif_of == "recorded-baseline"
    empty = tmp_path / "none"
    run_whatif(baseline_run, empty, [])
    run = json.loads((empty / "findings.json").read_text(encoding="utf-8"))["run"]
    assert (run["whatif_of"], run["changes"]) == ("recorded-baseline", [])


def test_an_audits_run_info_is_written_as_before_whatifs_existed(tmp_path: Path) -> None:
    info = RunInfo(id="r", started="2026-12-06T00:00:00+00:00", tool_version="1")
    path = tmp_path / "findings.json"
    write_findings(path, FindingsDocument(run=info, findings=judged("baseline")))
    text = path.read_text(encoding="utf-8")
    assert list(json.loads(text)["run"]) == [
        "id",
        "started",
        "finished",
        "inventory",
        "tool_version",
        "phases",
    ]
    assert "whatif_of" not in text and '"changes"' not in text


# -- the command -------------------------------------------------------------------------------

runner = CliRunner()


def as_options(changes: list[Change]) -> list[str]:
    """The changes as command-line options (``--ruleset recv-srv=FILE`` → two words)."""
    return [word for c in changes for word in command_line(c).split(" ", 1)]


def test_auditor_whatif_waivers_prints_them_and_exits_on_unwaived_fails_only(
    baseline_run: Path, recv_egress: list[Change], tmp_path: Path
) -> None:
    path = waivers_file(tmp_path, expires="2999-12-31")
    out = tmp_path / "out"
    args = ["whatif", str(baseline_run), "--out", str(out), *as_options(recv_egress)]
    result = runner.invoke(app, [*args, "--waivers", str(path)], env={"COLUMNS": "300"})
    assert result.exit_code == ExitCode.OK, result.output
    assert "recv-no-outbound recv-srv: pass -> fail (waived)" in result.output
    assert (
        "waived: recv-no-outbound on recv-srv, approved by CISO Sato until 2999-12-31: "
        "carrier maintenance window, ticket OPS-12"
    ) in result.output
    assert "warning: waiver send-no-inbound on send-srv: send-no-inbound on send-srv is pass" in (
        result.output
    )
    assert (out / WAIVERS_COPY).read_bytes() == path.read_bytes()
    expired = waivers_file(tmp_path, expires="2000-01-01")
    again = runner.invoke(app, [*args, "--waivers", str(expired)], env={"COLUMNS": "300"})
    assert again.exit_code == ExitCode.FAIL, again.output
    assert "recv-no-outbound recv-srv: pass -> fail (waiver expired)" in again.output
    assert "warning: waiver recv-no-outbound on recv-srv: expired on 2000-01-01" in again.output


def test_auditor_whatif_refuses_a_malformed_waivers_file_before_writing(
    baseline_run: Path, tmp_path: Path
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("waivers:\n  - control: x\n    expire: 2026-12-31\n", encoding="utf-8")
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        ["whatif", str(baseline_run), "--out", str(out), "--waivers", str(path)],
        env={"COLUMNS": "300"},
    )
    assert result.exit_code == ExitCode.CANNOT_RUN
    assert "invalid waivers" in result.output
    assert f"{path}:3:5: waivers.0.expire: unknown key" in result.output
    assert not out.exists()
