"""Parsers for small text outputs: os-release, dpkg-query, sysctl flags, machine-id."""

from __future__ import annotations

import re
import shlex

from probes.parsers.errors import ParseError

_OS_RELEASE_KEY = re.compile(r"[A-Z][A-Z0-9_]*")
_MACHINE_ID = re.compile(r"[0-9a-f]{32}")
#: dpkg's second status letter: n not-installed, c config-files (package removed, its
#: configuration left): neither has the package's programs on disk.
_NOT_INSTALLED = frozenset("nc")


def parse_os_release(text: str) -> dict[str, str]:
    """``/etc/os-release`` (os-release(5)): ``KEY=value`` lines, values optionally quoted with
    shell quoting; blank lines and ``#`` comments ignored."""
    result: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, raw = stripped.partition("=")
        if not sep or not _OS_RELEASE_KEY.fullmatch(key):
            raise ParseError("os-release", number, "expected KEY=value")
        result[key] = _unquote(raw, number)
    return result


def _unquote(raw: str, number: int) -> str:
    if raw == "":
        return ""
    try:
        words = shlex.split(raw, posix=True)
    except ValueError as exc:
        raise ParseError("os-release", number, f"bad quoting: {exc}") from None
    if len(words) != 1:
        raise ParseError("os-release", number, "a value with spaces must be quoted")
    return words[0]


def parse_dpkg_query(text: str) -> dict[str, str]:
    """``dpkg-query -W -f='${db:Status-Abbrev}\\t${Package}\\t${Version}\\n'`` → installed
    package → version. Packages removed with their configuration kept ("rc") or known but not
    installed are left out. The two-column form without the status is accepted too (then
    every listed package counts as installed). A package listed for several architectures
    keeps its first version.
    """
    packages: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) == 3:
            status, name, version = cells
            if len(status.strip()) < 2:
                raise ParseError("dpkg-query", number, f"bad status {status!r}")
            if status[1] in _NOT_INSTALLED:
                continue
        elif len(cells) == 2:
            name, version = cells
        else:
            raise ParseError("dpkg-query", number, "expected tab-separated status, name, version")
        if not name or any(c.isspace() for c in name):
            raise ParseError("dpkg-query", number, f"bad package name {name!r}")
        packages.setdefault(name, version)
    return packages


def parse_flag(text: str, tool: str) -> bool:
    """A /proc/sys boolean such as ip_forward: exactly "0" or "1" (and a newline)."""
    value = text.strip()
    if value not in ("0", "1"):
        raise ParseError(tool, 1, f"expected 0 or 1, got {value[:20]!r}")
    return value == "1"


def parse_machine_id(text: str) -> str:
    value = text.strip()
    if not _MACHINE_ID.fullmatch(value):
        raise ParseError("machine-id", 1, "expected 32 lowercase hexadecimal digits")
    return value
