"""Streaming commands (``AuditSession.start``) against a real OpenSSH server on loopback: the
stderr wait, stdout read while the command runs, the byte bound as a stop cause, the time
bound, and the caller's stop ending the process on the server."""

from __future__ import annotations

import time

from probes.ssh import AllowList, AuditSession, CommandEnd, SshError
from tests.unit.probes.ssh_fixtures import (
    TEST_USER,
    Sshd,
    allow_all,
    eventually,
    needs_sshd,
    process_running,
    sshd,
)

pytestmark = needs_sshd
__all__ = ["sshd"]  # fixture used by name

#: Says it is ready on stderr, then writes a little and waits: like tcpdump on a quiet link.
READY_THEN_QUIET = "echo listening on lo >&2; echo first; exec sleep 29.3"
#: Not exec'd: the INT reaches the shell only, so the stop grace runs out and the channel is
#: killed and closed.
FLOOD = "echo listening on lo >&2; head -c 3000000 /dev/zero; sleep 28.7"
SILENT = "exec sleep 27.9"
ALLOWED = AllowList([READY_THEN_QUIET, FLOOD, SILENT, "printf out; printf err >&2; exit 4"])


def session(server: Sshd) -> AuditSession:
    # An unprivileged account, like the real audit account: OpenSSH refuses the "signal"
    # request in root's sessions.
    return AuditSession("loop", "127.0.0.1", server.access(TEST_USER), ALLOWED, allow_all)


def test_the_caller_sees_stdout_while_it_runs_and_its_stop_ends_the_process(sshd: Sshd) -> None:
    seen: list[bytes] = []
    with session(sshd) as audit:
        running = audit.start(READY_THEN_QUIET, time_limit=20, on_stdout=seen.append)
        assert running.wait_for_stderr(b"listening on", 5)
        assert eventually(lambda: b"".join(seen) == b"first\n", 5)
        assert not running.ended
        assert process_running("sleep 29.3")
        started = time.monotonic()
        result = running.stop()
        assert time.monotonic() - started < 3
    assert result.end is CommandEnd.STOPPED
    assert result.stdout == b"first\n" and b"listening on lo" in result.stderr
    assert eventually(lambda: not process_running("sleep 29.3"), 5)


def test_the_byte_bound_stops_the_command_and_keeps_exactly_the_bound(sshd: Sshd) -> None:
    with session(sshd) as audit:
        running = audit.start(FLOOD, time_limit=20, max_output=100_000, stop_grace=1)
        result = running.wait(6)
        assert result is not None, "the bound did not stop the command"
    assert result.end is CommandEnd.TRUNCATED
    assert result.stdout == b"\0" * 100_000  # binary-clean: no marker appended
    assert eventually(lambda: not process_running("sleep 28.7"), 5)


def test_the_time_limit_stops_a_silent_command(sshd: Sshd) -> None:
    with session(sshd) as audit:
        running = audit.start(SILENT, time_limit=1.5)
        assert not running.wait_for_stderr(b"listening on", 0.3)
        started = time.monotonic()
        result = running.wait(10)
        assert result is not None and time.monotonic() - started < 3
    assert result.end is CommandEnd.TIMED_OUT
    assert eventually(lambda: not process_running("sleep 27.9"), 5)


def test_a_command_that_ends_by_itself_has_its_status(sshd: Sshd) -> None:
    with session(sshd) as audit:
        running = audit.start("printf out; printf err >&2; exit 4", time_limit=10)
        assert not running.wait_for_stderr(b"never written", 5)  # False at the end, not at 5 s
        result = running.stop()
    assert (result.end, result.exit_status) == (CommandEnd.EXITED, 4)
    assert result.stdout == b"out" and result.stderr.endswith(b"err")


def test_a_command_outside_the_allow_list_is_not_started(sshd: Sshd) -> None:
    with session(sshd) as audit:
        try:
            audit.start("exec sleep 27.9; id", time_limit=5)
        except SshError as exc:
            assert "not in the allow-list" in str(exc)
        else:
            raise AssertionError("started a command the allow-list does not hold")
    assert not process_running("exec sleep 27.9; id")
