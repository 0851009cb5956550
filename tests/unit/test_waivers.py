"""Waivers: the file's format and its errors at file:line:column, which findings a waiver
accepts (a fail only, while in force), the warnings of a file, the exit code and the terminal
summary. The findings are the real judgements of recorded lab scenarios (docs/waivers.md)."""

from __future__ import annotations

import io
import textwrap
from datetime import date
from functools import cache
from pathlib import Path

import pytest
from rich.console import Console

from auditor.cli.exitcodes import ExitCode
from auditor.cli.summary import exit_code_for, print_summary
from auditor.domain.errors import AuditorError
from auditor.domain.findings import Finding, Status
from auditor.domain.waivers import Waiver, apply_waivers, load_waivers, unwaived_fail, waived
from auditor.domain.yamlsource import SourceError
from policies.model import load_controls
from policies.registry import evaluate_all
from policies.snapshot import restore_context
from policies.support.common import not_applicable
from tests.lab_scenarios import recording

TODAY = date(2026, 12, 6)
CONTROLS = list(load_controls())


@cache
def judged(scenario: str) -> tuple[Finding, ...]:
    inventory, observations = recording(scenario)
    return tuple(evaluate_all(restore_context(inventory, observations)))


def remote_control() -> list[Finding]:
    """Two fails on proc-srv (no-remote-control-software, unauthorized-access-prevention), every
    other finding a pass."""
    return list(judged("remote-control"))


def the(findings: list[Finding], control: str, subject: str) -> Finding:
    return next(f for f in findings if (f.control, f.subject) == (control, subject))


def waiver(control: str, subject: str, expires: date = date(2026, 12, 31), **more: str) -> Waiver:
    return Waiver(
        control=control,
        subject=subject,
        justification="vendor support session until the migration",
        approved_by="CISO Sato",
        expires=expires,
        **more,
    )


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "waivers.yaml"
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


# -- loading ----------------------------------------------------------------------------------


def test_a_waivers_file_loads_with_its_dates_and_the_bytes_it_was_read_from(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        """
        waivers:
          - control: no-remote-control-software
            subject: proc-srv
            justification: vendor support session until the migration
            approved_by: CISO Sato
            expires: 2026-12-31
          - control: unauthorized-access-prevention
            subject: proc-srv
            justification: same session
            approved_by: CISO Sato
            expires: "2027-01-15"
            finding: proc-srv accepts password logins
        """,
    )
    loaded = load_waivers(path)
    assert [(w.control, w.expires, w.finding) for w in loaded.waivers] == [
        ("no-remote-control-software", date(2026, 12, 31), None),
        ("unauthorized-access-prevention", date(2027, 1, 15), "proc-srv accepts password logins"),
    ]
    assert loaded.content == path.read_bytes()


@pytest.mark.parametrize(
    ("body", "where", "message"),
    [
        ("  - control: a\n    subject: b\n    colour: red\n", "4:5", "unknown key"),
        ("  - control: a\n    subject: b\n", "2:5", "approved_by: Field required"),
        ("  - {control: a, subject: b, expires: 1767139200}\n", "2:30", "written YYYY-MM-DD"),
        ("  - {control: a, subject: b, expires: 2026-12-31 10:00:00}\n", "2:30", "without a time"),
        ("  - {control: a, subject: b, expires: next year}\n", "2:30", "written YYYY-MM-DD"),
        ("  - {control: a, subject: b, approved_by: '  '}\n", "2:30", "at least 1 character"),
        ("  - [control, subject]\n", "2:5", "valid dictionary"),
        ("  - control: [a\n", "3:1", "invalid YAML"),
    ],
)
def test_a_malformed_waiver_is_refused_at_its_file_line_and_column(
    tmp_path: Path, body: str, where: str, message: str
) -> None:
    path = write(tmp_path, "waivers:\n" + body)
    with pytest.raises(SourceError) as caught:
        load_waivers(path)
    assert isinstance(caught.value, AuditorError)
    assert any(
        line.startswith(f"{path}:{where}:") and message in line for line in caught.value.problems
    ), caught.value.problems


def test_a_second_waiver_for_the_same_finding_is_refused_naming_both(tmp_path: Path) -> None:
    entry = """
      - control: no-remote-control-software
        subject: proc-srv
        justification: x
        approved_by: y
        expires: 2026-12-31
    """
    path = write(tmp_path, "waivers:" + textwrap.dedent(entry) + textwrap.dedent(entry))
    with pytest.raises(SourceError, match=r"waivers\.yaml:8:3: waivers\.1: a second waiver") as e:
        load_waivers(path)
    assert f"the first is at {path}:2:3" in str(e.value)


def test_a_file_that_is_not_a_waivers_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="unknown key"):
        load_waivers(write(tmp_path, "hosts: {}\n"))
    with pytest.raises(SourceError, match="cannot read"):
        load_waivers(tmp_path / "missing.yaml")


# -- which findings a waiver accepts ------------------------------------------------------------


def test_a_waiver_in_force_rides_on_its_fail_which_stays_a_fail() -> None:
    findings = remote_control()
    outcome = apply_waivers(
        findings,
        [waiver("no-remote-control-software", "proc-srv")],
        today=TODAY,
        controls=CONTROLS,
    )
    accepted = the(outcome.findings, "no-remote-control-software", "proc-srv")
    assert accepted.status is Status.FAIL
    assert accepted.waiver is not None and accepted.waiver.in_force
    assert accepted.waiver.approved_by == "CISO Sato"
    assert accepted.waiver.expires == date(2026, 12, 31)
    assert waived(accepted) and not unwaived_fail(accepted)
    other = the(outcome.findings, "unauthorized-access-prevention", "proc-srv")
    assert other.waiver is None and unwaived_fail(other)
    assert outcome.warnings == []
    # Nothing else of a finding changes, and the input is left as it was.
    assert accepted.model_copy(update={"waiver": None}) == the(
        findings, "no-remote-control-software", "proc-srv"
    )
    assert all(f.waiver is None for f in findings)


def test_a_waiver_is_in_force_through_its_last_day_and_expired_the_day_after() -> None:
    entry = waiver("no-remote-control-software", "proc-srv", expires=TODAY)
    on_the_day = apply_waivers(remote_control(), [entry], today=TODAY, controls=CONTROLS)
    assert waived(the(on_the_day.findings, "no-remote-control-software", "proc-srv"))

    after = apply_waivers(remote_control(), [entry], today=date(2026, 12, 7), controls=CONTROLS)
    expired = the(after.findings, "no-remote-control-software", "proc-srv")
    assert expired.waiver is not None and not expired.waiver.in_force  # shown, as expired
    assert unwaived_fail(expired)
    assert [(w.kind, w.control, w.subject) for w in after.warnings] == [
        ("expired", "no-remote-control-software", "proc-srv")
    ]
    assert "expired on 2026-12-06" in after.warnings[0].message


def test_the_finding_text_must_match_the_fail_to_accept_it() -> None:
    fail = the(remote_control(), "no-remote-control-software", "proc-srv")
    spaced = "  ".join(fail.summary.split(" "))  # the same words, wrapped differently
    for text in (spaced, fail.summary_ja):
        outcome = apply_waivers(
            remote_control(),
            [waiver("no-remote-control-software", "proc-srv", finding=text)],
            today=TODAY,
            controls=CONTROLS,
        )
        assert waived(the(outcome.findings, "no-remote-control-software", "proc-srv"))

    other = apply_waivers(
        remote_control(),
        [waiver("no-remote-control-software", "proc-srv", finding="TeamViewer is running")],
        today=TODAY,
        controls=CONTROLS,
    )
    assert the(other.findings, "no-remote-control-software", "proc-srv").waiver is None
    assert [w.kind for w in other.warnings] == ["unmatched"]
    assert fail.summary in other.warnings[0].message


def test_a_waiver_never_applies_to_a_pass() -> None:
    passing = next(f for f in remote_control() if f.status is Status.PASS)
    outcome = apply_waivers(
        remote_control(), [waiver(passing.control, passing.subject)], today=TODAY, controls=CONTROLS
    )
    assert the(outcome.findings, passing.control, passing.subject).waiver is None
    assert [w.kind for w in outcome.warnings] == ["unmatched"]
    assert "is pass: a waiver applies only to a fail" in outcome.warnings[0].message


def test_a_waiver_never_applies_to_an_inconclusive_finding() -> None:
    findings = list(judged("hostile-host"))
    undecided = the(findings, "unauthorized-access-prevention", "term-2")
    assert undecided.status is Status.INCONCLUSIVE
    outcome = apply_waivers(
        findings, [waiver(undecided.control, undecided.subject)], today=TODAY, controls=CONTROLS
    )
    kept = the(outcome.findings, undecided.control, undecided.subject)
    assert kept.waiver is None and kept.status is Status.INCONCLUSIVE
    assert exit_code_for(outcome.findings) is ExitCode.INCONCLUSIVE
    assert [w.kind for w in outcome.warnings] == ["unmatched"]
    assert "is inconclusive: a waiver applies only to a fail" in outcome.warnings[0].message


def test_a_waiver_never_applies_to_a_not_applicable_finding() -> None:
    control = load_controls()["terminal-removable-media-blocked"]
    absent = not_applicable(control)  # what an inventory without terminals is judged
    outcome = apply_waivers(
        [absent], [waiver(absent.control, absent.subject)], today=TODAY, controls=CONTROLS
    )
    assert outcome.findings[0].waiver is None
    # "(no terminal host)" names what is missing: it is no subject a waiver could name
    assert [w.kind for w in outcome.warnings] == ["unknown-subject"]


def test_waivers_of_unknown_controls_or_subjects_or_that_match_nothing_are_warned_about() -> None:
    entries = [
        waiver("no-such-control", "proc-srv"),
        waiver("no-remote-control-software", "no-such-host"),
        waiver("send-no-inbound", "recv-srv"),  # a host, but not a subject of that control
        waiver("recv-no-outbound", "recv-srv"),  # a subject, but it passes
        waiver("no-remote-control-software", "proc-srv", expires=date(2026, 1, 1)),
    ]
    outcome = apply_waivers(remote_control(), entries, today=TODAY, controls=CONTROLS)
    assert [(w.kind, w.control, w.subject) for w in outcome.warnings] == [
        ("unknown-control", "no-such-control", "proc-srv"),
        ("unknown-subject", "no-remote-control-software", "no-such-host"),
        ("unknown-subject", "send-no-inbound", "recv-srv"),
        ("unmatched", "recv-no-outbound", "recv-srv"),
        ("expired", "no-remote-control-software", "proc-srv"),
    ]
    assert "its subjects: send-srv" in outcome.warnings[2].message
    assert not any(waived(f) for f in outcome.findings)


def test_applying_again_replaces_the_waivers_the_findings_carried() -> None:
    first = apply_waivers(
        remote_control(),
        [waiver("no-remote-control-software", "proc-srv")],
        today=TODAY,
        controls=CONTROLS,
    )
    again = apply_waivers(first.findings, [], today=TODAY, controls=CONTROLS)
    assert all(f.waiver is None for f in again.findings)
    assert again.warnings == []


# -- exit code and summary ----------------------------------------------------------------------


def test_the_exit_code_counts_only_fails_no_waiver_in_force_accepts() -> None:
    both = [
        waiver("no-remote-control-software", "proc-srv"),
        waiver("unauthorized-access-prevention", "proc-srv"),
    ]
    assert exit_code_for(remote_control()) is ExitCode.FAIL
    all_waived = apply_waivers(remote_control(), both, today=TODAY, controls=CONTROLS).findings
    assert exit_code_for(all_waived) is ExitCode.OK
    one_waived = apply_waivers(remote_control(), both[:1], today=TODAY, controls=CONTROLS).findings
    assert exit_code_for(one_waived) is ExitCode.FAIL
    expired = apply_waivers(remote_control(), both, today=date(2027, 1, 1), controls=CONTROLS)
    assert exit_code_for(expired.findings) is ExitCode.FAIL


def test_the_summary_counts_waived_fails_apart_and_lists_them_with_approver_and_expiry() -> None:
    outcome = apply_waivers(
        remote_control(),
        [
            waiver("no-remote-control-software", "proc-srv"),
            waiver("recv-no-outbound", "recv-srv"),
        ],
        today=TODAY,
        controls=CONTROLS,
    )
    buffer = io.StringIO()
    console = Console(file=buffer, width=200, color_system=None)
    print_summary(console, outcome.findings, {}, Path("/tmp/run"), outcome.warnings)
    out = buffer.getvalue()
    passes = sum(f.status is Status.PASS for f in outcome.findings)
    assert f"pass: {passes}  fail: 1  waived fail: 1  inconclusive: 0" in out
    assert "fail (waived)" in out
    assert (
        "waived: no-remote-control-software on proc-srv, approved by CISO Sato until 2026-12-31: "
        "vendor support session until the migration" in out
    )
    assert (
        "warning: waiver recv-no-outbound on recv-srv: recv-no-outbound on recv-srv is pass" in out
    )


def test_a_summary_without_waivers_has_no_waiver_line() -> None:
    buffer = io.StringIO()
    print_summary(Console(file=buffer, width=200), remote_control(), {}, Path("/tmp/run"))
    assert "waive" not in buffer.getvalue()
