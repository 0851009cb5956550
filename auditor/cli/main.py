"""The ``auditor`` command line. It parses arguments and maps results to exit codes; the work
is done by the modules it calls."""

from __future__ import annotations

import logging
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated

import typer

from auditor.cli import report as report_cli
from auditor.cli import verify as verify_cli
from auditor.cli import watch as watch_cli
from auditor.cli.exitcodes import ExitCode
from auditor.cli.terminal import make_console, say
from auditor.domain.errors import AuditorError
from auditor.domain.yamlsource import SourceError

app = typer.Typer(
    name="auditor",
    help="Audit an anonymisation organisation's infrastructure against 施行規則第6条.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
verify_cli.register(app)
watch_cli.register(app)
report_cli.register(app)

#: Command groups that other installed packages add (the reference lab adds ``auditor lab``).
#: The product never imports them: it finds them by their entry points, so it runs without them.
COMMAND_GROUPS = "anon_infra_auditor.commands"


def _add_command_groups(root: typer.Typer) -> None:
    for entry in entry_points(group=COMMAND_GROUPS):
        try:
            group = entry.load()
        except ImportError as exc:  # declared but not there: the product runs without it
            logging.getLogger(__name__).warning(
                "command group %r is not available: %s", entry.name, exc
            )
            continue
        root.add_typer(group, name=entry.name)


_add_command_groups(app)


@app.command("audit")
def audit_command(
    inventory: Annotated[
        Path, typer.Option("--inventory", "-i", help="The inventory file (YAML).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="The run folder to write.")],
    capture_seconds: Annotated[
        float, typer.Option(help="Seconds of capture on each external network.")
    ] = 8.0,
    scan_rate: Annotated[
        int, typer.Option(min=100, max=100_000, help="Minimum nmap packet rate (packets/s).")
    ] = 10_000,
    no_network: Annotated[
        bool, typer.Option("--no-network", help="Collect over SSH only: no scans or captures.")
    ] = False,
) -> None:
    """Run every probe and control; write OUT/findings.json and the evidence."""
    from auditor.audit.options import AuditOptions
    from auditor.audit.orchestrator import AuditError, run_audit
    from auditor.cli.progress import ConsoleObserver
    from auditor.cli.summary import exit_code_for, print_summary

    err = make_console(stderr=True)
    options = AuditOptions(
        link_capture_seconds=capture_seconds, network_probes=not no_network, scan_rate=scan_rate
    )
    try:
        result = run_audit(inventory, out, ConsoleObserver(err), options)
    except SourceError as exc:
        say(err, "invalid inventory", f"\n{exc}")
        raise typer.Exit(ExitCode.CANNOT_RUN) from exc
    except AuditError as exc:
        say(err, "cannot audit", exc)
        raise typer.Exit(ExitCode.CANNOT_RUN) from exc
    print_summary(make_console(), result.findings, result.phases, result.run_dir)
    if result.artifacts == 0:
        say(
            err,
            "cannot audit",
            "nothing could be collected from any host or network (see the problems above)",
        )
        raise typer.Exit(ExitCode.CANNOT_RUN)
    raise typer.Exit(exit_code_for(result.findings))


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # paramiko's transport thread logs a traceback when a session it waits on is closed (a
    # server that never sends its banner); probes.ssh reports every such failure itself.
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)
    run_app(app)


def run_app(root: typer.Typer) -> None:
    """Run the command line; an ``AuditorError`` that no command handled itself (the root of
    every error raised on purpose) is one line on stderr and exit code 3, never a traceback."""
    try:
        root()
    except AuditorError as exc:
        say(make_console(stderr=True), "error", exc)
        raise SystemExit(ExitCode.CANNOT_RUN) from None
