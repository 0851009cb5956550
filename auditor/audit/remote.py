"""Running the network probes' commands on inventory hosts over SSH.

The egress tester and the remote scanner take a ``run_remote(host, command, timeout)``
callable; this module provides it on top of ``probes.ssh.AuditSession``: one session per
host, opened on first use with strict host-key checking, and an allow-list of command
*templates* whose arguments may only be addresses, ports and nmap's own option syntax.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from types import TracebackType

from auditor.domain.attempts import ErrorReason
from auditor.domain.inventory import Inventory
from auditor.domain.protocols import ScopeCheck
from probes.netlocal import RemoteResult
from probes.ssh import AllowList, AuditSession, CommandEnd, CommandTemplate, SshError

_ADDRESS = r"[0-9A-Fa-f:.]{2,45}"
_PORT = r"[0-9]{1,5}"

#: The egress tester's commands (probes.egress.Commands) with their variable parts.
EGRESS_TEMPLATES = (
    CommandTemplate("nc -v -z -n -w 2 ", re.compile(rf"{_ADDRESS} {_PORT}")),
    CommandTemplate("nc -v -u -z -n -w 1 ", re.compile(rf"{_ADDRESS} {_PORT}")),
    CommandTemplate("sudo -n /usr/bin/ping -n -c 1 -W 1 ", re.compile(_ADDRESS)),
)

#: nmap on a vantage host: scan types, ports, timing and XML to stdout, then addresses.
#: Options that read or write files (-iL, -oN, --script, --datadir, ...) cannot match.
_NMAP_OPTION = (
    r"(?:-sS|-sU|-sn|-PR|-Pn|-n|-6|--reason|-T[0-5]|-oX -|-p [0-9,-]+"
    r"|--max-retries [0-9]+|--host-timeout [0-9]+s|--min-rate [0-9]+|-e [A-Za-z0-9_.-]+)"
)
NMAP_TEMPLATES = (
    CommandTemplate(
        "sudo -n /usr/bin/nmap ",
        re.compile(rf"(?:{_NMAP_OPTION} )+{_ADDRESS}(?: {_ADDRESS})*"),
    ),
)


class SshRemote:
    """A thread-safe ``RunRemote`` over SSH for the inventory's hosts."""

    def __init__(
        self,
        inventory: Inventory,
        check_target: ScopeCheck,
        templates: Iterable[CommandTemplate],
    ) -> None:
        self._inventory = inventory
        self._check_target = check_target
        self._allow = AllowList((), templates)
        self._sessions: dict[str, AuditSession] = {}
        self._failures: dict[str, SshError] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> SshRemote:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            for session in self._sessions.values():
                session.close()
            self._sessions.clear()

    def _session(self, host: str) -> AuditSession:
        with self._lock:
            if host in self._failures:
                raise self._failures[host]
            session = self._sessions.get(host)
            if session is not None:
                return session
            definition = self._inventory.hosts[host]
            if definition.ssh is None:
                raise SshError(ErrorReason.UNREACHABLE, f"{host}: no ssh address in the inventory")
            session = AuditSession(
                host,
                str(definition.ssh),
                self._inventory.ssh,
                self._allow,
                self._check_target,
            )
            try:
                session.connect()
            except SshError as exc:
                # Remember: one failed login per host, not one per attempted command.
                self._failures[host] = exc
                raise
            self._sessions[host] = session
            return session

    def __call__(self, host: str, command: str, timeout: float) -> RemoteResult:
        try:
            result = self._session(host).run(command, timeout=timeout)
        except SshError as exc:
            return RemoteResult(
                exit_status=None, stdout=b"", stderr=f"{exc.reason}: {exc}".encode()
            )
        return RemoteResult(
            exit_status=result.exit_status,
            stdout=result.stdout,
            stderr=result.stderr,
            timed_out=result.end is CommandEnd.TIMED_OUT,
        )
