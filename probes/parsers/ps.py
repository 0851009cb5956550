"""Parser for ``ps -eo pid=,user=,comm=,args=``."""

from __future__ import annotations

import re

from auditor.domain.facts import Process
from probes.parsers.errors import ParseError

_TOOL = "ps"
#: procps prints ``comm`` in a column of this width (the kernel's TASK_COMM_LEN - 1), padded.
_COMM_WIDTH = 15
_PID_USER = re.compile(r" *(?P<pid>\d{1,10}) (?P<user>\S+) +")


def parse_ps(text: str) -> list[Process]:
    """One process per line: right-aligned pid, user, then ``comm`` in a 15-character column
    (it may contain spaces, so it is cut by position), then the full command line.

    The comm column starts where the user column ends, which is the same for every line of
    one output (user is padded to at least 8 characters; a longer name widens nothing: procps
    prints the numeric uid instead), so it is found per line from the user's padding.
    """
    processes: list[Process] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            processes.append(_process(line, number))
    return processes


def _process(line: str, number: int) -> Process:
    match = _PID_USER.match(line)
    if match is None:
        raise ParseError(_TOOL, number, "expected a pid and a user")
    rest = line[match.end() :]
    if len(rest) <= _COMM_WIDTH or rest[_COMM_WIDTH] != " ":
        return _short_comm(rest, int(match["pid"]), match["user"], number)
    comm = rest[:_COMM_WIDTH].rstrip()
    args = rest[_COMM_WIDTH + 1 :].strip()
    if not comm or not args:
        raise ParseError(_TOOL, number, "missing command name or arguments")
    return Process(pid=int(match["pid"]), user=match["user"], command=comm, args=args)


def _short_comm(rest: str, pid: int, user: str, number: int) -> Process:
    # A line whose comm column is not followed by a space at the expected place: accept only
    # the unambiguous form "comm args" with a comm free of spaces.
    comm, _, args = rest.partition(" ")
    if not comm or len(comm) > _COMM_WIDTH or not args.strip():
        raise ParseError(_TOOL, number, "cannot find the command name column")
    return Process(pid=pid, user=user, command=comm, args=args.strip())
