"""The lab's sudoers for the audit account allows exactly the collector plan's sudo commands
(plus the egress probe's ping, which needs a wildcard for its target), and nothing that prints
a secret."""

from __future__ import annotations

import re
from pathlib import Path

from probes.host_collector import DEFAULT_PLAN

SUDOERS = Path(__file__).parents[3] / "lab" / "sudoers" / "auditor"
SUDO = "sudo -n "


def logical_lines(text: str) -> list[str]:
    """sudoers lines without comments, backslash continuations joined."""
    joined = re.sub(r"\\\n", " ", text)
    return [line.strip() for line in joined.splitlines() if line.strip() and line[0] != "#"]


def granted_on_every_host(text: str) -> set[str]:
    """The commands of the ``auditor ALL=(root) NOPASSWD:`` entry, aliases expanded."""
    aliases: dict[str, list[str]] = {}
    granted: list[str] = []
    for line in logical_lines(text):
        alias = re.fullmatch(r"Cmnd_Alias (\w+) = (.*)", line)
        if alias:
            aliases[alias[1]] = [c.strip() for c in alias[2].split(",")]
        entry = re.fullmatch(r"auditor ALL=\(root\) NOPASSWD: (.*)", line)
        if entry:
            granted += [c.strip() for c in entry[1].split(",")]
    return {command for name in granted for command in aliases.get(name, [name])}


def test_the_lab_sudoers_grants_exactly_the_plans_sudo_commands() -> None:
    planned = {c.removeprefix(SUDO) for c in DEFAULT_PLAN.commands() if c.startswith(SUDO)}
    granted = granted_on_every_host(SUDOERS.read_text())
    exact = {c for c in granted if "*" not in c}
    assert planned == exact
    # The only wildcard is the egress probe's ping target (not a collector command).
    assert {c.split()[0] for c in granted - exact} == {"/usr/bin/ping"}


def test_the_plans_sudo_commands_are_full_paths_without_shell_syntax() -> None:
    for command in DEFAULT_PLAN.commands():
        if command.startswith(SUDO):
            program = command.removeprefix(SUDO).split()[0]
            assert program.startswith("/"), command
            assert not set(command) & set(";|&$`<>*?"), command
