"""Packet capture on this machine's interface on a given network (passive: sends nothing).

tcpdump writes the pcap to a pipe; scapy reads it back for analysis. tcpdump rather than
scapy's AsyncSniffer because it says when the capture is really listening ("listening on"
after the filter is installed), counts kernel drops, and its pcap is the evidence exactly as
the standard tool wrote it. The interface is the one holding the auditor's own address on the
network (``ip -j addr``), never a name from configuration.

Bounds: a BPF filter, a packet count (tcpdump ``-c``), a snap length and a wall-clock limit
after which the capture is stopped whatever the caller does.
"""

from __future__ import annotations

import io
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any, Literal, Protocol, TypeVar

# The layer modules bind Ethernet, IP and IPv6 to the pcap link types: without them scapy
# reads every frame as Raw.
from scapy.packet import Packet
from scapy.utils import PcapReader

from auditor.domain.attempts import Attempt, ErrorReason, ProbeError
from auditor.domain.protocols import EvidenceSink
from probes.netlocal import (
    ToolMissingError,
    interface_holding,
    kill_process_group,
    now,
    require_tool,
    run_tool,
)

PROBE = "link-capture"
PCAP = "application/vnd.tcpdump.pcap"
#: How long tcpdump may take to open the interface and install the filter.
START_TIMEOUT = 10.0


@dataclass(frozen=True)
class CaptureSpec:
    local_address: str  #: this machine's own address on the network to capture on
    bpf: str = ""  #: tcpdump filter expression; empty: everything
    max_seconds: float = 30.0
    max_packets: int = 10_000
    snaplen: int = 65_535
    network: str | None = None  #: the inventory's name for it, for the record


StopCause = Literal["time", "count", "caller"]


@dataclass(frozen=True)
class CaptureResult:
    network: str | None
    interface: str
    bpf: str
    started: datetime
    finished: datetime
    packets: list[Packet] = field(repr=False)  #: each with ``.time`` (epoch seconds)
    pcap_ref: str = ""
    stopped_by: StopCause = "caller"
    kernel_dropped: int | None = None  #: as tcpdump reported at exit; None when unknown


@cache
def tcpdump_version() -> str | None:
    try:
        run = run_tool([require_tool("tcpdump"), "--version"], 10)
    except ToolMissingError:
        return None
    first = (run.stdout or run.stderr).decode(errors="replace").splitlines()
    return first[0].strip() if first else None


def read_pcap(data: bytes) -> list[Packet]:
    """Packets of a pcap held in memory; an empty capture (header only, or nothing) is []."""
    if len(data) == 0:
        return []
    with PcapReader(io.BytesIO(data)) as reader:  # type: ignore[arg-type]  # takes files too
        return list(reader)


def kernel_drops(stderr: str) -> int | None:
    """What tcpdump said the kernel dropped, from its closing counts on stderr."""
    for line in stderr.splitlines():
        if "dropped by kernel" in line:
            try:
                return int(line.split()[0])
            except ValueError:
                return None
    return None


class Capture:
    """One tcpdump capture. ``start``, then ``stop`` (or let the time bound end it)."""

    def __init__(self, spec: CaptureSpec, sink: EvidenceSink) -> None:
        self.spec = spec
        self.sink = sink
        self.result: Attempt[CaptureResult] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._stdout = bytearray()
        self._stderr = bytearray()
        self._listening = threading.Event()
        self._threads: list[threading.Thread] = []
        self._timer: threading.Timer | None = None
        self._stopped_by: StopCause = "caller"
        self._interface = ""
        self._argv: list[str] = []
        self._started = now()

    @property
    def target(self) -> str:
        return self.spec.network or self.spec.local_address

    def _fail(self, reason: ErrorReason, message: str) -> ProbeError:
        self.result = Attempt.failed(PROBE, self.target, reason, message)
        assert self.result.error is not None
        return self.result.error

    def start(self) -> ProbeError | None:
        """Start listening; None once tcpdump has its filter installed, else the error."""
        interface = interface_holding(self.spec.local_address)
        if interface is None:
            return self._fail(
                ErrorReason.UNREACHABLE, f"no local interface holds {self.spec.local_address}"
            )
        try:
            tcpdump = require_tool("tcpdump")
        except ToolMissingError as exc:
            return self._fail(ErrorReason.TOOL_MISSING, str(exc))
        self._interface = interface.name
        self._argv = [
            tcpdump, "-i", interface.name, "-n", "-U", "--immediate-mode",
            "-s", str(self.spec.snaplen), "-c", str(self.spec.max_packets), "-w", "-",
        ]  # fmt: skip
        if self.spec.bpf:
            self._argv.append(self.spec.bpf)
        self._started = now()
        self._proc = subprocess.Popen(
            self._argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self._threads = [
            threading.Thread(target=self._pump, args=(self._proc.stdout, self._stdout, False)),
            threading.Thread(target=self._pump, args=(self._proc.stderr, self._stderr, True)),
        ]
        for thread in self._threads:
            thread.daemon = True
            thread.start()
        return self._wait_listening()

    def _pump(self, stream: Any, into: bytearray, watch: bool) -> None:
        for chunk in iter(lambda: stream.read1(65536), b""):
            into.extend(chunk)
            if watch and b"listening on" in into:
                self._listening.set()
        if watch:
            self._listening.set()  # EOF: tcpdump is gone, stop waiting for it

    def _wait_listening(self) -> ProbeError | None:
        assert self._proc is not None
        self._listening.wait(START_TIMEOUT)
        if b"listening on" not in self._stderr:
            kill_process_group(self._proc)
            self._join()
            message = self._stderr.decode(errors="replace").strip()[:500]
            return self._fail(ErrorReason.COMMAND_FAILED, f"tcpdump did not start: {message}")
        self._timer = threading.Timer(self.spec.max_seconds, self._time_is_up)
        self._timer.daemon = True
        self._timer.start()
        return None

    def _time_is_up(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._stopped_by = "time"
            self._proc.send_signal(signal.SIGINT)

    def wait(self, timeout: float | None = None) -> None:
        """Block until the capture ends by its own bounds (time or count) or ``timeout``."""
        if self._proc is not None:
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return

    def _join(self) -> None:
        for thread in self._threads:
            thread.join(10)

    def stop(self) -> Attempt[CaptureResult]:
        """Stop (SIGINT lets tcpdump flush and report drops), store the pcap, parse it."""
        if self.result is not None:
            return self.result
        assert self._proc is not None, "stop() before start()"
        if self._timer is not None:
            self._timer.cancel()
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                kill_process_group(self._proc)
        elif self._stopped_by == "caller":
            self._stopped_by = "count"  # tcpdump left on its own: -c reached
        self._join()
        self.result = self._finish()
        return self.result

    def _finish(self) -> Attempt[CaptureResult]:
        assert self._proc is not None
        finished = now()
        pcap = bytes(self._stdout)
        ref = self.sink.add(
            pcap,
            probe=PROBE,
            command=" ".join(self._argv),
            host=None,
            started=self._started,
            finished=finished,
            tool_version=tcpdump_version(),
            media_type=PCAP,
            exit_status=self._proc.returncode,
        )
        try:
            packets = read_pcap(pcap)
        except Exception as exc:  # scapy raises several kinds on a damaged file
            return Attempt.failed(
                PROBE, self.target, ErrorReason.PARSE_ERROR, f"pcap unreadable: {exc}", [ref]
            )
        value = CaptureResult(
            network=self.spec.network,
            interface=self._interface,
            bpf=self.spec.bpf,
            started=self._started,
            finished=finished,
            packets=packets,
            pcap_ref=ref,
            stopped_by=self._stopped_by,
            kernel_dropped=kernel_drops(self._stderr.decode(errors="replace")),
        )
        return Attempt.ok(PROBE, self.target, value, [ref])


class Capturing(Protocol):
    """A capture that can be started and stopped: this machine's (``Capture``) or a vantage
    host's (``probes.remotecapture.RemoteCapture``)."""

    result: Attempt[CaptureResult] | None

    def start(self) -> ProbeError | None: ...

    def wait(self, timeout: float | None = None) -> None: ...

    def stop(self) -> Attempt[CaptureResult]: ...


C = TypeVar("C", bound=Capturing)


@contextmanager
def started(capture: C) -> Iterator[C]:
    """Capture while the ``with`` block runs; ``.result`` holds the outcome afterwards.

    A capture that could not start is yielded too (its ``result`` is already the error), so
    that the caller can still run and must then report that nothing was watched.
    """
    error = capture.start()
    try:
        yield capture
    finally:
        if error is None:
            capture.stop()


def for_its_window(capture: Capturing, seconds: float) -> Attempt[CaptureResult]:
    """Start ``capture``, let it run its ``seconds`` (or until its own bounds end it) and
    return what it caught, or why it could not start."""
    if capture.start() is not None:
        assert capture.result is not None
        return capture.result
    capture.wait(seconds + 5)
    return capture.stop()


def running_capture(spec: CaptureSpec, sink: EvidenceSink) -> AbstractContextManager[Capture]:
    """``started`` for a capture on this machine."""
    return started(Capture(spec, sink))


def capture_window(spec: CaptureSpec, sink: EvidenceSink) -> Attempt[CaptureResult]:
    """Capture for ``spec.max_seconds`` (or until ``max_packets``) and return the packets."""
    return for_its_window(Capture(spec, sink), spec.max_seconds)


__all__ = [
    "PCAP",
    "Capture",
    "CaptureResult",
    "CaptureSpec",
    "Capturing",
    "capture_window",
    "for_its_window",
    "kernel_drops",
    "read_pcap",
    "running_capture",
    "started",
    "tcpdump_version",
]
