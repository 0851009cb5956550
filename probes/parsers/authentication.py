"""Parsers for how a host authenticates logins (authentication-hardening, 第4号イ).

- ``sshd -T``: sshd's effective configuration, one ``keyword value`` per line, keywords in
  lower case (sshd(8) "-T Extended test mode").
- ``passwd -S -a``: one status line per account, ``NAME STATUS DATE MIN MAX WARN INACTIVE``,
  STATUS being ``P`` (usable password), ``L`` (locked) or ``NP`` (no password) — never a hash.
- ``/etc/security/faillock.conf``: ``key = value`` or a bare flag per line, ``#`` comments
  (faillock.conf(5)).
- ``fail2ban-client status JAIL``: the jail's tree of ``|- Name:<TAB>value`` lines.

Each keeps the 1-based line number of what it read, so a finding can cite it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from probes.parsers.errors import ParseError

#: Bounds on what an (untrusted) host may send: a real sshd -T prints about 90 lines.
MAX_LINES = 100_000


@dataclass(frozen=True)
class Setting:
    """One ``keyword value`` line and where it was."""

    keyword: str
    value: str
    line: int


_SSHD_KEYWORD = re.compile(r"[a-z0-9]{1,64}")


def parse_sshd_effective(text: str) -> dict[str, list[Setting]]:
    """``sshd -T`` -> keyword -> its lines (several for keywords that repeat, e.g. hostkey)."""
    settings: dict[str, list[Setting]] = {}
    for number, raw in _numbered(text, "sshd -T"):
        line = raw.strip()
        if not line:
            continue
        keyword, _, value = line.partition(" ")
        if not _SSHD_KEYWORD.fullmatch(keyword):
            raise ParseError("sshd -T", number, "expected a lower-case keyword and its value")
        settings.setdefault(keyword, []).append(Setting(keyword, value.strip(), number))
    if not settings:
        raise ParseError("sshd -T", None, "no settings printed")
    return settings


@dataclass(frozen=True)
class AccountStatus:
    user: str
    status: str  #: "P", "L", "NP"
    line: int


_PASSWD_STATUSES = frozenset({"P", "PS", "L", "LK", "NP"})


def parse_passwd_status(text: str) -> list[AccountStatus]:
    """``passwd -S -a`` -> each account's password status. Only the first two columns are
    kept: the others are dates and ages, which this control does not judge."""
    accounts = []
    for number, raw in _numbered(text, "passwd -S"):
        if not raw.strip():
            continue
        words = raw.split()
        if len(words) < 2 or words[1] not in _PASSWD_STATUSES:
            raise ParseError("passwd -S", number, "expected NAME STATUS ...")
        # shadow-utils prints PS and LK on some distributions for P and L.
        status = {"PS": "P", "LK": "L"}.get(words[1], words[1])
        accounts.append(AccountStatus(words[0], status, number))
    if not accounts:
        raise ParseError("passwd -S", None, "no account listed")
    return accounts


def parse_faillock_conf(text: str) -> dict[str, Setting]:
    """faillock.conf -> key -> its last setting (pam_faillock reads the file top to bottom,
    a later line overriding an earlier one). A bare flag has the value ""."""
    settings: dict[str, Setting] = {}
    for number, raw in _numbered(text, "faillock.conf"):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not re.fullmatch(r"[a-z_]{1,32}", key) or (not sep and " " in line):
            raise ParseError("faillock.conf", number, "expected KEY = VALUE or a flag")
        settings[key] = Setting(key, value.strip(), number)
    return settings


@dataclass(frozen=True)
class JailStatus:
    jail: str
    values: dict[str, Setting]  #: "currently failed", "total banned", "file list", ...


_JAIL_HEADER = re.compile(r"Status for the jail: (?P<jail>\S{1,64})")
_JAIL_LINE = re.compile(r"[|` ]*[|`]- (?P<name>[A-Za-z ]{1,40})(?::\s*(?P<value>.*))?")


def parse_fail2ban_status(text: str) -> JailStatus:
    """``fail2ban-client status JAIL`` -> the jail's name and its values."""
    jail = None
    values: dict[str, Setting] = {}
    for number, raw in _numbered(text, "fail2ban-client"):
        if not raw.strip():
            continue
        header = _JAIL_HEADER.fullmatch(raw.strip())
        if header is not None and jail is None:
            jail = header["jail"]
            continue
        match = _JAIL_LINE.fullmatch(raw.rstrip())
        if jail is None or match is None:
            raise ParseError("fail2ban-client", number, "expected a jail status line")
        name = match["name"].strip().lower()
        values[name] = Setting(name, (match["value"] or "").strip(), number)
    if jail is None:
        raise ParseError("fail2ban-client", None, "no 'Status for the jail' line")
    return JailStatus(jail, values)


def _numbered(text: str, tool: str) -> list[tuple[int, str]]:
    lines = text.split("\n")
    if len(lines) > MAX_LINES:
        raise ParseError(tool, MAX_LINES, f"more than {MAX_LINES} lines")
    return list(enumerate(lines, start=1))


@dataclass(frozen=True)
class NetAccounts:
    """``net accounts`` (Windows), English display language."""

    lockout_threshold: Setting  #: value "Never" or a number of failed attempts
    minimum_password_length: Setting


_NET_LINE = re.compile(r"(?P<name>[A-Za-z][A-Za-z ()]{0,80}?):\s+(?P<value>\S.{0,80})")


def parse_net_accounts(text: str) -> NetAccounts:
    """The lockout threshold and minimum password length. Other display languages print
    other labels: a ParseError (the finding is then inconclusive: no known format)."""
    found: dict[str, Setting] = {}
    for number, raw in _numbered(text.lstrip("\ufeff"), "net accounts"):
        match = _NET_LINE.fullmatch(raw.strip())
        if match is not None:
            name = match["name"].strip().lower()
            found[name] = Setting(name, match["value"].strip(), number)
    try:
        threshold = found["lockout threshold"]
        length = found["minimum password length"]
    except KeyError as missing:
        raise ParseError("net accounts", None, f"no {missing} line (unknown format)") from None
    if threshold.value != "Never" and not threshold.value.isdigit():
        raise ParseError("net accounts", threshold.line, "lockout threshold not Never or a number")
    if not length.value.isdigit():
        raise ParseError("net accounts", length.line, "minimum password length not a number")
    return NetAccounts(threshold, length)
