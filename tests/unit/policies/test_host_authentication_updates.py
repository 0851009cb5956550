"""authentication-hardening and security-updates-applied on outputs recorded from the lab image
(tests/data/recorded/lab-*), laid over a baseline host's recorded facts
(tests/data/hostcontrols/baseline), and on recordings made before these facts existed."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditor.domain.attempts import Attempt
from auditor.domain.facts import HostFacts, Process
from auditor.domain.findings import Status
from auditor.domain.inventory import AuditPolicy, Inventory, load_inventory
from policies.checks import authentication_hardening as auth
from policies.checks import security_updates_applied as updates
from policies.context import AuditContext
from policies.model import load_controls

DATA = Path(__file__).parents[2] / "data"
RECORDED = DATA / "recorded"
BASELINE = DATA / "hostcontrols" / "baseline"
AUTH = load_controls()["authentication-hardening"]
UPDATES = load_controls()["security-updates-applied"]
HOST = "proc-srv"


def recorded(name: str) -> str:
    return (RECORDED / name).read_text()


def old_facts() -> HostFacts:
    """proc-srv as recorded before these controls existed: none of their outputs."""
    return HostFacts.model_validate_json((BASELINE / f"{HOST}.json").read_text())


def org_facts(**commands: str) -> HostFacts:
    """proc-srv with the organisation hosts' outputs recorded from the lab image."""
    facts = old_facts()
    base = {
        "sshd-effective-config": recorded("lab-org.sshd-T.txt"),
        "sshd-config": recorded("lab-org.grep-sshd-config.txt"),
        "pam.d": recorded("lab-org.grep-pam.d.txt"),
        "passwd-status": recorded("lab-org.passwd-S-a.txt"),
        "apt-upgrade-simulation": recorded("lab-org.apt-simulation.txt"),
        "apt-lists-times": recorded("lab-org.apt-lists-times.txt"),
    }
    files = {**facts.files, "/etc/security/faillock.conf": recorded("lab-org.faillock.conf.txt")}
    evidence = {**facts.evidence, "commands:passwd-status": "sha256:" + "1" * 64}
    return facts.model_copy(
        update={"commands": {**facts.commands, **base, **commands}, "files": files,
                "evidence": evidence}
    )  # fmt: skip


def context(facts: HostFacts, policy: AuditPolicy | None = None) -> AuditContext:
    inventory: Inventory = load_inventory(BASELINE / "inventory.yaml")
    if policy is not None:
        inventory = inventory.model_copy(update={"policy": policy})
    return AuditContext(
        inventory=inventory, collection={HOST: Attempt.ok("ssh-host", HOST, facts, [])}
    )


def auth_finding(facts: HostFacts) -> tuple[Status, str, str]:
    [finding] = [f for f in auth.check(context(facts), AUTH) if f.subject == HOST]
    return finding.status, finding.summary, finding.actual


def updates_finding(facts: HostFacts, policy: AuditPolicy | None = None) -> tuple[Status, str]:
    [finding] = [f for f in updates.check(context(facts, policy), UPDATES) if f.subject == HOST]
    return finding.status, finding.summary


# -- authentication-hardening -------------------------------------------------------------------


def test_the_organisation_hosts_pass_with_the_deciding_lines() -> None:
    status, summary, actual = auth_finding(org_facts())
    assert status is Status.PASS, summary
    assert "`sshd -T` line 15: permitrootlogin no" in actual
    assert "pam_faillock locks an account after 5 failed logins" in actual
    assert "/etc/security/faillock.conf:3: deny = 5" in actual
    assert "/etc/pam.d/common-auth:" in actual


def test_a_recording_without_these_facts_is_inconclusive_never_a_pass() -> None:
    status, summary, _ = auth_finding(old_facts())
    assert status is Status.INCONCLUSIVE
    assert "not collected" in summary


def test_weak_authentication_fails_passwords_and_lockout() -> None:
    # recv-srv in the weak-authentication scenario (recorded live), with Debian's own
    # common-auth (no pam_faillock) instead of the organisation's.
    facts = org_facts(**{
        "sshd-effective-config": recorded("lab-weak-authentication.sshd-T.txt"),
        "sshd-config": recorded("lab-weak-authentication.grep-sshd-config.txt"),
        "pam.d": recorded("lab-image.grep-pam.d.txt"),
    })  # fmt: skip
    status, summary, actual = auth_finding(facts)
    assert status is Status.FAIL
    assert "password logins off or second factor" in summary
    assert "failed logins lock out" in summary
    assert "root login refused: NOT met: permitrootlogin without-password" in actual
    assert "no second-factor module in sshd's PAM auth stack" in actual
    assert "sshd's PAM auth stack has no pam_faillock preauth and authfail lines" in actual


def test_prohibit_password_is_not_refusing_root() -> None:
    text = recorded("lab-org.sshd-T.txt").replace(
        "permitrootlogin no", "permitrootlogin prohibit-password"
    )
    status, summary, _ = auth_finding(org_facts(**{"sshd-effective-config": text}))
    assert status is Status.FAIL
    assert "permitrootlogin prohibit-password" in summary


def test_an_account_without_password_fails_with_its_line() -> None:
    facts = org_facts(**{"passwd-status": recorded("lab-org-emptypw.passwd-S-a.txt")})
    status, summary, actual = auth_finding(facts)
    assert status is Status.FAIL
    assert "accounts with an empty password: nopass" in summary
    assert "`passwd -S -a` line 25: nopass NP" in actual


def test_a_match_block_changing_password_authentication_is_unknown() -> None:
    grep = recorded("lab-org.grep-sshd-config.txt") + (
        "/etc/ssh/sshd_config.d/zz.conf:1:Match Address 10.98.30.0/24\n"
        "/etc/ssh/sshd_config.d/zz.conf:2:    PasswordAuthentication yes\n"
    )
    status, summary, _ = auth_finding(org_facts(**{"sshd-config": grep}))
    assert status is Status.INCONCLUSIVE
    assert "a Match block changes" in summary


def test_the_labs_own_match_block_changes_nothing_judged() -> None:
    assert "Match User xfer" in recorded("lab-org.grep-sshd-config.txt")
    assert auth_finding(org_facts())[0] is Status.PASS


def test_a_required_second_factor_allows_password_logins() -> None:
    pam = recorded("lab-org.grep-pam.d.txt").replace(
        "/etc/pam.d/sshd:4:@include common-auth",
        "/etc/pam.d/sshd:4:auth required pam_google_authenticator.so",
    )
    sshd = recorded("lab-org.sshd-T.txt").replace(
        "kbdinteractiveauthentication no", "kbdinteractiveauthentication yes"
    )
    facts = org_facts(**{"pam.d": pam, "sshd-effective-config": sshd})
    status, summary, actual = auth_finding(facts)
    assert "second factor is required" in actual
    # pam_faillock was in common-auth, which this sshd stack no longer includes.
    assert status is Status.FAIL and "failed logins lock out" in summary


def test_fail2ban_with_an_sshd_jail_is_a_lockout() -> None:
    facts = org_facts(**{
        "pam.d": recorded("lab-image.grep-pam.d.txt"),
        "fail2ban-sshd": recorded("lab-fail2ban.fail2ban-client-status-sshd.txt"),
    })  # fmt: skip
    pid, user, comm, args = recorded("lab-fail2ban.ps.txt").split(maxsplit=3)
    processes = [
        *(facts.processes or []),
        Process(pid=int(pid), user=user, command=comm, args=args),
    ]
    status, summary, actual = auth_finding(facts.model_copy(update={"processes": processes}))
    assert status is Status.PASS, summary
    assert "fail2ban runs with an sshd jail" in actual


def test_fail2ban_without_the_jail_is_not_a_lockout() -> None:
    facts = org_facts(**{"pam.d": recorded("lab-image.grep-pam.d.txt")})
    processes = [
        *(facts.processes or []),
        Process(pid=9, user="root", command="fail2ban-server", args="x"),
    ]
    errors = {
        **facts.errors,
        "commands:fail2ban-sshd": "exit 255: Sorry but the jail 'sshd' does not exist",
    }
    status, _, actual = auth_finding(
        facts.model_copy(update={"processes": processes, "errors": errors})
    )
    assert status is Status.FAIL
    assert "does not exist" in actual


@pytest.mark.parametrize(("threshold", "length", "status"), [
    ("5", "12", Status.PASS), ("Never", "12", Status.FAIL), ("5", "0", Status.FAIL),
])  # fmt: skip
def test_windows_account_policy(threshold: str, length: str, status: Status) -> None:
    text = f"Minimum password length:        {length}\nLockout threshold:        {threshold}\n"
    criteria = auth.windows_criteria(HostFacts(host="pc", commands={"windows:net-accounts": text}))
    holds = all(c.holds for c in criteria)
    assert holds is (status is Status.PASS)
    unknown = auth.windows_criteria(HostFacts(host="pc", commands={"windows:net-accounts": "?"}))
    assert [c.holds for c in unknown] == [None]


# -- security-updates-applied -------------------------------------------------------------------


def test_nothing_pending_and_fresh_lists_pass() -> None:
    status, summary = updates_finding(org_facts())
    assert status is Status.PASS, summary
    assert "limit 7" in summary


def test_a_pending_security_update_fails_quoting_its_line() -> None:
    facts = org_facts(
        **{"apt-upgrade-simulation": recorded("lab-security-update-pending.apt-simulation.txt")}
    )
    status, summary = updates_finding(facts)
    assert status is Status.FAIL
    assert "labtool 1.0-1 -> 1.0-2 (Lab:lab-security)" in summary
    assert "line 11: Inst labtool [1.0-1] (1.0-2 Lab:lab-security [all])" in summary


def test_an_upgrade_from_a_normal_suite_is_not_a_security_update() -> None:
    text = recorded("lab-security-update-pending.apt-simulation.txt").replace("lab-security", "lab")
    status, _ = updates_finding(org_facts(**{"apt-upgrade-simulation": text}))
    assert status is Status.PASS


def test_old_lists_are_inconclusive_and_the_inventory_sets_the_limit() -> None:
    now, *files = recorded("lab-org.apt-lists-times.txt").splitlines()
    ten_days_later = "\n".join([str(int(now) + 10 * 86400), *files]) + "\n"
    facts = org_facts(**{"apt-lists-times": ten_days_later})
    status, summary = updates_finding(facts)
    assert status is Status.INCONCLUSIVE
    assert "older than the limit of 7 days" in summary
    status, _ = updates_finding(facts, AuditPolicy(package_lists_max_age_days=14))
    assert status is Status.PASS


def test_lists_without_a_security_suite_are_inconclusive() -> None:
    lines = [x for x in recorded("lab-org.apt-lists-times.txt").splitlines() if "security" not in x]
    status, summary = updates_finding(org_facts(**{"apt-lists-times": "\n".join(lines)}))
    assert status is Status.INCONCLUSIVE
    assert "no security suite" in summary


def test_a_recording_without_apt_facts_is_inconclusive() -> None:
    status, summary = updates_finding(old_facts())
    assert status is Status.INCONCLUSIVE
    assert "not collected" in summary
