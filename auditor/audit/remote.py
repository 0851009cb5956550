"""Running the network probes' commands on inventory hosts over SSH.

The egress tester and the remote scanner take a ``run_remote(host, command, timeout)``
callable; this module provides it on top of ``probes.ssh.AuditSession``: one session per
host, opened on first use with strict host-key checking, and an allow-list of command
*templates* whose arguments may only be addresses, ports and nmap's own option syntax (and,
for the vantage hosts' sweeps and captures, one IPv4 prefix, an interface name and a BPF
filter of plain words). ``stream`` starts a command that is read while it runs.
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
from probes.ssh import (
    AllowList,
    AuditSession,
    CommandEnd,
    CommandTemplate,
    RunningCommand,
    SshError,
)

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
    r"|--max-retries [0-9]+|--host-timeout [0-9]+s|--min-rate [0-9]+"
    r"|-e [A-Za-z0-9_.][A-Za-z0-9_.-]{0,14})"
)
NMAP_TEMPLATES = (
    CommandTemplate(
        "sudo -n /usr/bin/nmap ",
        re.compile(rf"(?:{_NMAP_OPTION} )+{_ADDRESS}(?: {_ADDRESS})*"),
    ),
)

#: An interface name as the vantage host's ``ip -j addr`` gave it (probes.remotecapture
#: checks it the same way): never an option, never shell syntax.
_INTERFACE = r"[A-Za-z0-9_.][A-Za-z0-9_.-]{0,14}"
_IPV4_PREFIX = r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}/[0-9]{1,2}"

#: The neighbour sweep from a vantage host (probes.discovery.discover_from_remote): the IPv4
#: ARP sweep is the only nmap run given a prefix, in this one fixed form; its IPv6 run names
#: addresses and fits NMAP_TEMPLATES. Then, without sudo, the host's own addresses and
#: neighbour table.
SWEEP_TEMPLATES = (
    CommandTemplate(
        "sudo -n /usr/bin/nmap ",
        re.compile(rf"-sn -PR -e {_INTERFACE} -n --reason -oX - {_IPV4_PREFIX}"),
    ),
    CommandTemplate("ip -j addr show", re.compile("")),
    CommandTemplate("ip -j neigh show dev ", re.compile(_INTERFACE)),
)

#: The link capture from a vantage host (probes.remotecapture): tcpdump under the host's
#: own ``timeout``, options in one fixed order, the filter single-quoted and made of BPF
#: words only (probes.remotecapture.checked_filter refuses anything else before this).
CAPTURE_TEMPLATES = (
    CommandTemplate(
        "sudo -n /usr/bin/timeout -s INT -k 5 ",
        re.compile(
            rf"[1-9][0-9]{{0,4}} /usr/bin/tcpdump -i {_INTERFACE} -n -U --immediate-mode "
            r"-s [1-9][0-9]{0,5} -c [1-9][0-9]{0,6} -w - '[a-z0-9.:/() \[\]&=]+'"
        ),
    ),
    CommandTemplate("ip -j addr show", re.compile("")),
)

#: Everything the auditor runs on a vantage host: scans, sweeps and captures.
VANTAGE_TEMPLATES = (*NMAP_TEMPLATES, *SWEEP_TEMPLATES, *CAPTURE_TEMPLATES)


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

    def stream(
        self, host: str, command: str, *, time_limit: float, max_output: int
    ) -> RunningCommand:
        """Start ``command`` on ``host`` and return at once (``AuditSession.start``): for
        commands read while they run, such as a capture. Raises SshError (refused by the
        allow-list, no session, not started)."""
        return self._session(host).start(command, time_limit=time_limit, max_output=max_output)
