"""The authentication-hardening and security-updates-applied parsers, on outputs recorded from
the lab image (tests/data/recorded/lab-*: a container of the lab image with the organisation
hosts' files, and fail2ban 1.0.2 installed for its status) and on garbage."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probes.parsers import ParseError
from probes.parsers.apt import parse_apt_simulation, parse_list_times
from probes.parsers.authentication import (
    parse_fail2ban_status,
    parse_faillock_conf,
    parse_net_accounts,
    parse_passwd_status,
    parse_sshd_effective,
)

RECORDED = Path(__file__).parents[2] / "data" / "recorded"


def recorded(name: str) -> str:
    return (RECORDED / name).read_text()


def test_sshd_effective_configuration_of_the_organisation_hosts() -> None:
    settings = parse_sshd_effective(recorded("lab-org.sshd-T.txt"))
    assert settings["permitrootlogin"][0].value == "no"
    assert settings["passwordauthentication"][0].value == "no"
    assert settings["usepam"][0].value == "yes"
    assert settings["usepam"][0].line == 5


def test_sshd_effective_configuration_of_weak_authentication() -> None:
    settings = parse_sshd_effective(recorded("lab-weak-authentication.sshd-T.txt"))
    assert settings["passwordauthentication"][0].value == "yes"
    assert settings["kbdinteractiveauthentication"][0].value == "yes"


@pytest.mark.parametrize("text", ["", "\n\n", "PermitRootLogin no", "-x y"])
def test_sshd_garbage_is_a_parse_error(text: str) -> None:
    with pytest.raises(ParseError):
        parse_sshd_effective(text)


def test_passwd_status_reads_statuses_never_hashes() -> None:
    accounts = parse_passwd_status(recorded("lab-org.passwd-S-a.txt"))
    assert {a.status for a in accounts} == {"L"}
    assert [a.user for a in accounts][-2:] == ["auditor", "xfer"]
    empty = parse_passwd_status(recorded("lab-org-emptypw.passwd-S-a.txt"))
    assert [(a.user, a.line) for a in empty if a.status == "NP"] == [("nopass", 25)]


@pytest.mark.parametrize("text", ["", "root $6$salt$hash", "root X 2026-01-01"])
def test_passwd_garbage_is_a_parse_error(text: str) -> None:
    with pytest.raises(ParseError):
        parse_passwd_status(text)


def test_faillock_conf_of_the_organisation_hosts() -> None:
    settings = parse_faillock_conf(recorded("lab-org.faillock.conf.txt"))
    assert settings["deny"].value == "5"
    assert settings["deny"].line == 3


def test_faillock_conf_later_line_wins_and_flags() -> None:
    settings = parse_faillock_conf("deny = 3\n# deny = 1\nsilent\ndeny=0 # off\n")
    assert (settings["deny"].value, settings["deny"].line) == ("0", 4)
    assert settings["silent"].value == ""
    with pytest.raises(ParseError):
        parse_faillock_conf("deny three times\n")


def test_fail2ban_status_of_an_sshd_jail() -> None:
    status = parse_fail2ban_status(recorded("lab-fail2ban.fail2ban-client-status-sshd.txt"))
    assert status.jail == "sshd"
    assert status.values["file list"].value == "/var/log/auth.log"
    assert status.values["currently banned"].value == "0"


@pytest.mark.parametrize(
    "text",
    ["", "Sorry but the jail 'sshd' does not exist", "|- Filter\nStatus for the jail: sshd"],
)
def test_fail2ban_garbage_is_a_parse_error(text: str) -> None:
    with pytest.raises(ParseError):
        parse_fail2ban_status(text)


def test_apt_simulation_with_nothing_pending() -> None:
    assert parse_apt_simulation(recorded("lab-org.apt-simulation.txt")) == []


def test_apt_simulation_with_a_pending_security_update() -> None:
    [pending] = parse_apt_simulation(recorded("lab-security-update-pending.apt-simulation.txt"))
    assert (pending.package, pending.installed, pending.candidate) == ("labtool", "1.0-1", "1.0-2")
    assert [str(r) for r in pending.releases] == ["Lab:lab-security"]
    assert pending.line == 11


def test_apt_simulation_with_several_releases() -> None:
    # The form Debian prints when two releases offer the candidate.
    text = (
        "Inst libssl3 [3.0.11-1~deb12u1] (3.0.11-1~deb12u2 Debian:12.5/stable, "
        "Debian-Security:12/stable-security [amd64])\n"
        "1 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.\n"
    )
    [pending] = parse_apt_simulation(text)
    assert [r.archive for r in pending.releases] == ["12.5/stable", "12/stable-security"]


def test_a_truncated_simulation_is_not_nothing_pending() -> None:
    text = recorded("lab-org.apt-simulation.txt")
    with pytest.raises(ParseError, match="summary"):
        parse_apt_simulation(text.replace("0 upgraded", "0 upgr"))
    with pytest.raises(ParseError):
        parse_apt_simulation(
            "Inst x (\n0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded."
        )


def test_list_times() -> None:
    times = parse_list_times(recorded("lab-org.apt-lists-times.txt"))
    assert times.now > 1_700_000_000
    assert sorted(times.files) == [
        "/var/lib/apt/lists/_opt_lab_apt_dists_lab-security_Release",
        "/var/lib/apt/lists/_opt_lab_apt_dists_lab_Release",
    ]
    with pytest.raises(ParseError):
        parse_list_times("1700000000\n123 /etc/passwd\n")
    with pytest.raises(ParseError):
        parse_list_times("")


NET_ACCOUNTS = """Force user logoff how long after time expires?:       Never
Minimum password age (days):                          0
Maximum password age (days):                          42
Minimum password length:                              0
Length of password history maintained:                None
Lockout threshold:                                    Never
Lockout duration (minutes):                           10
Lockout observation window (minutes):                 10
Computer role:                                        WORKSTATION
The command completed successfully.
"""


def test_net_accounts_english() -> None:
    # Written by hand in the format of Windows 10/11 (English); not recorded from a live host.
    policy = parse_net_accounts(NET_ACCOUNTS)
    assert (policy.lockout_threshold.value, policy.lockout_threshold.line) == ("Never", 6)
    assert policy.minimum_password_length.value == "0"
    with pytest.raises(ParseError, match="unknown format"):
        parse_net_accounts("ロックアウトのしきい値:  なし\n")


@given(st.text(max_size=300))
def test_parsers_raise_only_parse_errors(text: str) -> None:
    for parse in (
        parse_sshd_effective,
        parse_passwd_status,
        parse_faillock_conf,
        parse_fail2ban_status,
        parse_apt_simulation,
        parse_list_times,
        parse_net_accounts,
    ):
        with contextlib.suppress(ParseError):
            parse(text)


@pytest.mark.parametrize(("case", "threshold"), [("compliant", "5"), ("no-policy", "Never")])
def test_net_accounts_fixtures(case: str, threshold: str) -> None:
    text = (RECORDED.parent / "windows" / case / "net-accounts.stdout.txt").read_text()
    assert parse_net_accounts(text).lockout_threshold.value == threshold
