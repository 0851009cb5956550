"""The deploy/ files stay in step with the commands: the cron schedule parses, and every
command line they hold is accepted by `watch` (it stops at the missing inventory, exit 3, not
at a usage error, exit 2)."""

from __future__ import annotations

import configparser
import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from auditor.watch.schedule import parse_cron
from tests.unit.watch.watch_helpers import watch_app

DEPLOY = Path(__file__).parents[3] / "deploy"
runner = CliRunner()


def _defaults() -> dict[str, str]:
    values = {}
    for line in (DEPLOY / "systemd" / "auditor-watch.default").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


def _accepted(argv: list[str]) -> None:
    assert argv[0].endswith("/auditor")
    args = [
        a.replace("/etc/auditor/inventory.yaml", "/nonexistent/inventory.yaml") for a in argv[1:]
    ]
    result = runner.invoke(watch_app(), args)
    assert result.exit_code == 3, result.output
    assert "no such inventory file" in result.output


def test_cron_line_schedule_and_command() -> None:
    lines = [
        line
        for line in (DEPLOY / "cron" / "auditor-watch").read_text().splitlines()
        if line and not line.startswith("#") and "=" not in line.split()[0]
    ]
    (line,) = lines
    fields = line.split()
    parse_cron(" ".join(fields[:5]))
    assert fields[5] == "root"
    command = shlex.split(line.split(" root ", 1)[1].split(">>", 1)[0])
    _accepted(command)


@pytest.mark.parametrize("unit", ["auditor-watch.service", "auditor-check.service"])
def test_systemd_exec_start_is_accepted(unit: str) -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((DEPLOY / "systemd" / unit).read_text().replace("\\\n", " "))
    exec_start = parser["Service"]["ExecStart"]
    env = _defaults()
    # systemd: ${VAR} is one word, $VAR is split on whitespace.
    text = re.sub(r"\$\{(\w+)\}", lambda m: shlex.quote(env[m.group(1)]), exec_start)
    text = re.sub(r"\$(\w+)", lambda m: env[m.group(1)], text)
    _accepted(shlex.split(text))


def test_timer_names_the_check_service() -> None:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((DEPLOY / "systemd" / "auditor-check.timer").read_text())
    assert parser["Timer"]["Unit"] == "auditor-check.service"
    assert (DEPLOY / "systemd" / parser["Timer"]["Unit"]).is_file()
