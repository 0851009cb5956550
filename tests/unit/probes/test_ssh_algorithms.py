"""Weak SSH algorithms are never offered nor used, against real OpenSSH servers on loopback."""

from __future__ import annotations

import logging
import re
import subprocess
from pathlib import Path

import paramiko
import pytest

from auditor.domain.attempts import AttemptStatus, ErrorReason
from probes.host_collector import collect_host
from probes.ssh import AllowList, AuditSession, SshError, _nothing_in_common
from tests.unit.probes.ssh_fixtures import (
    MemorySink,
    Sshd,
    allow_all,
    needs_sshd,
    running_sshd,
    sshd,
)

pytestmark = needs_sshd
__all__ = ["sshd"]  # fixture used by name

ALLOWED = AllowList(["id -un"])

#: What counts as weak, written independently of probes.ssh (patterns, not its list of
#: names): CBC and 64-bit-block or RC4 ciphers, MD5 or SHA-1 MACs (EtM or not), SHA-1 key
#: exchanges, DSA and SHA-1 RSA signatures.
WEAK = re.compile(
    r".*-cbc(@.*)?|3des.*|arcfour.*|blowfish.*|cast128.*"
    r"|hmac-(md5|sha1)([-@].*)?"
    r"|.*-sha1([-@].*)?"
    r"|ssh-(dss|rsa)([-@].*)?"
)
#: The categories of a KEXINIT in order; each direction of ciphers, MACs and compression.
KEXINIT_LISTS = (
    "kex_algo_list",
    "server_key_algo_list",
    "client_encrypt_algo_list",
    "server_encrypt_algo_list",
    "client_mac_algo_list",
    "server_mac_algo_list",
)


def session(server: Sshd, **access: float | int | Path) -> AuditSession:
    return AuditSession("loop", "127.0.0.1", server.access("root", **access), ALLOWED, allow_all)


def connect_error(audit: AuditSession) -> SshError:
    with pytest.raises(SshError) as caught:
        audit.connect()
    audit.close()
    return caught.value


def transport_of(audit: AuditSession) -> paramiko.Transport:
    transport = audit._transport
    assert transport is not None
    return transport


def agreed_kex(caplog: pytest.LogCaptureFixture) -> str:
    # paramiko forgets its key exchange engine once the exchange is done; it logs its name.
    names = [r.getMessage()[5:] for r in caplog.records if r.getMessage().startswith("Kex: ")]
    assert len(names) == 1, names
    return names[0]


def keygen(path: Path, kind: str) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)], check=True)
    return path


def test_the_key_exchange_offers_nothing_weak_and_negotiates_strong_algorithms(
    sshd: Sshd, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="paramiko.transport")
    with session(sshd) as audit:
        transport = transport_of(audit)
        # The KEXINIT paramiko sent, as sent: what the server saw the auditor offer.
        sent = transport._get_latest_kex_init()  # type: ignore[attr-defined]
        for category in KEXINIT_LISTS:
            offered = sent[category]
            assert offered, category
            assert [n for n in offered if WEAK.fullmatch(n)] == [], category
        # ... and the same for the signature algorithms of the auditor's own key.
        assert [n for n in transport.preferred_pubkeys if WEAK.fullmatch(n)] == []
        # What OpenSSH 9 and paramiko agree on is still there.
        assert "curve25519-sha256@libssh.org" in sent["kex_algo_list"]
        assert {"aes128-ctr", "aes256-gcm@openssh.com"} <= set(sent["client_encrypt_algo_list"])
        assert "hmac-sha2-256-etm@openssh.com" in sent["client_mac_algo_list"]
        assert {"ssh-ed25519", "rsa-sha2-512", "ecdsa-sha2-nistp256"} <= set(
            sent["server_key_algo_list"]
        )
        assert agreed_kex(caplog) == "curve25519-sha256@libssh.org"
        assert transport.host_key_type == "ssh-ed25519"
        # paramiko's stubs know the outgoing side only.
        for agreed in (transport.local_cipher, getattr(transport, "remote_cipher")):  # noqa: B009
            assert agreed in {"aes128-ctr", "aes256-ctr", "aes256-gcm@openssh.com"}
        assert (transport.local_mac or "").startswith("hmac-sha2-")
        assert audit.run("id -un").text() == "root\n"


def test_a_server_allowing_weak_and_strong_gets_the_strong_ones(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # paramiko on its own would take aes128-cbc here (it lists CBC ahead of GCM), and the
    # SHA-1 key exchange is the server's first choice.
    config = (
        "Ciphers aes128-cbc,3des-cbc,aes256-gcm@openssh.com\n"
        "MACs hmac-sha1,hmac-md5,hmac-sha2-512-etm@openssh.com\n"
        "KexAlgorithms diffie-hellman-group14-sha1,diffie-hellman-group14-sha256\n"
    )
    caplog.set_level(logging.DEBUG, logger="paramiko.transport")
    with running_sshd(config) as server, session(server) as audit:
        transport = transport_of(audit)
        ciphers = (transport.local_cipher, getattr(transport, "remote_cipher"))  # noqa: B009
        assert ciphers == ("aes256-gcm@openssh.com",) * 2
        assert transport.local_mac == "hmac-sha2-512-etm@openssh.com"
        assert agreed_kex(caplog) == "diffie-hellman-group14-sha256"
        assert audit.run("id -un").succeeded


@pytest.mark.parametrize(
    ("config", "what", "weak"),
    [
        ("Ciphers aes128-cbc,aes256-cbc", "cipher", "aes128-cbc"),
        ("Ciphers 3des-cbc", "cipher", "3des-cbc"),
        ("MACs hmac-sha1,hmac-sha1-96", "MAC", "hmac-sha1"),
        ("MACs hmac-md5,hmac-md5-96", "MAC", "hmac-md5"),
        ("MACs hmac-sha1-etm@openssh.com,hmac-md5-etm@openssh.com", "MAC", "hmac-sha1-etm"),
        ("KexAlgorithms diffie-hellman-group1-sha1", "key exchange", "group1-sha1"),
        ("KexAlgorithms diffie-hellman-group14-sha1", "key exchange", "group14-sha1"),
        (
            "KexAlgorithms diffie-hellman-group-exchange-sha1",
            "key exchange",
            "group-exchange-sha1",
        ),
    ],
)
def test_a_server_with_only_weak_algorithms_is_refused_with_what_it_offered(
    config: str, what: str, weak: str
) -> None:
    with running_sshd(config + "\n") as server:
        error = connect_error(session(server))
    assert error.reason is ErrorReason.UNREACHABLE
    assert error.message.startswith(f"loop (127.0.0.1:{server.port}): SSH negotiation failed: ")
    assert f"no {what} in common: the server offers " in error.message
    assert weak in error.message
    assert "weak, never used by the auditor" in error.message


@pytest.mark.parametrize(("kind", "algorithm"), [("dsa", "ssh-dss"), ("rsa", "ssh-rsa")])
def test_a_server_signing_its_host_key_only_with_sha1_is_refused(
    tmp_path: Path, kind: str, algorithm: str
) -> None:
    host_key = keygen(tmp_path / f"host_{kind}", kind)
    config = f"HostKey {host_key}\nHostKeyAlgorithms {algorithm}\n"
    with running_sshd(config) as server:
        # Known under that key: the refusal is the algorithm's, not the host key check's.
        public = (tmp_path / f"host_{kind}.pub").read_text().split()
        server.known_hosts.write_text(f"[127.0.0.1]:{server.port} {public[0]} {public[1]}\n")
        error = connect_error(session(server))
    assert error.reason is ErrorReason.UNREACHABLE
    assert "no host key algorithm in common: the server offers " in error.message
    assert f"{algorithm} (" in error.message or f"{algorithm}:" in error.message


@pytest.mark.parametrize(
    ("accepted", "logs_in"), [("rsa-sha2-512,rsa-sha2-256", True), ("ssh-rsa", False)]
)
def test_the_auditors_rsa_key_never_signs_with_sha1(
    tmp_path: Path, accepted: str, logs_in: bool
) -> None:
    client_key = keygen(tmp_path / "client_rsa", "rsa")
    with running_sshd(f"PubkeyAcceptedAlgorithms {accepted}\n") as server:
        authorized = server.folder / "authorized_keys"
        authorized.write_text((tmp_path / "client_rsa.pub").read_text())
        audit = session(server, key=client_key)
        if logs_in:
            with audit:
                assert audit.run("id -un").succeeded
            return
        error = connect_error(audit)
    assert error.reason is ErrorReason.AUTH_FAILED


def test_the_collectors_attempt_says_why_a_weak_only_host_was_not_audited() -> None:
    sink = MemorySink()
    with running_sshd("Ciphers aes128-cbc\n") as server:
        attempt = collect_host("loop", "127.0.0.1", server.access(), sink, allow_all)
    # Not audited: every fact carries the reason (a connection failure is "partial" with no
    # facts, as for an unknown host key).
    assert attempt.status is AttemptStatus.PARTIAL
    assert attempt.error is not None
    assert attempt.value is not None
    assert attempt.value.machine_id is None
    assert attempt.value.errors["machine_id"].startswith("unreachable: ")
    assert attempt.error.reason is ErrorReason.UNREACHABLE
    assert "SSH negotiation failed: no cipher in common" in attempt.error.message
    assert "aes128-cbc" in attempt.error.message
    assert sink.received == []


def test_the_servers_algorithm_names_are_echoed_only_when_plausible_and_bounded() -> None:
    # A hostile server chooses its KEXINIT text; it ends up in errors and reports.
    offered = ["aes128-cbc", "\x1b[31mred", *(f"x{i}@example.org" for i in range(60))]
    message = _nothing_in_common("cipher", offered, ["aes128-ctr"])
    assert "\x1b" not in message
    assert "(unprintable name)" in message
    assert "x37@example.org, 22 more" in message
    assert "(aes128-cbc: weak, never used by the auditor)" in message
