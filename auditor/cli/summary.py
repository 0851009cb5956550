"""The console summary of an audit and the exit code its findings imply."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from auditor.cli.exitcodes import ExitCode
from auditor.cli.terminal import say, untrusted
from auditor.domain.findings import Finding, Status, WaiverWarning
from auditor.domain.waivers import unwaived_fail, waived

_STATUS_STYLE = {
    Status.PASS: "green",
    Status.FAIL: "bold red",
    Status.INCONCLUSIVE: "yellow",
    Status.NOT_APPLICABLE: "dim",
}


def exit_code_for(findings: list[Finding]) -> ExitCode:
    """1 for a fail no waiver in force accepts, else 2 for an inconclusive, else 0. A waived
    fail is counted apart in the summary but does not fail the run (docs/waivers.md)."""
    if not findings:
        return ExitCode.CANNOT_RUN  # nothing was judged: never report that as a pass
    if any(unwaived_fail(f) for f in findings):
        return ExitCode.FAIL
    if any(f.status is Status.INCONCLUSIVE for f in findings):
        return ExitCode.INCONCLUSIVE
    return ExitCode.OK


def _status_cell(finding: Finding) -> str:
    if finding.waiver is None:
        return finding.status.value
    state = "waived" if finding.waiver.in_force else "waiver expired"
    return f"{finding.status.value} ({state})"


def summary_table(findings: list[Finding]) -> Table:
    table = Table(title="Findings", show_lines=False)
    table.add_column("control")
    table.add_column("subject")
    table.add_column("status")
    table.add_column("summary", overflow="fold")
    for finding in sorted(findings, key=lambda f: (f.control, f.subject)):
        style = _STATUS_STYLE[finding.status]
        text = finding.reason if finding.status is Status.INCONCLUSIVE else finding.summary
        table.add_row(
            untrusted(finding.control),
            untrusted(finding.subject),
            untrusted(_status_cell(finding), style),
            untrusted(text or ""),
        )
    return table


def print_summary(
    console: Console,
    findings: list[Finding],
    phases: dict[str, float],
    out_dir: Path,
    waiver_warnings: Sequence[WaiverWarning] = (),
    *,
    seconds: float | None = None,
) -> None:
    """``seconds``: the audit's wall time. The network phases overlap, so their sum is more
    than the audit took; without it no total is printed."""
    console.print(summary_table(findings))
    print_counts(console, findings)
    print_waivers(console, findings, waiver_warnings)
    if phases:
        timing = ", ".join(f"{name} {took:.1f} s" for name, took in phases.items())
        total = f"; the audit {seconds:.1f} s (phases overlap)" if seconds is not None else ""
        console.print(f"Time per phase: {timing}{total}")
    console.print(untrusted(f"Findings and evidence: {out_dir}"))


def print_counts(console: Console, findings: Sequence[Finding]) -> None:
    """One line of counts per status; waived fails are counted apart from the fails that
    count, so that the line agrees with the exit code."""
    counts = Counter(f.status for f in findings if not waived(f))
    parts = [f"[{_STATUS_STYLE[s]}]{s}: {counts.get(s, 0)}[/]" for s in Status]
    waived_fails = sum(waived(f) for f in findings)
    if waived_fails:
        parts.insert(2, f"[magenta]waived fail: {waived_fails}[/]")
    console.print("  ".join(parts), highlight=False)


def print_waivers(
    console: Console, findings: Sequence[Finding], warnings: Sequence[WaiverWarning]
) -> None:
    """Each waived fail with its approver and last day, then each problem of the waivers file
    as a warning: an expired waiver, one that accepts nothing, an unknown control or subject."""
    for finding in sorted(findings, key=lambda f: (f.control, f.subject)):
        applied = finding.waiver
        if applied is None or not applied.in_force:
            continue
        console.print(
            untrusted(
                f"waived: {finding.control} on {finding.subject}, approved by "
                f"{applied.approved_by} until {applied.expires.isoformat()}: "
                f"{applied.justification}",
                "magenta",
            )
        )
    for warning in warnings:
        say(
            console,
            "warning",
            f"waiver {warning.control} on {warning.subject}: {warning.message}",
            style="bold yellow",
        )
