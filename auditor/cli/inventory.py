"""``auditor inventory``: commands that help write the inventory (``draft``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from auditor.cli.exitcodes import ExitCode
from auditor.cli.terminal import make_console, say, untrusted
from auditor.domain.errors import AuditorError
from auditor.domain.files import write_text_atomically
from auditor.domain.inventory import Scope, SshAccess

app = typer.Typer(
    name="inventory",
    help="Help write the inventory: draft one from the organisation's hosts.",
    no_args_is_help=True,
)


def register(root: typer.Typer) -> None:
    """Add the ``inventory`` command group to the root application."""
    root.add_typer(app, name="inventory")


@app.command("draft")
def draft_command(
    *,
    host: Annotated[
        list[str],
        typer.Option(
            "--host", help="NAME=ADDRESS (or ADDRESS) of a host to log in to; repeat per host."
        ),
    ],
    key: Annotated[Path, typer.Option("--key", help="The auditor's private SSH key.")],
    known_hosts: Annotated[
        Path, typer.Option("--known-hosts", help="known_hosts file; host keys checked strictly.")
    ],
    scope: Annotated[
        list[str],
        typer.Option("--scope", help="An authorized prefix (repeatable): nothing else is probed."),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="The draft inventory to write.")],
    user: Annotated[str, typer.Option("--user", help="SSH login name.")] = "auditor",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="SSH port.")] = 22,
    force: Annotated[bool, typer.Option("--force", help="Overwrite OUT if it exists.")] = False,
    no_sweep: Annotated[
        bool, typer.Option("--no-sweep", help="Do not sweep the networks for neighbours.")
    ] = False,
) -> None:
    """Log in to the hosts read-only, sweep their networks, and write a draft inventory
    whose TODOs (zones, media, roles, the organisation) are left to decide."""
    from auditor.audit.draft import make_draft, parse_host_spec
    from auditor.audit.draft_yaml import annotate, render_draft, todo_count

    err = make_console(stderr=True)
    if out.exists() and not force:
        say(err, "cannot draft", f"{out} exists; pass --force to overwrite it")
        raise typer.Exit(ExitCode.CANNOT_RUN)
    try:
        specs = [parse_host_spec(h) for h in host]
        authorized, access = _settings(scope, key, known_hosts, user, port)
        draft = make_draft(specs, access, authorized, sweep=not no_sweep)
        text = render_draft(draft, out)
        write_text_atomically(out, text, 0o644, refuse_link=True)
    except (AuditorError, OSError) as exc:
        say(err, "cannot draft", exc)
        raise typer.Exit(ExitCode.CANNOT_RUN) from exc
    console = make_console()
    todos = todo_count(annotate(draft, out).document)
    console.print(
        untrusted(
            f"{out}: {len(draft.networks)} networks, {len(draft.tunnels)} tunnels, "
            f"{len(draft.hosts)} hosts logged in to, {len(draft.neighbours)} unknown "
            f"neighbours; {todos} TODO values to decide before it loads"
        )
    )
    for problem in [*draft.notes, *(f"{h.name}: {p}" for h in draft.hosts for p in h.problems)]:
        say(err, "note", problem, style="bold yellow")


def _settings(
    scope: list[str], key: Path, known_hosts: Path, user: str, port: int
) -> tuple[Scope, SshAccess]:
    """The scope and SSH access as the inventory would give them, validated the same way."""
    try:
        authorized = Scope(authorized=scope)
        access = SshAccess(
            user=user, key=key.resolve(), known_hosts=known_hosts.resolve(), port=port
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        raise _OptionError(f"--scope/--user/--port: {problems}") from exc
    for path, option in ((key, "--key"), (known_hosts, "--known-hosts")):
        if not path.is_file():
            raise _OptionError(f"{option} {path}: no such file")
    return authorized, access


class _OptionError(AuditorError):
    """An option's value cannot be used (a prefix with host bits, a missing key file)."""
