"""JUnit XML of the findings, for pipelines that only understand test reports.

One test suite per control, one test case per subject: a fail is a ``<failure>``, an
inconclusive verdict an ``<error>`` (the check could not complete: the pipeline must not read
it as a pass), not-applicable is ``<skipped>``. Evidence hashes go to ``<system-out>``.
A fail accepted by a waiver in force (docs/waivers.md) is ``<skipped>`` with the waiver as its
reason, as the exit code does not count it; one whose waiver expired is a ``<failure>`` again.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import datetime
from pathlib import Path

from auditor.domain.files import write_bytes_atomically
from auditor.domain.findings import Finding, Status
from auditor.domain.waivers import unwaived_fail, waived
from auditor.report.run import StoredRun, sorted_findings

JUNIT_FILE = "findings.junit.xml"


def _case(finding: Finding) -> ET.Element:
    case = ET.Element(
        "testcase", {"classname": finding.control, "name": finding.subject, "time": "0"}
    )
    details = _details(finding)
    if waived(finding):
        skipped = ET.SubElement(case, "skipped", {"message": _waiver_reason(finding)})
        skipped.text = details
    elif finding.status is Status.FAIL:
        failure = ET.SubElement(case, "failure", {"message": finding.summary, "type": "fail"})
        failure.text = details
    elif finding.status is Status.INCONCLUSIVE:
        error = ET.SubElement(
            case,
            "error",
            {"message": finding.reason or finding.summary, "type": "inconclusive"},
        )
        error.text = details
    elif finding.status is Status.NOT_APPLICABLE:
        ET.SubElement(case, "skipped", {"message": finding.summary})
    out = ET.SubElement(case, "system-out")
    out.text = "\n".join(["evidence:", *finding.evidence]) if finding.evidence else "no evidence"
    return case


def _waiver_reason(finding: Finding) -> str:
    waiver = finding.waiver
    assert waiver is not None
    return (
        f"waived: {waiver.justification} (approved by {waiver.approved_by} until "
        f"{waiver.expires.isoformat()})"
    )


def _details(finding: Finding) -> str:
    lines = [finding.summary, finding.summary_ja]
    if finding.waiver is not None and not finding.waiver.in_force:
        lines.append(
            f"waiver expired on {finding.waiver.expires.isoformat()} "
            f"(approved by {finding.waiver.approved_by}): {finding.waiver.justification}"
        )
    if finding.expected:
        lines.append(f"expected: {finding.expected}")
    if finding.actual:
        lines.append(f"actual: {finding.actual}")
    if finding.model:
        lines.append(f"model: {finding.model.status.value}: {finding.model.detail}")
    if finding.empirical:
        lines.append(f"probe: {finding.empirical.status.value}: {finding.empirical.detail}")
    if finding.disagreement:
        lines.append(f"disagreement: {finding.disagreement}")
    for number, hop in enumerate(finding.path, start=1):
        where = f" ({hop.network})" if hop.network else ""
        lines.append(f"hop {number}: {hop.host} {hop.direction}{where}: {hop.rule or '?'}")
    return "\n".join(line for line in lines if line)


def _suite(control: str, findings: list[Finding], timestamp: str) -> ET.Element:
    counts = Counter(f.status for f in findings)
    suite = ET.Element(
        "testsuite",
        {
            "name": control,
            "tests": str(len(findings)),
            "failures": str(sum(unwaived_fail(f) for f in findings)),
            "errors": str(counts[Status.INCONCLUSIVE]),
            "skipped": str(counts[Status.NOT_APPLICABLE] + sum(waived(f) for f in findings)),
            "time": "0",
            "timestamp": timestamp,
        },
    )
    suite.extend(_case(f) for f in findings)
    return suite


def build_junit(run: StoredRun) -> ET.ElementTree[ET.Element]:
    findings = sorted_findings(run.findings, run.controls)
    by_control: dict[str, list[Finding]] = {}
    for finding in findings:
        by_control.setdefault(finding.control, []).append(finding)
    counts = Counter(f.status for f in findings)
    root = ET.Element(
        "testsuites",
        {
            "name": f"anon-infra-auditor {run.run_id}",
            "tests": str(len(findings)),
            "failures": str(sum(unwaived_fail(f) for f in findings)),
            "errors": str(counts[Status.INCONCLUSIVE]),
            "skipped": str(counts[Status.NOT_APPLICABLE] + sum(waived(f) for f in findings)),
            "time": f"{_wall_seconds(run):.3f}",
        },
    )
    timestamp = run.document.run.started
    root.extend(_suite(control, items, timestamp) for control, items in by_control.items())
    ET.indent(root)
    return ET.ElementTree(root)


def _wall_seconds(run: StoredRun) -> float:
    """The run's wall time from its start and end: its phases overlap, so their sum is more
    than the audit took. A run without an end (stopped) counts its phases' sum."""
    info = run.document.run
    try:
        began = datetime.fromisoformat(info.started)
        ended = datetime.fromisoformat(info.finished) if info.finished else None
    except ValueError:
        ended = None
    if ended is None:
        return sum(info.phases.values())
    return max(0.0, (ended - began).total_seconds())


def write_junit(run: StoredRun) -> Path:
    path = run.run_dir / JUNIT_FILE
    buffer = io.BytesIO()
    build_junit(run).write(buffer, encoding="utf-8", xml_declaration=True)
    write_bytes_atomically(path, buffer.getvalue(), refuse_link=True)  # 0600, see html.py
    return path
