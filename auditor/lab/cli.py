"""``auditor lab ...``: the reference lab's commands."""

from __future__ import annotations

import typer

lab_app = typer.Typer(help="The containerized reference lab.", no_args_is_help=True)
