"""The ``auditor`` command line. It parses arguments and maps results to exit codes; the work
is done by the modules it calls."""

from __future__ import annotations

import logging
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated

import typer
from typer.exceptions import TyperException

from auditor.cli import inventory as inventory_cli
from auditor.cli import query as query_cli
from auditor.cli import report as report_cli
from auditor.cli import verify as verify_cli
from auditor.cli import watch as watch_cli
from auditor.cli import whatif as whatif_cli
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
query_cli.register(app)
whatif_cli.register(app)
inventory_cli.register(app)

#: The exit code click gives its usage errors (unknown option, bad value, missing argument).
CLICK_USAGE_ERROR = 2

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
    *,
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
    waivers: Annotated[
        Path | None,
        typer.Option(
            "--waivers",
            "-w",
            help="Accepted fails (YAML, docs/waivers.md): still reported, counted apart, "
            "not failing the exit code while in force.",
        ),
    ] = None,
) -> None:
    """Run every probe and control; write OUT/findings.json and the evidence."""
    from auditor.audit.options import AuditOptions
    from auditor.audit.orchestrator import AuditError, run_audit
    from auditor.cli.progress import ConsoleObserver
    from auditor.cli.summary import exit_code_for, print_summary
    from auditor.domain.waivers import load_waivers

    err = make_console(stderr=True)
    options = AuditOptions(
        link_capture_seconds=capture_seconds, network_probes=not no_network, scan_rate=scan_rate
    )
    if waivers is not None:
        try:
            load_waivers(waivers)  # said as the waivers' problem, before the inventory's
        except SourceError as exc:
            say(err, "invalid waivers", f"\n{exc}")
            raise typer.Exit(ExitCode.CANNOT_RUN) from exc
    try:
        result = run_audit(inventory, out, ConsoleObserver(err), options, waivers=waivers)
    except SourceError as exc:
        say(err, "invalid inventory", f"\n{exc}")
        raise typer.Exit(ExitCode.CANNOT_RUN) from exc
    except AuditError as exc:
        say(err, "cannot audit", exc)
        raise typer.Exit(ExitCode.CANNOT_RUN) from exc
    print_summary(
        make_console(),
        result.findings,
        result.phases,
        result.run_dir,
        result.waiver_warnings or [],
        seconds=result.seconds,
    )
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


def run_app(root: typer.Typer, args: list[str] | None = None) -> None:
    """Run the command line; an ``AuditorError`` that no command handled itself (the root of
    every error raised on purpose) is one line on stderr and exit code 3, never a traceback.

    A usage error (an unknown option, a bad value, a missing argument) is exit code 3 too:
    click's own 2 means "inconclusive" here, and a typo must never read as an audit's
    verdict. So the application runs outside click's standalone mode and maps the outcome
    itself."""
    try:
        code = root(args=args, standalone_mode=False)
    except typer.Abort:
        typer.echo("Aborted.", err=True)
        raise SystemExit(ExitCode.CANNOT_RUN) from None
    except TyperException as exc:  # click's usage and parameter errors, as typer raises them
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            typer.echo(f"error: {exc.format_message()}", err=True)
        usage = exc.exit_code == CLICK_USAGE_ERROR
        raise SystemExit(ExitCode.CANNOT_RUN if usage else exc.exit_code) from None
    except AuditorError as exc:
        say(make_console(stderr=True), "error", exc)
        raise SystemExit(ExitCode.CANNOT_RUN) from None
    # A command that ends normally returns None; typer.Exit(n) comes back as n.
    raise SystemExit(code if isinstance(code, int) else ExitCode.OK)
