"""Packet capture on a vantage host's interface (tcpdump there, the pcap streamed back over SSH).

The same surface as ``probes.capture.Capture`` (``start``, ``wait``, ``stop``, ``result``,
``target``) and the same result, so a caller uses either. What runs on the vantage host::

    ip -j addr show                                   (no sudo: which interface holds its
                                                       address on the network)
    sudo -n /usr/bin/timeout -s INT -k 5 N /usr/bin/tcpdump -i IFACE -n -U --immediate-mode
        -s SNAPLEN -c PACKETS -w - 'FILTER'

Guaranteed stop. tcpdump learns that its reader is gone only when it next writes, so on a
silent link (or a filter nothing matches) a capture whose SSH connection died would run for
ever; and the audit account cannot signal a root process itself. The host's own ``timeout``
(coreutils, run by sudo as root) sends INT to tcpdump after N seconds, and KILL 5 s later if
it still runs, whatever happens to the auditor or the link: N is the capture's time bound
plus the start-up allowance. Measured on the lab's inet-canary (Debian 12, sudo 1.9.13,
tcpdump 4.99.3): with the SSH connection dropped and no matching packet, tcpdump was gone
12.3 s after a 12 s bound. tcpdump's own ``-G``/``-W`` is no such bound: it checks the time
only when a packet arrives. A caller's ``stop`` before the bound sends INT through the SSH
"signal" request, which sudo relays (``probes.ssh.RunningCommand``): tcpdump flushed and
printed its counts 0.25 s later. The sudoers entry allows this one form only (regular
expressions, sudo >= 1.9.10; lab/sudoers/auditor).

The filter travels inside a shell command line on the vantage host, so it is checked word
by word here (``checked_filter``) and refused before anything is sent unless it is made of
the BPF words the audit uses.
"""

from __future__ import annotations

import ipaddress
import json
import re
import struct
import threading
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

# Imported for their effect: they bind Ethernet, IP and IPv6 to the pcap link types, without
# which scapy reads every frame as Raw (probes.capture relies on its callers for this).
import scapy.layers.inet
import scapy.layers.inet6
import scapy.layers.l2  # noqa: F401

from auditor.domain.attempts import Attempt, ErrorReason, ProbeError
from auditor.domain.errors import AuditorError
from auditor.domain.protocols import EvidenceSink
from probes.capture import (
    PCAP,
    PROBE,
    START_TIMEOUT,
    CaptureResult,
    StopCause,
    for_its_window,
    kernel_drops,
    read_pcap,
    started,
)
from probes.netlocal import RemoteResult, now
from probes.ssh import CommandEnd, CommandResult, RunningCommand, SshError

#: What ``timeout`` adds to the capture's time bound: tcpdump's start (opening the
#: interface, compiling the filter) happens inside it.
START_ALLOWANCE = 10
#: GNU timeout's exit status when it had to signal the command.
TIMEOUT_EXPIRED = 124
#: Bytes of pcap kept by default (the packet bound times the snap length can be far more).
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
#: An interface name that can be neither an option nor shell syntax.
SAFE_INTERFACE = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]{0,14}")
_FIXED_WORDS = frozenset(
    {"ip", "ip6", "and", "or", "not", "tcp", "udp", "icmp", "icmp6", "dst", "src"}
)
_TOKEN = re.compile(r"\(|\)|[^\s()]+")
#: The egress filter's byte comparisons (probes.egress: ``tcp[13] & 0x12 == 0x02``): a
#: header byte at a fixed offset, the two operators it uses, and small numbers.
_HEADER_BYTE = re.compile(r"(?:ip|ip6|tcp|udp|icmp|icmp6)\[[0-9]{1,3}\]")
_OPERATORS = frozenset({"&", "=="})
_NUMBER = re.compile(r"0x[0-9a-f]{1,2}|[0-9]{1,3}")
_MAX_FILTER = 8000


class UnsafeFilterError(AuditorError):
    """A capture filter with something other than the BPF words the audit uses."""


class RemoteStreams(Protocol):
    """Runs commands on inventory hosts over SSH (``auditor.audit.remote.SshRemote``)."""

    def __call__(self, host: str, command: str, timeout: float) -> RemoteResult: ...

    def stream(
        self, host: str, command: str, *, time_limit: float, max_output: int
    ) -> RunningCommand: ...


@dataclass(frozen=True)
class RemoteCaptureSpec:
    vantage_host: str  #: the inventory's name of the vantage host
    #: its own addresses on the network (the inventory's): the interface holding one is used
    vantage_addresses: tuple[str, ...]
    bpf: str = ""  #: checked by ``checked_filter``; empty: "ip or ip6"
    max_seconds: float = 30.0
    max_packets: int = 10_000
    snaplen: int = 65_535
    max_bytes: int = DEFAULT_MAX_BYTES  #: pcap bytes kept; reaching it stops the capture
    network: str | None = None  #: the inventory's name for it, for the record


def checked_filter(bpf: str) -> str:
    """``bpf`` with single spaces, if every word is one the audit's filters use: ip, ip6,
    and, or, not, parentheses, tcp, udp, icmp, icmp6, dst, src, ``host ADDRESS``, ``net
    PREFIX``, ``port N``, and the egress filter's byte comparisons (``tcp[13] & 0x12 ==
    0x02``). Raises UnsafeFilterError naming the first other word."""
    if len(bpf) > _MAX_FILTER:
        raise UnsafeFilterError(f"capture filter longer than {_MAX_FILTER} characters")
    if not bpf.strip():
        return "ip or ip6"
    if re.search(r"[^ a-z0-9.:/()\[\]&=]", bpf):
        bad = next(c for c in bpf if not re.fullmatch(r"[ a-z0-9.:/()\[\]&=]", c))
        raise UnsafeFilterError(f"capture filter refused: character {bad!r} in {bpf[:200]!r}")
    tokens = _TOKEN.findall(bpf)
    _check_words(tokens, bpf)
    _check_parentheses(tokens, bpf)
    return " ".join(tokens).replace("( ", "(").replace(" )", ")")


def _check_words(tokens: list[str], bpf: str) -> None:
    index = 0
    while index < len(tokens):
        word = tokens[index]
        if word in {"host", "net", "port"}:
            value = tokens[index + 1] if index + 1 < len(tokens) else ""
            _check_value(word, value, bpf)
            index += 2
            continue
        if not _is_plain_word(word):
            raise UnsafeFilterError(f"capture filter refused: word {word!r} in {bpf[:200]!r}")
        index += 1


def _is_plain_word(word: str) -> bool:
    return (
        word in _FIXED_WORDS
        or word in {"(", ")"}
        or word in _OPERATORS
        or bool(_HEADER_BYTE.fullmatch(word) or _NUMBER.fullmatch(word))
    )


def _check_value(keyword: str, value: str, bpf: str) -> None:
    try:
        if keyword == "host":
            ipaddress.ip_address(value)
        elif keyword == "net":
            ipaddress.ip_network(value, strict=True)
        elif not (value.isdigit() and 0 <= int(value) <= 65535 and len(value) <= 5):
            raise ValueError(value)
    except ValueError:
        raise UnsafeFilterError(
            f"capture filter refused: {keyword} {value!r} in {bpf[:200]!r}"
        ) from None


def _check_parentheses(tokens: list[str], bpf: str) -> None:
    depth = 0
    for token in tokens:
        depth += {"(": 1, ")": -1}.get(token, 0)
        if depth < 0:
            break
    if depth != 0:
        raise UnsafeFilterError(f"capture filter refused: unbalanced parentheses in {bpf!r}")


def listed_interface_holding(ip_addr_json: bytes, addresses: tuple[str, ...]) -> str | None:
    """The interface that ``ip -j addr show`` (the vantage host's: untrusted) lists with one
    of ``addresses``; None when none does, or the output is not what iproute2 writes, or the
    name could be read as an option or shell syntax."""
    wanted = set()
    for address in addresses:
        try:
            wanted.add(ipaddress.ip_address(address))
        except ValueError:
            continue
    try:
        interfaces = json.loads(ip_addr_json.decode("utf-8", errors="strict"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(interfaces, list):
        return None
    for interface in interfaces:
        name = _name_if_it_holds(interface, wanted)
        if name is not None:
            return name
    return None


def addresses_of(ip_addr_json: bytes, interface: str) -> list[str]:
    """Every address ``ip -j addr show`` lists on ``interface`` (those that parse)."""
    try:
        interfaces = json.loads(ip_addr_json.decode("utf-8", errors="strict"))
    except (UnicodeDecodeError, ValueError):
        return []
    found: list[str] = []
    for entry in interfaces if isinstance(interfaces, list) else []:
        if not isinstance(entry, dict) or entry.get("ifname") != interface:
            continue
        infos = entry.get("addr_info")
        for info in infos if isinstance(infos, list) else []:
            local = info.get("local") if isinstance(info, dict) else None
            try:
                found.append(str(ipaddress.ip_address(local)))  # type: ignore[arg-type]
            except ValueError:
                continue
    return found


def _name_if_it_holds(
    interface: object, wanted: set[ipaddress.IPv4Address | ipaddress.IPv6Address]
) -> str | None:
    if not isinstance(interface, dict):
        return None
    name = interface.get("ifname")
    infos = interface.get("addr_info")
    if not isinstance(name, str) or not isinstance(infos, list):
        return None
    for info in infos:
        local = info.get("local") if isinstance(info, dict) else None
        if not isinstance(local, str):
            continue
        try:
            held = ipaddress.ip_address(local)
        except ValueError:
            continue
        if held in wanted:
            return name if SAFE_INTERFACE.fullmatch(name) else None
    return None


def capture_command(spec: RemoteCaptureSpec, interface: str, bpf: str) -> str:
    """The command line run on the vantage host (``bpf`` already checked)."""
    bound = int(spec.max_seconds + 0.999) + START_ALLOWANCE
    return (
        f"sudo -n /usr/bin/timeout -s INT -k 5 {bound} /usr/bin/tcpdump -i {interface} -n -U "
        f"--immediate-mode -s {int(spec.snaplen)} -c {int(spec.max_packets)} -w - '{bpf}'"
    )


def complete_records(pcap: bytes) -> bytes:
    """``pcap`` cut after its last whole record: a capture stopped at the byte bound ends
    inside a packet, which a pcap reader refuses."""
    if len(pcap) < 24:
        return pcap
    magic = pcap[:4]
    order = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    offset = 24
    while offset + 16 <= len(pcap):
        (included,) = struct.unpack_from(order + "I", pcap, offset + 8)
        if offset + 16 + included > len(pcap):
            break
        offset += 16 + included
    return pcap[:offset]


class RemoteCapture:
    """One tcpdump capture on a vantage host. ``start``, then ``stop`` (or let a bound end it)."""

    def __init__(self, spec: RemoteCaptureSpec, remote: RemoteStreams, sink: EvidenceSink) -> None:
        self.spec = spec
        self.remote = remote
        self.sink = sink
        self.result: Attempt[CaptureResult] | None = None
        self._running: RunningCommand | None = None
        self._timer: threading.Timer | None = None
        self._time_was_up = False
        self._interface = ""
        self._bpf = ""
        self._started = now()

    @property
    def target(self) -> str:
        return self.spec.network or self.spec.vantage_host

    @property
    def _where(self) -> str:
        return f"on {self.spec.vantage_host}"

    def _fail(
        self, reason: ErrorReason, message: str, evidence: list[str] | None = None
    ) -> ProbeError:
        self.result = Attempt.failed(
            PROBE, self.target, reason, f"{self._where}: {message}", evidence
        )
        assert self.result.error is not None
        return self.result.error

    def start(self) -> ProbeError | None:
        """Start listening; None once tcpdump says it listens, else the error."""
        try:
            self._bpf = checked_filter(self.spec.bpf)
        except UnsafeFilterError as exc:
            return self._fail(ErrorReason.NOT_PERMITTED, f"nothing sent: {exc}")
        interface = self._find_interface()
        if isinstance(interface, ProbeError):
            return interface
        self._interface = interface
        command = capture_command(self.spec, interface, self._bpf)
        self._started = now()
        try:
            self._running = self.remote.stream(
                self.spec.vantage_host,
                command,
                time_limit=self.spec.max_seconds + START_ALLOWANCE + 10,
                max_output=self.spec.max_bytes,
            )
        except SshError as exc:
            return self._fail(exc.reason, f"tcpdump not started: {exc}")
        return self._wait_listening()

    def _find_interface(self) -> str | ProbeError:
        run = self.remote(self.spec.vantage_host, "ip -j addr show", START_TIMEOUT)
        if run.exit_status != 0:
            why = run.stderr.decode(errors="replace").strip()[:300]
            return self._fail(ErrorReason.UNREACHABLE, f"ip -j addr show failed: {why}")
        name = listed_interface_holding(run.stdout, self.spec.vantage_addresses)
        if name is None:
            return self._fail(
                ErrorReason.UNREACHABLE,
                f"no interface holds {', '.join(self.spec.vantage_addresses)} "
                "(or its name is not a plain interface name)",
            )
        return name

    def _wait_listening(self) -> ProbeError | None:
        assert self._running is not None
        if self._running.wait_for_stderr(b"listening on", START_TIMEOUT):
            # The capture's own time bound, from here; the host's timeout is the backstop.
            self._timer = threading.Timer(self.spec.max_seconds, self._time_is_up)
            self._timer.daemon = True
            self._timer.start()
            return None
        ended = self._running.stop()
        said = ended.stderr_text().strip()[:500]
        status = "" if ended.exit_status is None else f" (exit {ended.exit_status})"
        return self._fail(
            _start_failure(ended),
            f"tcpdump did not start within {START_TIMEOUT:g}s{status}: {said}",
        )

    def _time_is_up(self) -> None:
        if self._running is not None and not self._running.ended:
            self._time_was_up = True
            self._running.stop()

    def wait(self, timeout: float | None = None) -> None:
        """Block until the capture ends by its own bounds (time or count) or ``timeout``."""
        if self._running is not None:
            self._running.wait(timeout)

    def stop(self) -> Attempt[CaptureResult]:
        """Stop (INT relayed by sudo lets tcpdump flush and report drops), store the pcap,
        parse it."""
        if self.result is not None:
            return self.result
        assert self._running is not None, "stop() before start()"
        if self._timer is not None:
            self._timer.cancel()
        ended_by_itself = self._running.ended and not self._time_was_up
        ended = self._running.stop()
        cause = "time" if self._time_was_up else _stop_cause(ended, ended_by_itself)
        self.result = self._finish(ended, cause)
        return self.result

    def _finish(self, ended: CommandResult, cause: StopCause) -> Attempt[CaptureResult]:
        pcap = complete_records(ended.stdout)
        ref = self.sink.add(
            pcap,
            probe=PROBE,
            command=ended.command,
            host=self.spec.vantage_host,
            started=self._started,
            finished=ended.finished,
            tool_version=None,
            media_type=PCAP,
            exit_status=ended.exit_status,
        )
        if ended.end is CommandEnd.LOST and not pcap:
            return Attempt.failed(
                PROBE, self.target, ErrorReason.UNREACHABLE,
                f"{self._where}: capture lost ({ended.lost_reason})", [ref],
            )  # fmt: skip
        try:
            packets = read_pcap(pcap)
        except Exception as exc:  # scapy raises several kinds on a damaged file
            return Attempt.failed(
                PROBE, self.target, ErrorReason.PARSE_ERROR,
                f"{self._where}: pcap unreadable: {exc}", [ref],
            )  # fmt: skip
        value = CaptureResult(
            network=self.spec.network,
            interface=self._interface,
            bpf=self._bpf,
            started=self._started,
            finished=ended.finished,
            packets=packets,
            pcap_ref=ref,
            stopped_by=cause,
            kernel_dropped=kernel_drops(ended.stderr_text()),
        )
        return Attempt.ok(PROBE, self.target, value, [ref])


def _start_failure(ended: CommandResult) -> ErrorReason:
    stderr = ended.stderr_text()
    if "a password is required" in stderr or "not allowed" in stderr:
        return ErrorReason.NOT_PERMITTED
    if ended.exit_status == 127 or "No such file" in stderr:
        return ErrorReason.TOOL_MISSING
    return ErrorReason.COMMAND_FAILED


def _stop_cause(ended: CommandResult, ended_by_itself: bool) -> StopCause:
    """Why the capture ended: the host's ``timeout`` (exit 124) or our own time limit is
    "time"; tcpdump leaving by itself (its packet count) or the byte bound is "count" (the
    capture's result has no cause for bytes: it is a size bound too); else the caller."""
    if ended.exit_status == TIMEOUT_EXPIRED or ended.end is CommandEnd.TIMED_OUT:
        return "time"
    if ended.end is CommandEnd.TRUNCATED or ended_by_itself:
        return "count"
    return "caller"


def running_remote_capture(
    spec: RemoteCaptureSpec, remote: RemoteStreams, sink: EvidenceSink
) -> AbstractContextManager[RemoteCapture]:
    """Capture on the vantage host while the ``with`` block runs (``probes.capture.started``);
    ``.result`` holds the outcome afterwards, or the error if it could not start."""
    return started(RemoteCapture(spec, remote, sink))


def remote_capture_window(
    spec: RemoteCaptureSpec, remote: RemoteStreams, sink: EvidenceSink
) -> Attempt[CaptureResult]:
    """Capture on the vantage host for ``spec.max_seconds`` (or until its packet or byte
    bound), as ``probes.capture.capture_window`` does on this machine."""
    return for_its_window(RemoteCapture(spec, remote, sink), spec.max_seconds)


__all__ = [
    "RemoteCapture",
    "RemoteCaptureSpec",
    "RemoteStreams",
    "UnsafeFilterError",
    "addresses_of",
    "capture_command",
    "checked_filter",
    "complete_records",
    "listed_interface_holding",
    "remote_capture_window",
    "running_remote_capture",
]
