"""operation-logging: the parsers (journald, rsyslog selectors, sudoers Defaults, sshd -T, time
sources) on outputs recorded from the lab, and the verdicts for the baseline and logging-off."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditor.domain.attempts import Attempt
from auditor.domain.facts import HostFacts, Process
from auditor.domain.findings import Status
from auditor.domain.inventory import load_inventory
from policies.checks import operation_logging as logging_check
from policies.context import AuditContext
from policies.model import load_controls
from policies.support.criteria import Criterion

DATA = Path(__file__).parents[2] / "data"
HOSTCONTROLS = DATA / "hostcontrols"
RECORDED = DATA / "recorded"
CONTROL = load_controls()["operation-logging"]


def lab_facts(scenario: str, host: str) -> HostFacts:
    return HostFacts.model_validate_json((HOSTCONTROLS / scenario / f"{host}.json").read_text())


def lab_context(scenario: str) -> AuditContext:
    inventory = load_inventory(HOSTCONTROLS / scenario / "inventory.yaml")
    collection = {
        p.stem: Attempt.ok("ssh-host", p.stem, lab_facts(scenario, p.stem), [])
        for p in (HOSTCONTROLS / scenario).glob("*.json")
    }
    return AuditContext(inventory=inventory, collection=collection)


def by_name(criteria: list[Criterion]) -> dict[str, Criterion]:
    return {c.name: c for c in criteria}


# -- rsyslog ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "facility", "severity", "taken"),
    [
        ("auth,authpriv.*", "authpriv", "info", True),
        ("*.*;auth,authpriv.none", "auth", "info", False),
        ("*.*;auth,authpriv.none", "daemon", "debug", True),
        ("kern.*", "auth", "info", False),
        ("*.warning", "auth", "info", False),
        ("*.info", "authpriv", "notice", True),
        ("auth.=info", "auth", "info", True),
        ("auth.=info", "auth", "notice", False),
        ("auth.!notice", "auth", "info", True),
        ("auth.!notice", "auth", "err", False),
    ],
)
def test_selector_semantics(selector: str, facility: str, severity: str, taken: bool) -> None:
    assert logging_check.selects(selector, facility, severity) is taken


def test_recorded_debian_rsyslog_conf_writes_auth_to_auth_log() -> None:
    conf = (RECORDED / "lab-term-1.etc-rsyslog.conf.txt").read_text()
    rules = logging_check.rsyslog_rules(HostFacts(host="t", files={"/etc/rsyslog.conf": conf}))
    assert rules is not None
    files = [(r.selector, r.file, r.line.where) for r in rules if r.file]
    assert ("auth,authpriv.*", "/var/log/auth.log", "/etc/rsyslog.conf:60") in files
    assert ("*.*;auth,authpriv.none", "/var/log/syslog", "/etc/rsyslog.conf:55") in files
    assert all(r.forward_target is None for r in rules)


def test_included_files_multiline_actions_and_forwarding_targets() -> None:
    facts = HostFacts(host="t", files={
        "/etc/rsyslog.conf": "$IncludeConfig /etc/rsyslog.d/*.conf\nkern.* /var/log/kern.log\n",
        "/etc/rsyslog.d/50-forward.conf": (
            "# forward everything to the log host\n"
            "*.* action(type=\"omfwd\"\n"
            "           target=\"10.98.21.5\" port=\"514\" protocol=\"tcp\")\n"
            "authpriv.* @@[fd98:0:0:21::5]:514\n"),
        "/etc/rsyslog.d/10-files.conf": "auth.* action(type=\"omfile\" file=\"/var/log/secure\")\n",
        "/etc/rsyslog.d/README": "auth.* /var/log/ignored\n",
    })  # fmt: skip
    rules = logging_check.rsyslog_rules(facts)
    assert rules is not None
    assert [(r.line.where, r.file, r.forward_target) for r in rules] == [
        ("/etc/rsyslog.d/10-files.conf:1", "/var/log/secure", None),
        ("/etc/rsyslog.d/50-forward.conf:2", None, "10.98.21.5"),
        ("/etc/rsyslog.d/50-forward.conf:4", None, "fd98:0:0:21::5"),
        ("/etc/rsyslog.conf:2", "/var/log/kern.log", None),
    ]


# -- journald -----------------------------------------------------------------------------------


def test_journald_drop_ins_override_the_main_file() -> None:
    facts = HostFacts(host="t", files={
        "/etc/systemd/journald.conf": "[Journal]\nStorage=persistent\n",
        "/etc/systemd/journald.conf.d/90-volatile.conf": "[Journal]\nStorage=volatile\n",
        "/etc/systemd/journald.conf.d/10-a.conf": "[Journal]\nStorage=auto\n",
    })  # fmt: skip
    storage, line = logging_check.journald_storage(facts)
    assert storage == "volatile" and line is not None
    assert line.where == "/etc/systemd/journald.conf.d/90-volatile.conf:2"


def test_a_persistent_journal_counts_only_while_journald_runs() -> None:
    conf = "[Journal]\nStorage=persistent\n"
    idle = HostFacts(host="t", processes=[], files={"/etc/systemd/journald.conf": conf})
    assert logging_check.persistent_journal(idle).holds is False
    journald = Process(
        pid=200, user="root", command="systemd-journal", args="/lib/systemd/systemd-journald"
    )
    running = idle.model_copy(update={"processes": [journald]})
    assert logging_check.persistent_journal(running).holds is True
    auto = running.model_copy(update={"files": {"/etc/systemd/journald.conf": "[Journal]\n"},
                                       "commands": {"var-log-listing": "apt\nsyslog\n"}})  # fmt: skip
    assert logging_check.persistent_journal(auto).holds is False
    with_dir = auto.model_copy(update={"commands": {"var-log-listing": "apt\njournal\n"}})
    assert logging_check.persistent_journal(with_dir).holds is True


# -- sudo ---------------------------------------------------------------------------------------


def test_sudo_defaults_in_the_order_sudo_reads_them() -> None:
    text = (
        "/etc/sudoers.d/zz-off:1:Defaults !syslog\n"
        "/etc/sudoers:9:Defaults\tenv_reset\n"
        "/etc/sudoers.d/logging:3:Defaults syslog=authpriv\n"
        "/etc/sudoers.d/old.bak:1:Defaults !logfile\n"
        "/etc/sudoers:12:# Defaults use_pty\n"
        "/etc/sudoers.d/auditor:19:Defaults:auditor !requiretty, env_reset\n"
    )
    defaults = logging_check.sudo_defaults(text)
    assert [(d.qualifier, d.name, d.negated, d.value, d.line.where) for d in defaults] == [
        ("", "env_reset", False, None, "/etc/sudoers:9"),
        (":auditor", "requiretty", True, None, "/etc/sudoers.d/auditor:19"),
        (":auditor", "env_reset", False, None, "/etc/sudoers.d/auditor:19"),
        ("", "syslog", False, "authpriv", "/etc/sudoers.d/logging:3"),
        ("", "syslog", True, None, "/etc/sudoers.d/zz-off:1"),
    ]


def _sinks_with_auth_file() -> logging_check.LogSinks:
    conf = (RECORDED / "lab-term-1.etc-rsyslog.conf.txt").read_text()
    facts = HostFacts(host="t", processes=[Process(pid=2, user="root", command="rsyslogd", args="rsyslogd")],
                      files={"/etc/rsyslog.conf": conf})  # fmt: skip
    rules = logging_check.rsyslog_rules(facts)
    return logging_check.LogSinks(logging_check.persistent_journal(facts),
                                  logging_check.running_syslog(facts, rules), rules)  # fmt: skip


@pytest.mark.parametrize(
    ("defaults", "holds", "decisive"),
    [
        ("/etc/sudoers:9:Defaults env_reset\n", True, "/etc/rsyslog.conf:60"),
        ("/etc/sudoers.d/x:1:Defaults !syslog\n", False, "/etc/sudoers.d/x:1"),
        (
            "/etc/sudoers.d/x:1:Defaults !syslog, logfile=/var/log/sudo.log\n",
            True,
            "/etc/sudoers.d/x:1",
        ),
        ("/etc/sudoers.d/x:1:Defaults !log_allowed\n", False, "/etc/sudoers.d/x:1"),
        ("/etc/sudoers.d/x:2:Defaults:alice !syslog\n", False, "/etc/sudoers.d/x:2"),
        # local7 is not auth: Debian's rsyslog.conf keeps it in /var/log/syslog (*.*)
        ("/etc/sudoers.d/x:1:Defaults syslog=local7\n", True, "/etc/rsyslog.conf:55"),
    ],
)
def test_sudo_logging(defaults: str, holds: bool, decisive: str) -> None:
    facts = HostFacts(host="t", commands={"sudoers-defaults": defaults})
    criterion = logging_check.sudo_logging(facts, _sinks_with_auth_file())
    assert criterion.holds is holds
    assert decisive in [x.where for x in criterion.lines]


def test_sshd_quiet_log_level_does_not_record_logins() -> None:
    quiet = HostFacts(
        host="t",
        commands={"sshd-effective-config": "port 22\nloglevel QUIET\nsyslogfacility AUTH\n"},
    )
    criterion = logging_check.authentication_logging(quiet, _sinks_with_auth_file())
    assert criterion.holds is False and criterion.lines[0].where == "`sshd -T` line 2"


# -- verdicts on the lab's recorded facts -------------------------------------------------------


def test_baseline_hosts_meet_every_criterion() -> None:
    ctx = lab_context("baseline")
    findings = {f.subject: f for f in logging_check.check(ctx, CONTROL)}
    assert {h: f.status for h, f in findings.items()} == dict.fromkeys(
        ["recv-srv", "proc-srv", "send-srv", "term-1", "term-2"], Status.PASS
    )
    proc = by_name(logging_check.judge_criteria(ctx, "proc-srv", lab_facts("baseline", "proc-srv")))
    assert "/var/log/auth.log" in proc["authentication logging"].detail
    assert "/var/log/sudo.log" in proc["privileged-command logging"].detail
    assert proc["time synchronisation"].lines[0].where.startswith("/etc/chrony/chrony.conf:")
    assert findings["proc-srv"].expected == CONTROL.criteria.en


def test_logging_off_fails_proc_srv_on_each_broken_criterion() -> None:
    ctx = lab_context("logging-off")
    findings = {f.subject: f.status for f in logging_check.check(ctx, CONTROL)}
    assert findings == {"recv-srv": Status.PASS, "proc-srv": Status.FAIL, "send-srv": Status.PASS,
                        "term-1": Status.PASS, "term-2": Status.PASS}  # fmt: skip
    proc = by_name(
        logging_check.judge_criteria(ctx, "proc-srv", lab_facts("logging-off", "proc-srv"))
    )
    assert proc["persistent system log"].holds is False
    assert "Storage=volatile" in proc["persistent system log"].detail
    assert proc["privileged-command logging"].holds is False
    assert "/etc/sudoers.d/logging:2" in [x.where for x in proc["privileged-command logging"].lines]
    assert proc["time synchronisation"].holds is True


def test_forwarding_is_required_when_the_inventory_names_a_log_host() -> None:
    ctx = lab_context("baseline")
    ctx.inventory = ctx.inventory.model_copy(update={"log_host": "send-srv"})
    criteria = by_name(
        logging_check.judge_criteria(ctx, "proc-srv", lab_facts("baseline", "proc-srv"))
    )
    assert criteria["forwarding to the log host"].holds is False
    forwarded = lab_facts("baseline", "proc-srv")
    files = {**forwarded.files, "/etc/rsyslog.d/60-remote.conf": "*.* @@10.98.22.20:514\n"}
    criteria = by_name(
        logging_check.judge_criteria(ctx, "proc-srv", forwarded.model_copy(update={"files": files}))
    )
    assert criteria["forwarding to the log host"].holds is True
    assert (
        criteria["forwarding to the log host"].lines[0].where == "/etc/rsyslog.d/60-remote.conf:1"
    )
