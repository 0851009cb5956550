"""Port scans with nmap, from this machine (LOCAL) or from an SSH vantage host (REMOTE).

What it sends: TCP SYN probes to every port (``-sS -p-``) and UDP probes to a short list of
common ports (``-sU``), without host discovery (``-Pn``) or DNS (``-n``), to the given target
addresses only, each checked against the authorized scope before nmap starts.

Why the runs are ours and not ``PortScanner.scan``: python-nmap's ``scan`` throws away the
partial XML, the stderr and the exit status when nmap is killed or fails, and does not reap a
killed process. We need all three (a killed scan is a TIMEOUT attempt whose partial output is
evidence), so nmap is run by ``netlocal.run_tool`` (or ``run_remote``) and only the parsing is
python-nmap's ``analyse_nmap_xml_scan``, supplemented where it is silent (a host that reached
``--host-timeout``, ``extraports`` counts).
"""

from __future__ import annotations

import shlex
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

import nmap
from netaddr import AddrFormatError, IPAddress

from auditor.domain.attempts import Attempt, ErrorReason
from auditor.domain.errors import AuditorError
from auditor.domain.protocols import EvidenceSink
from probes.netlocal import (
    CheckTarget,
    RunRemote,
    ToolMissingError,
    interface_holding,
    ip_version,
    now,
    require_tool,
    run_tool,
)
from probes.parsers.errors import ParseError

PROBE = "network-scan"
NMAP_XML = "application/xml"

#: UDP ports worth a probe on these networks: name services, time, management, the tunnels.
DEFAULT_UDP_PORTS: tuple[int, ...] = (
    53, 67, 69, 111, 123, 137, 161, 500, 514, 1194, 1900, 4500, 5353, 51820,
)  # fmt: skip

Proto = Literal["tcp", "udp"]


class Vantage(StrEnum):
    LOCAL = "local"  #: this machine, from its own address on the target's network
    REMOTE = "remote"  #: an SSH host (an outside vantage point such as inet-canary)


class PortState(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    FILTERED = "filtered"
    OPEN_FILTERED = "open|filtered"
    CLOSED_FILTERED = "closed|filtered"
    UNFILTERED = "unfiltered"


@dataclass(frozen=True)
class PortResult:
    proto: Proto
    port: int
    state: PortState
    service: str  #: nmap's name for the port from its services table ("ssh", "domain")
    reason: str  #: why nmap decided: "syn-ack", "reset", "udp-response", "no-response", ...


@dataclass(frozen=True)
class OtherPorts:
    """Ports nmap folded into one line (``<extraports>``): all in the same state."""

    proto: Proto
    state: PortState
    count: int


@dataclass(frozen=True)
class HostScan:
    address: str
    vantage: Vantage
    vantage_host: str | None  #: the SSH host for REMOTE; None for this machine
    source: str | None  #: this machine's address nmap sent from (LOCAL)
    status: str  #: nmap's host state ("up" with -Pn unless it timed out)
    protocols: tuple[Proto, ...]  #: what was scanned
    ports: tuple[PortResult, ...]  #: ports nmap listed one by one
    other_ports: tuple[OtherPorts, ...] = ()

    def open_ports(self, proto: Proto) -> list[int]:
        """Ports in state ``open`` only (``open|filtered`` is not a proof of a listener)."""
        return sorted(p.port for p in self.ports if p.proto == proto and p.state is PortState.OPEN)

    def state_of(self, proto: Proto, port: int) -> PortState | None:
        for result in self.ports:
            if result.proto == proto and result.port == port:
                return result.state
        return None


@dataclass(frozen=True)
class ScanProfile:
    """Bounds and timing. The defaults suit a LAN segment with a handful of hosts."""

    tcp_ports: str = "1-65535"
    udp_ports: tuple[int, ...] = DEFAULT_UDP_PORTS
    timing: int = 4  #: -T4: LAN-appropriate timeouts
    max_retries: int = 2  #: TCP: a LAN drops little, and filtered ports cost every retry
    #: UDP: closed ports are only seen through ICMP unreachables, which Linux rate-limits
    #: (about one a second per peer after a burst of six): too few retries misreports them as
    #: open|filtered.
    udp_max_retries: int = 6
    #: TCP only: keeps a fully filtered host from stretching an all-port scan to many minutes.
    #: Not for UDP, where Linux rate-limits ICMP unreachables and a forced rate would turn
    #: closed ports into open|filtered.
    tcp_min_rate: int = 1000
    host_timeout: float = 600.0  #: nmap's own per-host bound (--host-timeout)
    process_timeout: float = 900.0  #: our hard bound on the whole nmap process


class NmapParseError(ParseError, ValueError):
    """nmap's output is not a complete nmap XML document: a parser's ParseError like the
    others (tool "nmap")."""

    def __init__(self, message: str) -> None:
        super().__init__("nmap", None, message)


# -- parsing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedHost:
    address: str
    status: str
    timed_out: bool
    ports: tuple[PortResult, ...]
    other_ports: tuple[OtherPorts, ...]
    status_reason: str = ""  #: "arp-response", "nd-response", "localhost-response", ...
    mac: str | None = None  #: lower case; only when nmap saw the host on the local link


@dataclass(frozen=True)
class ParsedScan:
    nmap_version: str | None
    args: str | None
    exit: str  #: "success" or "error" (runstats/finished/@exit)
    error_message: str
    hosts: dict[str, ParsedHost] = field(default_factory=dict)  #: by normalized address


def normalize_address(address: str) -> str:
    return str(IPAddress(address))


def _xml_analyser() -> Any:
    # PortScanner() runs ``nmap -V`` in its constructor; parsing recorded or remote output
    # must not need a local nmap, and analyse_nmap_xml_scan uses no state the constructor sets
    # beyond the attributes assigned here.
    analyser = nmap.PortScanner.__new__(nmap.PortScanner)
    analyser._nmap_last_output = ""
    analyser._scan_result = {}
    return analyser


def parse_nmap_xml(xml: bytes) -> ParsedScan:
    """Parse one nmap ``-oX`` document; NmapParseError when it is not complete and valid."""
    try:
        root = ET.fromstring(xml)
    except (ET.ParseError, LookupError, ValueError) as exc:
        # LookupError: a garbled encoding declaration (<?xml ... encoding="TF-8"?>).
        raise NmapParseError(f"not XML (truncated or garbage): {exc}") from exc
    finished = root.find("runstats/finished")
    if root.tag != "nmaprun" or finished is None or root.find("runstats/hosts") is None:
        # A killed nmap leaves no runstats; nothing after the last host can be trusted.
        raise NmapParseError("not a complete nmap run (no <runstats>)")
    try:
        table = _xml_analyser().analyse_nmap_xml_scan(nmap_xml_output=xml)
    except Exception as exc:  # python-nmap raises many kinds on odd input
        raise NmapParseError(f"python-nmap could not read it: {exc!r}") from exc
    hosts = {}
    for element in root.findall("host"):
        try:
            parsed = _parse_host(element, table.get("scan", {}))
        except (ValueError, AddrFormatError) as exc:
            # A garbled address or port attribute: the document is not a run we can trust.
            raise NmapParseError(f"a <host> element nmap could not have written: {exc}") from exc
        hosts[parsed.address] = parsed
    return ParsedScan(
        nmap_version=root.get("version"),
        args=root.get("args"),
        exit=finished.get("exit", "success"),
        error_message=finished.get("errormsg", ""),
        hosts=hosts,
    )


def _host_key(element: ET.Element) -> tuple[str, str]:
    """(the key python-nmap files the host under, its IP address)."""
    addresses = {a.get("addrtype", ""): a.get("addr", "") for a in element.findall("address")}
    ip = addresses.get("ipv4") or addresses.get("ipv6") or ""
    if not ip:
        raise NmapParseError("a <host> without an IP address")
    first = element.find("address")
    key = addresses.get("ipv4") or (first.get("addr", "") if first is not None else "") or ""
    return key, ip


def _parse_host(element: ET.Element, table: dict[str, Any]) -> ParsedHost:
    key, ip = _host_key(element)
    entry = table.get(key, {})
    ports: list[PortResult] = []
    for proto in ("tcp", "udp"):
        for port, info in sorted(entry.get(proto, {}).items()):
            ports.append(_port_result(proto, int(port), info))
    status = element.find("status")
    macs = [a.get("addr", "") for a in element.findall("address") if a.get("addrtype") == "mac"]
    return ParsedHost(
        address=normalize_address(ip),
        status=status.get("state", "unknown") if status is not None else "unknown",
        timed_out=element.get("timedout") == "true",
        ports=tuple(ports),
        other_ports=tuple(_other_ports(element)),
        status_reason=status.get("reason", "") if status is not None else "",
        mac=macs[0].lower() if macs and macs[0] else None,
    )


def _port_result(proto: str, port: int, info: dict[str, Any]) -> PortResult:
    try:
        state = PortState(str(info.get("state")))
    except ValueError as exc:
        raise NmapParseError(f"{proto}/{port}: unknown state {info.get('state')!r}") from exc
    return PortResult(
        proto="tcp" if proto == "tcp" else "udp",
        port=port,
        state=state,
        service=str(info.get("name") or ""),
        reason=str(info.get("reason") or ""),
    )


def _other_ports(element: ET.Element) -> list[OtherPorts]:
    folded = []
    for extra in element.findall("ports/extraports"):
        reasons = extra.findall("extrareasons")
        proto = reasons[0].get("proto", "tcp") if reasons else "tcp"
        try:
            state = PortState(extra.get("state", ""))
        except ValueError as exc:
            raise NmapParseError(f"extraports: unknown state {extra.get('state')!r}") from exc
        folded.append(
            OtherPorts("udp" if proto == "udp" else "tcp", state, int(extra.get("count", "0")))
        )
    return folded


# -- building and running nmap ------------------------------------------------------------


def nmap_arguments(
    proto: Proto, family: int, profile: ScanProfile, interface: str | None
) -> list[str]:
    """nmap options for one run (one protocol, one address family), XML to stdout."""
    retries = profile.max_retries if proto == "tcp" else profile.udp_max_retries
    common = [
        "-Pn",
        "-n",
        "--reason",
        f"-T{profile.timing}",
        "--max-retries",
        str(retries),
        "--host-timeout",
        f"{int(profile.host_timeout)}s",
        "-oX",
        "-",
    ]
    if proto == "tcp":
        specific = ["-sS", "-p", profile.tcp_ports, "--min-rate", str(profile.tcp_min_rate)]
    else:
        specific = ["-sU", "-p", ",".join(str(p) for p in profile.udp_ports)]
    family_opts = ["-6"] if family == 6 else []
    interface_opts = ["-e", interface] if interface else []
    return [*specific, *family_opts, *interface_opts, *common]


def presence_arguments(family: int, interface: str | None) -> list[str]:
    """nmap options for a host-discovery-only run, made after a scan to check that its
    targets were still there: ARP / neighbour solicitation toward a target on the scanner's
    own link; toward a routed one, nmap's default echo, TCP SYN 443, ACK 80 and timestamp
    probes (which a compliant host may well drop: see ``_absent_after_scan``)."""
    family_opts = ["-6"] if family == 6 else []
    interface_opts = ["-e", interface] if interface else []
    return ["-sn", *family_opts, *interface_opts, "-n", "--reason", "-oX", "-"]


@dataclass(frozen=True)
class RawRun:
    """One nmap run as it happened, wherever it ran."""

    command: str
    host: str | None  #: the SSH host, None for this machine
    exit_status: int | None
    stdout: bytes
    stderr: bytes
    timed_out: bool
    started: datetime
    finished: datetime
    stopped: str | None = None  #: why it was stopped early (its vantage point went away)


class RunError(AuditorError):
    def __init__(self, reason: ErrorReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


#: Runs nmap with these options on these targets; raises RunError when it cannot start.
Runner = Callable[[list[str], list[str], ScanProfile], RawRun]


def vantage_lost(interface: str, source: str) -> str | None:
    """Why this machine can no longer scan from ``source`` on ``interface``, or None.

    Seen on the lab: with the interface gone down mid-scan, nmap waits on its dead capture
    until --host-timeout (600 s) instead of failing."""
    holder = interface_holding(source)
    if holder is None:
        return f"{source} is no longer on any interface of this machine (vantage point lost)"
    if holder.name != interface or not holder.up:
        return f"{interface} holding {source} is down (vantage point lost)"
    return None


def local_runner(nmap_name: str, interface: str, source: str | None = None) -> Runner:
    def run(options: list[str], targets: list[str], profile: ScanProfile) -> RawRun:
        try:
            path = require_tool(nmap_name)
        except ToolMissingError as exc:
            raise RunError(ErrorReason.TOOL_MISSING, str(exc)) from exc
        watch = (lambda: vantage_lost(interface, source)) if source is not None else None
        result = run_tool([path, *options, *targets], profile.process_timeout, watch=watch)
        return RawRun(
            result.command,
            None,
            result.exit_status,
            result.stdout,
            result.stderr,
            result.timed_out,
            result.started,
            result.finished,
            result.stopped,
        )

    return run


def remote_runner(host: str, run_remote: RunRemote, nmap_command: str) -> Runner:
    def run(options: list[str], targets: list[str], profile: ScanProfile) -> RawRun:
        command = f"{nmap_command} {shlex.join([*options, *targets])}"
        started = now()
        result = run_remote(host, command, profile.process_timeout)
        return RawRun(
            command,
            host,
            result.exit_status,
            result.stdout,
            result.stderr,
            result.timed_out,
            started,
            now(),
        )

    return run


def _failure_of(run: RawRun) -> tuple[ErrorReason, str] | None:
    """Why a run gave no usable result, judged before looking at its XML."""
    stderr = run.stderr.decode(errors="replace").strip()
    if run.stopped is not None or run.timed_out:
        # Killed by us: at its time bound, or because its vantage point went away.
        return (
            (ErrorReason.UNREACHABLE, f"nmap stopped: {run.stopped}")
            if run.stopped is not None
            else (ErrorReason.TIMEOUT, "nmap exceeded its time bound and was killed")
        )
    if run.exit_status is None:
        return ErrorReason.TIMEOUT, "nmap did not finish (session lost or killed)"
    if run.exit_status < 0:
        return ErrorReason.TIMEOUT, f"nmap was killed by signal {-run.exit_status}"
    if run.host is not None and (
        run.exit_status == 127 or "command not found" in stderr or "No such file" in stderr
    ):
        return ErrorReason.TOOL_MISSING, f"nmap missing on {run.host}: {stderr[:300]}"
    if run.host is not None and "a password is required" in stderr:
        return ErrorReason.NOT_PERMITTED, f"sudo refused nmap on {run.host}: {stderr[:300]}"
    return None


def _store(run: RawRun, sink: EvidenceSink, version: str | None) -> list[str]:
    refs = [
        sink.add(
            run.stdout,
            probe=PROBE,
            command=run.command,
            host=run.host,
            started=run.started,
            finished=run.finished,
            tool_version=version,
            media_type=NMAP_XML,
            exit_status=run.exit_status,
        )
    ]
    if run.stderr.strip():
        refs.append(
            sink.add(
                run.stderr,
                probe=PROBE,
                command=f"{run.command} (stderr)",
                host=run.host,
                started=run.started,
                finished=run.finished,
                tool_version=version,
                exit_status=run.exit_status,
            )
        )
    return refs


def _version_hint(xml: bytes) -> str | None:
    marker = b'version="'
    start = xml.find(marker, xml.find(b"<nmaprun"))
    if start < 0:
        return None
    start += len(marker)
    end = xml.find(b'"', start)
    return xml[start:end].decode(errors="replace") if 0 < end - start < 20 else None


@dataclass
class _Outcome:
    """What one run says about each of its targets."""

    evidence: list[str]
    hosts: dict[str, ParsedHost] = field(default_factory=dict)
    error: tuple[ErrorReason, str] | None = None


def _run_once(
    runner: Runner,
    options: list[str],
    *,
    targets: list[str],
    profile: ScanProfile,
    sink: EvidenceSink,
) -> _Outcome:
    try:
        run = runner(options, targets, profile)
    except RunError as exc:
        return _Outcome([], error=(exc.reason, str(exc)))
    evidence = _store(run, sink, _version_hint(run.stdout))
    failure = _failure_of(run)
    if failure is not None:
        return _Outcome(evidence, error=failure)
    try:
        parsed = parse_nmap_xml(run.stdout)
    except NmapParseError as exc:
        if run.exit_status != 0:  # nmap gave up (its reason is on stderr), the XML with it
            stderr = run.stderr.decode(errors="replace").strip()[:300]
            message = f"nmap exited {run.exit_status}: {stderr}"
            return _Outcome(evidence, error=(ErrorReason.COMMAND_FAILED, message))
        return _Outcome(evidence, error=(ErrorReason.PARSE_ERROR, str(exc)))
    if parsed.exit != "success" or run.exit_status != 0:
        message = parsed.error_message or run.stderr.decode(errors="replace")[:300]
        return _Outcome(evidence, error=(ErrorReason.COMMAND_FAILED, f"nmap failed: {message}"))
    return _Outcome(evidence, hosts=parsed.hosts)


def _protocols(profile: ScanProfile) -> list[Proto]:
    return ["tcp", "udp"] if profile.udp_ports else ["tcp"]


@dataclass(frozen=True)
class _Where:
    vantage: Vantage
    vantage_host: str | None
    source: str | None


@dataclass(frozen=True)
class _Presence:
    """The presence check's run, and whether the scanner shares a link with the targets."""

    outcome: _Outcome
    on_link: bool


def _target_attempt(
    target: str,
    outcomes: list[tuple[Proto, _Outcome]],
    where: _Where,
    presence: _Presence | None = None,
) -> Attempt[HostScan]:
    """Merge the runs of all protocols for one target: any failure fails the target, since a
    TCP-only answer would silently hide what UDP had to say. The target must also be shown
    present after the scan (``presence``): a host that left mid-scan shows every remaining
    port as filtered, which must not read as "nothing open"."""
    key = normalize_address(target)
    evidence = [ref for _, outcome in outcomes for ref in outcome.evidence]
    ports: list[PortResult] = []
    others: list[OtherPorts] = []
    status = "unknown"
    for proto, outcome in outcomes:
        if outcome.error is not None:
            reason, message = outcome.error
            return Attempt.failed(PROBE, target, reason, f"{proto} scan: {message}", evidence)
        host = outcome.hosts.get(key)
        if host is None:
            # A complete run that lists no such host: nmap found it down (on its own link:
            # no ARP / neighbour answer), so none of its ports was scanned.
            message = f"{proto} scan: nmap found {target} down, nothing was scanned"
            return Attempt.failed(PROBE, target, ErrorReason.UNREACHABLE, message, evidence)
        if host.timed_out:
            return Attempt.failed(
                PROBE, target, ErrorReason.TIMEOUT, f"{proto} scan: host timeout", evidence
            )
        ports += host.ports
        others += host.other_ports
        status = host.status
    if presence is not None:
        evidence += presence.outcome.evidence
        gone = _absent_after_scan(target, presence, where.vantage_host)
        if gone is not None:
            reason, message = gone
            return Attempt.failed(PROBE, target, reason, message, evidence)
        if not _answered(target, presence, ports):
            status = UNCONFIRMED
    scan = HostScan(
        address=target,
        vantage=where.vantage,
        vantage_host=where.vantage_host,
        source=where.source,
        status=status,
        protocols=tuple(proto for proto, _ in outcomes),
        ports=tuple(ports),
        other_ports=tuple(others),
    )
    return Attempt.ok(PROBE, target, scan, evidence)


#: nmap's reasons for a port state that mean the target itself answered the probe.
_TARGET_ANSWERS = frozenset({"syn-ack", "reset", "udp-response", "port-unreach"})

#: HostScan.status of a routed target that answered neither the scan nor the presence check:
#: absent, or present and dropping everything; from that vantage point the same (no port
#: answers), so the scan stands, marked.
UNCONFIRMED = "unconfirmed"


def _absent_after_scan(
    target: str, presence: _Presence, vantage_host: str | None
) -> tuple[ErrorReason, str] | None:
    """Why ``target`` must be taken as absent after the scan, or None.

    On the scanner's own link the answer is definite: every host answers ARP / neighbour
    solicitation whatever its firewall, so silence there means it is gone. Toward a routed
    target (a vantage host scanning through routers) nothing is owed: a compliant host drops
    nmap's echo and TCP probes exactly as an absent one would, so silence is never read as
    absence there (docs/network-probes.md, "Presence")."""
    if presence.outcome.error is not None:
        reason, message = presence.outcome.error
        return reason, f"presence check after the scan: {message}"
    if not presence.on_link or _seen_up(target, presence):
        return None
    where = f" from {vantage_host}" if vantage_host else ""
    return (
        ErrorReason.UNREACHABLE,
        f"{target} no longer answered ARP / neighbour discovery{where} after the scan: it "
        "left the network while being scanned, so its ports' silence proves nothing",
    )


def _seen_up(target: str, presence: _Presence) -> bool:
    host = presence.outcome.hosts.get(normalize_address(target))
    return host is not None and host.status == "up"


def _answered(target: str, presence: _Presence, ports: Sequence[PortResult]) -> bool:
    """Whether the target itself answered anything: the presence check, or a scanned port."""
    return _seen_up(target, presence) or any(p.reason in _TARGET_ANSWERS for p in ports)


def _scan(
    targets: Sequence[str],
    runner_for: Callable[[int], tuple[Runner, str | None, str | None] | tuple[ErrorReason, str]],
    *,
    vantage: Vantage,
    vantage_host: str | None,
    profile: ScanProfile,
    sink: EvidenceSink,
    check_target: CheckTarget,
    on_link: bool = True,
) -> list[Attempt[HostScan]]:
    results: dict[str, Attempt[HostScan]] = {}
    allowed: dict[int, list[str]] = {4: [], 6: []}
    for target in targets:
        try:
            check_target(target)
            allowed[ip_version(target)].append(target)
        except Exception as exc:
            results[target] = Attempt.failed(PROBE, target, ErrorReason.OUT_OF_SCOPE, str(exc))
    for family, family_targets in allowed.items():
        if not family_targets:
            continue
        how = runner_for(family)
        if isinstance(how[0], ErrorReason):
            reason, message = how
            for target in family_targets:
                results[target] = Attempt.failed(PROBE, target, reason, str(message))
            continue
        runner, interface, source = how
        outcomes = _run_protocols(
            runner, interface, family, targets=family_targets, profile=profile, sink=sink
        )
        presence = None
        if any(o.error is None for _, o in outcomes):
            # On its own link nmap saw each target answer ARP / ND before scanning it; asking
            # again afterwards closes the window of a host leaving mid-scan.
            options = presence_arguments(family, interface)
            checked = _run_once(runner, options, targets=family_targets, profile=profile, sink=sink)
            presence = _Presence(checked, on_link=on_link)
        where = _Where(vantage, vantage_host, source)
        for target in family_targets:
            results[target] = _target_attempt(target, outcomes, where, presence)
    return [results[target] for target in targets]


def _run_protocols(
    runner: Runner,
    interface: str | None,
    family: int,
    *,
    targets: list[str],
    profile: ScanProfile,
    sink: EvidenceSink,
) -> list[tuple[Proto, _Outcome]]:
    """The TCP and the UDP run of one family at the same time: the UDP run's pace is set by
    ICMP unreachables (rate-limited per peer), the TCP run's by ``--min-rate``; neither
    waits on the other's packets, so the slower run alone sets the time, not their sum."""
    protocols = _protocols(profile)

    def run(proto: Proto) -> _Outcome:
        options = nmap_arguments(proto, family, profile, interface)
        return _run_once(runner, options, targets=targets, profile=profile, sink=sink)

    with ThreadPoolExecutor(max_workers=len(protocols)) as pool:
        return list(zip(protocols, pool.map(run, protocols), strict=True))


def scan_from_here(
    targets: Sequence[str],
    *,
    source_addresses: Sequence[str],
    sink: EvidenceSink,
    check_target: CheckTarget,
    profile: ScanProfile | None = None,
    nmap_name: str = "nmap",
) -> list[Attempt[HostScan]]:
    """Scan ``targets`` from this machine, out of the interface holding its own address of
    the same family among ``source_addresses`` (the auditor's addresses on that network).

    Returns one attempt per target, in order: a HostScan, or an error (OUT_OF_SCOPE,
    TOOL_MISSING, TIMEOUT, PARSE_ERROR, COMMAND_FAILED, UNREACHABLE when this machine holds
    no address of that family there). Every nmap output is stored first.
    """

    def runner_for(family: int) -> tuple[Runner, str | None, str | None] | tuple[ErrorReason, str]:
        sources = [a for a in source_addresses if ip_version(a) == family]
        if not sources:
            return ErrorReason.UNREACHABLE, f"no IPv{family} address of this machine given"
        interface = interface_holding(sources[0])
        if interface is None:
            return ErrorReason.UNREACHABLE, f"no local interface holds {sources[0]}"
        return local_runner(nmap_name, interface.name, sources[0]), interface.name, sources[0]

    return _scan(
        targets,
        runner_for,
        vantage=Vantage.LOCAL,
        vantage_host=None,
        profile=profile or ScanProfile(),
        sink=sink,
        check_target=check_target,
    )


def scan_from_remote(
    targets: Sequence[str],
    *,
    vantage_host: str,
    run_remote: RunRemote,
    sink: EvidenceSink,
    check_target: CheckTarget,
    profile: ScanProfile | None = None,
    nmap_command: str = "sudo -n /usr/bin/nmap",
    on_link: bool = True,
) -> list[Attempt[HostScan]]:
    """Scan ``targets`` from the SSH host ``vantage_host`` (``nmap ... -oX -`` run there).

    Same result as ``scan_from_here``; TOOL_MISSING / NOT_PERMITTED come from the remote side.
    ``on_link``: the vantage host shares a link with the targets, so a target that stops
    answering ARP / ND is gone; False for targets behind routers, whose silence after the
    scan is not taken for absence (their HostScan's status is then ``UNCONFIRMED`` unless
    they answered something).
    """

    def runner_for(family: int) -> tuple[Runner, str | None, str | None]:
        return remote_runner(vantage_host, run_remote, nmap_command), None, None

    return _scan(
        targets,
        runner_for,
        vantage=Vantage.REMOTE,
        vantage_host=vantage_host,
        profile=profile or ScanProfile(),
        sink=sink,
        check_target=check_target,
        on_link=on_link,
    )


__all__ = [
    "DEFAULT_UDP_PORTS",
    "UNCONFIRMED",
    "HostScan",
    "NmapParseError",
    "OtherPorts",
    "ParsedScan",
    "PortResult",
    "PortState",
    "ScanProfile",
    "Vantage",
    "nmap_arguments",
    "parse_nmap_xml",
    "presence_arguments",
    "scan_from_here",
    "scan_from_remote",
]
