"""The ``auditor`` command line. It parses arguments and maps results to exit codes; the work
is done by the modules it calls."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from auditor import report_cli, verify_cli, watch_cli
from auditor.exitcodes import ExitCode
from auditor.lab.cli import lab_app
from auditor.terminal import make_console, say
from auditor.yamlsource import SourceError

app = typer.Typer(
    name="auditor",
    help="Audit an anonymisation organisation's infrastructure against 施行規則第6条.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(lab_app, name="lab")
verify_cli.register(app)
watch_cli.register(app)
report_cli.register(app)


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
    from auditor.audit import AuditError, AuditOptions, run_audit
    from auditor.observer import ConsoleObserver
    from auditor.results import exit_code_for, print_summary

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
    app()
