"""Parsers for the Linux audit system: ``auditctl -s``, ``auditctl -l``, rules files
(audit.rules(7): ``/etc/audit/audit.rules``, ``/etc/audit/rules.d/*.rules``) and auditd.conf.

``auditctl -l`` prints one rule a line in the syntax of the rules files, as the audit userspace
project's auditctl-listing.c writes it: ``-a ACTION,LIST``, then ``-F arch=b64|b32``, then
``-S name,name`` (or ``-S all``), then each field as ``-F name<op>value`` (numbers in signed
decimal, so an unset login uid prints as ``-1``), ``-C a<op>b`` comparisons and ``-F key=…``;
watches print as ``-w PATH -p PERMS -k KEY``; an empty list prints ``No rules``. The rules
files use the same options, plus control lines (``-D``, ``-b``, ``-f``, ``-e``, …).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from probes.parsers.errors import ParseError
from probes.parsers.grep import file_text, parse_grep_lines

AUDIT_DIR = "/etc/audit"
AUDITD_CONF = "/etc/audit/auditd.conf"
AUDIT_RULES = "/etc/audit/audit.rules"
RULES_D = "/etc/audit/rules.d"

#: The filter lists of ``-a ACTION,LIST`` and the actions (``possible`` is obsolete but parsed).
LISTS = frozenset({"task", "entry", "exit", "user", "exclude", "filesystem", "io_uring"})
ACTIONS = frozenset({"always", "never", "possible"})
#: Longest first, so that ``!=`` is not read as ``!`` and ``=``.
OPERATORS = ("!=", "<=", ">=", "&=", "=", "<", ">", "&")
_FIELD = re.compile(r"(?P<name>[A-Za-z][A-Za-z0-9_]*)(?P<op>!=|<=|>=|&=|=|<|>|&)(?P<value>\S+)")
#: auditctl -l prints a field whose name its table lacks as `` f<number><op><value>``.
_UNKNOWN_FIELD = re.compile(r"f(?P<number>\d+)(?P<op>!=|<=|>=|&=|=|<|>|&)(?P<value>-?\d+)")
_COMPARISON = re.compile(r"[a-z_]+(?:!=|=)[a-z_]+")
_SYSCALL = re.compile(r"[A-Za-z0-9_]+")
_PERMS = re.compile(r"[rwxa]{1,4}")
#: Control options of the rules files, with how many arguments each takes.
_CONTROL_OPTIONS = {
    "-D": 0,
    "-c": 0,
    "-i": 0,
    "-t": 0,
    "--loginuid-immutable": 0,
    "--reset-lost": 0,
    "-b": 1,
    "-f": 1,
    "-r": 1,
    "-q": 1,
    "--backlog_wait_time": 1,
    "--reset_backlog_wait_time_actual": 0,
}
_STATUS_LINE = re.compile(r"(?P<key>[a-z_]+) (?P<value>\S.*)")


@dataclass(frozen=True)
class AuditField:
    name: str  #: "auid", "arch", "key", "path", …; "f<N>" when auditctl did not know it
    op: str  #: one of OPERATORS
    value: str


@dataclass(frozen=True)
class AuditRule:
    """One syscall rule, watch or deletion, where it was written and as it was written."""

    source: str  #: "auditctl -l" or the file's path
    number: int  #: its line there
    text: str
    action: str  #: always, never, possible
    list_name: str  #: exit, task, exclude, user, filesystem, io_uring (entry is read as exit)
    syscalls: tuple[str, ...] = ()  #: as written; ("all",) for every syscall
    fields: tuple[AuditField, ...] = ()
    comparisons: tuple[str, ...] = ()  #: ``-C`` expressions as written
    watch: str | None = None  #: the path of a ``-w`` watch
    prepend: bool = False  #: ``-A``: added at the head of its list
    deletes: bool = False  #: ``-d`` or ``-W``: removes a rule (not modelled by the checks)

    def values(self, name: str) -> list[AuditField]:
        return [f for f in self.fields if f.name == name]


@dataclass(frozen=True)
class AuditControl:
    """A control line of a rules file: ``-D`` (delete all), ``-e N`` (enable), others."""

    source: str
    number: int
    text: str
    option: str
    argument: str | None = None


Statement = AuditRule | AuditControl


@dataclass(frozen=True)
class AuditConfig:
    """What ``grep -RHn ^ /etc/audit`` showed: auditd.conf's settings (key -> line number and
    value), the statements of audit.rules and of each rules.d ``*.rules`` file."""

    auditd_conf: dict[str, tuple[int, str]] | None
    audit_rules: list[Statement] | None
    rules_d: dict[str, list[Statement]] = field(default_factory=dict)


# -- auditctl -s --------------------------------------------------------------------------------


def parse_auditctl_status(text: str) -> dict[str, tuple[int, str]]:
    """``auditctl -s``: ``key value`` lines (``enabled 1``, ``pid 642``, …) -> key -> (line,
    value). ``enabled`` and ``pid`` must be there, as numbers."""
    status: dict[str, tuple[int, str]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        match = _STATUS_LINE.fullmatch(line.strip())
        if match is None:
            raise ParseError("auditctl", number, "expected 'key value'")
        status[match["key"]] = (number, match["value"])
    for key in ("enabled", "pid"):
        if key not in status:
            raise ParseError("auditctl", None, f"no {key!r} line")
        if not status[key][1].isdigit():
            raise ParseError("auditctl", status[key][0], f"{key} is not a number")
    return status


# -- rules --------------------------------------------------------------------------------------


def parse_auditctl_rules(text: str) -> list[AuditRule]:
    """``auditctl -l``: the loaded rules in the kernel's order (``No rules`` when none)."""
    if text.strip() == "No rules":
        return []
    statements = parse_rules_text(text, "auditctl -l")
    for statement in statements:
        if isinstance(statement, AuditControl):
            raise ParseError("auditctl", statement.number, "a control line in a rule listing")
    return [s for s in statements if isinstance(s, AuditRule)]


def parse_rules_text(text: str, source: str) -> list[Statement]:
    """The statements of a rules file (or listing), in order; comments and blank lines skipped."""
    statements: list[Statement] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        statements.append(_statement(line, number, source))
    return statements


def _statement(line: str, number: int, source: str) -> Statement:
    tokens = line.split()
    first = tokens[0]
    if first in _CONTROL_OPTIONS or first == "-e":
        return _control(tokens, line, number, source)
    return _rule(tokens, line, number, source)


def _control(tokens: list[str], line: str, number: int, source: str) -> AuditControl:
    option, rest = tokens[0], tokens[1:]
    if option == "-e":
        if len(rest) != 1 or rest[0] not in ("0", "1", "2"):
            raise ParseError(source, number, "-e takes 0, 1 or 2")
        return AuditControl(source, number, line, option, rest[0])
    if option == "-D" and rest and rest[0] == "-k" and len(rest) == 2:
        # -D -k KEY deletes the rules with that key: a deletion the checks do not model.
        return AuditControl(source, number, line, "-D -k", rest[1])
    if len(rest) != _CONTROL_OPTIONS[option]:
        raise ParseError(source, number, f"{option} takes {_CONTROL_OPTIONS[option]} argument(s)")
    return AuditControl(source, number, line, option, rest[0] if rest else None)


@dataclass
class _RuleParts:
    action: str | None = None
    list_name: str | None = None
    prepend: bool = False
    deletes: bool = False
    watch: str | None = None
    syscalls: list[str] = field(default_factory=list)
    fields: list[AuditField] = field(default_factory=list)
    comparisons: list[str] = field(default_factory=list)


def _rule(tokens: list[str], line: str, number: int, source: str) -> AuditRule:
    parts = _RuleParts()
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if _UNKNOWN_FIELD.fullmatch(token):
            match = _UNKNOWN_FIELD.fullmatch(token)
            assert match is not None
            parts.fields.append(AuditField(f"f{match['number']}", match["op"], match["value"]))
            index += 1
            continue
        if index + 1 >= len(tokens):
            raise ParseError(source, number, f"{token!r} without its argument")
        _apply_option(parts, token, tokens[index + 1], number, source)
        index += 2
    return _finish_rule(parts, line, number, source)


def _apply_option(parts: _RuleParts, option: str, argument: str, number: int,
                  source: str) -> None:  # fmt: skip
    if option in ("-a", "-A", "-d"):
        parts.action, parts.list_name = _action_and_list(argument, number, source)
        parts.prepend = option == "-A"
        parts.deletes = option == "-d"
    elif option in ("-w", "-W"):
        parts.watch = argument
        parts.deletes = option == "-W"
    elif option == "-S":
        parts.syscalls += _syscalls(argument, number, source)
    elif option == "-F":
        parts.fields.append(_field(argument, number, source))
    elif option == "-C":
        if not _COMPARISON.fullmatch(argument):
            raise ParseError(source, number, f"bad comparison {argument!r}")
        parts.comparisons.append(argument)
    elif option == "-k":
        parts.fields.append(AuditField("key", "=", argument))
    elif option == "-p":
        if not _PERMS.fullmatch(argument):
            raise ParseError(source, number, f"bad permissions {argument!r}")
        parts.fields.append(AuditField("perm", "=", argument))
    else:
        raise ParseError(source, number, f"unknown option {option!r}")


def _action_and_list(argument: str, number: int, source: str) -> tuple[str, str]:
    words = argument.split(",")
    if len(words) != 2:
        raise ParseError(source, number, f"expected ACTION,LIST, got {argument!r}")
    # auditctl accepts both orders: "always,exit" and "exit,always".
    first, second = words
    action, name = (first, second) if first in ACTIONS else (second, first)
    if action not in ACTIONS or name not in LISTS:
        raise ParseError(source, number, f"unknown action or list in {argument!r}")
    return action, "exit" if name == "entry" else name


def _syscalls(argument: str, number: int, source: str) -> list[str]:
    names = argument.split(",")
    if not all(_SYSCALL.fullmatch(n) for n in names):
        raise ParseError(source, number, f"bad syscall list {argument!r}")
    return names


def _field(argument: str, number: int, source: str) -> AuditField:
    match = _FIELD.fullmatch(argument)
    if match is None:
        raise ParseError(source, number, f"bad field {argument!r}")
    return AuditField(match["name"], match["op"], match["value"])


def _finish_rule(parts: _RuleParts, line: str, number: int, source: str) -> AuditRule:
    if parts.watch is not None:
        if parts.action is not None or parts.syscalls:
            raise ParseError(source, number, "a watch with -a or -S")
        watch = parts.watch
        return AuditRule(source, number, line, "always", "exit", ("all",),
                         (AuditField("path", "=", watch), *parts.fields), (), watch,
                         deletes=parts.deletes)  # fmt: skip
    if parts.action is None or parts.list_name is None:
        raise ParseError(source, number, "a rule line without -a, -A, -d or -w")
    return AuditRule(
        source,
        number,
        line,
        parts.action,
        parts.list_name,
        tuple(parts.syscalls),
        tuple(parts.fields),
        tuple(parts.comparisons),
        prepend=parts.prepend,
        deletes=parts.deletes,
    )


# -- /etc/audit -------------------------------------------------------------------------------


def parse_audit_config(text: str) -> AuditConfig:
    """``grep -RHn ^ /etc/audit``. An empty answer (no /etc/audit) gives no files at all.
    Other files (plugins, audit-stop.rules, audit.rules.prev) are left aside."""
    files = parse_grep_lines(text, "grep /etc/audit")
    conf = files.get(AUDITD_CONF)
    rules = files.get(AUDIT_RULES)
    rules_d = {
        path: parse_rules_text(file_text(lines, "grep /etc/audit", path), path)
        for path, lines in files.items()
        if path.startswith(RULES_D + "/") and path.endswith(".rules") and path.count("/") == 4
    }
    return AuditConfig(
        auditd_conf=None if conf is None else parse_auditd_conf(conf),
        audit_rules=(
            None
            if rules is None
            else parse_rules_text(file_text(rules, "grep /etc/audit", AUDIT_RULES), AUDIT_RULES)
        ),
        rules_d=rules_d,
    )


_CONF_LINE = re.compile(r"\s*(?P<key>[a-z_]+)\s*=\s*(?P<value>.*?)\s*")


def parse_auditd_conf(lines: dict[int, str]) -> dict[str, tuple[int, str]]:
    """auditd.conf(5): ``key = value`` lines -> key -> (line number, value)."""
    settings: dict[str, tuple[int, str]] = {}
    for number in sorted(lines):
        line = lines[number]
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _CONF_LINE.fullmatch(line)
        if match is None:
            raise ParseError(AUDITD_CONF, number, "expected 'key = value'")
        settings[match["key"]] = (number, match["value"])
    return settings
