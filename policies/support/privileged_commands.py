"""Two of the three routes of operation-logging's criterion (3), privileged-command logging:
the audit system recording every program run as root (auditd's ``execve`` rules), and
pam_tty_audit recording root's terminal input. The third, sudo's own logging, is in
operation_logging. What counts, and why, is in docs/host-controls.md.

The target of the auditd route is every ``execve`` that leaves a process with effective uid 0
(a command run as root, by sudo, su, a setuid program or a root shell) in a process whose login
uid is set (a person's login, or a job cron started for one). Daemons (login uid unset) are
not operations and are not required. Rules are evaluated as the kernel does: per list, in
order, the first matching rule deciding (``always`` records, ``never`` suppresses).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from fnmatch import fnmatchcase
from pathlib import PurePosixPath
from typing import TypeVar

from auditor.domain.facts import HostFacts, Process
from policies.support.criteria import Criterion, Line
from policies.support.pam import may_skip, pam_stack
from probes.parsers import (
    ParseError,
    parse_audit_config,
    parse_auditctl_rules,
    parse_auditctl_status,
    parse_pam_directory,
)
from probes.parsers.audit import AUDIT_RULES, AuditConfig, AuditControl, AuditRule, Statement
from probes.parsers.pam import PAM_DIR, PamLine

#: Login uids are unsigned 32-bit; this value means "not set" (auditctl prints it as -1).
UNSET = 2**32 - 1
#: The arguments of ``-F arch=`` that name a 64-bit or a 32-bit system-call interface.
ARCHES = {
    "b64": "b64", "x86_64": "b64", "aarch64": "b64", "ppc64": "b64", "ppc64le": "b64",
    "s390x": "b64", "b32": "b32", "i386": "b32", "i486": "b32", "i586": "b32", "i686": "b32",
    "arm": "b32", "armeb": "b32", "armv5tejl": "b32", "armv7l": "b32", "ppc": "b32", "s390": "b32",
}  # fmt: skip
#: Record types whose loss makes a command unrecorded: the system call, its arguments, and
#: (for pam_tty_audit) the terminal input.
SYSCALL_TYPES = {"SYSCALL": 1300, "EXECVE": 1309}
TTY_TYPES = {"TTY": 1319}
#: Services through which a person gets a root shell: logging in, or switching user.
LOGIN_SERVICES = ("sshd", "login")
SWITCH_SERVICES = ("su", "su-l", "sudo", "sudo-i")

T = TypeVar("T")


# -- sets of login uids -------------------------------------------------------------------------


@dataclass(frozen=True)
class UidSet:
    """Unsigned 32-bit ids as sorted, disjoint, inclusive ranges."""

    ranges: tuple[tuple[int, int], ...]

    @staticmethod
    def compared(op: str, value: int) -> UidSet | None:
        """The ids x for which ``x <op> value`` holds (None for the bit-mask operators)."""
        top = UNSET
        bounds = {
            "=": [(value, value)],
            "!=": [(0, value - 1), (value + 1, top)],
            "<": [(0, value - 1)],
            "<=": [(0, value)],
            ">": [(value + 1, top)],
            ">=": [(value, top)],
        }.get(op)
        if bounds is None:
            return None
        return UidSet(tuple((lo, hi) for lo, hi in bounds if lo <= hi))

    def __and__(self, other: UidSet) -> UidSet:
        found = [
            (max(a, c), min(b, d))
            for a, b in self.ranges
            for c, d in other.ranges
            if max(a, c) <= min(b, d)
        ]
        return UidSet(tuple(sorted(found)))

    def __sub__(self, other: UidSet) -> UidSet:
        return self & other.complement()

    def __or__(self, other: UidSet) -> UidSet:
        merged: list[tuple[int, int]] = []
        for lo, hi in sorted(self.ranges + other.ranges):
            if merged and lo <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
            else:
                merged.append((lo, hi))
        return UidSet(tuple(merged))

    def complement(self) -> UidSet:
        gaps, start = [], 0
        for lo, hi in self.ranges:
            if lo > start:
                gaps.append((start, lo - 1))
            start = hi + 1
        if start <= UNSET:
            gaps.append((start, UNSET))
        return UidSet(tuple(gaps))

    @property
    def empty(self) -> bool:
        return not self.ranges

    def __str__(self) -> str:
        def one(lo: int, hi: int) -> str:
            if lo == hi:
                return "unset" if lo == UNSET else str(lo)
            return f"{lo} and above" if hi >= UNSET - 1 else f"{lo}-{hi}"

        return ", ".join(one(lo, hi) for lo, hi in self.ranges)


NO_LOGIN = UidSet(())
EVERY_LOGIN = UidSet(((0, UNSET - 1),))


# -- how far a rule reaches the target events ---------------------------------------------------


class Match(Enum):
    ALL = "all"  #: every target event of the rule's login uids
    NONE = "none"  #: no target event
    PART = "part"  #: some, or an unmodelled field: cannot tell which


@dataclass(frozen=True)
class Reach:
    match: Match
    logins: UidSet  #: the login uids it can match (an upper bound when PART)


def _number(value: str) -> int | None:
    """A uid as rules write it: a number (negative ones wrap, as the kernel reads them), 'unset'
    or 'root'. Other user names are not resolved here: None."""
    if value == "unset":
        return UNSET
    if value == "root":
        return 0
    if re.fullmatch(r"-?\d{1,10}", value):
        return int(value) % 2**32
    return None


def _holds(left: int, op: str, right: int) -> bool:
    return {
        "=": left == right,
        "!=": left != right,
        "<": left < right,
        "<=": left <= right,
        ">": left > right,
        ">=": left >= right,
    }[op]


def _arch_match(value: str, op: str, arch: str) -> Match:
    family = ARCHES.get(value)
    if family is None or op not in ("=", "!="):
        return Match.PART
    return Match.ALL if (family == arch) == (op == "=") else Match.NONE


def _root_match(value: str, op: str) -> Match:
    """euid, suid and fsuid are all 0 after a command starts as root (exec copies euid into
    suid, and fsuid follows euid), so a filter on them holds for every target event or none."""
    number = _number(value)
    if number is None or op in ("&", "&="):
        return Match.PART
    return Match.ALL if _holds(0, op, number) else Match.NONE


def _field_match(name: str, op: str, value: str, arch: str) -> Match:
    if name in ("key", "filterkey"):
        return Match.ALL
    if name == "arch":
        return _arch_match(value, op, arch)
    if name in ("euid", "suid", "fsuid"):
        return _root_match(value, op)
    if name == "perm" and "x" not in value:
        return Match.NONE  # a watch for reads, writes or attribute changes sees no execution
    if name == "success" and op == "=" and value in ("0", "1"):
        # The target is commands that ran, i.e. successful execve calls.
        return Match.ALL if value == "1" else Match.NONE
    return Match.PART  # uid, gid, exe, path, perm, pid, subj_*, a0…, f<N>: narrower or unknown


def _syscall_match(rule: AuditRule, arch: str) -> Match:
    if not rule.syscalls or "all" in rule.syscalls:
        return Match.ALL  # an exit rule without -S applies to every system call
    has_arch = bool(rule.values("arch"))
    if "execve" in rule.syscalls:
        # Without -F arch the syscall numbers are the native (64-bit) table's.
        return Match.ALL if has_arch or arch == "b64" else Match.NONE
    if any(s.isdigit() for s in rule.syscalls) or (not has_arch and arch == "b32"):
        # A number may be execve's; a native number may be a 32-bit execve's too.
        return Match.PART
    return Match.NONE


def reach(rule: AuditRule, arch: str) -> Reach:
    """How the rule meets an ``execve`` run as root on this interface (b64 or b32)."""
    matches = [_syscall_match(rule, arch)] if rule.list_name == "exit" else []
    logins = EVERY_LOGIN
    for item in rule.fields:
        if item.name == "auid":
            number = _number(item.value)
            chosen = None if number is None else UidSet.compared(item.op, number)
            if chosen is None:
                matches.append(Match.PART)
            else:
                logins = logins & chosen
        else:
            matches.append(_field_match(item.name, item.op, item.value, arch))
    if rule.comparisons:
        matches.append(Match.PART)  # -C uid!=euid and the like: only some root commands
    if Match.NONE in matches or logins.empty:
        return Reach(Match.NONE, NO_LOGIN)
    return Reach(Match.PART if Match.PART in matches else Match.ALL, logins)


@dataclass
class Coverage:
    """What the rules do with root's ``execve`` on one interface."""

    recorded_by: list[AuditRule] = field(default_factory=list)
    missing: UidSet = EVERY_LOGIN  #: login uids whose root commands are not recorded
    suppressed_by: list[AuditRule] = field(default_factory=list)
    maybe_suppressed_by: list[AuditRule] = field(default_factory=list)
    narrower: list[AuditRule] = field(default_factory=list)  #: record some, not counted


def execve_coverage(rules: list[AuditRule], arch: str) -> Coverage:
    coverage = Coverage()
    undecided, lost = EVERY_LOGIN, NO_LOGIN
    for rule in (r for r in rules if r.list_name == "task" and r.action == "never"):
        # The task list is read at fork: a matching never rule leaves the process without
        # any system-call auditing. Its fields then see the parent, so only a rule without
        # fields (every task) is modelled.
        if all(f.name in ("key", "filterkey") for f in rule.fields):
            coverage.suppressed_by.append(rule)
            lost, undecided = lost | undecided, NO_LOGIN
        else:
            coverage.maybe_suppressed_by.append(rule)
    for rule in (r for r in rules if r.list_name == "exit" and not r.deletes):
        found = reach(rule, arch)
        touched = undecided & found.logins
        if found.match is Match.NONE or touched.empty:
            continue
        if rule.action == "always" and found.match is Match.ALL:
            coverage.recorded_by.append(rule)
            undecided = undecided - found.logins
        elif rule.action == "always":
            coverage.narrower.append(rule)
        elif rule.action == "never" and found.match is Match.ALL:
            coverage.suppressed_by.append(rule)
            lost, undecided = lost | touched, undecided - found.logins
        elif rule.action == "never":
            coverage.maybe_suppressed_by.append(rule)
    coverage.missing = undecided | lost
    return coverage


def _message_type_match(value: str, op: str, wanted: int) -> Match:
    known = {**SYSCALL_TYPES, **TTY_TYPES}
    number = known.get(value, int(value) if re.fullmatch(r"[0-9]{1,9}", value) else None)
    if number is None:
        # Another type's name: never equal to the wanted one; other comparisons unknown.
        return {"=": Match.NONE, "!=": Match.ALL}.get(op, Match.PART)
    if op in ("&", "&="):
        return Match.PART
    return Match.ALL if _holds(wanted, op, number) else Match.NONE


def dropping_rules(rules: list[AuditRule], types: dict[str, int]) -> tuple[list[AuditRule],
                                                                            list[AuditRule]]:  # fmt: skip
    """Exclude-list rules that drop records of these types: (surely, perhaps). On the exclude
    list a matching rule drops the record, whatever its action."""
    surely: list[AuditRule] = []
    perhaps: list[AuditRule] = []
    for rule in (r for r in rules if r.list_name == "exclude" and not r.deletes):
        for wanted in types.values():
            matches = [
                _message_type_match(f.value, f.op, wanted)
                if f.name == "msgtype"
                else (Match.ALL if f.name in ("key", "filterkey") else Match.PART)
                for f in rule.fields
            ]
            if Match.NONE in matches:
                continue
            (perhaps if Match.PART in matches else surely).append(rule)
            break
    return surely, perhaps


# -- whether auditd records at all --------------------------------------------------------------


@dataclass
class RuleSource:
    """A set of rules to judge: the loaded ones, or those a rules file would load."""

    name: str  #: "the loaded rules (`auditctl -l`)", "/etc/audit/audit.rules", …
    rules: list[AuditRule]
    enable: AuditControl | None = None  #: the last ``-e`` of a rules file
    unmodelled: list[Statement] = field(default_factory=list)  #: -d, -W, -D -k


@dataclass
class AuditState:
    """Whether auditd runs and keeps a log, and the rules to judge (one source, or two rules
    file sources that must agree when the loaded rules could not be read)."""

    holds: bool | None
    detail: str
    lines: list[Line] = field(default_factory=list)
    sources: list[RuleSource] = field(default_factory=list)


def _line_of(statement: AuditRule | AuditControl) -> Line:
    if statement.source == "auditctl -l":
        return Line(f"`auditctl -l` line {statement.number}", statement.text)
    return Line(f"{statement.source}:{statement.number}", statement.text)


def audit_state(facts: HostFacts) -> AuditState:
    daemon = _daemon(facts)
    if isinstance(daemon, AuditState):
        return daemon
    kernel = _kernel_state(facts, daemon.args)
    if kernel.holds is not True:
        return kernel
    config, config_problem = _config(facts)
    if config is None:
        return AuditState(None, f"auditd runs but /etc/audit was not read ({config_problem})",
                          kernel.lines)  # fmt: skip
    no_log = _no_log_of_its_own(config)
    if no_log is not None:
        return AuditState(False, "auditd keeps no log of its own (write_logs = no)",
                          [*kernel.lines, no_log])  # fmt: skip
    sources, problem = _rule_sources(facts, config)
    if not sources:
        return AuditState(None, f"auditd runs but its rules were not read ({problem})",
                          kernel.lines)  # fmt: skip
    return AuditState(True, kernel.detail, kernel.lines, sources)


def _daemon(facts: HostFacts) -> Process | AuditState:
    if facts.processes is None:
        return AuditState(None, "the process list was not collected")
    daemons = [p for p in facts.processes if p.command == "auditd"]
    return daemons[0] if daemons else AuditState(False, "auditd is not running")


def _no_log_of_its_own(config: AuditConfig) -> Line | None:
    """auditd.conf's ``write_logs = no``: records go to plugins only, none to its log."""
    write_logs = (config.auditd_conf or {}).get("write_logs")
    if write_logs is None or write_logs[1].lower() != "no":
        return None
    return Line(f"/etc/audit/auditd.conf:{write_logs[0]}", f"write_logs = {write_logs[1]}")


def _kernel_state(facts: HostFacts, daemon_args: str) -> AuditState:
    """Is the kernel's auditing on, with a daemon receiving it? ``auditctl -s`` says; without
    it, auditd turns auditing on when it starts unless told otherwise (``-s``)."""
    status, problem = _status(facts)
    if status is None:
        startup = re.search(r"(?:^|\s)(?:-s|--enable_state)[ =](\S+)", daemon_args)
        if startup and not "enable".startswith(startup[1]):
            return AuditState(None, f"auditd was started with '{startup[0].strip()}' and "
                              f"`auditctl -s` was not read ({problem})")  # fmt: skip
        return AuditState(True, "auditd runs")
    lines = [Line(f"`auditctl -s` line {status[k][0]}", f"{k} {status[k][1]}")
             for k in ("enabled", "pid")]  # fmt: skip
    if status["enabled"][1] == "0":
        return AuditState(False, "the kernel's auditing is disabled (enabled 0)", lines)
    if status["pid"][1] == "0":
        return AuditState(False, "no daemon receives the audit records (pid 0)", lines)
    return AuditState(True, "auditd runs and auditing is enabled", lines)


def _parsed(facts: HostFacts, name: str, parse: Callable[[str], T]) -> tuple[T | None, str]:
    """The collected command ``name`` parsed, or None and why it is missing or unreadable."""
    text = facts.commands.get(name)
    if text is None:
        return None, facts.errors.get(f"commands:{name}", "not collected")
    try:
        return parse(text), ""
    except ParseError as exc:
        return None, f"parse-error: {exc}"


def _status(facts: HostFacts) -> tuple[dict[str, tuple[int, str]] | None, str]:
    return _parsed(facts, "auditctl-status", parse_auditctl_status)


def _config(facts: HostFacts) -> tuple[AuditConfig | None, str]:
    return _parsed(facts, "audit-config", parse_audit_config)


def _rule_sources(facts: HostFacts, config: AuditConfig) -> tuple[list[RuleSource], str]:
    """The loaded rules when `auditctl -l` was read (authoritative), else what the rules files
    load at boot: audit.rules and rules.d compiled as augenrules does (both when both exist)."""
    text = facts.commands.get("auditctl-rules")
    problem = facts.errors.get("commands:auditctl-rules", "not collected")
    if text is not None:
        try:
            return [RuleSource("the loaded rules (`auditctl -l`)", parse_auditctl_rules(text))], ""
        except ParseError as exc:
            problem = f"parse-error: {exc}"
    sources = []
    if config.audit_rules is not None:
        sources.append(_source(AUDIT_RULES, config.audit_rules, hoisted=False))
    if config.rules_d:
        ordered = sorted(config.rules_d, key=_version_order)
        statements = [s for path in ordered for s in config.rules_d[path]]
        sources.append(_source("/etc/audit/rules.d (as augenrules joins it)", statements, True))
    if not sources:
        return [RuleSource("/etc/audit (no rules file)", [])], ""
    return sources, problem


def _version_order(path: str) -> list[int | str]:
    """The order of ``ls -1v``, which augenrules uses: digit runs compared as numbers."""
    name = PurePosixPath(path).name
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _source(name: str, statements: list[Statement], hoisted: bool) -> RuleSource:
    """The rules a file loads, in the kernel's order. augenrules moves a bare ``-D`` to the
    top and the last ``-e`` to the end (``hoisted``); auditctl -R reads audit.rules in order."""
    source = RuleSource(name, [])
    for statement in statements:
        if isinstance(statement, AuditControl):
            if statement.option == "-e":
                source.enable = statement
            elif statement.option == "-D" and not hoisted:
                source.rules = []
            elif statement.option == "-D -k":
                source.unmodelled.append(statement)
        elif statement.deletes:
            source.unmodelled.append(statement)
        elif statement.prepend:
            source.rules.insert(0, statement)
        else:
            source.rules.append(statement)
    return source


# -- the auditd route ---------------------------------------------------------------------------


def auditd_route(facts: HostFacts) -> Criterion:
    name = "auditd"
    state = audit_state(facts)
    if not state.holds:
        return Criterion(name, state.holds, state.detail, state.lines)
    verdicts = [judge_rule_source(source) for source in state.sources]
    if len({v.holds for v in verdicts}) > 1:
        detail = "the loaded rules were not read and the rules files disagree: " + "; ".join(
            f"{s.name}: {v.detail}" for s, v in zip(state.sources, verdicts, strict=True)
        )
        return Criterion(name, None, detail, [x for v in verdicts for x in v.lines])
    chosen = verdicts[0]
    # The rule lines decide; the daemon's state comes after them.
    return Criterion(name, chosen.holds, f"{state.detail}; {chosen.detail}",
                     chosen.lines + state.lines)  # fmt: skip


def judge_rule_source(source: RuleSource) -> Criterion:
    """Does this rule set record every command run as root, on both interfaces?"""
    name = source.name
    if source.enable is not None and source.enable.argument == "0":
        return Criterion(name, False, f"{name} disables auditing (-e 0)",
                         [_line_of(source.enable)])  # fmt: skip
    dropped, maybe_dropped = dropping_rules(source.rules, SYSCALL_TYPES)
    if dropped:
        return Criterion(name, False, f"{name}: an exclude rule drops the SYSCALL or EXECVE "
                         "records", [_line_of(r) for r in dropped])  # fmt: skip
    wide, narrow = execve_coverage(source.rules, "b64"), execve_coverage(source.rules, "b32")
    if not wide.missing.empty:
        return Criterion(name, False, f"{name}: {_gap('64-bit', wide)}", _cited(wide))
    doubts = wide.maybe_suppressed_by + narrow.maybe_suppressed_by + maybe_dropped
    lines = _unique(_cited(wide) + [_line_of(r) for r in narrow.recorded_by])
    if doubts or source.unmodelled:
        why = "a never or exclude rule with fields not modelled may suppress some of them"
        if source.unmodelled:
            why = "a -d, -W or -D -k line removes rules (not modelled)"
        doubtful = _unique([_line_of(s) for s in [*doubts, *source.unmodelled]])
        return Criterion(name, None, f"{name}: root's commands are recorded, but {why}",
                         doubtful + lines)  # fmt: skip
    if not narrow.missing.empty:
        return Criterion(name, None, f"{name}: 64-bit programs run as root are recorded; "
                         f"{_gap('32-bit', narrow)}, and whether this kernel runs 32-bit "
                         "programs was not collected", lines)  # fmt: skip
    recording = _unique([_line_of(r) for r in wide.recorded_by + narrow.recorded_by])
    return Criterion(name, True, f"{name} record every program run as root by a login "
                     "(execve, 64- and 32-bit)", recording)  # fmt: skip


def _gap(interface: str, coverage: Coverage) -> str:
    logins = "every login" if coverage.missing == EVERY_LOGIN else (
        f"login uids {coverage.missing}")  # fmt: skip
    if coverage.suppressed_by:
        gap = f"a never rule suppresses {interface} execve run as root for {logins}"
    elif coverage.missing == EVERY_LOGIN:
        gap = f"no rule records {interface} execve run as root"
    else:
        gap = f"{interface} execve run as root is not recorded for {logins}"
    if coverage.narrower:
        gap += f"; {len(coverage.narrower)} narrower rule(s) (a path, exe, uid or -C filter) "
        gap += "record only some root commands and are not counted"
    return gap


def _cited(coverage: Coverage) -> list[Line]:
    shown = coverage.suppressed_by + coverage.recorded_by + coverage.narrower[:2]
    return _unique([_line_of(r) for r in shown])


def _unique(lines: list[Line]) -> list[Line]:
    return list(dict.fromkeys(lines))


# -- the pam_tty_audit route --------------------------------------------------------------------


@dataclass
class TtyAudit:
    """What one service's session stack does to TTY auditing."""

    root: bool | None = None  #: enabled / disabled for root; None: left as inherited
    everyone: bool | None = None  #: enabled for every user / not; None: left as inherited
    deciding: list[PamLine] = field(default_factory=list)
    unsure: list[PamLine] = field(default_factory=list)  #: deciding lines that may be skipped


def _command_for(args: Iterable[str], user: str) -> str | None:
    """pam_tty_audit's rule: each enable=/disable= option whose comma-separated glob patterns
    match the user sets the command; a later option overrides an earlier one."""
    command = None
    for arg in args:
        kind, _, patterns = arg.partition("=")
        if kind in ("enable", "disable") and any(
            fnmatchcase(user, p) for p in patterns.split(",") if p
        ):
            command = kind
    return command


def _everyone(args: Iterable[str]) -> bool | None:
    """True when the options enable every user (an ``enable=`` with ``*`` and no later
    ``disable=``), False when some user may be disabled, None when they say nothing of all."""
    result = None
    for arg in args:
        kind, _, patterns = arg.partition("=")
        if kind == "disable":
            result = False
        elif kind == "enable" and "*" in patterns.split(","):
            result = True
    return result


def tty_audit(stack: list[PamLine]) -> TtyAudit:
    result = TtyAudit()
    for index, line in enumerate(stack):
        if PurePosixPath(line.module).name != "pam_tty_audit.so":
            continue
        root, everyone = _command_for(line.args, "root"), _everyone(line.args)
        if root is None and everyone is None:
            continue
        if root is not None:
            result.root = root == "enable"
        if everyone is not None:
            result.everyone = everyone
        result.deciding.append(line)
        if may_skip(stack, index):
            result.unsure.append(line)
    return result


def _pam_line(line: PamLine) -> Line:
    return Line(f"{line.path}:{line.number}", line.text)


def pam_tty_audit_route(facts: HostFacts) -> Criterion:
    """Root's terminal input is audited on every way to a root shell: the login services
    enable it for root, and the switch services do too, or inherit it from logins that enable
    everyone. The TTY records are kept by auditd only, so auditd must record as well."""
    name = "pam_tty_audit"
    recording = _tty_records_kept(facts)
    if recording.holds is False:  # nothing would keep what pam_tty_audit turns on
        return Criterion(name, False, recording.detail, recording.lines)
    config = _pam_config(facts)
    if isinstance(config, str):
        return Criterion(name, None, config)
    sshd = _sshd_uses_pam(facts)
    if sshd is not True:
        return Criterion(name, sshd, "sshd does not use PAM (no 'usepam yes' in `sshd -T`)"
                         if sshd is False else "sshd's effective configuration was not read")  # fmt: skip
    services = [s for s in LOGIN_SERVICES + SWITCH_SERVICES if f"{PAM_DIR}/{s}" in config]
    if "sshd" not in services:
        return Criterion(name, None, f"{PAM_DIR}/sshd was not found")
    audits = {s: tty_audit(pam_stack(config, f"{PAM_DIR}/{s}", "session")) for s in services}
    verdict = _services_verdict(audits)
    if verdict.holds is not True:
        return Criterion(name, verdict.holds, verdict.detail, verdict.lines)
    return Criterion(name, recording.holds, f"{verdict.detail}; {recording.detail}",
                     verdict.lines + recording.lines)  # fmt: skip


def _pam_config(facts: HostFacts) -> dict[str, list[PamLine]] | str:
    text = facts.commands.get("pam.d")
    if text is None:
        why = facts.errors.get("commands:pam.d", "not collected")
        return f"{PAM_DIR} was not read ({why})"
    try:
        return parse_pam_directory(text)
    except ParseError as exc:
        return f"{PAM_DIR} could not be read: {exc}"


def _sshd_uses_pam(facts: HostFacts) -> bool | None:
    config = facts.commands.get("sshd-effective-config")
    if config is None:
        return None
    return any(line.strip().lower() == "usepam yes" for line in config.splitlines())


def _services_verdict(audits: dict[str, TtyAudit]) -> Criterion:
    logins = [s for s in LOGIN_SERVICES if s in audits]
    everyone = all(audits[s].everyone for s in logins)
    missing = [s for s in logins if audits[s].root is not True]
    missing += [
        s
        for s in SWITCH_SERVICES
        if s in audits and not (audits[s].root or (audits[s].root is None and everyone))
    ]
    deciding = [line for a in audits.values() for line in a.deciding]
    lines = _unique([_pam_line(x) for x in deciding])
    if missing:
        return Criterion("pam", False, "pam_tty_audit does not enable root's TTY input in the "
                         f"session of {', '.join(missing)}", lines)  # fmt: skip
    unsure = [line for a in audits.values() for line in a.unsure]
    if unsure:
        return Criterion("pam", None, "pam_tty_audit enables root's TTY input, but an earlier "
                         "line (sufficient, done or a jump) may skip it",
                         _unique([_pam_line(x) for x in unsure]))  # fmt: skip
    return Criterion("pam", True, "pam_tty_audit enables root's TTY input in the sessions of "
                     f"{', '.join(audits)}", lines)  # fmt: skip


def _tty_records_kept(facts: HostFacts) -> Criterion:
    """auditd records, and no exclude rule of the judged rules drops TTY records."""
    state = audit_state(facts)
    if not state.holds:
        return Criterion("auditd", state.holds, f"{state.detail} (it keeps the TTY records)",
                         state.lines)  # fmt: skip
    for source in state.sources:
        if source.enable is not None and source.enable.argument == "0":
            return Criterion("auditd", False, f"{source.name} disables auditing (-e 0)",
                             [_line_of(source.enable)])  # fmt: skip
        dropped, maybe = dropping_rules(source.rules, TTY_TYPES)
        if dropped or maybe:
            return Criterion("auditd", False if dropped else None,
                             f"{source.name}: an exclude rule drops TTY records",
                             [_line_of(r) for r in dropped + maybe])  # fmt: skip
    return Criterion("auditd", True, f"{state.detail} and keeps the TTY records", state.lines)
