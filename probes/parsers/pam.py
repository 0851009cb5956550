"""Parser for Linux-PAM's per-service configuration (pam.d(5)), as ``grep -RHn ^ /etc/pam.d``
prints it.

A line is ``[-]TYPE CONTROL MODULE [ARGUMENTS]`` or ``@include FILE``. CONTROL is a keyword
(required, requisite, sufficient, optional, include, substack) or ``[value=action …]``; an
argument with spaces is written in brackets. ``#`` starts a comment anywhere on a line, and a
line ending in a backslash continues on the next one (libpam's pam_assemble_line).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from probes.parsers.errors import ParseError
from probes.parsers.grep import file_text, parse_grep_lines

PAM_DIR = "/etc/pam.d"
TYPES = frozenset({"auth", "account", "password", "session"})
KEYWORDS = frozenset({"required", "requisite", "sufficient", "optional", "include", "substack"})
_ACTION = re.compile(r"[a-z_]+=(?:ignore|bad|die|ok|done|reset|\d{1,4})")


@dataclass(frozen=True)
class PamLine:
    """One configuration line of a service file, where it starts and as it was written."""

    path: str
    number: int
    text: str
    type: str  #: auth, account, password, session; "" for ``@include``
    control: str  #: a keyword, ``[…]`` as written, or "@include"
    module: str  #: the module path, or the included file
    args: tuple[str, ...] = ()
    quiet: bool = False  #: ``-TYPE``: a module that cannot be loaded is skipped silently

    @property
    def includes(self) -> bool:
        return self.control in ("@include", "include", "substack")

    @property
    def actions(self) -> dict[str, str]:
        """A bracketed control's ``value=action`` pairs (empty for a keyword)."""
        if not self.control.startswith("["):
            return {}
        pairs = [pair.partition("=") for pair in self.control[1:-1].split()]
        return {value: action for value, _, action in pairs}


def parse_pam_directory(text: str) -> dict[str, list[PamLine]]:
    """``grep -RHn ^ /etc/pam.d`` -> file path -> its configuration lines."""
    files = parse_grep_lines(text, "grep /etc/pam.d")
    return {
        path: parse_pam_file(file_text(lines, "grep /etc/pam.d", path), path)
        for path, lines in files.items()
    }


def parse_pam_file(text: str, path: str) -> list[PamLine]:
    return [_line(joined, number, path) for number, joined in _logical_lines(text)]


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Comment-free lines with backslash continuations joined, each with its first line's
    number. As in libpam, a comment ends a continuation."""
    result: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        continued = raw.rstrip(" \t").endswith("\\") and "#" not in raw
        body = raw.split("#", 1)[0]
        if continued:
            body = body.rstrip(" \t")[:-1] + " "
        start, sofar = pending if pending is not None else (number, "")
        sofar += body
        if continued:
            pending = (start, sofar)
            continue
        pending = None
        if sofar.strip():
            result.append((start, sofar.strip()))
    if pending is not None and pending[1].strip():
        result.append((pending[0], pending[1].strip()))
    return result


def _line(line: str, number: int, path: str) -> PamLine:
    if line.startswith("@include"):
        words = line.split()
        if len(words) != 2 or words[0] != "@include":
            raise ParseError(path, number, "expected '@include FILE'")
        return PamLine(path, number, line, "", "@include", words[1])
    kind, rest = _first_word(line)
    quiet = kind.startswith("-")
    kind = (kind[1:] if quiet else kind).lower()
    if kind not in TYPES:
        raise ParseError(path, number, f"unknown type {kind!r}")
    control, rest = _control(rest, number, path)
    words = _words(rest, number, path)
    if not words:
        raise ParseError(path, number, "no module")
    return PamLine(path, number, line, kind, control, words[0], tuple(words[1:]), quiet)


def _control(text: str, number: int, path: str) -> tuple[str, str]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ParseError(path, number, "unterminated [control]")
        control = "[" + " ".join(text[1:end].split()) + "]"
        if not all(_ACTION.fullmatch(pair) for pair in control[1:-1].split()):
            raise ParseError(path, number, f"bad control {control!r}")
        return control, text[end + 1 :]
    word, rest = _first_word(text)
    if word.lower() not in KEYWORDS:
        raise ParseError(path, number, f"unknown control {word!r}")
    return word.lower(), rest


def _first_word(text: str) -> tuple[str, str]:
    parts = text.split(None, 1)
    if not parts:
        return "", ""
    return parts[0], parts[1] if len(parts) == 2 else ""


def _words(text: str, number: int, path: str) -> list[str]:
    """Module and arguments; an argument in brackets may hold spaces (``\\]`` is a bracket)."""
    words: list[str] = []
    index = 0
    while index < len(text):
        if text[index].isspace():
            index += 1
            continue
        if text[index] == "[":
            end = index + 1
            while end < len(text) and not (text[end] == "]" and text[end - 1] != "\\"):
                end += 1
            if end >= len(text):
                raise ParseError(path, number, "unterminated [argument]")
            words.append(text[index + 1 : end].replace("\\]", "]"))
            index = end + 1
            continue
        end = index
        while end < len(text) and not text[end].isspace():
            end += 1
        words.append(text[index:end])
        index = end
    return words
