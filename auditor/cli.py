"""The ``auditor`` command line. It parses arguments and maps results to exit codes; the work
is done by the modules it calls."""

from __future__ import annotations

import typer

from auditor.lab.cli import lab_app

app = typer.Typer(
    name="auditor",
    help="Audit an anonymisation organisation's infrastructure against 施行規則第6条.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(lab_app, name="lab")


def main() -> None:
    app()
