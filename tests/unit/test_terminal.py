"""What the CLIs print off a terminal: messages on one line whatever the width, host text as
data (never markup, never terminal control)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from auditor.cli.terminal import PLAIN_WIDTH, clean, make_console, say, untrusted

AUDITOR = [sys.executable, "-m", "auditor"]


def _long_missing_inventory(tmp_path: Path) -> Path:
    """A path of exactly 120 characters that does not exist."""
    folder = tmp_path / "inventories-of-the-site"
    stem = f"{folder}/"
    name = "x" * (120 - len(stem) - len(".yaml")) + ".yaml"
    path = Path(stem + name)
    assert len(str(path)) == 120
    return path


@pytest.mark.parametrize("columns", [None, "40"])
def test_an_error_naming_a_120_character_path_reaches_a_pipe_on_one_line(
    tmp_path: Path, columns: str | None
) -> None:
    inventory = _long_missing_inventory(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns is not None:
        env["COLUMNS"] = columns
    proc = subprocess.run(
        [*AUDITOR, "audit", "--inventory", str(inventory), "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 3, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if str(inventory) in line]
    assert len(lines) == 1, proc.stderr


def test_the_watch_cli_error_is_one_line_at_40_columns(tmp_path: Path) -> None:
    inventory = _long_missing_inventory(tmp_path)
    env = {**os.environ, "COLUMNS": "40"}
    proc = subprocess.run(
        [*AUDITOR, "watch", "--inventory", str(inventory), "--state", str(tmp_path), "--once"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 3
    assert any(str(inventory) in line for line in proc.stderr.splitlines()), proc.stderr


def test_off_a_terminal_tables_have_a_fixed_width_that_columns_can_only_widen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    assert make_console().width == PLAIN_WIDTH
    monkeypatch.setenv("COLUMNS", "40")
    assert make_console().width == PLAIN_WIDTH
    monkeypatch.setenv("COLUMNS", "250")
    assert make_console().width == 250


def _printed(message: object) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=40, soft_wrap=True, color_system=None)
    say(console, "error", message)
    return buffer.getvalue()


def test_markup_in_host_text_is_printed_not_parsed() -> None:
    # A banner like this one made rich raise MarkupError and stopped the whole audit.
    assert _printed("SSH-[/]-x [bold]y[/bold]") == "error: SSH-[/]-x [bold]y[/bold]\n"


def test_terminal_controls_in_host_text_are_shown_escaped() -> None:
    hostile = "ok\x1b[2J\x1b]0;owned\x07\u202etxt.exe\r"
    out = _printed(hostile)
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out and "\r" not in out
    assert out == "error: ok\\x1b[2J\\x1b]0;owned\\x07\\u202etxt.exe\\x0d\n"


def test_clean_keeps_ordinary_text_whole() -> None:
    text = "受信サーバ recv-srv: tab\there, line\nnext, ÅÄÖ"
    assert clean(text) == text
    assert untrusted("[red]x[/]").plain == "[red]x[/]"


def test_a_hostile_banner_in_a_problem_and_a_finding_reaches_the_console_as_text() -> None:
    """An SSH banner `SSH-[/]-x` in a collection problem, or a process argument with `[/]` in a
    finding's summary, made rich raise MarkupError: no findings were written for any host."""
    from auditor.cli.progress import ConsoleObserver
    from auditor.cli.summary import print_summary
    from auditor.domain.findings import Finding, Status

    buffer = io.StringIO()
    console = Console(file=buffer, width=200, soft_wrap=True, color_system=None)
    ConsoleObserver(console).problem("collect", "recv-srv: banner SSH-[/]-x\x1b[2J")
    finding = Finding(
        control="no-remote-control-software",
        subject="proc-srv",
        status=Status.FAIL,
        clauses=[],
        summary="x11vnc [/] [bold]running[/bold]",
        summary_ja="x",
    )
    print_summary(console, [finding], {}, Path("/tmp/run"))
    out = buffer.getvalue()
    assert "banner SSH-[/]-x\\x1b[2J" in out
    assert "x11vnc [/] [bold]running[/bold]" in out
    assert "\x1b" not in out
