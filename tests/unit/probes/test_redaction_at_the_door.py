"""Redaction at the door: every text a host sends is redacted before a fact, an error message or
a capture's sample is derived from it, so no secret reaches facts.json, observations.json or
the reports (against a real OpenSSH server on loopback)."""

from __future__ import annotations

import base64

import pytest

from probes.host_collector import HostPlan, collect_host, raw
from probes.linkclass import sample_of
from tests.unit.probes.ssh_fixtures import TEST_USER, MemorySink, Sshd, allow_all, sshd

__all__ = ["sshd"]  # the fixture, imported for pytest

#: (a line as a host may print it, the secret in it)
PLANTED = [
    ("mysqld --password Door-Secret-0001", "Door-Secret-0001"),
    ("mysql -pDoor-Secret-0002 -h db", "Door-Secret-0002"),
    ("sshpass -p Door-Secret-0003 ssh backup@x", "Door-Secret-0003"),
    ("agent --token ghp_D00rSecretT0kenForTheAuditTest00000004", "D00rSecretT0ken"),
    ("billing --api-key sk_live_D00rSecret0005abcdefghij", "D00rSecret0005"),
    ("curl -u backup:Door-Secret-0006 https://x.invalid/", "Door-Secret-0006"),
    ("x11vnc -forever -passwd=Door-Secret-0007", "Door-Secret-0007"),
    (': PSK "Door-Secret-0008"', "Door-Secret-0008"),
    ("machine x.invalid login bob password Door-Secret-0009", "Door-Secret-0009"),
    ("bindpw Door-Secret-0010", "Door-Secret-0010"),
    ("ldap_default_authtok = Door-Secret-0011", "Door-Secret-0011"),
    ("rocommunity Door-Secret-0012 default", "Door-Secret-0012"),
    ("db_password = Door-Secret-0013", "Door-Secret-0013"),
    ("Cookie: session=Door-Secret-0014", "Door-Secret-0014"),
    ("bob:$apr1$Door0015$abcdefghijklmnopqrstuv:1000", "Door0015$abcdefghijklmnopqrstuv"),
    ("postgres://app:Door-Secret-0016@db.invalid/app", "Door-Secret-0016"),
]


def _printing(lines: list[str]) -> str:
    """A command that prints ``lines``; encoded, so that the secrets are not in the command's
    own text (which the auditor chose, and which error messages quote)."""
    encoded = base64.b64encode("\n".join(lines).encode()).decode()
    return f"echo {encoded} | base64 -d"


def test_no_planted_secret_reaches_the_facts_or_their_errors(sshd: Sshd) -> None:
    lines = [line for line, _ in PLANTED]
    plan = HostPlan(
        rules=(
            raw("commands:planted", _printing(lines)),
            # A failing command's stderr is quoted in the fact's error message.
            raw("commands:failing", _printing(lines) + " >&2; exit 3"),
        )
    )
    attempt = collect_host("loop", "127.0.0.1", sshd.access(TEST_USER), MemorySink(), allow_all,
                           plan=plan)  # fmt: skip
    facts = attempt.value
    assert facts is not None and facts.commands is not None
    assert "[REDACTED:" in facts.commands["planted"]
    assert "commands:failing" in facts.errors
    serialised = facts.model_dump_json()
    leaks = [secret for _, secret in PLANTED if secret in serialised]
    assert leaks == []


@pytest.mark.parametrize(
    ("flow", "secret"),
    [
        (b"USER bob\r\nPASS Door-Secret-0101\r\n", b"Door-Secret-0101"),
        (b"* OK\r\na1 LOGIN bob Door-Secret-0102\r\n", b"Door-Secret-0102"),
        (
            b"GET / HTTP/1.1\r\nAuthorization: Basic RG9vclNlY3JldDAxMDM=\r\n",
            b"RG9vclNlY3JldDAxMDM",
        ),
    ],
)
def test_a_cleartext_flows_sample_keeps_no_credential(flow: bytes, secret: bytes) -> None:
    sample = sample_of(flow)
    assert secret.decode() not in sample
    assert "[REDACTED:" in sample
