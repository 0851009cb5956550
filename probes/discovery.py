"""Live-host sweep of a protected network, from this machine's own address on it.

What it sends, out of the interface holding the auditor's address on the network only:
- IPv4: ARP requests for every address of the network's prefix (``nmap -sn -PR``).
- IPv6: a /64 cannot be swept, so neighbour solicitations go to a bounded candidate list
  (``nmap -6 -sn``): the addresses the caller names (the inventory's), the low host numbers
  ``::1``-``::ff``, and the IPv6 mirror of each IPv4 host that answered (``.20`` -> ``::20``,
  the reference lab's convention). Nothing is sent to multicast groups such as ``ff02::1``:
  they are outside every authorized scope.
Then, passively, the kernel's neighbour table on that interface (``ip -j neigh``) is read: it
shows devices that spoke on the link recently even if their address was no candidate.

The answers are returned without this machine's own addresses; the inventory-complete control
compares them with the inventory. Every nmap XML, the IPv6 candidate list and the neighbour
table are stored as evidence.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

from netaddr import AddrFormatError, IPAddress, IPNetwork

from auditor.domain.attempts import Attempt, ErrorReason
from auditor.domain.errors import AuditorError
from auditor.domain.inventory import Inventory
from auditor.domain.protocols import EvidenceSink
from probes.netlocal import (
    CheckTarget,
    LocalInterface,
    RunRemote,
    ToolMissingError,
    ToolRun,
    interface_holding,
    ip_version,
    now,
    require_tool,
    run_tool,
)
from probes.remotecapture import addresses_of, listed_interface_holding
from probes.scanner import NMAP_XML, NmapParseError, ParsedHost, parse_nmap_xml

PROBE = "discovery"
#: IPv4 prefixes larger than this are refused: a sweep is meant for a LAN segment.
MAX_IPV4_HOSTS = 4096
#: ``::1``-``::ff``: where hand-numbered hosts (and the lab's) live in a /64.
LOW_IPV6_HOSTS = 0xFF
MAX_IPV6_CANDIDATES = 2048
#: Neighbour-table states in which the link layer address was confirmed recently.
FRESH_NEIGHBOUR_STATES = frozenset({"REACHABLE", "DELAY", "PROBE", "PERMANENT", "STALE"})


@dataclass(frozen=True)
class LiveHost:
    address: str
    mac: str | None
    reason: str  #: how it answered: "arp-response", "nd-response"


@dataclass(frozen=True)
class Neighbour:
    """An entry of this machine's neighbour table: a device that spoke on the link lately."""

    address: str
    mac: str
    state: str  #: "REACHABLE", "STALE", ...


@dataclass(frozen=True)
class DiscoveryResult:
    network: str
    interface: str
    prefixes: tuple[str, ...]
    hosts: tuple[LiveHost, ...]  #: everything that answered, this machine excluded
    neighbours: tuple[Neighbour, ...]  #: passive: the neighbour table, this machine excluded
    own_addresses: tuple[str, ...]  #: excluded from both lists
    ipv6_candidates: int  #: how many IPv6 addresses were solicited (0: no IPv6 prefix)

    def addresses(self) -> set[str]:
        return {h.address for h in self.hosts}


class _SweepError(AuditorError):
    def __init__(self, reason: ErrorReason, message: str, evidence: list[str]) -> None:
        super().__init__(message)
        self.reason = reason
        self.evidence = evidence


def ipv6_candidates(
    prefix: str, named: Sequence[str], ipv4_answers: Sequence[str], low_hosts: int
) -> list[str]:
    """The IPv6 addresses to solicit on ``prefix``, in order, without duplicates."""
    net = IPNetwork(prefix)
    found: dict[IPAddress, None] = {}
    for address in named:
        if IPAddress(address) in net:
            found[IPAddress(address)] = None
    for host in range(1, low_hosts + 1):
        found[IPAddress(net.first + host, 6)] = None
    for address in ipv4_answers:
        last = str(IPAddress(address).words[-1])  # "20" of 10.98.21.20, read as hex: ::20
        found[IPAddress(net.first + int(last, 16), 6)] = None
    return [str(a) for a in found][:MAX_IPV6_CANDIDATES]


class _Sweeper:
    """One network's sweep: state shared by its steps, so each step stays small."""

    def __init__(
        self, network: str, interface: LocalInterface, sink: EvidenceSink, nmap_name: str
    ) -> None:
        self.network = network
        self.interface = interface
        self.sink = sink
        self.nmap_name = nmap_name
        self.evidence: list[str] = []

    def store(self, run: ToolRun, media_type: str, content: bytes | None = None) -> None:
        self.evidence.append(
            self.sink.add(
                run.stdout if content is None else content,
                probe=PROBE,
                command=run.command,
                host=None,
                started=run.started,
                finished=run.finished,
                media_type=media_type,
                exit_status=run.exit_status,
            )
        )

    def nmap_sweep(self, family: int, targets: list[str], timeout: float) -> list[ParsedHost]:
        try:
            nmap = require_tool(self.nmap_name)
        except ToolMissingError as exc:
            raise _SweepError(ErrorReason.TOOL_MISSING, str(exc), self.evidence) from exc
        with tempfile.NamedTemporaryFile("w", suffix=".targets", delete=False) as listing:
            listing.write("\n".join(targets) + "\n")
        try:
            argv = [nmap, "-sn", "-n", "-e", self.interface.name, "--reason", "-oX", "-"]
            argv += ["-6", "-iL", listing.name] if family == 6 else ["-PR", *targets]
            run = run_tool(argv, timeout)
        finally:
            os.unlink(listing.name)
        self.store(run, NMAP_XML)
        return self._parse(run)

    def _parse(self, run: ToolRun) -> list[ParsedHost]:
        if run.timed_out or run.exit_status < 0:
            raise _SweepError(ErrorReason.TIMEOUT, "nmap sweep killed at its bound", self.evidence)
        try:
            parsed = parse_nmap_xml(run.stdout)
        except NmapParseError as exc:
            if run.exit_status != 0:  # nmap gave up: its reason is on stderr
                stderr = run.stderr.decode(errors="replace").strip()[:300]
                message = f"nmap exited {run.exit_status}: {stderr}"
                raise _SweepError(ErrorReason.COMMAND_FAILED, message, self.evidence) from exc
            raise _SweepError(ErrorReason.PARSE_ERROR, str(exc), self.evidence) from exc
        if parsed.exit != "success" or run.exit_status != 0:
            message = parsed.error_message or run.stderr.decode(errors="replace")[:300]
            raise _SweepError(ErrorReason.COMMAND_FAILED, message, self.evidence)
        return [h for h in parsed.hosts.values() if h.status == "up"]

    def neighbours(self, timeout: float) -> list[Neighbour]:
        run = run_tool(["ip", "-j", "neigh", "show", "dev", self.interface.name], timeout)
        self.store(run, "application/json")
        if run.exit_status != 0:
            return []
        entries = json.loads(run.stdout or b"[]")
        return [
            Neighbour(str(e["dst"]), str(e["lladdr"]).lower(), _state(e))
            for e in entries
            if "lladdr" in e and _state(e) in FRESH_NEIGHBOUR_STATES
        ]


class _RemoteSweeper(_Sweeper):
    """The same steps run on a vantage host over SSH: root nmap through sudo, ``ip -j neigh``
    without. Its outputs are the host's (untrusted) and parsed as such."""

    def __init__(
        self, network: str, interface: LocalInterface, sink: EvidenceSink, run: _RemoteRun
    ) -> None:
        super().__init__(network, interface, sink, "nmap")
        self.run = run

    def remote(self, command: str, timeout: float, media_type: str) -> ToolRun:
        started = now()
        result = self.run.run_remote(self.run.host, command, timeout)
        # None: the command never finished (time bound, lost session); read like a kill.
        status = -1 if result.exit_status is None else result.exit_status
        run = ToolRun(
            (command,), status, result.stdout, result.stderr, started, now(), result.timed_out
        )
        self.evidence.append(
            self.sink.add(
                run.stdout,
                probe=PROBE,
                command=command,
                host=self.run.host,
                started=run.started,
                finished=run.finished,
                media_type=media_type,
                exit_status=result.exit_status,
            )
        )
        return run

    def nmap_sweep(self, family: int, targets: list[str], timeout: float) -> list[ParsedHost]:
        name = self.interface.name
        if family == 6:
            commands = [f"{REMOTE_NMAP} -sn -6 -e {name} -n --reason -oX - {' '.join(targets)}"]
        else:
            commands = [f"{REMOTE_NMAP} -sn -PR -e {name} -n --reason -oX - {t}" for t in targets]
        found: list[ParsedHost] = []
        for command in commands:
            run = self.remote(command, timeout, NMAP_XML)
            self._refuse_sudo_failures(run)
            found += self._parse(run)
        return found

    def _refuse_sudo_failures(self, run: ToolRun) -> None:
        stderr = run.stderr.decode(errors="replace")
        if "a password is required" in stderr or "not allowed" in stderr:
            message = f"sudo refused nmap on {self.run.host}: {stderr.strip()[:300]}"
            raise _SweepError(ErrorReason.NOT_PERMITTED, message, self.evidence)
        if run.exit_status == 127 or "command not found" in stderr:
            message = f"nmap missing on {self.run.host}: {stderr.strip()[:300]}"
            raise _SweepError(ErrorReason.TOOL_MISSING, message, self.evidence)
        if run.exit_status < 0 and not run.timed_out and not run.stdout:
            message = f"{self.run.host}: {stderr.strip()[:300] or 'no answer'}"
            raise _SweepError(ErrorReason.UNREACHABLE, message, self.evidence)

    def neighbours(self, timeout: float) -> list[Neighbour]:
        run = self.remote(
            f"ip -j neigh show dev {self.interface.name}", timeout, "application/json"
        )
        if run.exit_status != 0:
            return []
        return parse_neighbours(run.stdout)


@dataclass(frozen=True)
class _RemoteRun:
    host: str
    run_remote: RunRemote


#: How nmap is run on a vantage host (the audit account's sudoers allows these forms only).
REMOTE_NMAP = "sudo -n /usr/bin/nmap"


def parse_neighbours(output: bytes) -> list[Neighbour]:
    """``ip -j neigh`` output (a host's: untrusted) read defensively: entries that are not
    what iproute2 writes, or whose address or MAC does not parse, are skipped."""
    try:
        entries = json.loads(output.decode("utf-8", errors="strict") or "[]")
    except (UnicodeDecodeError, ValueError):
        return []
    if not isinstance(entries, list):
        return []
    found: list[Neighbour] = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        address, mac, state = entry.get("dst"), entry.get("lladdr"), _state(entry)
        if not isinstance(address, str) or not isinstance(mac, str):
            continue
        if state not in FRESH_NEIGHBOUR_STATES or not _MAC.fullmatch(mac):
            continue
        try:
            IPAddress(address)
        except (ValueError, TypeError, AddrFormatError):
            continue
        found.append(Neighbour(address, mac.lower(), state))
    return found


_MAC = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}")


def _state(entry: dict[str, object]) -> str:
    state = entry.get("state", [])
    return str(state[0]) if isinstance(state, list) and state else str(state)


def _is_own(address: str, own: Sequence[str]) -> bool:
    return any(IPAddress(address) == IPAddress(o) for o in own)


def _in_prefixes(address: str, prefixes: Sequence[str]) -> bool:
    return any(IPAddress(address) in IPNetwork(p) for p in prefixes)


def discover(
    *,
    network: str,
    prefixes: Sequence[str],
    auditor_addresses: Sequence[str],
    sink: EvidenceSink,
    check_target: CheckTarget,
    known_ipv6: Sequence[str] = (),
    low_ipv6_hosts: int = LOW_IPV6_HOSTS,
    timeout: float = 300.0,
    nmap_name: str = "nmap",
) -> Attempt[DiscoveryResult]:
    """Sweep ``network`` (its ``prefixes``) from this machine's address on it.

    ``known_ipv6``: addresses to solicit besides the low host numbers (the inventory's).
    Each prefix passes ``check_target`` before anything is sent. Returns the hosts that
    answered, or an error attempt (OUT_OF_SCOPE, UNREACHABLE when this machine holds no
    address there, NOT_PERMITTED for a prefix too large to sweep, TOOL_MISSING, TIMEOUT,
    PARSE_ERROR) with the evidence gathered until then.
    """
    try:
        for prefix in prefixes:
            check_target(prefix)
    except Exception as exc:
        return Attempt.failed(PROBE, network, ErrorReason.OUT_OF_SCOPE, str(exc))
    interface = next(filter(None, map(interface_holding, auditor_addresses)), None)
    if interface is None:
        return Attempt.failed(
            PROBE, network, ErrorReason.UNREACHABLE, f"no interface holds {auditor_addresses}"
        )
    too_big = [
        p for p in prefixes if IPNetwork(p).version == 4 and IPNetwork(p).size > MAX_IPV4_HOSTS
    ]
    if too_big:
        return Attempt.failed(
            PROBE, network, ErrorReason.NOT_PERMITTED, f"{too_big} too large to sweep"
        )
    sweeper = _Sweeper(network, interface, sink, nmap_name)
    try:
        result = _sweep(
            sweeper,
            prefixes,
            own=auditor_addresses,
            known_ipv6=known_ipv6,
            low_ipv6_hosts=low_ipv6_hosts,
            timeout=timeout,
        )
    except _SweepError as exc:
        return Attempt.failed(PROBE, network, exc.reason, str(exc), exc.evidence)
    return Attempt.ok(PROBE, network, result, sweeper.evidence)


def _sweep(
    sweeper: _Sweeper,
    prefixes: Sequence[str],
    *,
    own: Sequence[str],
    known_ipv6: Sequence[str],
    low_ipv6_hosts: int,
    timeout: float,
) -> DiscoveryResult:
    answered: list[ParsedHost] = []
    v4 = [p for p in prefixes if IPNetwork(p).version == 4]
    v6 = [p for p in prefixes if IPNetwork(p).version == 6]
    if v4:
        answered += sweeper.nmap_sweep(4, [str(IPNetwork(p).cidr) for p in v4], timeout)
    v4_answers = [h.address for h in answered if not _is_own(h.address, own)]
    candidates = [c for p in v6 for c in ipv6_candidates(p, known_ipv6, v4_answers, low_ipv6_hosts)]
    if candidates:
        sweeper.store(_listing_record(candidates), "text/plain")
        answered += sweeper.nmap_sweep(6, candidates, timeout)
    hosts = sorted(
        {
            h.address: LiveHost(h.address, h.mac, h.status_reason)
            for h in answered
            if not _is_own(h.address, own) and _in_prefixes(h.address, prefixes)
        }.values(),
        key=lambda h: (ip_version(h.address), IPAddress(h.address)),
    )
    neighbours = [
        n
        for n in sweeper.neighbours(30.0)
        if not _is_own(n.address, own) and _in_prefixes(n.address, prefixes)
    ]
    return DiscoveryResult(
        network=sweeper.network,
        interface=sweeper.interface.name,
        prefixes=tuple(str(IPNetwork(p).cidr) for p in prefixes),
        hosts=tuple(hosts),
        neighbours=tuple(neighbours),
        own_addresses=tuple(own),
        ipv6_candidates=len(candidates),
    )


def _listing_record(candidates: list[str]) -> ToolRun:
    """The IPv6 candidate list as an artifact: what was solicited is part of the evidence."""
    stamp = now()
    content = ("\n".join(candidates) + "\n").encode()
    return ToolRun(("ipv6-candidates",), 0, content, b"", stamp, stamp, False)


def discover_from_remote(
    *,
    network: str,
    prefixes: Sequence[str],
    vantage_host: str,
    vantage_addresses: Sequence[str],
    run_remote: RunRemote,
    sink: EvidenceSink,
    check_target: CheckTarget,
    known_ipv6: Sequence[str] = (),
    low_ipv6_hosts: int = LOW_IPV6_HOSTS,
    timeout: float = 300.0,
) -> Attempt[DiscoveryResult]:
    """``discover``, run on the vantage host ``vantage_host`` (its ``vantage_addresses`` on
    the network are the inventory's): nmap as root there through sudo (``-sn -PR -e IF -n
    --reason -oX - PREFIX`` per IPv4 prefix, ``-sn -6`` with the IPv6 candidates named one by
    one), then its neighbour table. The interface is the one the host's own ``ip -j addr
    show`` lists with one of its addresses. Every prefix and candidate passes
    ``check_target`` before anything is sent; the host's own addresses are left out of the
    result. Same result and errors as ``discover``; NOT_PERMITTED / TOOL_MISSING also when
    the vantage host's sudo or nmap refuse."""
    refused = _out_of_scope(prefixes, check_target)
    if refused is not None:
        return Attempt.failed(PROBE, network, ErrorReason.OUT_OF_SCOPE, refused)
    too_big = [
        p for p in prefixes if IPNetwork(p).version == 4 and IPNetwork(p).size > MAX_IPV4_HOSTS
    ]
    if too_big:
        return Attempt.failed(
            PROBE, network, ErrorReason.NOT_PERMITTED, f"{too_big} too large to sweep"
        )
    lookup = run_remote(vantage_host, "ip -j addr show", 30.0)
    name = (
        listed_interface_holding(lookup.stdout, tuple(vantage_addresses))
        if lookup.exit_status == 0
        else None
    )
    if name is None:
        return Attempt.failed(
            PROBE, network, ErrorReason.UNREACHABLE,
            f"on {vantage_host}: no interface holds {list(vantage_addresses)}",
        )  # fmt: skip
    own = tuple(dict.fromkeys([*vantage_addresses, *addresses_of(lookup.stdout, name)]))
    interface = LocalInterface(name, 0, None, True, own)
    sweeper = _RemoteSweeper(network, interface, sink, _RemoteRun(vantage_host, run_remote))
    scoped = _ScopedSweeper(sweeper, check_target)
    try:
        result = _sweep(
            scoped,
            prefixes,
            own=own,
            known_ipv6=known_ipv6,
            low_ipv6_hosts=low_ipv6_hosts,
            timeout=timeout,
        )
    except _SweepError as exc:
        return Attempt.failed(PROBE, network, exc.reason, f"on {vantage_host}: {exc}", exc.evidence)
    return Attempt.ok(PROBE, network, result, sweeper.evidence)


def _out_of_scope(targets: Sequence[str], check_target: CheckTarget) -> str | None:
    try:
        for target in targets:
            check_target(target)
    except Exception as exc:
        return str(exc)
    return None


class _ScopedSweeper(_Sweeper):
    """A sweeper that puts every target through the scope guard before its run (the IPv6
    candidates are made here, after the prefixes were checked)."""

    def __init__(self, inner: _Sweeper, check_target: CheckTarget) -> None:
        super().__init__(inner.network, inner.interface, inner.sink, inner.nmap_name)
        self.inner = inner
        self.check_target = check_target
        self.evidence = inner.evidence

    def store(self, run: ToolRun, media_type: str, content: bytes | None = None) -> None:
        self.inner.store(run, media_type, content)

    def nmap_sweep(self, family: int, targets: list[str], timeout: float) -> list[ParsedHost]:
        refused = _out_of_scope(targets, self.check_target)
        if refused is not None:
            raise _SweepError(ErrorReason.OUT_OF_SCOPE, refused, self.evidence)
        return self.inner.nmap_sweep(family, targets, timeout)

    def neighbours(self, timeout: float) -> list[Neighbour]:
        return self.inner.neighbours(timeout)


def discover_inventory_network(
    inventory: Inventory, network: str, *, sink: EvidenceSink, check_target: CheckTarget
) -> Attempt[DiscoveryResult]:
    """``discover`` for a network of the inventory, from the auditor address it declares
    there, soliciting the IPv6 addresses the inventory gives its hosts on it."""
    definition = inventory.networks[network]
    if definition.auditor is None:
        return Attempt.failed(
            PROBE, network, ErrorReason.UNREACHABLE, "the inventory gives no auditor address here"
        )
    own = [str(a) for a in (definition.auditor.ipv4, definition.auditor.ipv6) if a is not None]
    known = [
        str(a)
        for host in inventory.hosts.values()
        for a in host.addresses.get(network, [])
        if a.version == 6
    ]
    return discover(
        network=network,
        prefixes=[str(p) for p in definition.prefixes],
        auditor_addresses=own,
        sink=sink,
        check_target=check_target,
        known_ipv6=known,
    )


__all__ = [
    "DiscoveryResult",
    "LiveHost",
    "Neighbour",
    "discover",
    "discover_from_remote",
    "discover_inventory_network",
    "ipv6_candidates",
    "parse_neighbours",
]
