"""Link captures on the lab's vantage host, inet-canary, through the path an audit uses: SSH
with strict host keys, the allow-list (VANTAGE_TEMPLATES), inet-canary's sudoers, tcpdump
under the host's own ``timeout``.

This machine holds 10.98.0.1 on inet in the lab; its pings to the canary are packets on the
canary's link that the test causes and then finds in the pcap."""

from __future__ import annotations

import subprocess
import time

import pytest

from auditor.audit.remote import VANTAGE_TEMPLATES, SshRemote
from auditor.audit.scope import ScopeGuard
from auditor.domain.attempts import ErrorReason
from auditor.domain.inventory import load_inventory
from lab.runtime import LabState
from probes.capture import PCAP
from probes.remotecapture import (
    START_ALLOWANCE,
    RemoteCapture,
    RemoteCaptureSpec,
    capture_command,
    checked_filter,
    running_remote_capture,
)
from tests.lab.labtools import run_in, wait_for
from tests.unit.probes.netns_fixtures import MemorySink

VANTAGE = "inet-canary"
CANARY = ("10.98.0.100", "fd98::100")
THIS_MACHINE_ON_INET = "10.98.0.1"


def tcpdump_on_the_canary() -> bool:
    return run_in(VANTAGE, "pgrep -x tcpdump").returncode == 0


def ping_the_canary(count: int) -> None:
    subprocess.run(
        ["ping", "-n", "-c", str(count), "-i", "0.2", "-W", "1", CANARY[0]],
        check=False,
        capture_output=True,
        timeout=30,
    )


@pytest.mark.lab
def test_a_remote_capture_sees_the_packets_caused_on_the_vantage_hosts_link(
    lab: LabState,
) -> None:
    inventory = load_inventory(lab.inventory_path)
    guard = ScopeGuard.from_inventory(inventory)
    sink = MemorySink()
    spec = RemoteCaptureSpec(
        VANTAGE, CANARY, bpf=f"icmp and host {THIS_MACHINE_ON_INET}", max_seconds=30,
        network="inet",
    )  # fmt: skip
    with SshRemote(inventory, guard.check, VANTAGE_TEMPLATES) as remote:
        with running_remote_capture(spec, remote, sink) as capture:
            assert capture.result is None, capture.result
            assert tcpdump_on_the_canary()
            ping_the_canary(3)
            time.sleep(0.5)
        attempt = capture.result
    assert attempt is not None and attempt.succeeded, attempt
    result = attempt.value
    assert result is not None
    assert (result.interface, result.stopped_by, result.network) == ("inet", "caller", "inet")
    requests = [p for p in result.packets if p.haslayer("ICMP") and p["ICMP"].type == 8]
    assert len(requests) >= 3
    assert {p["IP"].src for p in requests} == {THIS_MACHINE_ON_INET}
    assert result.kernel_dropped == 0  # tcpdump's count, read from its stderr
    (stored,) = sink.of_type(PCAP)
    assert stored.host == VANTAGE and stored.content.startswith(b"\xd4\xc3\xb2\xa1")
    assert attempt.evidence == [result.pcap_ref]
    assert wait_for(lambda: not tcpdump_on_the_canary(), 5, 0.2)


@pytest.mark.lab
def test_a_capture_on_a_silent_link_stops_at_its_time_bound(lab: LabState) -> None:
    inventory = load_inventory(lab.inventory_path)
    guard = ScopeGuard.from_inventory(inventory)
    spec = RemoteCaptureSpec(VANTAGE, CANARY, bpf="udp and port 9", max_seconds=3)
    with SshRemote(inventory, guard.check, VANTAGE_TEMPLATES) as remote:
        with running_remote_capture(spec, remote, MemorySink()) as capture:
            began = time.monotonic()
            capture.wait(20)
            elapsed = time.monotonic() - began
            assert tcpdump_on_the_canary() is False
        attempt = capture.result
    assert 2.5 < elapsed < 5, elapsed
    assert attempt is not None and attempt.value is not None, attempt
    assert attempt.value.stopped_by == "time" and attempt.value.packets == []


@pytest.mark.lab
def test_the_capture_ends_on_the_vantage_host_when_the_auditor_is_gone(lab: LabState) -> None:
    """The connection is dropped without stopping anything, on a link where nothing matches:
    tcpdump never writes, so only the host's ``timeout`` (bound + START_ALLOWANCE) ends it."""
    inventory = load_inventory(lab.inventory_path)
    guard = ScopeGuard.from_inventory(inventory)
    spec = RemoteCaptureSpec(VANTAGE, CANARY, bpf="udp and port 9", max_seconds=1)
    command = capture_command(spec, "inet", checked_filter(spec.bpf))
    host_bound = 1 + START_ALLOWANCE  # what capture_command gave timeout
    assert f" {host_bound} /usr/bin/tcpdump " in command
    remote = SshRemote(inventory, guard.check, VANTAGE_TEMPLATES)
    running = remote.stream(VANTAGE, command, time_limit=60, max_output=1_000_000)
    began = time.monotonic()
    assert running.wait_for_stderr(b"listening on", 10), running.stderr_so_far()
    remote.close()  # the auditor is gone: no stop, no signal
    time.sleep(2)
    assert tcpdump_on_the_canary(), "ended by the dropped connection: the test shows nothing"
    assert wait_for(lambda: not tcpdump_on_the_canary(), host_bound + 5, 0.2)
    assert time.monotonic() - began < host_bound + 3


@pytest.mark.lab
def test_an_address_the_vantage_host_does_not_hold_is_a_failed_start(lab: LabState) -> None:
    """The interface is the one the host itself lists with its address; none: no tcpdump."""
    inventory = load_inventory(lab.inventory_path)
    guard = ScopeGuard.from_inventory(inventory)
    spec = RemoteCaptureSpec(VANTAGE, ("10.98.0.77",), bpf="ip", max_seconds=3)
    with SshRemote(inventory, guard.check, VANTAGE_TEMPLATES) as remote:
        error = RemoteCapture(spec, remote, MemorySink()).start()
    assert error is not None and error.reason is ErrorReason.UNREACHABLE
    assert VANTAGE in error.message and "10.98.0.77" in error.message
    assert not tcpdump_on_the_canary()
