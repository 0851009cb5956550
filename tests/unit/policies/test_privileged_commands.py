"""operation-logging criterion (3), privileged-command logging: the auditd and pam_tty_audit
routes on auditctl outputs written in auditctl's format (tests/data/audit) and on /etc/pam.d
recorded from the lab's image, and how the three routes combine."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auditor.domain.facts import HostFacts, Process
from policies.checks import operation_logging as logging_check
from policies.support.criteria import Criterion
from policies.support.privileged_commands import auditd_route, pam_tty_audit_route

DATA = Path(__file__).parents[2] / "data"
AUDIT = DATA / "audit"
PAM = (DATA / "recorded" / "lab-image.grep-pam.d.txt").read_text()
AUDITD = Process(pid=612, user="root", command="auditd", args="/sbin/auditd")
SSHD_T = "port 22\nusepam yes\nloglevel INFO\n"


def audit_facts(rules: str | None = None, *, status: str = "auditctl-s.enabled.txt",
                config: str | None = None, processes: list[Process] | None = None,
                **commands: str) -> HostFacts:  # fmt: skip
    """A host running auditd, with the written fixtures (by file name) or given texts."""
    found = {"audit-config": config or (AUDIT / "etc-audit.root-commands.grep.txt").read_text()}
    if status:
        found["auditctl-status"] = (AUDIT / status).read_text()
    if rules is not None:
        found["auditctl-rules"] = (AUDIT / rules).read_text() if rules.endswith(".txt") else rules
    found.update(commands)
    return HostFacts(host="h", processes=[AUDITD] if processes is None else processes,
                     commands=found,
                     errors={"commands:auditctl-rules": "command-failed: not permitted"})  # fmt: skip


# -- auditd -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "holds", "decisive", "said"),
    [
        ("auditctl-l.root-commands.txt", True, "`auditctl -l` line 3", "64- and 32-bit"),
        ("auditctl-l.logins-from-1000.txt", False, "`auditctl -l` line 1", "login uids 0-999"),
        ("auditctl-l.logins-from-1000-and-root.txt", True, "`auditctl -l` line 1", "every"),
        ("auditctl-l.setuid-only.txt", False, "`auditctl -l` line 1", "narrower rule"),
        ("auditctl-l.64-bit-only.txt", None, "`auditctl -l` line 1", "32-bit"),
        ("auditctl-l.never-task.txt", False, "`auditctl -l` line 1", "never rule suppresses"),
        ("auditctl-l.no-rules.txt", False, "`auditctl -s` line 1", "no rule records"),
    ],
)
def test_loaded_rules_decide(rules: str, holds: bool | None, decisive: str, said: str) -> None:
    criterion = auditd_route(audit_facts(rules))
    assert criterion.holds is holds, criterion.describe()
    assert criterion.lines[0].where == decisive
    assert said in criterion.detail


def test_a_watch_on_sudo_or_sudoers_is_not_enough() -> None:
    watches = "-w /usr/bin/sudo -p x -k sudo\n-w /etc/sudoers -p wa -k scope\n"
    criterion = auditd_route(audit_facts(watches))
    assert criterion.holds is False
    assert "1 narrower rule" in criterion.detail  # the sudoers watch sees no execution at all


def test_without_the_loaded_rules_the_rules_files_decide_with_file_and_line() -> None:
    criterion = auditd_route(audit_facts(None, status=""))
    assert criterion.holds is True, criterion.describe()
    assert [x.where for x in criterion.lines] == [
        "/etc/audit/audit.rules:6",
        "/etc/audit/audit.rules:7",
    ]


def test_rules_files_that_disagree_leave_it_unknown() -> None:
    config = (AUDIT / "etc-audit.root-commands.grep.txt").read_text()
    stale = "\n".join(
        line
        for line in config.splitlines()
        if not line.startswith("/etc/audit/audit.rules:7:")  # audit.rules lost its b32 rule
    ).replace("/etc/audit/audit.rules:8:", "/etc/audit/audit.rules:7:")
    stale = stale.replace("/etc/audit/audit.rules:9:", "/etc/audit/audit.rules:8:")
    stale = stale.replace("/etc/audit/audit.rules:10:", "/etc/audit/audit.rules:9:")
    criterion = auditd_route(audit_facts(None, status="", config=stale))
    assert criterion.holds is None
    assert "disagree" in criterion.detail


def test_rules_files_that_disable_auditing_fail() -> None:
    config = (AUDIT / "etc-audit.root-commands.grep.txt").read_text()
    disabled = config.replace(":-e 2", ":-e 0")
    criterion = auditd_route(audit_facts(None, status="", config=disabled))
    assert criterion.holds is False
    assert criterion.lines[0].text == "-e 0"


@pytest.mark.parametrize(
    ("facts", "holds", "said"),
    [
        (audit_facts("auditctl-l.root-commands.txt", processes=[]), False, "not running"),
        (HostFacts(host="h"), None, "process list"),
        (audit_facts("auditctl-l.root-commands.txt", status="auditctl-s.disabled.txt"), False,
         "disabled (enabled 0)"),
        (audit_facts("auditctl-l.root-commands.txt", config="/etc/audit/auditd.conf:1:"
                     "write_logs = no\n"), False, "write_logs = no"),
        (audit_facts(None, status="", processes=[Process(pid=9, user="root", command="auditd",
                     args="/sbin/auditd -s nochange")]), None, "-s nochange"),
    ],
)  # fmt: skip
def test_auditd_must_run_enabled_and_keep_its_log(facts: HostFacts, holds: bool | None,
                                                  said: str) -> None:  # fmt: skip
    criterion = auditd_route(facts)
    assert criterion.holds is holds
    assert said in criterion.detail


def test_unread_audit_configuration_is_unknown_with_the_reason() -> None:
    facts = HostFacts(host="h", processes=[AUDITD], commands={},
                      errors={"commands:audit-config": "command-failed: exited 1"})  # fmt: skip
    criterion = auditd_route(facts)
    assert criterion.holds is None
    assert "command-failed: exited 1" in criterion.detail


@pytest.mark.parametrize(
    ("first", "holds"),
    [
        ("-a never,exit -F arch=b64 -S all -F exe=/usr/bin/backup", None),  # may hide some
        ("-a never,exit -F arch=b64 -S all -F auid=-1", True),  # daemons only: no login lost
        ("-a never,exit -F arch=b64 -S execve -F auid=1001", False),  # one login's commands
        ("-a always,exclude -F msgtype=EXECVE", False),  # the command lines are dropped
        ("-a always,exclude -F msgtype=CWD", True),
        ("-a always,exclude -F msgtype=SYSCALL -F exe=/usr/bin/backup", None),
    ],
)
def test_never_and_exclude_rules_before_the_recording_ones(first: str, holds: bool | None) -> None:
    rules = first + "\n" + (AUDIT / "auditctl-l.root-commands.txt").read_text()
    criterion = auditd_route(audit_facts(rules))
    assert criterion.holds is holds, criterion.describe()


def test_a_rule_without_arch_records_the_native_execve_only() -> None:
    criterion = auditd_route(audit_facts("-a always,exit -S execve -F euid=0\n"))
    assert criterion.holds is None and "32-bit" in criterion.detail
    assert auditd_route(audit_facts("-a always,exit -S all\n")).holds is True


# -- pam_tty_audit ------------------------------------------------------------------------------


def with_lines(text: str, path: str, *lines: str) -> str:
    """The recorded grep output with lines appended to one file, numbered as grep would."""
    count = sum(1 for x in text.splitlines() if x.startswith(f"{path}:"))
    added = [f"{path}:{count + i}:{line}" for i, line in enumerate(lines, 1)]
    return text + "\n".join(added) + "\n"


def pam_facts(pam: str, rules: str = "auditctl-l.root-commands.txt", sshd: str = SSHD_T,
              processes: list[Process] | None = None) -> HostFacts:  # fmt: skip
    facts = audit_facts(rules, processes=processes)
    commands = {**facts.commands, "pam.d": pam, "sshd-effective-config": sshd}
    return facts.model_copy(update={"commands": commands})


TTY_ROOT = "session required pam_tty_audit.so enable=root"


def test_recorded_debian_stacks_have_no_tty_auditing() -> None:
    criterion = pam_tty_audit_route(pam_facts(PAM))
    assert criterion.holds is False
    assert "sshd, login, su, su-l, sudo, sudo-i" in criterion.detail


def test_common_session_alone_leaves_plain_sudo_unaudited() -> None:
    # Debian's sudo service includes common-session-noninteractive, not common-session.
    pam = with_lines(PAM, "/etc/pam.d/common-session", TTY_ROOT)
    criterion = pam_tty_audit_route(pam_facts(pam))
    assert criterion.holds is False
    assert criterion.detail.endswith("in the session of sudo")
    assert criterion.lines[0].where == "/etc/pam.d/common-session:25"


def test_both_common_session_files_audit_root_everywhere() -> None:
    pam = with_lines(PAM, "/etc/pam.d/common-session", TTY_ROOT)
    pam = with_lines(pam, "/etc/pam.d/common-session-noninteractive", "session optional "
                     "pam_tty_audit.so disable=* enable=root")  # fmt: skip
    criterion = pam_tty_audit_route(pam_facts(pam))
    assert criterion.holds is True, criterion.describe()
    assert [x.where for x in criterion.lines][:2] == [
        "/etc/pam.d/common-session:25",
        "/etc/pam.d/common-session-noninteractive:26",
    ]


def test_everyone_audited_at_login_covers_switching_to_root() -> None:
    everyone = "session required pam_tty_audit.so enable=*"
    pam = with_lines(PAM, "/etc/pam.d/sshd", everyone)
    pam = with_lines(pam, "/etc/pam.d/login", everyone)
    assert pam_tty_audit_route(pam_facts(pam)).holds is True
    one_exception = with_lines(pam, "/etc/pam.d/sshd", "session required pam_tty_audit.so "
                               "enable=* disable=backup")  # fmt: skip
    assert pam_tty_audit_route(pam_facts(one_exception)).holds is False


def test_a_line_after_sufficient_may_be_skipped() -> None:
    pam = with_lines(PAM, "/etc/pam.d/common-session", "session sufficient pam_succeed_if.so "
                     "user = backup", TTY_ROOT)  # fmt: skip
    pam = with_lines(pam, "/etc/pam.d/common-session-noninteractive", TTY_ROOT)
    criterion = pam_tty_audit_route(pam_facts(pam))
    assert criterion.holds is None
    assert criterion.lines[0].where == "/etc/pam.d/common-session:26"


def test_tty_auditing_needs_sshd_on_pam_and_auditd_keeping_the_records() -> None:
    pam = with_lines(PAM, "/etc/pam.d/common-session", TTY_ROOT)
    pam = with_lines(pam, "/etc/pam.d/common-session-noninteractive", TTY_ROOT)
    no_pam = pam_tty_audit_route(pam_facts(pam, sshd="port 22\nusepam no\n"))
    assert no_pam.holds is False and "usepam" in no_pam.detail
    no_auditd = pam_tty_audit_route(pam_facts(pam, processes=[]))
    assert no_auditd.holds is False and "auditd is not running" in no_auditd.detail
    dropped = pam_tty_audit_route(pam_facts(pam, rules="-a always,exclude -F msgtype=TTY\n"))
    assert dropped.holds is False and "TTY" in dropped.detail


def test_unread_pam_configuration_is_unknown() -> None:
    facts = HostFacts(host="h", errors={"commands:pam.d": "command-failed: exited 2"})
    criterion = pam_tty_audit_route(facts)
    assert criterion.holds is None and "command-failed" in criterion.detail


# -- the three routes together ------------------------------------------------------------------


def _sinks() -> logging_check.LogSinks:
    journal = Criterion("journal", True, "persistent journal")
    return logging_check.LogSinks(journal, journal, None)


def test_any_route_meets_the_criterion_and_shows_what_decided() -> None:
    facts = audit_facts("auditctl-l.root-commands.txt")
    sudo_off = "/etc/sudoers.d/x:1:Defaults !syslog\n"
    facts = facts.model_copy(update={"commands": {**facts.commands, "sudoers-defaults": sudo_off,
                                                  "pam.d": PAM, "sshd-effective-config": SSHD_T}})  # fmt: skip
    criterion = logging_check.privileged_command_logging(facts, _sinks())
    assert criterion.holds is True
    assert criterion.lines[0].where == "`auditctl -l` line 3"


def test_no_route_met_lists_every_route_sudo_first() -> None:
    facts = HostFacts(host="h", processes=[], commands={
        "sudoers-defaults": "/etc/sudoers.d/x:1:Defaults !syslog\n", "pam.d": PAM,
        "sshd-effective-config": SSHD_T})  # fmt: skip
    criterion = logging_check.privileged_command_logging(facts, _sinks())
    assert criterion.holds is False
    assert criterion.lines[0].where == "/etc/sudoers.d/x:1"
    assert "sudo: " in criterion.detail and "auditd: auditd is not running" in criterion.detail
    assert "pam_tty_audit: " in criterion.detail


def test_an_unknown_route_makes_an_unmet_criterion_unknown() -> None:
    facts = HostFacts(host="h", commands={"sudoers-defaults": "/etc/sudoers:1:Defaults !syslog\n"})
    criterion = logging_check.privileged_command_logging(facts, _sinks())
    assert criterion.holds is None


# -- any parsed input gives a verdict, never an exception ---------------------------------------

RULE_WORDS = st.lists(
    st.sampled_from(
        [
            "-a always,exit",
            "-a never,exit",
            "-a never,task",
            "-a always,exclude",
            "-A always,exit",
            "-F arch=b64",
            "-F arch=b32",
            "-F arch!=b64",
            "-F arch=x86_64",
            "-F arch=sparc",
            "-S execve",
            "-S all",
            "-S 59",
            "-S open",
            "-F euid=0",
            "-F euid!=0",
            "-F euid>5",
            "-F euid&1",
            "-F auid>=1000",
            "-F auid!=-1",
            "-F auid<unset",
            "-F auid=bob",
            "-F auid&=3",
            "-F msgtype=EXECVE",
            "-F msgtype>=1300",
            "-F msgtype!=TTY",
            "-F msgtype=CWD",
            "-F success=1",
            "-F success=0",
            "-F exe=/x",
            "-F perm=x",
            "-C uid!=euid",
            "-k k",
            "-w /usr/bin/sudo -p x",
            "\n",
            "\n",
            "\n",
        ]
    ),
    max_size=30,
).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(rules=RULE_WORDS, tty=st.sampled_from(["enable=root", "disable=*", "enable=*", "x"]))
def test_any_rules_and_pam_options_give_a_verdict(rules: str, tty: str) -> None:
    pam = with_lines(PAM, "/etc/pam.d/common-session", f"session required pam_tty_audit.so {tty}")
    facts = pam_facts(pam, rules=rules.replace("\n ", "\n"))
    for route in (auditd_route(facts), pam_tty_audit_route(facts)):
        assert route.holds in (True, False, None)
        assert route.detail
