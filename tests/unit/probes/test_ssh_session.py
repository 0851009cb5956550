"""The audit SSH session against real OpenSSH servers on loopback."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from auditor.domain.attempts import ErrorReason
from probes.parsers import parse_host_key
from probes.ssh import AllowList, AuditSession, CommandEnd, SshError, truncation_marker
from tests.faults.faultkit import descendants
from tests.unit.probes.ssh_fixtures import (
    TEST_USER,
    SilentServer,
    Sshd,
    allow_all,
    eventually,
    free_port,
    keygen,
    needs_sshd,
    process_running,
    silent_server,
    sshd,
)

pytestmark = needs_sshd
__all__ = ["silent_server", "sshd"]  # fixtures used by name

HANG = "echo started; sleep 31.7"
#: Closes both output streams (the server sends EOF) a second before it exits.
QUIET_THEN_EXIT = "echo done; exec >&- 2>&-; sleep 1; exit 3"
#: The login shell kills itself: sshd reports an "exit-signal", no exit status. (Not
#: ``sh -c 'kill -KILL $$'``: a login shell that does not exec its last command outlives the
#: inner sh and exits 137, a real exit status.)
KILLED_BY = "echo started; kill -{} $$"
#: Kills the connection's sshd process (the shell's parent): the TCP connection drops. The
#: pause lets the server acknowledge the exec request first.
DROPS_THE_CONNECTION = "echo started; sleep 0.5; kill -KILL $PPID"
ALLOWED = AllowList(
    [
        "cat /etc/machine-id",
        "id -un",
        "cat /nonexistent-file",
        HANG,
        "head -c 100000 /dev/zero",
        QUIET_THEN_EXIT,
        "exit 3",
        KILLED_BY.format("KILL"),
        KILLED_BY.format("TERM"),
        DROPS_THE_CONNECTION,
    ]
)


def session(server: Sshd, user: str = "root", **access: float | int | Path) -> AuditSession:
    return AuditSession("loop", "127.0.0.1", server.access(user, **access), ALLOWED, allow_all)


def connect_error(audit: AuditSession) -> SshError:
    with pytest.raises(SshError) as caught:
        audit.connect()
    audit.close()
    return caught.value


def test_runs_an_allowed_command_and_verifies_the_host_key(sshd: Sshd) -> None:
    with session(sshd) as audit:
        result = audit.run("cat /etc/machine-id")
        assert result.succeeded
        assert result.text() == Path("/etc/machine-id").read_text()
        assert result.started <= result.finished
        # The key the server presented is the one known_hosts has.
        presented = parse_host_key(audit.host_key_line or "")
        assert presented == parse_host_key(sshd.host_key_pub.read_text())


def test_logs_in_as_an_unprivileged_user(sshd: Sshd) -> None:
    with session(sshd, TEST_USER) as audit:
        assert audit.run("id -un").text().strip() == TEST_USER


def test_failing_command_keeps_exit_status_and_stderr(sshd: Sshd) -> None:
    with session(sshd) as audit:
        result = audit.run("cat /nonexistent-file")
    assert (result.end, result.exit_status, result.succeeded) == (CommandEnd.EXITED, 1, False)
    assert b"No such file or directory" in result.stderr


def test_exit_status_sent_by_the_server_is_exited_with_that_status(sshd: Sshd) -> None:
    with session(sshd) as audit:
        result = audit.run("exit 3")
    assert (result.end, result.exit_status, result.lost_reason) == (CommandEnd.EXITED, 3, None)


@pytest.mark.parametrize("signal", ["KILL", "TERM"])
def test_command_killed_by_a_signal_is_lost_with_the_signal_not_exited_minus_one(
    sshd: Sshd, signal: str
) -> None:
    # paramiko drops the server's "exit-signal" and reports exit status -1 on the close.
    with session(sshd, TEST_USER) as audit:
        result = audit.run(KILLED_BY.format(signal))
        # Only the command died: the session goes on.
        assert audit.run("id -un").succeeded
    assert result.end is CommandEnd.LOST
    assert result.exit_status is None
    assert result.lost_reason == f"killed by signal {signal}"
    assert result.stdout == b"started\n"
    assert not result.succeeded


def test_dropped_connection_is_lost_not_exited_minus_one(sshd: Sshd) -> None:
    with session(sshd, TEST_USER) as audit:
        result = audit.run(DROPS_THE_CONNECTION)
        with pytest.raises(SshError) as after:
            audit.run("id -un")
    assert result.end is CommandEnd.LOST
    assert result.exit_status is None
    assert result.lost_reason == "connection lost before an exit status"
    assert result.stdout == b"started\n"
    assert after.value.reason is ErrorReason.UNREACHABLE


def test_unknown_host_is_refused_and_known_hosts_stays_untouched(
    sshd: Sshd, tmp_path: Path
) -> None:
    known_hosts = tmp_path / "known_hosts"
    other = sshd.known_hosts.read_text().replace(f"[127.0.0.1]:{sshd.port}", "[127.0.0.2]:22")
    known_hosts.write_text(other)
    error = connect_error(session(sshd, known_hosts=known_hosts))
    assert error.reason is ErrorReason.HOST_KEY_UNKNOWN
    assert "loop (127.0.0.1:" in error.message
    assert parse_host_key(sshd.host_key_pub.read_text()).fingerprint in error.message
    assert known_hosts.read_text() == other


def test_changed_host_key_is_refused_with_both_fingerprints(sshd: Sshd, tmp_path: Path) -> None:
    keygen(tmp_path / "impostor")
    impostor = (tmp_path / "impostor.pub").read_text().split()
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{sshd.port} {impostor[0]} {impostor[1]}\n")
    error = connect_error(session(sshd, known_hosts=known_hosts))
    assert error.reason is ErrorReason.HOST_KEY_MISMATCH
    presented = parse_host_key(sshd.host_key_pub.read_text()).fingerprint
    expected = parse_host_key((tmp_path / "impostor.pub").read_text()).fingerprint
    assert presented in error.message
    assert expected in error.message


def test_wrong_client_key_is_auth_failed(sshd: Sshd, tmp_path: Path) -> None:
    keygen(tmp_path / "stranger")
    error = connect_error(session(sshd, key=tmp_path / "stranger"))
    assert error.reason is ErrorReason.AUTH_FAILED
    assert "root" in error.message
    # The error names neither the key's content nor its file.
    assert "stranger" not in error.message
    assert (tmp_path / "stranger").read_text().splitlines()[1] not in error.message


def test_closed_port_is_unreachable(sshd: Sshd) -> None:
    error = connect_error(session(sshd, port=free_port()))
    assert error.reason is ErrorReason.UNREACHABLE
    assert "refused" in error.message


def test_silent_server_times_out_instead_of_hanging(
    sshd: Sshd, silent_server: SilentServer
) -> None:
    began = time.monotonic()
    error = connect_error(session(sshd, port=silent_server.port, connect_timeout=1.0))
    assert error.reason is ErrorReason.TIMEOUT
    assert time.monotonic() - began < 5
    assert silent_server.accepted == 1


def test_hung_command_is_stopped_at_its_timeout_with_output_kept(sshd: Sshd) -> None:
    # As an unprivileged user, like the real auditor account: OpenSSH honours the "signal"
    # request for such sessions (it refuses it for root logins).
    with session(sshd, TEST_USER, command_timeout=1.5) as audit:
        began = time.monotonic()
        result = audit.run(HANG)
        elapsed = time.monotonic() - began
        # The session is still usable afterwards.
        assert audit.run("id -un").succeeded
    assert result.end is CommandEnd.TIMED_OUT
    assert result.exit_status is None
    assert result.stdout == b"started\n"
    assert 1.4 < elapsed < 4
    # The remote command was really ended, not just abandoned.
    assert eventually(lambda: not process_running("sleep 31.7"), within=5)


def test_the_connection_sends_without_nagle_delay(sshd: Sshd) -> None:
    # Without TCP_NODELAY each command's first packet waits for the server's delayed ACK.
    with session(sshd) as audit:
        transport = audit._transport
        assert transport is not None
        sock = transport.sock
        assert isinstance(sock, socket.socket)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert audit.run("id -un").succeeded


def test_waiting_for_the_exit_status_after_eof_does_not_spin(
    sshd: Sshd, monkeypatch: pytest.MonkeyPatch
) -> None:
    # After EOF paramiko's channel stays select-readable for good; a loop that selected on it
    # would spin (thousands of calls a second) until the exit status came.
    selects = 0
    real_select = select.select

    def counted(*args: Any) -> Any:
        nonlocal selects
        selects += 1
        return real_select(*args)

    monkeypatch.setattr(select, "select", counted)
    with session(sshd) as audit:
        began = time.monotonic()
        result = audit.run(QUIET_THEN_EXIT)
        elapsed = time.monotonic() - began
    assert result.end is CommandEnd.EXITED
    assert result.exit_status == 3
    assert result.stdout == b"done\n"
    assert 0.9 < elapsed < 3
    assert selects < 40


def test_output_beyond_the_bound_is_cut_with_a_marker(sshd: Sshd) -> None:
    with session(sshd) as audit:
        result = audit.run("head -c 100000 /dev/zero", max_output=1000)
    assert result.end is CommandEnd.TRUNCATED
    assert result.stdout == b"\0" * 1000 + truncation_marker(1000)


def test_command_outside_the_allow_list_is_refused_before_anything_is_sent(
    sshd: Sshd,
) -> None:
    audit = session(sshd)
    # Not even connected: the refusal comes from the allow-list, not from the network.
    with pytest.raises(SshError) as unconnected:
        audit.run("touch /tmp/auditor-must-not-exist")
    assert unconnected.value.reason is ErrorReason.NOT_PERMITTED
    with audit:
        for command in ("touch /tmp/auditor-must-not-exist", "id -un; touch /tmp/x", "id  -un"):
            with pytest.raises(SshError) as caught:
                audit.run(command)
            assert caught.value.reason is ErrorReason.NOT_PERMITTED
    assert not Path("/tmp/auditor-must-not-exist").exists()


def test_scope_hook_refuses_before_any_packet(silent_server: SilentServer, sshd: Sshd) -> None:
    def refuse(address: str) -> None:
        raise ValueError(f"{address} is outside the authorized scope")

    audit = AuditSession("loop", "127.0.0.1", sshd.access(port=silent_server.port), ALLOWED, refuse)
    error = connect_error(audit)
    assert error.reason is ErrorReason.OUT_OF_SCOPE
    assert "outside the authorized scope" in error.message
    time.sleep(0.2)
    assert silent_server.accepted == 0


def test_system_ssh_client_agrees_on_the_known_hosts_format(sshd: Sshd) -> None:
    # The known_hosts we write is the one OpenSSH's own client accepts with strict checking.
    completed = subprocess.run(
        [
            "ssh",
            "-p",
            str(sshd.port),
            "-i",
            str(sshd.client_key),
            "-o",
            f"UserKnownHostsFile={sshd.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "root@127.0.0.1",
            "true",
        ],
        capture_output=True,
        timeout=20,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr


def test_a_server_that_freezes_before_starting_the_command_is_a_timeout(
    sshd: Sshd, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The connection's sshd processes are stopped right after the channel opened, as a paused
    # host would be: the kernel still acknowledges TCP, nothing answers the exec request.
    assert sshd.process is not None
    frozen: list[int] = []
    with session(sshd, TEST_USER, command_timeout=1.5) as audit:
        assert audit.run("id -un").succeeded
        transport = audit._transport
        assert transport is not None
        open_session = transport.open_session

        def open_then_freeze(**kwargs: Any) -> Any:
            channel = open_session(**kwargs)
            frozen.extend(descendants(sshd.process.pid))  # type: ignore[union-attr]
            for pid in frozen:
                os.kill(pid, signal.SIGSTOP)
            return channel

        monkeypatch.setattr(transport, "open_session", open_then_freeze)
        began = time.monotonic()
        try:
            with pytest.raises(SshError) as caught:
                audit.run("id -un")
        finally:
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
        elapsed = time.monotonic() - began
    assert frozen, "no sshd connection process to freeze"
    assert caught.value.reason is ErrorReason.TIMEOUT
    assert "'id -un' was not started within 1.5s" in caught.value.message
    assert 1.4 < elapsed < 6
