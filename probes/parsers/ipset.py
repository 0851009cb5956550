"""``ipset save``: the sets iptables' ``-m set --match-set`` looks up.

The output is one ``create NAME TYPE [options]`` line per set and one ``add NAME MEMBER
[options]`` line per member (restore syntax). Bounded like every host output: lines, line
length, sets; an unknown line is an error naming its line, never skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from auditor.domain.facts import Ipset
from probes.parsers.errors import ParseError

_TOOL = "ipset"
MAX_LINES = 500_000
MAX_LINE = 4096
MAX_SETS = 4096


@dataclass
class _Set:
    type: str
    family: str | None
    members: list[str] = field(default_factory=list)
    nomatch: bool = False


def parse_ipset_save(text: str) -> tuple[Ipset, ...]:
    lines = text.splitlines()
    if len(lines) > MAX_LINES:
        raise ParseError(_TOOL, MAX_LINES + 1, f"more than {MAX_LINES} lines")
    sets: dict[str, _Set] = {}
    for number, line in enumerate(lines, start=1):
        _read_line(line, number, sets)
    return tuple(
        Ipset(name=name, type=s.type, family=s.family, members=tuple(s.members), nomatch=s.nomatch)
        for name, s in sets.items()
    )


def _read_line(line: str, number: int, sets: dict[str, _Set]) -> None:
    if len(line) > MAX_LINE or "\x00" in line:
        raise ParseError(_TOOL, number, "line too long or not text")
    words = line.split()
    if not words:
        return
    if words[0] == "create" and len(words) >= 3:
        if words[1] in sets or len(sets) >= MAX_SETS:
            raise ParseError(_TOOL, number, f"set {words[1]!r} created twice, or too many sets")
        sets[words[1]] = _Set(words[2], _option(words[3:], "family"))
        return
    if words[0] == "add" and len(words) >= 3:
        found = sets.get(words[1])
        if found is None:
            raise ParseError(_TOOL, number, f"member of set {words[1]!r} before its create")
        found.members.append(words[2])
        found.nomatch = found.nomatch or "nomatch" in words[3:]
        return
    raise ParseError(_TOOL, number, f"not a create or add line: {line[:80]!r}")


def _option(words: list[str], name: str) -> str | None:
    for index, word in enumerate(words[:-1]):
        if word == name:
            return words[index + 1]
    return None
