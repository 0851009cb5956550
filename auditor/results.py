"""Writing findings.json, the console summary, and the exit code that findings imply."""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table

from auditor.exitcodes import ExitCode
from auditor.findings import Finding, FindingsDocument, Status
from auditor.terminal import untrusted

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


def write_text_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    """Write via a temporary file in the same folder, fsync, then rename: a reader sees the old
    file or the new one, never half of one. ``mode``: mkstemp makes 0600 files, which another
    account (node_exporter's, an auditor's viewer) could not read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_findings(path: Path, document: FindingsDocument) -> None:
    payload = json.dumps(document.model_dump(mode="json"), ensure_ascii=False, indent=2)
    write_text_atomically(path, payload + "\n", mode=0o600)


def read_findings(path: Path) -> FindingsDocument:
    return FindingsDocument.model_validate_json(path.read_text(encoding="utf-8"))


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
