"""Parsers for what apt would upgrade, read-only (security-updates-applied, 第4号イ).

- ``apt-get -s -o Debug::NoLocking=1 dist-upgrade``: the simulation prints one ``Inst`` line
  per package it would install or upgrade, e.g.
  ``Inst labtool [1.0-1] (1.0-2 Lab:lab-security [all])``: the installed version in brackets,
  then the candidate and the releases that offer it (``origin:archive``, comma-separated, as in
  ``Debian-Security:12/stable-security``). It ends with the ``N upgraded, …`` summary, which is
  required so that a truncated output is never read as "nothing pending".
- The package lists' times: ``date -u +%s`` then ``find … -printf '%T@ %p\\n'`` of the
  ``*Release`` files of /var/lib/apt/lists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from probes.parsers.errors import ParseError

MAX_LINES = 200_000


@dataclass(frozen=True)
class Release:
    origin: str
    archive: str

    def __str__(self) -> str:
        return f"{self.origin}:{self.archive}"


@dataclass(frozen=True)
class PendingPackage:
    package: str
    installed: str | None  #: None: a new package the upgrade would pull in
    candidate: str
    releases: tuple[Release, ...]
    line: int
    text: str


_INST = re.compile(
    r"Inst (?P<package>[a-z0-9][a-z0-9+.:-]{0,200})(?: \[(?P<installed>[^\]\s]{1,200})\])?"
    r" \((?P<candidate>\S{1,200}) (?P<releases>[^\[]{0,4000}?) ?\[(?P<arch>[^\]]{1,40})\]\)"
    r"(?: \[[^\]]{0,200}\])?"
)
_SUMMARY = re.compile(r"\d+ upgraded, \d+ newly installed, \d+ to remove and \d+ not upgraded\.")


def parse_apt_simulation(text: str) -> list[PendingPackage]:
    """The packages an upgrade would install, with the releases offering each candidate."""
    pending = []
    summary = False
    for number, raw in _numbered(text, "apt-get -s"):
        line = raw.strip()
        if line.startswith("Inst "):
            match = _INST.fullmatch(line)
            if match is None:
                raise ParseError("apt-get -s", number, "unrecognised Inst line")
            pending.append(
                PendingPackage(
                    match["package"],
                    match["installed"],
                    match["candidate"],
                    _releases(match["releases"], number),
                    number,
                    line,
                )
            )
        elif _SUMMARY.fullmatch(line):
            summary = True
    if not summary:
        raise ParseError("apt-get -s", None, "no 'N upgraded, …' summary: output incomplete")
    return pending


def _releases(text: str, number: int) -> tuple[Release, ...]:
    releases = []
    for part in text.split(", "):
        origin, sep, archive = part.strip().rpartition(":")
        if not sep or not archive:
            raise ParseError("apt-get -s", number, f"release {part!r} is not ORIGIN:ARCHIVE")
        releases.append(Release(origin, archive))
    return tuple(releases)


@dataclass(frozen=True)
class ListTimes:
    now: int  #: the host's clock when listed (seconds since the epoch)
    files: dict[str, float]  #: path -> modification time


def parse_list_times(text: str) -> ListTimes:
    lines = [(n, line) for n, line in _numbered(text, "apt lists") if line.strip()]
    if not lines or not lines[0][1].strip().isdigit():
        raise ParseError("apt lists", 1, "expected the host's time (date -u +%s) first")
    files: dict[str, float] = {}
    for number, line in lines[1:]:
        when, _, path = line.strip().partition(" ")
        try:
            files[path] = float(when)
        except ValueError:
            raise ParseError("apt lists", number, "expected MTIME PATH") from None
        if not path.startswith("/var/lib/apt/lists/"):
            raise ParseError("apt lists", number, "not a file of /var/lib/apt/lists")
    return ListTimes(int(lines[0][1].strip()), files)


def _numbered(text: str, tool: str) -> list[tuple[int, str]]:
    lines = text.split("\n")
    if len(lines) > MAX_LINES:
        raise ParseError(tool, MAX_LINES, f"more than {MAX_LINES} lines")
    return list(enumerate(lines, start=1))
