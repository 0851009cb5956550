"""unexpected-operation-detection: verdicts on a lab organisation host's recorded facts.

The base is proc-srv as the real collector recorded it in the baseline
(tests/data/hostcontrols/baseline), completed with this control's outputs recorded from a lab
organisation host with the new image and the _organisation files (tests/data/recorded/lab-org*:
cron files, TMOUT, ps with cron, sshd -T, dpkg) and authentication-hardening's PAM and faillock
recordings. The auditd and Wazuh routes use fixtures written in their formats (no kernel audit
and no agent in the lab: tests/data/audit/README.md, tests/data/detection/README.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from auditor.domain.attempts import Attempt
from auditor.domain.facts import HostFacts, Process
from auditor.domain.findings import Status
from auditor.domain.inventory import load_inventory
from policies.checks import unexpected_operation_detection as detection
from policies.context import AuditContext
from policies.model import load_controls
from probes.parsers import parse_dpkg_query, parse_ps

DATA = Path(__file__).parents[2] / "data"
RECORDED = DATA / "recorded"
AUDIT = DATA / "audit"
BASELINE = DATA / "hostcontrols" / "baseline"
CONTROL = load_controls()["unexpected-operation-detection"]
CRON = (RECORDED / "lab-org.grep-cron.txt").read_text()
AIDE_JOB = "/usr/bin/aide --config /etc/aide/aide.conf --check 2>&1 | /usr/bin/logger -t aide -p local6.notice"


def old_facts() -> HostFacts:
    return HostFacts.model_validate_json((BASELINE / "proc-srv.json").read_text())


def lab_facts(**changes: Any) -> HostFacts:
    """proc-srv of the baseline with this control's recorded outputs."""
    facts = old_facts()
    commands = {
        **facts.commands,
        "cron-files": CRON,
        "tmout": (RECORDED / "lab-org.grep-tmout.txt").read_text(),
        "sshd-effective-config": (RECORDED / "lab-org-detection.sshd-T.txt").read_text(),
        "pam.d": (RECORDED / "lab-org.grep-pam.d.txt").read_text(),
    }
    files = {
        **facts.files,
        "/etc/rsyslog.d/60-detection.conf": (
            RECORDED / "lab-org.rsyslog.d-60-detection.conf"
        ).read_text(),
        "/etc/security/faillock.conf": (RECORDED / "lab-org.faillock.conf.txt").read_text(),
    }
    recorded_ps = parse_ps((RECORDED / "lab-org-detection.ps.txt").read_text())
    processes = [*(facts.processes or []), *(p for p in recorded_ps if p.command == "cron")]
    packages = parse_dpkg_query((RECORDED / "lab-org-detection.dpkg-query.txt").read_text())
    errors = {**facts.errors, "commands:ossec-conf": "command-failed: exit status 2"}
    update: dict[str, Any] = {
        "commands": commands,
        "files": files,
        "processes": processes,
        "packages": packages,
        "errors": errors,
    }
    update.update(changes)
    return facts.model_copy(update=update)


def context(facts: HostFacts, log_host: str | None = None) -> AuditContext:
    inventory = load_inventory(BASELINE / "inventory.yaml")
    if log_host is not None:
        inventory = inventory.model_copy(update={"log_host": log_host})
    attempt = Attempt.ok("ssh-host", "proc-srv", facts, [])
    return AuditContext(inventory=inventory, collection={"proc-srv": attempt})


def judge(facts: HostFacts, log_host: str | None = None) -> Any:
    [finding] = [
        f for f in detection.check(context(facts, log_host), CONTROL) if f.subject == "proc-srv"
    ]
    return finding


def criteria(facts: HostFacts, log_host: str | None = None) -> dict[str, Any]:
    found = detection.judge_criteria(context(facts, log_host), "proc-srv", facts)
    return {c.name: c for c in found}


def test_a_recording_without_this_control_is_inconclusive() -> None:
    finding = judge(old_facts())
    assert finding.status is Status.INCONCLUSIVE
    assert "not collected: commands:cron-files" in finding.reason


def test_the_lab_baseline_passes_by_aide_clientalive_and_faillock() -> None:
    finding = judge(lab_facts())
    assert finding.status is Status.PASS, finding.actual
    assert "/etc/cron.d/aide-check:5" in finding.actual
    assert "rsyslog forwards local6.notice to 10.98.21.1" in finding.actual
    assert "clientaliveinterval 300" in finding.actual
    assert "pam_faillock locks an account after 5 failed logins" in finding.actual


def test_a_report_that_stays_on_the_host_fails() -> None:
    local = CRON.replace(
        AIDE_JOB, "/usr/bin/aide --config /etc/aide/aide.conf --check >> /var/log/aide.log 2>&1"
    )
    assert local != CRON
    facts = lab_facts(commands={**lab_facts().commands, "cron-files": local})
    finding = judge(facts)
    assert finding.status is Status.FAIL
    assert "detection reported off the host" in finding.summary
    assert "the report stays on the host" in finding.summary


def test_a_mailed_report_is_unknown() -> None:
    mailed = CRON.replace(AIDE_JOB, "/usr/bin/aide --check | /usr/bin/mail -s aide root")
    facts = lab_facts(commands={**lab_facts().commands, "cron-files": mailed})
    assert judge(facts).status is Status.INCONCLUSIVE


def test_forwarding_must_reach_the_inventory_log_host_when_it_names_one() -> None:
    found = criteria(lab_facts(), log_host="send-srv")
    assert found["detection reported off the host"].holds is False
    assert "the log host send-srv" in found["detection reported off the host"].detail


def test_cron_not_running_fails_the_aide_route() -> None:
    facts = lab_facts()
    without = [p for p in facts.processes or [] if p.command != "cron"]
    found = criteria(facts.model_copy(update={"processes": without}))
    assert found["detection reported off the host"].holds is False
    assert "no cron daemon is running" in found["detection reported off the host"].detail


def test_aide_not_installed() -> None:
    facts = lab_facts()
    packages = {k: v for k, v in (facts.packages or {}).items() if k != "aide"}
    found = criteria(facts.model_copy(update={"packages": packages}))
    assert "aide is not installed" in found["detection reported off the host"].detail


@pytest.mark.parametrize(
    ("interval", "count", "tmout", "holds"),
    [
        ("300", "3", "", True),
        ("0", "3", "", False),
        ("300", "0", "", False),
        ("0", "3", "/etc/profile.d/tmout.sh:1:readonly TMOUT=900\n", True),
        ("0", "3", "/etc/profile.d/tmout.sh:1:TMOUT=900\n", False),
    ],
)
def test_idle_sessions(interval: str, count: str, tmout: str, holds: bool) -> None:
    sshd = (RECORDED / "lab-org-detection.sshd-T.txt").read_text()
    sshd = sshd.replace("clientaliveinterval 300", f"clientaliveinterval {interval}")
    sshd = sshd.replace("clientalivecountmax 3", f"clientalivecountmax {count}")
    commands = {**lab_facts().commands, "sshd-effective-config": sshd, "tmout": tmout}
    assert criteria(lab_facts(commands=commands))["idle sessions end"].holds is holds


def _auditd_facts(rules: str, config: str) -> HostFacts:
    facts = lab_facts()
    auditd = Process(pid=77, user="root", command="auditd", args="/sbin/auditd")
    commands = {
        **facts.commands,
        "auditctl-status": (AUDIT / "auditctl-s.enabled.txt").read_text(),
        "auditctl-rules": rules,
        "audit-config": config,
        "cron-files": "",  # no AIDE: the auditd route decides
    }
    return facts.model_copy(update={"processes": [*(facts.processes or []), auditd],
                                    "commands": commands})  # fmt: skip


def test_auditd_watching_and_forwarding_with_audisp_remote() -> None:
    rules = (AUDIT / "auditctl-l.detection.txt").read_text()
    config = (AUDIT / "etc-audit.detection-remote.grep.txt").read_text()
    found = criteria(_auditd_facts(rules, config))["detection reported off the host"]
    assert found.holds is True, found.detail
    assert "audisp-remote sends to 10.98.21.5" in found.detail
    # Only to the inventory's log host when it names one (send-srv is not 10.98.21.5).
    named = criteria(_auditd_facts(rules, config), log_host="send-srv")
    assert named["detection reported off the host"].holds is False


def test_auditd_without_module_rules_or_forwarding_is_not_enough() -> None:
    rules = (AUDIT / "auditctl-l.detection.txt").read_text()
    config = (AUDIT / "etc-audit.detection-remote.grep.txt").read_text()
    no_modules = "\n".join(x for x in rules.splitlines() if "modules" not in x) + "\n"
    found = criteria(_auditd_facts(no_modules, config))["detection reported off the host"]
    assert found.holds is False
    assert "module loading" in found.detail
    local = (AUDIT / "etc-audit.root-commands.grep.txt").read_text()  # syslog plugin off
    found = criteria(_auditd_facts(rules, local))["detection reported off the host"]
    assert found.holds is False
    assert "au-remote.conf is not active = yes" in found.detail
    # The root-commands rule set alone watches sudoers, not the identity files.
    old = (AUDIT / "auditctl-l.root-commands.txt").read_text()
    found = criteria(_auditd_facts(old, config))["detection reported off the host"]
    assert "/etc/passwd (identity files)" in found.detail


def test_lab_containers_have_no_auditd() -> None:
    found = criteria(lab_facts(commands={**lab_facts().commands, "cron-files": ""}))
    assert "auditd: auditd is not running" in found["detection reported off the host"].detail


def test_a_wazuh_agent_detects_and_responds() -> None:
    facts = lab_facts()
    agent = Process(
        pid=88, user="wazuh", command="wazuh-agentd", args="/var/ossec/bin/wazuh-agentd"
    )
    conf = (DATA / "detection" / "ossec.conf.wazuh-agent.grep.txt").read_text()
    errors = {k: v for k, v in facts.errors.items() if k != "commands:ossec-conf"}
    facts = facts.model_copy(update={
        "processes": [*(facts.processes or []), agent],
        "commands": {**facts.commands, "ossec-conf": conf, "cron-files": ""},
        "errors": errors,
    })  # fmt: skip
    found = criteria(facts)
    assert found["detection reported off the host"].holds is True
    assert "wazuh-agentd reports to 10.98.21.5" in found["detection reported off the host"].detail
    disabled = conf.replace(":19:    <disabled>no</disabled>", ":19:    <disabled>yes</disabled>")
    commands = {**facts.commands, "ossec-conf": disabled}
    response = detection.active_response(
        facts.model_copy(update={"commands": commands}),
        detection.hids_route(facts.model_copy(update={"commands": commands})),
    )
    assert response.holds is False


def test_windows_hosts_are_inconclusive() -> None:
    ctx = context(lab_facts())
    hosts = dict(ctx.inventory.hosts)
    hosts["proc-srv"] = hosts["proc-srv"].model_copy(update={"os": "windows"})
    ctx.inventory = ctx.inventory.model_copy(update={"hosts": hosts})
    [finding] = [f for f in detection.check(ctx, CONTROL) if f.subject == "proc-srv"]
    assert finding.status is Status.INCONCLUSIVE
    assert finding.reason is not None and "Windows" in finding.reason
