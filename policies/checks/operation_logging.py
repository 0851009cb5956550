"""operation-logging (第4号ロ): operations are recorded, kept and forwarded.

Five criteria, each judged from collected configuration and the process list (a configuration
file of a daemon that does not run records nothing), each shown in the finding with the lines
that decided it; the control's ``criteria`` text is the finding's ``expected``:

1. persistent system log: systemd-journald runs with Storage=persistent (or auto with
   /var/log/journal present), or rsyslogd runs and a rule writes to a file;
2. authentication logging: sshd logs at INFO or above detail to its syslog facility, and that
   facility reaches the persistent log (an rsyslog file rule, or the persistent journal);
3. privileged-command logging, by any of three routes: sudo logs to syslog (not ``!syslog``,
   not ``!log_allowed``) and its facility reaches the persistent log, or it writes its own
   ``logfile``, with no Defaults entry disabling logging for some users, hosts, commands or
   run-as users; or auditd runs and its rules record every program run as root by a login
   (``execve``); or pam_tty_audit records root's terminal input on every way to a root shell,
   auditd keeping the records (the last two in privileged_commands);
4. forwarding: where the inventory names a ``log_host``, an rsyslog rule forwards
   authentication messages to one of its addresses (not required of the log host itself);
5. time synchronisation: a time-synchronisation client (chronyd, ntpd, systemd-timesyncd,
   OpenNTPD, ptp4l/phc2sys) runs and its configuration names at least one time source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from auditor.domain.facts import HostFacts
from auditor.domain.findings import Finding
from policies.context import AuditContext
from policies.model import Control
from policies.support.common import Outcome, facts_or_inconclusive, judge_each
from policies.support.criteria import (
    CriteriaWording,
    Criterion,
    Line,
    any_of,
    criteria_outcome,
    evidence_of,
)
from policies.support.privileged_commands import auditd_route, pam_tty_audit_route

JOURNALD_CONF = "/etc/systemd/journald.conf"
JOURNALD_DROPINS = "/etc/systemd/journald.conf.d"
RSYSLOG_CONF = "/etc/rsyslog.conf"
RSYSLOG_DIR = "/etc/rsyslog.d"

SEVERITIES = {
    "emerg": 0, "panic": 0, "alert": 1, "crit": 2, "err": 3, "error": 3,
    "warning": 4, "warn": 4, "notice": 5, "info": 6, "debug": 7,
}  # fmt: skip
#: sshd's LogLevel values that still record logins (INFO and more detailed).
SSHD_LOGGING_LEVELS = {"info", "verbose", "debug", "debug1", "debug2", "debug3"}
#: The artifacts this control rests on (keys of HostFacts.evidence, by prefix).
EVIDENCE_PREFIXES = (
    "files:/etc/systemd/journald.conf", "commands:journald.conf.d", "files:/etc/rsyslog",
    "commands:rsyslog.d", "commands:var-log-listing", "commands:sshd-effective-config",
    "commands:sudoers-defaults", "commands:time-sources", "processes", "commands:auditctl",
    "commands:audit-config", "commands:pam.d",
)  # fmt: skip
#: Process names (as ps prints them, 15 characters at most) of time-synchronisation clients.
TIME_CLIENTS = {"chronyd", "ntpd", "systemd-timesyn", "openntpd", "ptp4l", "phc2sys"}


def check(ctx: AuditContext, control: Control) -> list[Finding]:
    return judge_each(ctx, control, lambda host: _judge(ctx, control, host))


WORDING = CriteriaWording(
    topic_ja="動作記録",
    passed_en="records operations persistently",
    passed_ja="は動作を永続的に記録している",
)


def _judge(ctx: AuditContext, control: Control, host: str) -> Outcome:
    facts = facts_or_inconclusive(
        ctx, host, f"cannot judge {host}'s operation logging", f"{host} の動作記録を判定できない"
    )
    if not isinstance(facts, HostFacts):
        return facts
    criteria = judge_criteria(ctx, host, facts)
    evidence = evidence_of(facts, EVIDENCE_PREFIXES)
    return criteria_outcome(control, host, criteria, WORDING, evidence)


def judge_criteria(ctx: AuditContext, host: str, facts: HostFacts) -> list[Criterion]:
    rules = rsyslog_rules(facts)
    journal = persistent_journal(facts)
    syslog = running_syslog(facts, rules)
    sinks = LogSinks(journal, syslog, rules)
    return [
        persistent_log(journal, syslog),
        authentication_logging(facts, sinks),
        privileged_command_logging(facts, sinks),
        forwarding(ctx, host, facts, rules),
        time_synchronisation(facts),
    ]


def _running(facts: HostFacts, names: set[str]) -> bool | None:
    if facts.processes is None:
        return None
    return any(p.command in names for p in facts.processes)


# -- the journal --------------------------------------------------------------------------------


def journald_storage(facts: HostFacts) -> tuple[str, Line | None]:
    """Effective ``Storage=``: the main file, then drop-ins in name order (the last wins)."""
    found: tuple[str, Line | None] = ("auto", None)
    sources = [(JOURNALD_CONF, facts.files.get(JOURNALD_CONF))]
    sources += sorted(
        (path, text)
        for path, text in facts.files.items()
        if str(PurePosixPath(path).parent) == JOURNALD_DROPINS and path.endswith(".conf")
    )
    for path, text in sources:
        for number, line in enumerate((text or "").splitlines(), 1):
            stripped = line.strip()
            if stripped.startswith("Storage="):
                found = (stripped.split("=", 1)[1].strip().lower(), Line(f"{path}:{number}", line))
    return found


def persistent_journal(facts: HostFacts) -> Criterion:
    running = _running(facts, {"systemd-journal", "systemd-journald"})
    if JOURNALD_CONF not in facts.files:
        return Criterion("journal", None if running else False, "journald.conf not read")
    storage, line = journald_storage(facts)
    lines = [line] if line else [Line(JOURNALD_CONF, "Storage not set (default auto)")]
    listing = facts.commands.get("var-log-listing")
    on_disk = storage == "persistent" or (
        storage == "auto" and listing is not None and "journal" in listing.split()
    )
    if running is None:
        return Criterion("journal", None, "the process list was not collected", lines)
    if not running:
        return Criterion("journal", False, f"systemd-journald is not running (Storage={storage})",
                         lines)  # fmt: skip
    if not on_disk:
        return Criterion("journal", False, f"the journal is not kept on disk (Storage={storage})",
                         lines)  # fmt: skip
    return Criterion("journal", True, f"systemd-journald runs with Storage={storage}", lines)


# -- rsyslog ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyslogRule:
    selector: str
    action: str
    line: Line

    @property
    def file(self) -> str | None:
        """The file the rule writes to, if it is a file action."""
        action = self.action
        if action.startswith(("/", "-/")):
            return action.lstrip("-").split(";")[0]
        match = re.search(r'type\s*=\s*"omfile".*?file\s*=\s*"([^"]+)"', action, re.S)
        return match[1] if match else None

    @property
    def forward_target(self) -> str | None:
        legacy = re.match(r"^@{1,2}(?:\(\w+\))?\[?([0-9A-Za-z.:_-]+?)\]?(?::\d+)?(?:;.*)?$",
                          self.action)  # fmt: skip
        if legacy:
            return legacy[1]
        match = re.search(r'type\s*=\s*"omfwd".*?target\s*=\s*"([^"]+)"', self.action, re.S)
        return match[1] if match else None


_LEGACY_RULE = re.compile(r"^([A-Za-z0-9*,;.=!]+\.[A-Za-z0-9*=!]+)\s+(\S.*)$")


def rsyslog_rules(facts: HostFacts) -> list[SyslogRule] | None:
    """Selector rules of rsyslog.conf with its ``$IncludeConfig``/``include()`` of rsyslog.d
    expanded in place (``*.conf`` in name order). None when rsyslog.conf was not read."""
    main = facts.files.get(RSYSLOG_CONF)
    if main is None:
        return None
    rules: list[SyslogRule] = []
    for number, line in _logical_lines(main):
        if re.match(r"^\s*(\$IncludeConfig|include\()", line) and RSYSLOG_DIR in line:
            for path in sorted(p for p in facts.files if _in_rsyslog_dir(p)):
                rules += _rules_of(facts.files[path], path)
            continue
        rules += _rules_of_line(line, RSYSLOG_CONF, number)
    return rules


def _in_rsyslog_dir(path: str) -> bool:
    return str(PurePosixPath(path).parent) == RSYSLOG_DIR and path.endswith(".conf")


def _rules_of(text: str, path: str) -> list[SyslogRule]:
    return [r for n, line in _logical_lines(text) for r in _rules_of_line(line, path, n)]


def _rules_of_line(line: str, path: str, number: int) -> list[SyslogRule]:
    match = _LEGACY_RULE.match(line.strip())
    if match:
        return [SyslogRule(match[1], match[2].strip(), Line(f"{path}:{number}", line))]
    if line.strip().startswith("action("):  # an action without a selector: every message
        return [SyslogRule("*.*", line.strip(), Line(f"{path}:{number}", line))]
    return []


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Comment-free lines, with a multi-line ``action(...)`` joined into its first line."""
    result: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if pending is not None:
            pending = (pending[0], pending[1] + " " + line.strip())
            if pending[1].count("(") <= pending[1].count(")"):
                result.append(pending)
                pending = None
            continue
        if not line.strip():
            continue
        if line.count("(") > line.count(")"):
            pending = (number, line)
            continue
        result.append((number, line))
    if pending is not None:
        result.append(pending)
    return result


def selects(selector: str, facility: str, severity: str) -> bool:
    """Does a legacy selector (``*.*;auth,authpriv.none``) take this message? Parts are read
    left to right; a later part naming the facility overrides an earlier one."""
    level = SEVERITIES[severity]
    chosen = False
    for part in selector.split(";"):
        if "." not in part:
            continue
        facilities, priority = part.rsplit(".", 1)
        if facility in facilities.split(",") or "*" in facilities.split(","):
            chosen = _priority_matches(priority, level)
    return chosen


def _priority_matches(priority: str, level: int) -> bool:
    negate = priority.startswith("!")
    priority = priority.lstrip("!")
    if priority == "none":
        matched = False
    elif priority == "*":
        matched = True
    elif priority.startswith("="):
        matched = SEVERITIES.get(priority[1:], -1) == level
    else:
        matched = level <= SEVERITIES.get(priority, -1)
    return not matched if negate else matched


def running_syslog(facts: HostFacts, rules: list[SyslogRule] | None) -> Criterion:
    running = _running(facts, {"rsyslogd"})
    if running is None:
        return Criterion("syslog", None, "the process list was not collected")
    if not running:
        return Criterion("syslog", False, "rsyslogd is not running")
    if rules is None:
        return Criterion("syslog", None, "rsyslogd runs but rsyslog.conf was not read")
    files = [r for r in rules if r.file]
    if not files:
        return Criterion("syslog", False, "rsyslogd runs but no rule writes to a file")
    return Criterion("syslog", True, "rsyslogd runs and writes files", [files[0].line])


def persistent_log(journal: Criterion, syslog: Criterion) -> Criterion:
    name = "persistent system log"
    if journal.holds or syslog.holds:
        chosen = journal if journal.holds else syslog
        return Criterion(name, True, chosen.detail, chosen.lines)
    holds = False if journal.holds is False and syslog.holds is False else None
    return Criterion(name, holds, f"{journal.detail}; {syslog.detail}",
                     journal.lines + syslog.lines)  # fmt: skip


@dataclass(frozen=True)
class LogSinks:
    journal: Criterion
    syslog: Criterion
    rules: list[SyslogRule] | None

    def keeps(self, facility: str, severity: str = "info") -> Criterion:
        """Does a message of this facility reach persistent storage?"""
        if self.journal.holds:
            return Criterion(facility, True, "kept by the persistent journal", self.journal.lines)
        if self.syslog.holds and self.rules is not None:
            for rule in self.rules:
                if rule.file and selects(rule.selector, facility, severity):
                    return Criterion(facility, True, f"written to {rule.file}", [rule.line])
            return Criterion(facility, False, f"no rsyslog rule writes {facility}.{severity} "
                             "to a file")  # fmt: skip
        if self.journal.holds is None or self.syslog.holds is None:
            return Criterion(facility, None, "the persistent log could not be judged")
        return Criterion(facility, False, "neither a persistent journal nor syslog files")


# -- sshd ---------------------------------------------------------------------------------------


def authentication_logging(facts: HostFacts, sinks: LogSinks) -> Criterion:
    name = "authentication logging"
    config = facts.commands.get("sshd-effective-config")
    if config is None:
        why = facts.errors.get("commands:sshd-effective-config", "not collected")
        return Criterion(name, None, f"sshd's effective configuration was not read ({why})")
    settings = {}
    for number, line in enumerate(config.splitlines(), 1):
        parts = line.split(None, 1)
        if len(parts) == 2:
            settings[parts[0].lower()] = Line(f"`sshd -T` line {number}", line)
    level = settings.get("loglevel")
    facility = settings.get("syslogfacility")
    level_value = level.text.split()[1].lower() if level else "info"
    facility_value = facility.text.split()[1].lower() if facility else "auth"
    lines = [x for x in (level, facility) if x is not None]
    if level_value not in SSHD_LOGGING_LEVELS:
        return Criterion(name, False, f"sshd LogLevel {level_value.upper()} does not record "
                         "logins", lines)  # fmt: skip
    kept = sinks.keeps(facility_value, "info")
    detail = f"sshd logs at {level_value.upper()} to {facility_value}, {kept.detail}"
    return Criterion(name, kept.holds, detail, lines + kept.lines)


# -- sudo ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SudoDefault:
    qualifier: str  #: "" for a global Defaults, else ":user", "@host", "!cmnd", ">runas"
    name: str
    negated: bool
    value: str | None
    line: Line


_DEFAULTS = re.compile(r"^Defaults([:@!>]\S+)?\s+(.*)$")


def sudo_defaults(text: str) -> list[SudoDefault]:
    """Defaults entries of ``grep -rHn Defaults /etc/sudoers /etc/sudoers.d`` in the order
    sudo reads them: /etc/sudoers (Debian includes /etc/sudoers.d at its end), then the
    sudoers.d files by name, skipping names sudo ignores (with a '.' or ending in '~')."""
    entries: list[tuple[int, str, int, str]] = []
    for raw in text.splitlines():
        parts = raw.split(":", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            continue
        path, number, line = parts[0], int(parts[1]), parts[2]
        name = PurePosixPath(path).name
        if path != "/etc/sudoers" and ("." in name or name.endswith("~")):
            continue
        order = 0 if path == "/etc/sudoers" else 1
        entries.append((order, path, number, line))
    found: list[SudoDefault] = []
    for _, path, number, line in sorted(entries):
        match = _DEFAULTS.match(line.strip())
        if match is None:
            continue
        for item in _split_parameters(match[2]):
            negated = item.startswith("!")
            name, _, value = item.lstrip("!").partition("=")
            found.append(SudoDefault(match[1] or "", name.strip().rstrip("+-"), negated,
                                     value.strip().strip('"') or None,
                                     Line(f"{path}:{number}", line)))  # fmt: skip
    return found


def _split_parameters(text: str) -> list[str]:
    items, current, quoted = [], "", False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            items.append(current.strip())
            current = ""
        else:
            current += char
    items.append(current.strip())
    return [i for i in items if i]


def privileged_command_logging(facts: HostFacts, sinks: LogSinks) -> Criterion:
    """Met by any of sudo's logging, auditd recording every command run as root, or
    pam_tty_audit recording root's terminal input (with auditd keeping it)."""
    routes = [sudo_logging(facts, sinks), auditd_route(facts), pam_tty_audit_route(facts)]
    return any_of("privileged-command logging", routes)


def sudo_logging(facts: HostFacts, sinks: LogSinks) -> Criterion:
    name = "sudo"
    text = facts.commands.get("sudoers-defaults")
    if text is None:
        why = facts.errors.get("commands:sudoers-defaults", "not collected")
        return Criterion(name, None, f"sudo's Defaults were not read ({why})")
    defaults = sudo_defaults(text)
    logging_names = {"syslog", "logfile", "log_allowed"}
    scoped = [d for d in defaults if d.qualifier and d.name in logging_names and d.negated]
    if scoped:
        return Criterion(name, False, "a Defaults entry disables sudo logging for some cases",
                         [d.line for d in scoped])  # fmt: skip
    state = {"syslog": "authpriv", "logfile": None, "log_allowed": "on"}
    deciding: dict[str, Line] = {}
    for entry in (d for d in defaults if not d.qualifier and d.name in logging_names):
        state[entry.name] = None if entry.negated else (entry.value or "on")
        deciding[entry.name] = entry.line
    lines = list(deciding.values())
    if state["log_allowed"] is None:
        return Criterion(name, False, "`!log_allowed`: allowed commands are not logged", lines)
    if state["logfile"]:
        return Criterion(name, True, f"sudo writes its log file {state['logfile']}", lines)
    if state["syslog"] is None:
        return Criterion(name, False, "sudo logs neither to syslog (!syslog) nor to a file",
                         lines)  # fmt: skip
    facility = state["syslog"] if state["syslog"] != "on" else "authpriv"
    kept = sinks.keeps(facility, "notice")
    return Criterion(name, kept.holds, f"sudo logs to syslog {facility}, {kept.detail}",
                     lines + kept.lines)  # fmt: skip


# -- forwarding and time ------------------------------------------------------------------------


def forwarding(
    ctx: AuditContext, host: str, facts: HostFacts, rules: list[SyslogRule] | None
) -> Criterion:
    name = "forwarding to the log host"
    log_host = ctx.inventory.log_host
    if log_host is None:
        return Criterion(name, True, "the inventory names no log host: not required")
    if log_host == host:
        return Criterion(name, True, f"{host} is the log host")
    definition = ctx.inventory.hosts[log_host]
    addresses = {str(a) for a in definition.all_addresses()} | {log_host}
    if rules is None:
        return Criterion(name, None, "rsyslog.conf was not read")
    for rule in rules:
        target = rule.forward_target
        if target in addresses and selects(rule.selector, "authpriv", "info"):
            return Criterion(name, True, f"forwarded to {log_host} ({target})", [rule.line])
    if _running(facts, {"rsyslogd"}) is False:
        return Criterion(name, False, f"rsyslogd is not running; nothing forwards to {log_host}")
    return Criterion(name, False, f"no rsyslog rule forwards authentication messages to "
                     f"{log_host} ({', '.join(sorted(addresses))})")  # fmt: skip


_SOURCE_LINE = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+):(?P<text>.*)$")


def time_synchronisation(facts: HostFacts) -> Criterion:
    name = "time synchronisation"
    running = _running(facts, TIME_CLIENTS)
    clients = sorted({p.command for p in facts.processes or [] if p.command in TIME_CLIENTS})
    sources = facts.commands.get("time-sources")
    if running is None or sources is None:
        why = facts.errors.get("commands:time-sources", "not collected")
        return Criterion(name, None, f"process list or time sources not read ({why})")
    lines = [
        Line(f"{m['path']}:{m['line']}", m["text"])
        for raw in sources.splitlines()
        if (m := _SOURCE_LINE.match(raw))
    ]
    if not running:
        return Criterion(name, False, "no time-synchronisation client is running", lines[:2])
    if not lines:
        return Criterion(name, False, f"{', '.join(clients)} runs with no time source configured")
    return Criterion(name, True, f"{', '.join(clients)} runs with {len(lines)} source(s)",
                     lines[:3])  # fmt: skip
