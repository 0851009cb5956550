"""Parsers of the audit system's outputs and of PAM's service files: on the written audit fixtures
(tests/data/audit, in auditctl's documented format) and on /etc/pam.d recorded from the lab's
image; garbage is a ParseError with its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from probes.parsers import (
    ParseError,
    parse_audit_config,
    parse_auditctl_rules,
    parse_auditctl_status,
    parse_grep_lines,
    parse_pam_directory,
)
from probes.parsers.audit import AuditControl, AuditRule, parse_rules_text
from probes.parsers.pam import parse_pam_file

DATA = Path(__file__).parents[2] / "data"
AUDIT = DATA / "audit"
PAM_RECORDED = DATA / "recorded" / "lab-image.grep-pam.d.txt"


def test_auditctl_status_gives_each_key_with_its_line() -> None:
    status = parse_auditctl_status((AUDIT / "auditctl-s.enabled.txt").read_text())
    assert status["enabled"] == (1, "1")
    assert status["pid"] == (3, "612")
    assert status["loginuid_immutable"] == (9, "0 unlocked")


@pytest.mark.parametrize(
    ("text", "line"),
    [("enabled 1\n", None), ("enabled 1\npid x\n", 2), ("AUDIT_STATUS: enabled=1 pid=3\n", 1)],
)
def test_auditctl_status_needs_enabled_and_pid_as_numbers(text: str, line: int | None) -> None:
    with pytest.raises(ParseError) as caught:
        parse_auditctl_status(text)
    assert caught.value.line == line


def test_auditctl_listing_reads_rules_watches_and_fields() -> None:
    rules = parse_auditctl_rules((AUDIT / "auditctl-l.root-commands.txt").read_text())
    watch, _, wide, narrow = rules
    assert (watch.watch, watch.list_name, watch.values("perm")[0].value) == (
        "/etc/sudoers",
        "exit",
        "wa",
    )
    assert (wide.action, wide.list_name, wide.syscalls, wide.number) == (
        "always",
        "exit",
        ("execve",),
        3,
    )
    assert [(f.name, f.op, f.value) for f in wide.fields] == [
        ("arch", "=", "b64"),
        ("euid", "=", "0"),
        ("auid", "!=", "-1"),
        ("key", "=", "root-commands"),
    ]
    assert narrow.values("arch")[0].value == "b32"


def test_auditctl_listing_keeps_comparisons_and_unknown_fields() -> None:
    rules = parse_auditctl_rules((AUDIT / "auditctl-l.setuid-only.txt").read_text())
    assert rules[3].comparisons == ("uid!=euid",)
    odd = parse_auditctl_rules("-a never,exclude -F msgtype=CWD f200=3\n")[0]
    assert [(f.name, f.value) for f in odd.fields] == [("msgtype", "CWD"), ("f200", "3")]


def test_no_rules_is_an_empty_listing() -> None:
    assert parse_auditctl_rules((AUDIT / "auditctl-l.no-rules.txt").read_text()) == []


@pytest.mark.parametrize(
    "text",
    [
        "-a sometimes,exit -S execve\n",
        "-a always,exit -F arch\n",
        "-a always,exit -S execve -F\n",
        "-F euid=0\n",
        "-D\n",  # a control line has no place in a listing
        "-a always,exit -Z 1\n",
        "You must be root to run this program.\n",
        "-w /etc/sudoers -p q\n",
    ],
)
def test_garbage_in_a_listing_is_a_parse_error(text: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_auditctl_rules(text)
    assert caught.value.line == 1


def test_rules_files_accept_both_orders_control_lines_and_prepends() -> None:
    statements = parse_rules_text(
        "## comment\n-D\n-b 8192\n--backlog_wait_time 60000\n-a task,never\n"
        "-A always,exit -F arch=b64 -S execve -k first\n-d always,exit -S all\n-e 2\n",
        "/etc/audit/rules.d/x.rules",
    )
    controls = [(s.option, s.argument) for s in statements if isinstance(s, AuditControl)]
    assert controls == [("-D", None), ("-b", "8192"), ("--backlog_wait_time", "60000"), ("-e", "2")]
    rules = [s for s in statements if isinstance(s, AuditRule)]
    assert [(r.action, r.list_name, r.prepend, r.deletes, r.number) for r in rules] == [
        ("never", "task", False, False, 5),
        ("always", "exit", True, False, 6),
        ("always", "exit", False, True, 7),
    ]


def test_etc_audit_grep_gives_auditd_conf_audit_rules_and_rules_d() -> None:
    config = parse_audit_config((AUDIT / "etc-audit.root-commands.grep.txt").read_text())
    assert config.auditd_conf is not None
    assert config.auditd_conf["write_logs"] == (6, "yes")
    assert config.audit_rules is not None
    assert sorted(config.rules_d) == [
        "/etc/audit/rules.d/10-base-config.rules",
        "/etc/audit/rules.d/50-root-commands.rules",
        "/etc/audit/rules.d/99-finalize.rules",
    ]
    compiled = [s for s in config.audit_rules if isinstance(s, AuditRule)]
    assert [(r.source, r.number) for r in compiled][:2] == [
        ("/etc/audit/audit.rules", 6),
        ("/etc/audit/audit.rules", 7),
    ]


def test_a_gap_in_grep_line_numbers_is_not_grep_caret_output() -> None:
    with pytest.raises(ParseError):
        parse_audit_config("/etc/audit/audit.rules:1:-D\n/etc/audit/audit.rules:3:-e 1\n")
    with pytest.raises(ParseError) as caught:
        parse_grep_lines("/etc/pam.d/sshd:1:x\nsomething else\n", "grep /etc/pam.d")
    assert caught.value.line == 2


def test_recorded_debian_pam_files_parse_with_includes_and_bracket_controls() -> None:
    files = parse_pam_directory(PAM_RECORDED.read_text())
    assert "/etc/pam.d/sshd" in files and "/etc/pam.d/sudo-i" in files
    sshd = {line.number: line for line in files["/etc/pam.d/sshd"]}
    assert (sshd[28].control, sshd[28].module) == ("@include", "common-session")
    assert sshd[19].actions == {
        "success": "ok",
        "ignore": "ignore",
        "module_unknown": "ignore",
        "default": "bad",
    }
    assert sshd[19].args == ("close",)
    assert sshd[37].args == ("standard", "noenv")  # "# [1]" is a comment
    session = {line.number: line for line in files["/etc/pam.d/common-session"]}
    assert session[15].actions == {"default": "1"}
    su_l = files["/etc/pam.d/su-l"]
    assert ("session", "include", "su") in [(x.type, x.control, x.module) for x in su_l]


def test_pam_continuations_bracket_arguments_and_quiet_types() -> None:
    lines = parse_pam_file(
        "-session optional pam_systemd.so\n"
        "session required pam_tty_audit.so \\\n    disable=* enable=root,admin\n"
        "auth required pam_exec.so [quiet arg with spaces] x\n",
        "/etc/pam.d/x",
    )
    assert [(x.number, x.type, x.quiet, x.args) for x in lines] == [
        (1, "session", True, ()),
        (2, "session", False, ("disable=*", "enable=root,admin")),
        (4, "auth", False, ("quiet arg with spaces", "x")),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "sesion required pam_unix.so\n",
        "session mandatory pam_unix.so\n",
        "session [success=ok default=1\n",
        "session [success=jump] pam_unix.so\n",
        "session required\n",
        "@include\n",
        "session required pam_exec.so [unterminated\n",
    ],
)
def test_garbage_in_a_pam_file_is_a_parse_error(text: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_pam_file(text, "/etc/pam.d/x")
    assert caught.value.line == 1
