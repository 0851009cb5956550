"""``auditor whatif``: a stored run judged again under proposed changes, without probing.

The work is in ``auditor.analysis.whatif``; here the options become changes, the verdicts that
differ from the run's are printed, and the exit code is the one ``audit`` would give: 0 no fail
and nothing inconclusive, 1 a fail no waiver in force accepts, 2 inconclusive, 3 could not run
(a malformed change or waivers file, an unknown host or network, a rule set nft refuses, an
unusable run or output folder).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from auditor.cli.exitcodes import ExitCode
from auditor.cli.terminal import make_console, say, untrusted

if TYPE_CHECKING:
    from auditor.analysis.whatif import VerdictChange
    from auditor.domain.findings import Finding

T = TypeVar("T")


def register(app: typer.Typer) -> None:
    """Add the command to the root application."""
    app.command("whatif")(whatif_command)


def whatif_command(
    run: Annotated[Path, typer.Argument(help="The run folder written by `auditor audit --out`.")],
    *,
    out: Annotated[Path, typer.Option("--out", "-o", help="The folder to write the what-if to.")],
    ruleset: Annotated[
        list[str] | None,
        typer.Option(
            "--ruleset",
            metavar="HOST=FILE",
            help="Replace HOST's whole nftables rule set by FILE (nft text or nft -j JSON).",
        ),
    ] = None,
    route: Annotated[
        list[str] | None,
        typer.Option(
            "--route",
            metavar="HOST='ROUTE'",
            help="Add an `ip route` line to HOST's routes; HOST='-ROUTE' removes the matching "
            "route(s).",
        ),
    ] = None,
    forwarding: Annotated[
        list[str] | None,
        typer.Option("--forwarding", metavar="HOST=on|off", help="IPv4 and IPv6 forwarding."),
    ] = None,
    listen: Annotated[
        list[str] | None,
        typer.Option(
            "--listen",
            metavar="HOST=[ADDR:]PORT/PROTO",
            help="A listening socket opened on HOST (every address when ADDR is left out).",
        ),
    ] = None,
    link_down: Annotated[
        list[str] | None,
        typer.Option(
            "--link-down",
            metavar="NETWORK",
            help="The network (or tunnel) carries nothing; tunnels over it neither.",
        ),
    ] = None,
    host_down: Annotated[
        list[str] | None,
        typer.Option(
            "--host-down",
            metavar="HOST",
            help="HOST is absent: nothing reaches or passes through it.",
        ),
    ] = None,
    waivers: Annotated[
        Path | None,
        typer.Option(
            "--waivers",
            "-w",
            help="Accepted fails (YAML, docs/waivers.md), applied to the what-if's findings on "
            "today's date: still reported, counted apart, not failing the exit code while in "
            "force.",
        ),
    ] = None,
) -> None:
    """Judge a stored run again with proposed changes applied to its model (no probing).

    Writes OUT/findings.json, the reports, OUT/whatif.json (the changes), and prints the
    verdicts that differ from the run's. The probe side of every finding says it was not
    measured for the change."""
    from auditor.analysis import changes as parse
    from auditor.analysis.whatif import run_whatif
    from auditor.cli.summary import exit_code_for, print_waivers
    from auditor.domain.errors import AuditorError
    from auditor.domain.waivers import load_waivers
    from auditor.domain.yamlsource import SourceError

    err = make_console(stderr=True)
    try:
        accepted = load_waivers(waivers) if waivers is not None else None
    except SourceError as exc:
        say(err, "invalid waivers", f"\n{exc}")
        raise typer.Exit(ExitCode.CANNOT_RUN) from exc
    try:
        proposed: list[parse.Change] = [
            *_each(ruleset, parse.parse_ruleset_spec),
            *_each(route, parse.parse_route_spec),
            *_each(forwarding, parse.parse_forwarding_spec),
            *_each(listen, parse.parse_listen_spec),
            *_each(link_down, lambda name: parse.LinkDownChange(name.strip())),
            *_each(host_down, lambda name: parse.HostDownChange(name.strip())),
        ]
        result = run_whatif(run, out, proposed, accepted)
    except AuditorError as exc:
        say(err, "cannot run what-if", exc)
        raise typer.Exit(ExitCode.CANNOT_RUN) from exc
    console = make_console()
    _print_changes(console, result.stored_run_id, [parse.describe(c) for c in proposed])
    _print_verdicts(console, result.changed, _waiver_marks(result.findings))
    if result.waiver_warnings is not None:
        print_waivers(console, result.findings, result.waiver_warnings)
    console.print(untrusted(f"What-if findings and reports: {result.out_dir}"))
    raise typer.Exit(exit_code_for(result.findings))


def _each(values: Sequence[str] | None, parse: Callable[[str], T]) -> list[T]:
    return [parse(value) for value in values or []]


def _print_changes(console: Console, run_id: str, changes: list[dict[str, str]]) -> None:
    if not changes:
        # Still useful: the run's model alone, every probe result set aside.
        console.print(untrusted(f"What-if on run {run_id}, nothing probed; no change given"))
        return
    console.print(untrusted(f"What-if on run {run_id}, nothing probed; changes applied:"))
    for change in changes:
        console.print(untrusted(f"  --{change['kind']} {change['spec']}"))


def _waiver_marks(findings: Sequence[Finding]) -> dict[tuple[str, str], str]:
    """What follows a new verdict that carries a waiver, as in the audit's summary."""
    return {
        (f.control, f.subject): " (waived)" if f.waiver.in_force else " (waiver expired)"
        for f in findings
        if f.waiver is not None
    }


def _print_verdicts(
    console: Console, verdicts: Sequence[VerdictChange], marks: dict[tuple[str, str], str]
) -> None:
    if not verdicts:
        console.print("No verdict differs from the stored run's.")
        return
    console.print(f"{len(verdicts)} verdict(s) differ from the stored run's:")
    for c in verdicts:
        console.print(
            Text.assemble(
                "  ",
                untrusted(f"{c.control} {c.subject}: "),
                untrusted(c.old),
                " -> ",
                untrusted(c.new, "bold red" if c.new == "fail" else ""),
                untrusted(marks.get((c.control, c.subject), ""), "magenta"),
            )
        )
        # Rule texts and host names in paths come from the hosts: printed as data.
        _print_path(console, "new path", c.new_path)
        _print_path(console, "vanished path", c.vanished_path)


def _print_path(console: Console, label: str, hops: Sequence[str]) -> None:
    if not hops:
        return
    console.print(f"      {label}:")
    for hop in hops:
        console.print(Text.assemble("        ", untrusted(hop)))
