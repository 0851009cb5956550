"""The audit-lab benchmark's check of the findings against the scenario's expectations."""

from __future__ import annotations

from pathlib import Path

from auditor.audit.orchestrator import AuditResult
from auditor.domain.findings import Finding, Status
from bench.auditlab import unexpected_findings


def _finding(control: str, subject: str, status: Status) -> Finding:
    return Finding(
        control=control, subject=subject, status=status, clauses=[], summary="", summary_ja=""
    )


def test_baseline_findings_that_pass_or_do_not_apply_are_expected() -> None:
    result = AuditResult(
        Path("."),
        [
            _finding("recv-no-outbound", "recv-srv", Status.PASS),
            _finding("links-encrypted", "term-1", Status.NOT_APPLICABLE),
        ],
    )
    assert unexpected_findings(result, []) == []


def test_a_failure_or_an_inconclusive_finding_is_named() -> None:
    result = AuditResult(
        Path("."),
        [
            _finding("recv-no-outbound", "recv-srv", Status.FAIL),
            _finding("operation-logging", "proc-srv", Status.INCONCLUSIVE),
            _finding("send-no-inbound", "send-srv", Status.PASS),
        ],
    )
    assert unexpected_findings(result, []) == [
        "recv-no-outbound recv-srv: fail",
        "operation-logging proc-srv: inconclusive",
    ]


def test_an_expected_failure_must_fail() -> None:
    expect = [("recv-no-outbound", "recv-srv")]
    failing = AuditResult(Path("."), [_finding("recv-no-outbound", "recv-srv", Status.FAIL)])
    passing = AuditResult(Path("."), [_finding("recv-no-outbound", "recv-srv", Status.PASS)])
    assert unexpected_findings(failing, expect) == []
    assert unexpected_findings(passing, expect) == ["recv-no-outbound recv-srv: pass"]
