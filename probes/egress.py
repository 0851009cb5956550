"""Egress test: does a new connection started by a host leave toward an external network?

For one host (receiving or processing) and the external networks it might touch:
1. every target passes the scope check (refused ones are reported, never tried);
2. a capture starts on this machine's interface on each external network (listening before
   anything is sent);
3. over ``run_remote`` the host tries new connections to every target: TCP to several ports
   (``nc -z``), UDP (``nc -u -z``), ICMP echo (``ping``), IPv4 and IPv6. Targets: this
   machine's own addresses on each external network, the inventory's vantage (canary) hosts
   there, and addresses inside the scope but outside every known network (which only a
   default route would carry);
4. the captures stop after a short linger; each attempt is reported with the command's own
   outcome AND, per external network, whether a packet of it was seen: matched by its
   signature (protocol, destination, port, SYN or echo request, within the attempt's time
   window) whatever its source, so that a NAT'd attempt counts, with a flag telling whether
   the source was one of the host's own addresses.

The summary is LEFT when any attempt was seen, NOTHING_LEFT only when every capture ran and
every attempt was really executed and none was seen, INCOMPLETE otherwise with the reasons.
Pcaps and the transcript of every command are stored as evidence. Probes do not judge: the
controls read this result.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal, Protocol

from netaddr import IPAddress, IPSet
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.packet import Packet

from auditor.domain.attempts import Attempt
from auditor.domain.inventory import Inventory, Role, Zone
from auditor.domain.protocols import EvidenceSink
from probes.capture import CaptureResult, CaptureSpec, running_capture
from probes.netlocal import CheckTarget, RunRemote, now, same_address

PROBE = "egress"
Proto = Literal["tcp", "udp", "icmp"]


class Outcome(StrEnum):
    """What the command on the host said (the capture says what really left)."""

    CONNECTED = "connected"  #: TCP handshake done, or an echo reply came back
    NO_ERROR = "no-error"  #: UDP datagram sent and nothing refused it (UDP cannot say more)
    REFUSED = "refused"  #: TCP reset / ICMP port unreachable: something answered
    TIMEOUT = "timeout"  #: nothing came back within the command's wait
    BLOCKED_LOCALLY = "blocked-locally"  #: the host's own stack refused to send (EPERM)
    NO_ROUTE = "no-route"  #: network / host unreachable
    FAILED = "failed"  #: failed without saying why (nc -u -z: refused, or blocked locally)
    UNKNOWN = "unknown"  #: ran, but said something we do not recognise
    NOT_EXECUTED = "not-executed"  #: never ran: out of scope, not permitted, tool missing, ...


class Summary(StrEnum):
    LEFT = "left"
    NOTHING_LEFT = "nothing-left"
    INCOMPLETE = "incomplete"


@dataclass(frozen=True)
class Kind:
    proto: Proto
    port: int | None = None

    def __str__(self) -> str:
        return self.proto if self.port is None else f"{self.proto}/{self.port}"


DEFAULT_KINDS: tuple[Kind, ...] = (
    Kind("tcp", 22),
    Kind("tcp", 80),
    Kind("tcp", 443),
    Kind("tcp", 8080),
    Kind("udp", 53),
    Kind("udp", 123),
    Kind("icmp"),
)


@dataclass(frozen=True)
class Commands:
    """The commands run on the host: they must match the SSH module's allow-list."""

    tcp: str = "nc -v -z -n -w 2 {address} {port}"
    udp: str = "nc -v -u -z -n -w 1 {address} {port}"
    icmp: str = "sudo -n /usr/bin/ping -n -c 1 -W 1 {address}"
    timeout: float = 15.0  #: the bound given to run_remote for one command

    def for_kind(self, kind: Kind, address: str) -> str:
        template = {"tcp": self.tcp, "udp": self.udp, "icmp": self.icmp}[kind.proto]
        return template.format(address=address, port=kind.port)


class Watch(Protocol):
    """A running capture, this machine's (``probes.capture.Capture``) or a vantage host's
    (``probes.remotecapture.RemoteCapture``): ``result`` is its outcome once stopped."""

    result: Attempt[CaptureResult] | None


#: Starts a capture on an external network this machine has no address on, from a vantage
#: host standing there: (network, filter, time bound) -> the capture to enter, or None when
#: nobody can watch that network.
RemoteWatch = Callable[[str, str, float], AbstractContextManager[Watch] | None]


@dataclass(frozen=True)
class ExternalNetwork:
    name: str
    prefixes: tuple[str, ...]
    auditor_addresses: tuple[str, ...]  #: this machine's there: capture point and targets
    vantage_addresses: tuple[str, ...] = ()  #: canary hosts there: more targets


@dataclass(frozen=True)
class EgressPlan:
    host: str  #: the inventory name run_remote knows it by
    host_addresses: tuple[str, ...]  #: all of them, to tell its own packets from NAT'd ones
    networks: tuple[ExternalNetwork, ...]
    beyond: tuple[str, ...] = ()  #: in scope, outside every known network

    def targets(self) -> list[tuple[str, str | None]]:
        """(address, the external network it belongs to or None), without duplicates."""
        seen: dict[str, str | None] = {}
        for net in self.networks:
            for address in (*net.auditor_addresses, *net.vantage_addresses):
                seen.setdefault(str(IPAddress(address)), net.name)
        for address in self.beyond:
            seen.setdefault(str(IPAddress(address)), None)
        return list(seen.items())


@dataclass(frozen=True)
class Sighting:
    network: str
    packets: int
    from_host_address: bool  #: some packet's source was one of the host's own addresses
    sources: tuple[str, ...]


@dataclass(frozen=True)
class EgressAttempt:
    kind: Kind
    target: str
    target_network: str | None  #: None: the beyond-every-network address
    command: str
    outcome: Outcome
    detail: str  #: the command's message (or why it was not executed)
    exit_status: int | None
    started: datetime
    finished: datetime
    seen: tuple[Sighting, ...] = ()

    @property
    def executed(self) -> bool:
        return self.outcome is not Outcome.NOT_EXECUTED

    @property
    def left(self) -> bool:
        return bool(self.seen)


@dataclass(frozen=True)
class NetworkCapture:
    network: str
    ran: bool
    error: str  #: why it did not run ("" when it ran)
    pcap_ref: str | None
    packets: int
    kernel_dropped: int | None


@dataclass(frozen=True)
class EgressResult:
    host: str
    summary: Summary
    reasons: tuple[str, ...]  #: why INCOMPLETE (empty otherwise)
    captures: tuple[NetworkCapture, ...]
    attempts: tuple[EgressAttempt, ...] = field(repr=False)

    def seen_attempts(self) -> list[EgressAttempt]:
        return [a for a in self.attempts if a.left]


# -- classification of the command's own result --------------------------------------------

_NOT_EXECUTED_MARKS = (
    "command not found",
    "no such file",
    "a password is required",
    "not allowed",
    "not permitted by",
    "usage:",
)
_MARKS: tuple[tuple[str, Outcome], ...] = (
    ("operation not permitted", Outcome.BLOCKED_LOCALLY),
    ("connection refused", Outcome.REFUSED),
    ("port unreachable", Outcome.REFUSED),
    ("no route to host", Outcome.NO_ROUTE),
    ("network is unreachable", Outcome.NO_ROUTE),
    ("host unreachable", Outcome.NO_ROUTE),
    ("net unreachable", Outcome.NO_ROUTE),
    ("timed out", Outcome.TIMEOUT),
    ("in progress", Outcome.TIMEOUT),
)


#: Exit status 1 with nothing recognisable said: ping sent and got no reply; nc -u -z's send
#: failed, on an ICMP error or on the host's own filter (it does not say which); nc -z got no
#: connection within -w.
_EXIT_1: dict[str, Outcome] = {
    "icmp": Outcome.TIMEOUT,
    "udp": Outcome.FAILED,
    "tcp": Outcome.TIMEOUT,
}


def classify(kind: Kind, exit_status: int | None, timed_out: bool, output: str) -> Outcome:
    """The outcome a command reported, from its exit status and its messages."""
    text = output.lower()
    # Neither an exit status nor stopped at its bound: the command never ran (the SSH server
    # refused a channel) or its session was lost. A timeout would claim that the attempt was
    # made and blocked.
    never_ran = exit_status is None and not timed_out
    if never_ran or exit_status == 127 or any(mark in text for mark in _NOT_EXECUTED_MARKS):
        return Outcome.NOT_EXECUTED
    if timed_out or exit_status is None:
        return Outcome.TIMEOUT
    marked = next((outcome for mark, outcome in _MARKS if mark in text), None)
    if marked is not None:
        return marked
    if exit_status == 0:
        return Outcome.NO_ERROR if kind.proto == "udp" else Outcome.CONNECTED
    if exit_status == 1 and (kind.proto == "icmp" or not text.strip()):
        return _EXIT_1[kind.proto]
    return Outcome.UNKNOWN


# -- matching packets to attempts -------------------------------------------------------------


@dataclass(frozen=True)
class _Seen:
    time: float
    src: str
    dst: str
    proto: Proto
    dport: int | None


def _signature(packet: Packet) -> _Seen | None:
    """The new-connection signature of a packet, or None when it starts nothing."""
    for layer in (IP, IPv6):
        if layer not in packet:
            continue
        ip = packet[layer]
        src, dst, when = str(IPAddress(ip.src)), str(IPAddress(ip.dst)), float(packet.time)
        if TCP in packet:
            flags = int(packet[TCP].flags)
            if flags & 0x02 and not flags & 0x10:  # SYN without ACK: a new connection
                return _Seen(when, src, dst, "tcp", int(packet[TCP].dport))
            return None
        if UDP in packet:
            return _Seen(when, src, dst, "udp", int(packet[UDP].dport))
        if (ICMP in packet and int(packet[ICMP].type) == 8) or ICMPv6EchoRequest in packet:
            return _Seen(when, src, dst, "icmp", None)
    return None


def _sightings(
    attempt: EgressAttempt,
    captures: dict[str, list[_Seen]],
    host_addresses: Sequence[str],
    slack: float,
) -> tuple[Sighting, ...]:
    start = attempt.started.timestamp() - slack
    end = attempt.finished.timestamp() + slack
    found = []
    for network, seen in captures.items():
        matching = [
            s
            for s in seen
            if s.dst == attempt.target
            and s.proto == attempt.kind.proto
            and s.dport == attempt.kind.port
            and start <= s.time <= end
        ]
        if matching:
            sources = sorted({s.src for s in matching})
            own = any(same_address(s, h) for s in sources for h in host_addresses)
            found.append(Sighting(network, len(matching), own, tuple(sources)))
    return tuple(found)


# -- running ----------------------------------------------------------------------------------


def _run_attempt(
    plan: EgressPlan,
    kind: Kind,
    target: tuple[str, str | None],
    run_remote: RunRemote,
    commands: Commands,
) -> EgressAttempt:
    address, network = target
    command = commands.for_kind(kind, address)
    started = now()
    try:
        result = run_remote(plan.host, command, commands.timeout)
    except Exception as exc:  # a lost session is an attempt not made, not a crash
        return EgressAttempt(
            kind, address, network, command, Outcome.NOT_EXECUTED, repr(exc), None, started, now()
        )
    finished = now()
    output = (result.stdout + result.stderr).decode(errors="replace").strip()
    outcome = classify(kind, result.exit_status, result.timed_out, output)
    return EgressAttempt(
        kind,
        address,
        network,
        command,
        outcome,
        output[:300],
        result.exit_status,
        started,
        finished,
    )


def _refused(kind: Kind, target: tuple[str, str | None], why: str) -> EgressAttempt:
    stamp = now()
    return EgressAttempt(
        kind, target[0], target[1], "", Outcome.NOT_EXECUTED, why, None, stamp, stamp
    )


#: What starts a new connection (what ``_signature`` counts), in BPF: a TCP SYN without ACK,
#: a UDP datagram to a tried port, an ICMP / ICMPv6 echo request. libpcap cannot index the
#: TCP or ICMPv6 header of an IPv6 packet (``tcp[13]`` is IPv4 only), so those read the fixed
#: header's offsets: an attempt by nc or ping carries no extension header.
_TCP_SYN = "(ip and tcp[13] & 0x12 == 0x02) or (ip6 and ip6[6] == 6 and ip6[53] & 0x12 == 0x02)"
_ECHO_REQUEST = "(ip and icmp[0] == 8) or (ip6 and ip6[6] == 58 and ip6[40] == 128)"


def _capture_filter(targets: Sequence[str], kinds: Sequence[Kind]) -> str:
    """Only what could be an attempt: a new connection toward one of the targets. Nothing
    else reaches the pcap, so a busy link, or a port scan answered to this machine's
    addresses (they are targets too) while the egress test runs, neither fills the capture's
    packet bound nor loads it into kernel drops."""
    if not targets:
        return "ip or ip6"
    starts = [f"({_TCP_SYN})"] if any(k.proto == "tcp" for k in kinds) else []
    udp_ports = sorted({k.port for k in kinds if k.proto == "udp" and k.port is not None})
    starts += [f"(udp dst port {port})" for port in udp_ports]
    starts += [f"({_ECHO_REQUEST})"] if any(k.proto == "icmp" for k in kinds) else []
    destinations = " or ".join(f"dst host {t}" for t in targets)
    return f"({destinations}) and ({' or '.join(starts)})" if starts else destinations


def _transcript(attempts: Sequence[EgressAttempt]) -> bytes:
    rows = [
        {
            "command": a.command,
            "kind": str(a.kind),
            "target": a.target,
            "outcome": a.outcome.value,
            "exit_status": a.exit_status,
            "output": a.detail,
            "started": a.started.isoformat(),
            "finished": a.finished.isoformat(),
        }
        for a in attempts
    ]
    return json.dumps(rows, indent=1, ensure_ascii=False).encode()


def _network_capture(network: str, capture: Watch | None) -> NetworkCapture:
    if capture is None:
        return NetworkCapture(
            network, False, "this machine has no address there and no vantage host watches it",
            None, 0, None,
        )  # fmt: skip
    result = capture.result
    if result is None or not result.succeeded or result.value is None:
        error = result.error.message if result is not None and result.error else "not stopped"
        ref = result.evidence[0] if result is not None and result.evidence else None
        return NetworkCapture(network, False, error, ref, 0, None)
    value: CaptureResult = result.value
    return NetworkCapture(
        network, True, "", value.pcap_ref, len(value.packets), value.kernel_dropped
    )


def _summary(
    captures: Sequence[NetworkCapture], attempts: Sequence[EgressAttempt]
) -> tuple[Summary, tuple[str, ...]]:
    if any(a.left for a in attempts):
        return Summary.LEFT, ()
    reasons = [f"no capture on {c.network}: {c.error}" for c in captures if not c.ran]
    reasons += [
        f"{c.network}: the kernel dropped {c.kernel_dropped} packets"
        for c in captures
        if c.kernel_dropped
    ]
    reasons += [
        f"{a.kind} to {a.target} not executed: {a.detail}" for a in attempts if not a.executed
    ]
    if not captures:
        reasons.append("no external network to watch")
    if not attempts:
        reasons.append("no attempt was planned")
    return (Summary.INCOMPLETE, tuple(reasons)) if reasons else (Summary.NOTHING_LEFT, ())


def run_egress_test(
    plan: EgressPlan,
    *,
    run_remote: RunRemote,
    sink: EvidenceSink,
    check_target: CheckTarget,
    kinds: Sequence[Kind] = DEFAULT_KINDS,
    commands: Commands | None = None,
    parallel: int = 4,
    linger: float = 2.0,
    remote_watch: RemoteWatch | None = None,
) -> Attempt[EgressResult]:
    """Run the egress test of ``plan.host``; see the module docstring.

    ``run_remote`` is called from up to ``parallel`` threads at once (pass 1 if it is not
    thread-safe). An external network without an address of this machine is watched from
    a vantage host through ``remote_watch`` when it gives a capture. Always returns a completed attempt: what could not be done shows in the
    result's ``summary`` (INCOMPLETE) and ``reasons``, never as a silent "nothing seen".
    """
    commands = commands or Commands()
    allowed, attempts = _scope_filter(plan.targets(), kinds, check_target)
    work = [(kind, target) for target in allowed for kind in kinds]
    bound = commands.timeout * (len(work) / max(parallel, 1) + 1) + 60
    bpf = _capture_filter([t for t, _ in allowed], kinds)
    with ExitStack() as stack:
        captures = _start_captures(plan, bpf, bound, sink, stack, remote_watch=remote_watch)
        if any(c is not None and c.result is None for c in captures.values()):
            stack.enter_context(_Linger(linger))  # exits (sleeps) before the captures stop
            attempts += _run_all(plan, work, run_remote, commands, parallel)
        else:
            attempts += [_refused(k, t, "no capture could start: nobody watches") for k, t in work]
    return _finish(plan, captures, attempts, sink, linger)


class _Linger:
    """Keep the captures open a moment after the last attempt: late retransmissions and
    packets queued behind neighbour resolution still belong to it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        time.sleep(self.seconds)


def _start_captures(
    plan: EgressPlan,
    bpf: str,
    bound: float,
    sink: EvidenceSink,
    stack: ExitStack,
    *,
    remote_watch: RemoteWatch | None,
) -> dict[str, Watch | None]:
    """One capture per external network, each listening before this returns (or failed):
    this machine's where it has an address there, else a vantage host's if one stands there."""
    captures: dict[str, Watch | None] = {}
    for net in plan.networks:
        watching: AbstractContextManager[Watch] | None = None
        if net.auditor_addresses:
            spec = CaptureSpec(net.auditor_addresses[0], bpf, bound, 50_000, network=net.name)
            watching = running_capture(spec, sink)
        elif remote_watch is not None:
            watching = remote_watch(net.name, bpf, bound)
        captures[net.name] = stack.enter_context(watching) if watching is not None else None
    return captures


def _run_all(
    plan: EgressPlan,
    work: Sequence[tuple[Kind, tuple[str, str | None]]],
    run_remote: RunRemote,
    commands: Commands,
    parallel: int,
) -> list[EgressAttempt]:
    with ThreadPoolExecutor(max_workers=max(parallel, 1)) as pool:
        futures = [
            pool.submit(_run_attempt, plan, kind, target, run_remote, commands)
            for kind, target in work
        ]
        return [f.result() for f in futures]


def _scope_filter(
    targets: Sequence[tuple[str, str | None]], kinds: Sequence[Kind], check_target: CheckTarget
) -> tuple[list[tuple[str, str | None]], list[EgressAttempt]]:
    allowed, refused = [], []
    for target in targets:
        try:
            check_target(target[0])
        except Exception as exc:
            refused += [_refused(kind, target, f"out of scope: {exc}") for kind in kinds]
            continue
        allowed.append(target)
    return allowed, refused


def _finish(
    plan: EgressPlan,
    captures: dict[str, Watch | None],
    attempts: list[EgressAttempt],
    sink: EvidenceSink,
    linger: float,
) -> Attempt[EgressResult]:
    network_captures = [_network_capture(name, c) for name, c in captures.items()]
    seen = {
        name: [s for p in c.result.value.packets if (s := _signature(p)) is not None]
        for name, c in captures.items()
        if c is not None and c.result is not None and c.result.value is not None
    }
    matched = [
        _with_sightings(a, _sightings(a, seen, plan.host_addresses, linger)) for a in attempts
    ]
    summary, reasons = _summary(network_captures, matched)
    started = min((a.started for a in matched), default=now())
    transcript = sink.add(
        _transcript(matched),
        probe=PROBE,
        command=f"egress attempts from {plan.host}",
        host=plan.host,
        started=started,
        finished=now(),
        media_type="application/json",
    )
    evidence = [c.pcap_ref for c in network_captures if c.pcap_ref] + [transcript]
    result = EgressResult(plan.host, summary, reasons, tuple(network_captures), tuple(matched))
    return Attempt.ok(PROBE, plan.host, result, evidence)


def _with_sightings(attempt: EgressAttempt, seen: tuple[Sighting, ...]) -> EgressAttempt:
    return EgressAttempt(
        attempt.kind,
        attempt.target,
        attempt.target_network,
        attempt.command,
        attempt.outcome,
        attempt.detail,
        attempt.exit_status,
        attempt.started,
        attempt.finished,
        seen,
    )


# -- the plan from the inventory --------------------------------------------------------------


def beyond_targets(inventory: Inventory) -> tuple[str, ...]:
    """Per address family, one address inside the scope but outside every network and tunnel
    of the inventory: only a default (or otherwise unexpected) route carries a packet there."""
    known = IPSet([p for d in inventory.networks.values() for p in d.prefixes])
    known.update(IPSet([p for t in inventory.tunnels.values() for p in t.prefixes]))
    free = IPSet(inventory.scope.authorized) - known
    picked = []
    for version in (4, 6):
        cidrs = [c for c in free.iter_cidrs() if c.version == version and c.size >= 4]
        if cidrs:
            last = cidrs[-1]
            picked.append(str(IPAddress(last.last - 1, version)))
    return tuple(picked)


def plan_from_inventory(inventory: Inventory, host: str) -> EgressPlan:
    """The egress plan of ``host``: every external and office network of the inventory."""
    networks = []
    for name in inventory.networks_in(Zone.EXTERNAL, Zone.OFFICE):
        definition = inventory.networks[name]
        own = definition.auditor
        auditor = tuple(str(a) for a in (own.ipv4, own.ipv6) if a is not None) if own else ()
        vantage = tuple(
            str(a)
            for h in inventory.hosts.values()
            if Role.VANTAGE in h.roles
            for a in h.addresses.get(name, [])
        )
        prefixes = tuple(str(p) for p in definition.prefixes)
        networks.append(ExternalNetwork(name, prefixes, auditor, vantage))
    addresses = tuple(str(a) for a in inventory.hosts[host].all_addresses())
    return EgressPlan(host, addresses, tuple(networks), beyond_targets(inventory))


__all__ = [
    "DEFAULT_KINDS",
    "Commands",
    "EgressAttempt",
    "EgressPlan",
    "EgressResult",
    "ExternalNetwork",
    "Kind",
    "NetworkCapture",
    "Outcome",
    "RemoteWatch",
    "Sighting",
    "Summary",
    "Watch",
    "beyond_targets",
    "classify",
    "plan_from_inventory",
    "run_egress_test",
]
