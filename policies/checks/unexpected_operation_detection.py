"""unexpected-operation-detection (第4号ロ, second half): unexpected operations are detected
and the machine is controlled. Three criteria, each met / NOT met / unknown with the lines that
decided it (the control's ``criteria`` text is the finding's ``expected``):

1. detection whose alerts leave the host, by any of three routes:
   - *auditd*: it runs and keeps a log (policies.support.privileged_commands), its rules watch
     writes to the identity files, sudo's and sshd's configuration, record module loading and
     every program run as root by a login, and the records are forwarded (audisp-remote to a
     log host, or the syslog plugin with an rsyslog rule forwarding its facility);
   - *HIDS*: a Wazuh or OSSEC agent runs with a manager address configured;
   - *AIDE*: installed, a cron job (a running cron daemon) runs ``aide --check`` and pipes the
     report to ``logger``, whose facility an rsyslog rule forwards;
2. idle sessions end: sshd's ClientAliveInterval > 0 with ClientAliveCountMax > 0, or a
   read-only positive TMOUT in the login shells' start-up files;
3. an automated response: the lockout of authentication-hardening (pam_faillock, fail2ban), or
   the HIDS agent's active response.

"Leaves the host": to one of the inventory's ``log_host`` addresses; when the inventory names
no log host, to any address that is not the host's own loopback (the finding names it).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import TypeVar

from auditor.domain.facts import HostFacts
from auditor.domain.findings import Finding
from policies.checks.authentication_hardening import lockout
from policies.checks.operation_logging import SyslogRule, rsyslog_rules, selects
from policies.context import AuditContext
from policies.model import Control
from policies.support.common import Outcome, facts_or_inconclusive, inconclusive, judge_each
from policies.support.criteria import (
    CriteriaWording,
    Criterion,
    Line,
    any_of,
    criteria_outcome,
    evidence_of,
)
from policies.support.privileged_commands import audit_state, judge_rule_source
from probes.parsers import ParseError, parse_pam_directory
from probes.parsers.audit import AuditRule
from probes.parsers.authentication import parse_sshd_effective
from probes.parsers.detection import (
    AUDISP_REMOTE_CONF,
    AUDIT_PLUGINS_DIR,
    CRONTAB,
    OSSEC_CONF,
    CronFiles,
    PluginSetting,
    parse_audit_plugins,
    parse_cron,
    parse_ossec_conf,
    parse_tmout,
)

T = TypeVar("T")

EVIDENCE_PREFIXES = (
    "processes", "packages", "commands:auditctl", "commands:audit-config",
    "commands:cron-files", "commands:tmout", "commands:ossec-conf",
    "commands:sshd-effective-config", "commands:pam.d", "files:/etc/security/faillock.conf",
    "commands:fail2ban-sshd", "files:/etc/rsyslog", "commands:rsyslog.d",
)  # fmt: skip
#: The outputs only this control asks for: a collection without any of them (not even an
#: error saying why) was made before the control existed, and judging only the rest would
#: fail hosts on half the evidence.
OWN_FACTS = ("commands:cron-files", "commands:tmout", "commands:ossec-conf")
#: Files whose changes betray a takeover: identities, privileges, sshd's configuration.
WATCHED_FILES = {
    "identity files": ("/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow"),
    "sudo's configuration": ("/etc/sudoers", "/etc/sudoers.d"),
    "sshd's configuration": ("/etc/ssh/sshd_config",),
}
MODULE_SYSCALLS = ("init_module", "finit_module", "delete_module")
HIDS_AGENTS = {"wazuh-agentd", "ossec-agentd"}
CRON_DAEMONS = {"cron", "crond", "busybox"}
LOOPBACK = re.compile(r"^(127\.|::1$|localhost$|\[::1\]$)")
#: syslog(3) facility names as audispd's syslog plugin and logger(1) take them.
FACILITIES = {"auth", "authpriv", "cron", "daemon", "kern", "local0", "local1", "local2",
              "local3", "local4", "local5", "local6", "local7", "lpr", "mail", "news",
              "syslog", "user", "uucp", "security"}  # fmt: skip
PRIORITIES = {"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug", "panic",
              "error", "warn"}  # fmt: skip


def check(ctx: AuditContext, control: Control) -> list[Finding]:
    return judge_each(ctx, control, lambda host: _judge(ctx, control, host))


def _judge(ctx: AuditContext, control: Control, host: str) -> Outcome:
    facts = facts_or_inconclusive(
        ctx, host, f"cannot judge {host}'s detection", f"{host} の検知・制御を判定できない"
    )
    if not isinstance(facts, HostFacts):
        return facts
    if ctx.inventory.hosts[host].os == "windows":
        why = "no read-only command of a known output format shows a Windows host's detection"
        return inconclusive(f"cannot judge {host}'s detection: {why}",
                            f"{host} の検知・制御を判定できない(Windowsの形式が未対応)")  # fmt: skip
    if missing := not_collected(facts):
        return inconclusive(
            f"cannot judge {host}'s detection: not collected: {', '.join(missing)}",
            f"{host} の検知・制御を判定できない(未収集: {', '.join(missing)})",
        )
    return verdict(control, host, facts, judge_criteria(ctx, host, facts))


def not_collected(facts: HostFacts) -> list[str]:
    def present(key: str) -> bool:
        return key.partition(":")[2] in facts.commands or key in facts.errors

    return [] if any(present(k) for k in OWN_FACTS) else list(OWN_FACTS)


WORDING = CriteriaWording(
    topic_ja="検知・制御",
    passed_en="detects and controls",
    passed_ja="は想定外の操作を検知し、制御している",
)


def verdict(control: Control, host: str, facts: HostFacts, criteria: list[Criterion]) -> Outcome:
    evidence = evidence_of(facts, EVIDENCE_PREFIXES)
    return criteria_outcome(control, host, criteria, WORDING, evidence)


def judge_criteria(ctx: AuditContext, host: str, facts: HostFacts) -> list[Criterion]:
    destination = Destination.of(ctx, host, facts)
    hids = hids_route(facts)
    return [
        any_of("detection reported off the host",
               [auditd_route(facts, destination), hids, aide_route(facts, destination)]),
        any_of("idle sessions end", [client_alive(facts), tmout(facts)]),
        any_of("automated response", [_lockout(facts), active_response(facts, hids)]),
    ]  # fmt: skip


def _parsed(facts: HostFacts, name: str, parse: Callable[[str], T]) -> T | str:
    """The collected output ``name`` parsed, or why it is missing or unreadable."""
    text = facts.commands.get(name)
    if text is None:
        return facts.errors.get(f"commands:{name}", "not collected")
    try:
        return parse(text)
    except ParseError as exc:
        return f"parse-error: {exc}"


def _running(facts: HostFacts, names: set[str]) -> list[str] | None:
    if facts.processes is None:
        return None
    return sorted({p.command for p in facts.processes if p.command in names})


# -- where alerts must go ----------------------------------------------------------------------


class Destination:
    """The addresses an alert must reach to have left the host, and the rsyslog rules."""

    def __init__(self, log_host: str | None, addresses: set[str] | None, is_log_host: bool,
                 rules: list[SyslogRule] | None) -> None:  # fmt: skip
        self.log_host = log_host
        self.addresses = addresses  #: None: no log host named, any remote address counts
        self.is_log_host = is_log_host
        self.rules = rules

    @staticmethod
    def of(ctx: AuditContext, host: str, facts: HostFacts) -> Destination:
        name = ctx.inventory.log_host
        if name is None:
            return Destination(None, None, False, rsyslog_rules(facts))
        addresses = {str(a) for a in ctx.inventory.hosts[name].all_addresses()} | {name}
        return Destination(name, addresses, name == host, rsyslog_rules(facts))

    def accepts(self, target: str) -> bool:
        if self.addresses is None:
            return LOOPBACK.match(target) is None
        return target.strip("[]") in self.addresses

    def describe(self) -> str:
        if self.addresses is None:
            return "a remote address (the inventory names no log host)"
        return f"the log host {self.log_host} ({', '.join(sorted(self.addresses))})"

    def syslog(self, what: str, facility: str, priority: str) -> Criterion:
        """Does rsyslog forward ``facility.priority`` here? rsyslogd must run."""
        if self.is_log_host:
            return Criterion(what, True, f"this host is the log host {self.log_host}")
        if self.rules is None:
            return Criterion(what, None, "rsyslog.conf was not read")
        for rule in self.rules:
            target = rule.forward_target
            if target and self.accepts(target) and selects(rule.selector, facility, priority):
                return Criterion(what, True, f"rsyslog forwards {facility}.{priority} to "
                                 f"{target}", [rule.line])  # fmt: skip
        return Criterion(what, False, f"no rsyslog rule forwards {facility}.{priority} to "
                         f"{self.describe()}")  # fmt: skip


def _syslog_running(facts: HostFacts, forwarded: Criterion) -> Criterion:
    if not forwarded.holds:
        return forwarded
    running = _running(facts, {"rsyslogd"})
    if running is None:
        return Criterion(forwarded.name, None, "the process list was not read", forwarded.lines)
    if not running:
        return Criterion(forwarded.name, False, "rsyslogd is not running", forwarded.lines)
    return forwarded


# -- route 1: auditd ---------------------------------------------------------------------------


def auditd_route(facts: HostFacts, destination: Destination) -> Criterion:
    name = "auditd"
    state = audit_state(facts)
    if not state.holds:
        return Criterion(name, state.holds, state.detail, state.lines)
    verdicts = [audit_rules_cover(source.name, source.rules) for source in state.sources]
    if len({v.holds for v in verdicts}) > 1:
        return Criterion(name, None, "the loaded rules were not read and the rules files "
                         "disagree", [x for v in verdicts for x in v.lines])  # fmt: skip
    rules = verdicts[0]
    execution = judge_rule_source(state.sources[0])
    if not rules.holds or not execution.holds:
        chosen = rules if not rules.holds else execution
        holds = False if False in (rules.holds, execution.holds) else None
        return Criterion(name, holds, chosen.detail, chosen.lines)
    forwarded = audit_forwarding(facts, destination)
    detail = f"{state.detail}; {rules.detail}; {forwarded.detail}"
    return Criterion(name, forwarded.holds, detail, rules.lines + forwarded.lines)


def _rule_line(rule: AuditRule) -> Line:
    if rule.source == "auditctl -l":
        return Line(f"`auditctl -l` line {rule.number}", rule.text)
    return Line(f"{rule.source}:{rule.number}", rule.text)


def _writes_watched(rule: AuditRule, path: str) -> bool:
    """A rule that records writes to ``path``: ``-w PATH`` with ``w`` in its permissions (none
    given means all), or an always,exit rule ``-F path=PATH``/``-F dir=PATH`` with ``perm``
    including ``w``."""
    if rule.action != "always" or rule.list_name != "exit":
        return False
    fields = {f.name: f for f in rule.fields if f.op == "="}
    perm = fields.get("perm")
    writes = perm is None or "w" in perm.value
    if rule.watch is not None:
        return rule.watch.rstrip("/") == path and writes
    target = fields.get("path") or fields.get("dir")
    return target is not None and target.value.rstrip("/") == path and perm is not None and writes


def _loads_modules(rule: AuditRule) -> bool:
    if rule.action != "always" or rule.list_name != "exit" or rule.watch is not None:
        return False
    return "all" in rule.syscalls or any(s in MODULE_SYSCALLS for s in rule.syscalls)


def audit_rules_cover(source: str, rules: list[AuditRule]) -> Criterion:
    """The watches and the module-loading rule (execution is judge_rule_source's). A ``never``
    rule on the exit list may suppress any of them: not modelled, so unknown."""
    name = "audit rules"
    never = [r for r in rules if r.action == "never" and r.list_name == "exit"]
    missing, lines = [], []
    for group, paths in WATCHED_FILES.items():
        for path in paths:
            found = next((r for r in rules if _writes_watched(r, path)), None)
            if found is None:
                missing.append(f"{path} ({group})")
            else:
                lines.append(_rule_line(found))
    module = next((r for r in rules if _loads_modules(r)), None)
    if module is None:
        missing.append("module loading (" + ", ".join(MODULE_SYSCALLS) + ")")
    else:
        lines.append(_rule_line(module))
    if missing:
        return Criterion(name, False, f"{source} does not watch: {', '.join(missing)}", lines[:2])
    if never:
        return Criterion(name, None, f"{source} has a never rule on the exit list, which may "
                         "suppress the watches", [_rule_line(never[0])])  # fmt: skip
    return Criterion(name, True, f"{source} watch identity, sudo and sshd files and module "
                     "loading", lines)  # fmt: skip


def audit_forwarding(facts: HostFacts, destination: Destination) -> Criterion:
    name = "audit records forwarded"
    plugins = _parsed(facts, "audit-config", parse_audit_plugins)
    if isinstance(plugins, str):
        return Criterion(name, None, f"/etc/audit was not read: {plugins}")
    remote = plugins.get(f"{AUDIT_PLUGINS_DIR}/au-remote.conf", {})
    syslog = plugins.get(f"{AUDIT_PLUGINS_DIR}/syslog.conf", {})
    routes = []
    active = remote.get("active")
    server = plugins.get(AUDISP_REMOTE_CONF, {}).get("remote_server")
    if active is None or active.value.lower() != "yes":
        routes.append(Criterion("audisp-remote", False, "au-remote.conf is not active = yes"))
    elif server is None or not destination.accepts(server.value):
        routes.append(Criterion("audisp-remote", False, f"remote_server is not "
                                f"{destination.describe()}"))  # fmt: skip
    else:
        lines = [Line(f"{s.path}:{s.number}", f"{s.key} = {s.value}") for s in (active, server)]
        routes.append(Criterion("audisp-remote", True, f"audisp-remote sends to {server.value}",
                                lines))  # fmt: skip
    routes.append(_audit_syslog(facts, syslog, destination))
    return any_of(name, routes)


def _audit_syslog(facts: HostFacts, syslog: dict[str, PluginSetting], destination: Destination
                  ) -> Criterion:  # fmt: skip
    """The syslog plugin: ``args = LOG_INFO LOG_LOCAL6`` (priority then facility; defaults
    info and user) sends each record to syslog, which rsyslog may forward."""
    active = syslog.get("active")
    if active is None or active.value.lower() != "yes":
        return Criterion("audit syslog plugin", False, "syslog.conf is not active = yes")
    setting = syslog.get("args")
    args = setting.value.lower().split() if setting else []
    words = [a.removeprefix("log_") for a in args]
    priority = next((w for w in words if w in PRIORITIES), "info")
    facility = next((w for w in words if w in FACILITIES), "user")
    forwarded = destination.syslog("audit syslog plugin", facility, priority)
    return _syslog_running(facts, forwarded)


# -- route 2: a host intrusion detection agent ---------------------------------------------------


def hids_route(facts: HostFacts) -> Criterion:
    name = "HIDS agent"
    agents = _running(facts, HIDS_AGENTS)
    if agents is None:
        return Criterion(name, None, "the process list was not read")
    if not agents:
        return Criterion(name, False, "no Wazuh or OSSEC agent is running")
    conf = _parsed(facts, "ossec-conf", parse_ossec_conf)
    if isinstance(conf, str):
        return Criterion(name, None, f"{', '.join(agents)} runs but {OSSEC_CONF} was not read "
                         f"({conf})")  # fmt: skip
    remote = [(n, a) for n, a in conf.servers if not LOOPBACK.match(a)]
    if not remote:
        return Criterion(name, False, f"{', '.join(agents)} runs with no manager address")
    lines = [Line(f"{OSSEC_CONF}:{n}", a) for n, a in remote[:2]]
    return Criterion(name, True, f"{', '.join(agents)} reports to {remote[0][1]}", lines)


def active_response(facts: HostFacts, hids: Criterion) -> Criterion:
    """The agent executes its manager's active responses unless ``<disabled>yes``."""
    name = "agent active response"
    if not hids.holds:
        return Criterion(name, hids.holds, hids.detail)
    conf = _parsed(facts, "ossec-conf", parse_ossec_conf)
    if isinstance(conf, str):
        return Criterion(name, None, conf)
    off = [(n, v) for n, v in conf.active_response_disabled if v == "yes"]
    if off:
        return Criterion(
            name,
            False,
            "the agent's active response is disabled",
            [Line(f"{OSSEC_CONF}:{n}", "<disabled>yes</disabled>") for n, _ in off],
        )
    return Criterion(name, True, "the agent runs its manager's active responses", hids.lines)


# -- route 3: AIDE -------------------------------------------------------------------------------


def aide_route(facts: HostFacts, destination: Destination) -> Criterion:
    name = "AIDE"
    if facts.packages is None or facts.processes is None:
        return Criterion(name, None, "the package list or the process list was not read")
    if "aide" not in facts.packages:
        return Criterion(name, False, "aide is not installed")
    cron = _parsed(facts, "cron-files", parse_cron)
    if isinstance(cron, str):
        return Criterion(name, None, f"the cron files were not read: {cron}")
    daemons = _running(facts, CRON_DAEMONS) or []
    jobs = aide_jobs(cron)
    if not jobs:
        return Criterion(name, False, "no cron job runs an AIDE check (systemd timers are not "
                         "collected)")  # fmt: skip
    if not daemons:
        return Criterion(name, False, "no cron daemon is running", [jobs[0][0]])
    verdicts = [_report(facts, line, command, destination) for line, command in jobs]
    return any_of(name, verdicts)


def aide_jobs(cron: CronFiles) -> list[tuple[Line, str]]:
    """(line, command) of each scheduled AIDE check: a crontab entry whose command runs
    ``aide`` with ``--check``/``-C`` (or ``--update``/``-u``, which also reports), or a line
    of a periodic script (run by /etc/crontab's run-parts) that does."""
    found = [(Line(f"{j.path}:{j.number}", j.text), j.command) for j in cron.jobs
             if _runs_aide_check(j.command)]  # fmt: skip
    run_parts = " ".join(j.command for j in cron.jobs if j.path == CRONTAB)
    for path, lines in cron.scripts.items():
        if str(PurePosixPath(path).parent) not in run_parts:
            continue
        for number in sorted(lines):
            if _runs_aide_check(lines[number]):
                found.append((Line(f"{path}:{number}", lines[number]), lines[number]))
    return found


_AIDE = re.compile(r"(?:^|[\s;&|(])(?:\S*/)?aide(?:\.wrapper)?\s(?:[^|;&]*\s)?"
                   r"(?:--check|-C|--update|-u)(?=\s|$|[|;&)])")  # fmt: skip


def _runs_aide_check(command: str) -> bool:
    if command.lstrip().startswith("#"):
        return False
    return _AIDE.search(command) is not None


def _report(facts: HostFacts, line: Line, command: str, destination: Destination) -> Criterion:
    """Where the check's report goes: piped to logger (its ``-p``, default user.notice), which
    rsyslog must forward; mail is not judged (delivery beyond the host is not collected)."""
    name = "AIDE report"
    logger = re.search(r"\|\s*(?:\S*/)?logger\b([^|;&]*)", command)
    if logger is None:
        if re.search(r"\|\s*(?:\S*/)?(?:mail|mailx|sendmail)\b", command):
            return Criterion(name, None, "the report is mailed: its delivery off the host is not "
                             "collected", [line])  # fmt: skip
        return Criterion(name, False, "the report stays on the host (not piped to logger)",
                         [line])  # fmt: skip
    facility, priority = _logger_priority(logger[1])
    forwarded = _syslog_running(facts, destination.syslog(name, facility, priority))
    return Criterion(name, forwarded.holds, f"{line.where} runs an AIDE check to logger "
                     f"({facility}.{priority}); {forwarded.detail}",
                     [line, *forwarded.lines])  # fmt: skip


def _logger_priority(arguments: str) -> tuple[str, str]:
    try:
        words = shlex.split(arguments)
    except ValueError:
        words = arguments.split()
    for option, value in zip(words, [*words[1:], ""], strict=True):
        if option in ("-p", "--priority") and "." in value:
            facility, _, priority = value.lower().partition(".")
            return facility, priority
    return "user", "notice"


# -- idle sessions and automated response -------------------------------------------------------


def client_alive(facts: HostFacts) -> Criterion:
    name = "sshd ClientAlive"
    settings = _parsed(facts, "sshd-effective-config", parse_sshd_effective)
    if isinstance(settings, str):
        return Criterion(name, None, f"sshd's effective configuration was not read ({settings})")
    found = {k: settings[k][-1] for k in ("clientaliveinterval", "clientalivecountmax")
             if k in settings}  # fmt: skip
    lines = [Line(f"`sshd -T` line {s.line}", f"{s.keyword} {s.value}") for s in found.values()]
    if len(found) < 2 or not all(s.value.isdigit() for s in found.values()):
        return Criterion(name, None, "sshd -T shows no numeric ClientAlive settings", lines)
    interval = int(found["clientaliveinterval"].value)
    count = int(found["clientalivecountmax"].value)
    if interval == 0 or count == 0:
        return Criterion(name, False, f"ClientAliveInterval {interval} with ClientAliveCountMax "
                         f"{count} never ends a session", lines)  # fmt: skip
    return Criterion(name, True, f"sshd ends an unresponsive session after {interval * count} s",
                     lines)  # fmt: skip


def tmout(facts: HostFacts) -> Criterion:
    name = "read-only TMOUT"
    lines = _parsed(facts, "tmout", parse_tmout)
    if isinstance(lines, str):
        return Criterion(name, None, f"the shells' start-up files were not read ({lines})")
    values = [x for x in lines if x.value is not None]
    readonly = [x for x in lines if x.readonly]
    cited = [Line(f"{x.path}:{x.number}", x.text) for x in (values[-1:] + readonly[:1])]
    if not values:
        return Criterion(name, False, "no TMOUT is set in /etc/profile, /etc/profile.d or "
                         "/etc/bash.bashrc")  # fmt: skip
    last = values[-1].value or 0
    if last <= 0:
        return Criterion(name, False, "TMOUT is 0: shells never time out", cited)
    if not readonly:
        return Criterion(name, False, f"TMOUT={last} is not read-only: a user can unset it",
                         cited)  # fmt: skip
    return Criterion(name, True, f"login shells end after {last} s idle (read-only TMOUT)", cited)


def _lockout(facts: HostFacts) -> Criterion:
    """authentication-hardening's lockout criterion, on the same facts."""
    sshd = _parsed(facts, "sshd-effective-config", parse_sshd_effective)
    pam = _parsed(facts, "pam.d", parse_pam_directory)
    return lockout(facts, sshd, pam)
