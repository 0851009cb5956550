"""``auditor lab ...``: the reference lab's commands. They parse arguments, call
``lab.runtime`` / ``lab.build`` and map errors to exit code 3."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import wraps
from typing import Annotated, ParamSpec, TypeVar

import typer
from rich.table import Table

from auditor.cli.exitcodes import ExitCode
from auditor.cli.terminal import make_console, say, untrusted
from auditor.domain.yamlsource import SourceError
from lab import runtime
from lab.build import build_image
from lab.errors import LabError

lab_app = typer.Typer(help="The containerized reference lab.", no_args_is_help=True)
taps_app = typer.Typer(
    help="The remote layout's vantage hosts (tap-<network>): start them, or stop them.",
    no_args_is_help=True,
)
lab_app.add_typer(taps_app, name="taps")

P = ParamSpec("P")
R = TypeVar("R")


def _one_line_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Operator errors become one line on stderr and exit code 3, not a traceback."""

    @wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except SourceError as exc:
            say(make_console(stderr=True), "invalid scenario", f"\n{exc}", style="")
            raise typer.Exit(ExitCode.CANNOT_RUN) from None
        except LabError as exc:
            say(make_console(stderr=True), "lab", exc, style="")
            raise typer.Exit(ExitCode.CANNOT_RUN) from None

    return wrapper


def _say(message: str) -> None:
    make_console().print(untrusted(message))


@lab_app.command("build-image")
@_one_line_errors
def build_image_command(
    force: Annotated[
        bool, typer.Option(help="Rebuild even when the cached image matches.")
    ] = False,
) -> None:
    """Build the lab's base image with debootstrap (a quick no-op when it is cached)."""
    runtime.require_root()
    build_image(_say, force=force)


@lab_app.command("up")
@_one_line_errors
def up_command(
    scenario: Annotated[
        str | None,
        typer.Option(help="A scenario folder, or a name under lab/scenarios/ (default: baseline)."),
    ] = None,
) -> None:
    """Bring the lab up (replacing any running lab) and wait until it works."""
    runtime.up(scenario, progress=_say)


@lab_app.command("down")
@_one_line_errors
def down_command() -> None:
    """Remove every lab container and network and the host's guard table."""
    runtime.down(progress=_say)
    _say("lab down")


@lab_app.command("status")
@_one_line_errors
def status_command() -> None:
    """Show the lab's hosts, container states, addresses, handshakes and last delivery."""
    lab, rows = runtime.status()
    if lab is None:
        raise LabError("no lab is running")
    table = Table(title=f"reference lab: scenario {lab.scenario} (state {lab.state_dir})")
    for column in ("host", "container", "addresses", "WireGuard handshake", "last delivery"):
        table.add_column(column)
    now = time.time()
    for row in rows:
        shakes = ", ".join(
            f"{name}: {now - at:.0f} s ago" if at else f"{name}: never"
            for name, at in sorted(row.handshakes.items())
        )
        table.add_row(
            row.host, row.state, "\n".join(row.addresses), shakes, row.last_delivery or ""
        )
    make_console().print(table)
    _say(f"inventory: {lab.inventory}")


@lab_app.command("inventory")
@_one_line_errors
def inventory_command(
    remote: Annotated[
        bool,
        typer.Option(
            "--remote",
            help="the remote-vantage layout: the auditor plugged into term-lan only",
        ),
    ] = False,
) -> None:
    """Print the path of the running lab's inventory file."""
    _say(str(runtime.inventory_path(remote)))


@taps_app.command("up")
@_one_line_errors
def taps_up_command() -> None:
    """Start the taps and mirror each network's bridge to its tap (for a remote audit)."""
    for mirror in runtime.taps_up(progress=_say):
        _say(
            f"  {mirror.tap}: mirror of {mirror.bridge} ({mirror.network}) on {mirror.tap_port}, "
            f"copying {len(mirror.ports)} ports and the bridge's own frames"
        )


@taps_app.command("down")
@_one_line_errors
def taps_down_command() -> None:
    """Remove the mirror rules and stop the taps (the direct layout's audits need them down)."""
    runtime.taps_down(progress=_say)
