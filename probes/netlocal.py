"""This machine's own side of the network probes: its interfaces, and running its tools.

Interfaces are found by the address the auditor holds on a network (``ip -j addr``), never by
name: names differ between sites (podman bridges, VLAN sub-interfaces, renamed NICs), an
address from the inventory does not.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from netaddr import IPAddress

from auditor.domain.errors import AuditorError


class ToolMissingError(AuditorError, RuntimeError):
    """A program the probe needs is not installed (or not on PATH)."""


class ToolTimeoutError(AuditorError, RuntimeError):
    """A program ran longer than its bound and was killed."""


@dataclass(frozen=True)
class RemoteResult:
    """What running one command on a remote host gave. Filled by the SSH module's runner."""

    exit_status: int | None  #: None when the command never finished (timeout, lost session)
    stdout: bytes
    stderr: bytes
    timed_out: bool = False


class RunRemote(Protocol):
    """Run ``command`` on inventory host ``host`` (over SSH, with its allow-list) within
    ``timeout`` seconds. Must not raise for a failing command: that is an exit status."""

    def __call__(self, host: str, command: str, timeout: float) -> RemoteResult: ...


#: Raises (any exception) when ``address`` (an address or a prefix) is outside the authorized
#: scope. Called before any packet is sent toward it: auditor.audit.scope's ScopeGuard.check.
CheckTarget = Callable[[str], None]


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ToolRun:
    """One local program run to completion (or killed at its bound)."""

    argv: tuple[str, ...]
    exit_status: int  #: negative: killed by that signal
    stdout: bytes
    stderr: bytes
    started: datetime
    finished: datetime
    timed_out: bool
    stopped: str | None = None  #: why ``watch`` had it stopped early (see run_tool)

    @property
    def command(self) -> str:
        return " ".join(self.argv)


def require_tool(name: str) -> str:
    """The absolute path of ``name`` as found on PATH; ToolMissingError otherwise."""
    path = shutil.which(name)
    if path is None:
        raise ToolMissingError(f"{name} not found on PATH={os.environ.get('PATH', '')}")
    return path


def run_tool(
    argv: Sequence[str],
    timeout: float,
    *,
    watch: Callable[[], str | None] | None = None,
    watch_every: float = 1.0,
) -> ToolRun:
    """Run a local program with a hard time bound.

    The program gets its own process group so that, at the bound, it and anything it started
    are killed together; the output gathered so far is kept (a killed nmap's partial XML is
    still evidence of what happened). ``watch``, called every ``watch_every`` seconds while
    the program runs, returns why it must stop now (its interface went away), or None.
    """
    started = now()
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise ToolMissingError(f"{argv[0]}: {exc}") from exc
    timed_out = False
    stopped: str | None = None
    deadline = time.monotonic() + timeout
    while True:
        remaining = max(0.0, deadline - time.monotonic())
        try:
            # Retrying communicate after its timeout loses no output (subprocess docs).
            out, err = proc.communicate(timeout=min(remaining, watch_every) if watch else remaining)
            break
        except subprocess.TimeoutExpired:
            if time.monotonic() >= deadline:
                timed_out = True
            elif watch is not None:
                stopped = watch()
            if timed_out or stopped:
                kill_process_group(proc)
                out, err = proc.communicate()
                break
    return ToolRun(
        tuple(argv), proc.returncode, out or b"", err or b"", started, now(), timed_out, stopped
    )


def kill_process_group(proc: subprocess.Popen[Any], grace: float = 2.0) -> None:
    """SIGTERM the process group, then SIGKILL it if it has not gone within ``grace``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return
            time.sleep(0.05)


@dataclass(frozen=True)
class LocalInterface:
    name: str
    index: int
    mac: str | None
    up: bool
    addresses: tuple[str, ...]  #: without prefix length, as ``ip`` prints them


def _interface_from_json(entry: dict[str, Any]) -> LocalInterface:
    addresses = tuple(str(a["local"]) for a in entry.get("addr_info", []) if "local" in a)
    flags = entry.get("flags", [])
    return LocalInterface(
        name=str(entry["ifname"]),
        index=int(entry["ifindex"]),
        mac=entry.get("address") if entry.get("link_type") == "ether" else None,
        up="UP" in flags,
        addresses=addresses,
    )


def local_interfaces(timeout: float = 10.0) -> list[LocalInterface]:
    """Every interface of this machine's (current namespace's) with its addresses."""
    run = run_tool([require_tool("ip"), "-j", "addr", "show"], timeout)
    if run.exit_status != 0:
        raise RuntimeError(f"ip -j addr show failed: {run.stderr.decode(errors='replace')}")
    return [_interface_from_json(entry) for entry in json.loads(run.stdout)]


def same_address(a: str, b: str) -> bool:
    """Equal as addresses, whatever the spelling (``fd98::1`` vs ``fd98:0:0:0::1``)."""
    try:
        return bool(IPAddress(a) == IPAddress(b))
    except Exception:
        return False


def interface_holding(
    address: str, interfaces: Sequence[LocalInterface] | None = None
) -> LocalInterface | None:
    """The local interface that holds ``address``, or None when no interface does."""
    for interface in interfaces if interfaces is not None else local_interfaces():
        if any(same_address(address, held) for held in interface.addresses):
            return interface
    return None


def ip_version(address: str) -> int:
    return int(IPAddress(address).version)


__all__ = [
    "CheckTarget",
    "LocalInterface",
    "RemoteResult",
    "RunRemote",
    "ToolMissingError",
    "ToolRun",
    "ToolTimeoutError",
    "interface_holding",
    "ip_version",
    "kill_process_group",
    "local_interfaces",
    "now",
    "require_tool",
    "run_tool",
    "same_address",
]
