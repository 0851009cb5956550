"""Parser for ``grep -RHn ^ DIR``: every line of every file under DIR, with file and line.

The collector reads root-only configuration folders this way because one exact command can be
allowed in sudoers without a wildcard (``cat DIR/*`` would also match ``../`` paths), and the
findings can cite ``file:line``.
"""

from __future__ import annotations

import re

from probes.parsers.errors import ParseError

_LINE = re.compile(r"(?P<path>/[^:\n]*):(?P<number>\d{1,9}):(?P<text>.*)")
#: grep before 3.5 printed this on standard output for a binary file; newer ones on stderr.
_BINARY = re.compile(r"Binary file .* matches")


def parse_grep_lines(text: str, tool: str) -> dict[str, dict[int, str]]:
    """File path -> line number -> line text. Lines of other forms are a ParseError."""
    files: dict[str, dict[int, str]] = {}
    for number, raw in enumerate(text.split("\n"), start=1):
        if raw == "" or _BINARY.fullmatch(raw):
            continue
        match = _LINE.fullmatch(raw)
        if match is None:
            raise ParseError(tool, number, "expected PATH:LINE:TEXT")
        lines = files.setdefault(match["path"], {})
        lines[int(match["number"])] = match["text"]
    return files


def file_text(lines: dict[int, str], tool: str, path: str) -> str:
    """One file's text rebuilt from its numbered lines. The pattern ``^`` matches every line,
    so the numbers must run from 1 without a gap; a gap means the output is not that grep's."""
    if sorted(lines) != list(range(1, len(lines) + 1)):
        raise ParseError(tool, None, f"{path}: line numbers do not run from 1 without a gap")
    return "".join(lines[n] + "\n" for n in range(1, len(lines) + 1))
