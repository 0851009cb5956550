"""``auditor verify DIR``: check a run's evidence offline and say plainly what is wrong.

Exit codes: 0 intact, 1 any problem, 3 the folder is not a run (ExitCode names them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from auditor.evidence import NotARunError
from auditor.exitcodes import ExitCode
from auditor.verify import VerificationReport, verify_run


def register(app: typer.Typer) -> None:
    """Add the ``verify`` command to the root application."""
    app.command("verify")(verify_command)


def verify_command(
    run: Annotated[Path, typer.Argument(help="The run folder written by `auditor audit --out`.")],
) -> None:
    """Check the evidence, its hash chain, the manifest and the findings' references offline."""
    console = Console()
    try:
        report = verify_run(run)
    except NotARunError as exc:
        console.print(f"[bold red]not a run:[/] {exc}")
        raise typer.Exit(ExitCode.CANNOT_RUN) from exc
    render(report, console)
    raise typer.Exit(ExitCode.OK if report.intact else ExitCode.FAIL)


def render(report: VerificationReport, console: Console) -> None:
    """A summary of the run, then every problem and note."""
    summary = Table.grid(padding=(0, 2))
    summary.add_row("run", report.location)
    summary.add_row("run id", report.run_id or "?")
    summary.add_row("artifacts", str(report.artifact_count))
    summary.add_row("chain head", report.chain_head or "?")
    summary.add_row("closed", "yes" if report.closed else "no (interrupted or still running)")
    summary.add_row("manifest", "present" if report.manifest_present else "absent")
    summary.add_row("findings.json", "present" if report.findings_present else "absent")
    console.print(summary)
    for note in report.notes:
        console.print(f"[yellow]note:[/] {note}")
    if report.intact:
        console.print("[bold green]INTACT[/]: every check passed")
        return
    problems = Table("check", "subject", "problem", title="Problems", show_lines=False)
    for problem in report.problems:
        problems.add_row(problem.check, problem.subject, problem.message)
    console.print(problems)
    console.print(f"[bold red]NOT INTACT[/]: {len(report.problems)} problem(s)")


__all__ = ["register", "render", "verify_command"]
