"""The console summary of an audit and the exit code its findings imply."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table

from auditor.cli.exitcodes import ExitCode
from auditor.cli.terminal import untrusted
from auditor.domain.findings import Finding, Status

_STATUS_STYLE = {
    Status.PASS: "green",
    Status.FAIL: "bold red",
    Status.INCONCLUSIVE: "yellow",
    Status.NOT_APPLICABLE: "dim",
}


def exit_code_for(findings: list[Finding]) -> ExitCode:
    if not findings:
        return ExitCode.CANNOT_RUN  # nothing was judged: never report that as a pass
    statuses = {f.status for f in findings}
    if Status.FAIL in statuses:
        return ExitCode.FAIL
    if Status.INCONCLUSIVE in statuses:
        return ExitCode.INCONCLUSIVE
    return ExitCode.OK


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
            untrusted(finding.status, style),
            untrusted(text or ""),
        )
    return table


def print_summary(
    console: Console, findings: list[Finding], phases: dict[str, float], out_dir: Path
) -> None:
    console.print(summary_table(findings))
    counts = Counter(f.status for f in findings)
    console.print(
        "  ".join(f"[{_STATUS_STYLE[s]}]{s}: {counts.get(s, 0)}[/]" for s in Status),
        highlight=False,
    )
    if phases:
        timing = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in phases.items())
        console.print(f"Time per phase: {timing}; total {sum(phases.values()):.1f} s")
    console.print(untrusted(f"Findings and evidence: {out_dir}"))
