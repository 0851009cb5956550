"""``auditor query``: path questions on a stored run, answered from its model (nothing is sent).

The work is in ``auditor.analysis.query``; this module parses the options, prints the answer
and maps outcomes to exit codes: 0 answered (whatever the answer), 3 could not run (a folder
that is not a run, an unknown name, options that do not fit together).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from auditor.analysis.query import (
    InboundAnswer,
    PathAnswer,
    Proto,
    QueryAnswer,
    QueryError,
    query_inbound,
    query_path,
)
from auditor.analysis.stored import StoredRunError, load_stored_model
from auditor.cli.exitcodes import ExitCode
from auditor.cli.terminal import make_console, say, untrusted
from topology.reach import Reachability

_VERDICT_STYLES = {"yes": "bold red", "no": "bold green", "unknown": "bold yellow"}

# What terminal.clean escapes, but as JSON escapes: json.dumps (ensure_ascii=False, to keep
# Japanese names readable) escapes only C0 controls; DEL, C1 controls and the characters that
# reorder or hide text would reach the terminal raw, and clean's "\x7f" is not valid JSON.
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")


def register(app: typer.Typer) -> None:
    """Add the command to the root application."""
    app.command("query")(query_command)


def query_command(
    run: Annotated[
        Path,
        typer.Argument(
            metavar="RUN_DIR", help="A run folder (auditor audit --out) or a recorded context."
        ),
    ],
    *,
    target: Annotated[
        str,
        typer.Option(
            "--to", help="A host, a network or tunnel, or an IPv4/IPv6 address or prefix."
        ),
    ],
    source: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="A host, or a network or tunnel (a device there not in the inventory). "
            "Without it: every network, tunnel and collected host that can reach --to.",
        ),
    ] = None,
    proto: Annotated[
        Proto | None,
        typer.Option("--proto", help="Only this protocol (icmp: echo requests)."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port",
            min=1,
            max=65535,
            help="Only this destination port (tcp and udp unless --proto).",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON document instead of text.")
    ] = False,
) -> None:
    """Can SOURCE open a new connection to TARGET, and by which path? Answered from the run's
    model: reachable yes, no or unknown, the packets that get through, every path hop by hop
    with the rule that decided, and what the model could not decide. Nothing is sent. Exit
    code 0 when answered (whatever the answer), 3 when the question cannot be asked."""
    try:
        answered = _ask(run, source, target, proto, port)
    except (StoredRunError, QueryError) as exc:
        say(make_console(stderr=True), "cannot query", exc)
        raise typer.Exit(ExitCode.CANNOT_RUN) from exc
    if isinstance(answered, InboundAnswer):
        _print_inbound(make_console(), answered, as_json)
    else:
        _print_answer(make_console(), answered, as_json)


def _ask(
    run: Path, source: str | None, target: str, proto: Proto | None, port: int | None
) -> QueryAnswer | InboundAnswer:
    topology = load_stored_model(run).topology
    if source is None:
        return query_inbound(topology, target, proto, port)
    return query_path(topology, source, target, proto, port)


def _print_answer(console: Console, answer: QueryAnswer, as_json: bool) -> None:
    if as_json:
        _print_json(console, answer.to_json())
        return
    _print_header(console, answer)
    _print_body(console, answer)


def _print_inbound(console: Console, inbound: InboundAnswer, as_json: bool) -> None:
    if as_json:
        _print_json(console, inbound.to_json())
        return
    console.print(_line("to", inbound.target.describe()))
    console.print(_line("asked", inbound.asked))
    console.print(
        _line(
            "sources that can reach it",
            f"{len(inbound.answers)} of {inbound.sources_asked} "
            "(networks and tunnels as a device not in the inventory, collected hosts as themselves)",
        )
    )
    for answer in inbound.answers:
        console.print()
        console.print(_line("from", answer.source.describe(), "bold"))
        _print_body(console, answer)


def _print_header(console: Console, answer: QueryAnswer) -> None:
    console.print(_line("from", answer.source.describe()))
    console.print(_line("to", answer.target.describe()))
    console.print(_line("asked", answer.asked))


def _print_body(console: Console, answer: QueryAnswer) -> None:
    verdict = str(answer.reachable)
    console.print(Text.assemble(("reachable: ", "bold"), (verdict, _VERDICT_STYLES[verdict])))
    for remark in answer.remarks:
        console.print(_line("note", remark))
    if answer.packets:
        console.print(Text("packets that get through:", style="bold"))
        for line in answer.packets:
            console.print(Text.assemble("  ", untrusted(line)))
    for number, path in enumerate(answer.paths, start=1):
        _print_path(console, number, path)
    if answer.reasons:
        console.print(Text("could not decide:", style="bold"))
        for reason in answer.reasons:
            console.print(Text.assemble("  ", untrusted(reason)))
    if answer.notes and not answer.paths and answer.reachable is Reachability.UNKNOWN:
        # Only an unknown with no path to explain it needs the model's notes (a search cut
        # short, a host's missing facts); otherwise they are the source's collection notes,
        # kept in --json.
        console.print(Text("notes:", style="bold"))
        for note in answer.notes:
            console.print(Text.assemble("  ", untrusted(note)))


def _print_path(console: Console, number: int, path: PathAnswer) -> None:
    certainty = "certain" if path.certain else "uncertain"
    console.print(Text(f"path {number} ({certainty}):", style="bold"))
    for line in path.packets:
        console.print(Text.assemble("  packets: ", untrusted(line)))
    for index, hop in enumerate(path.hops, start=1):
        where = f"{hop.host} on {hop.network}" if hop.network else hop.host
        parts: list[str | Text | tuple[str, str]] = [
            f"  {index}. ",
            (f"{hop.direction:<7}", "cyan"),
            " ",
            untrusted(where),
        ]
        if hop.rule:
            parts += [": ", untrusted(hop.rule)]
        if hop.rule_ref:
            parts += [" ", untrusted(f"[{hop.rule_ref}]", "dim")]
        console.print(Text.assemble(*parts))
    for reason in path.reasons:
        console.print(Text.assemble("  because: ", untrusted(reason)))


def _line(label: str, value: str, style: str = "bold") -> Text:
    return Text.assemble((f"{label}: ", style), untrusted(value))


def _print_json(console: Console, document: Any) -> None:
    text = json.dumps(document, ensure_ascii=False, indent=2)
    safe = _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    # soft_wrap: a wrapped line would cut a JSON string in two on a narrow terminal.
    console.print(untrusted(safe), soft_wrap=True)
