"""Captures on the interface holding this machine's address, with their bounds."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP

from auditor.domain.attempts import ErrorReason
from probes.capture import PCAP, CaptureSpec, capture_window, read_pcap, running_capture
from probes.netlocal import interface_holding
from tests.unit.probes.netns_fixtures import (
    Bridge,
    MemorySink,
    Namespace,
    NetnsLab,
    needs_netns,
    netns_lab,
)

__all__ = ["netns_lab"]


@dataclass
class CaptureNet:
    bridge: Bridge
    pinger: Namespace
    pinger4: str


@pytest.fixture(scope="module")
def capture_net(netns_lab: NetnsLab) -> Iterator[CaptureNet]:
    bridge = netns_lab.bridge(245)
    pinger = netns_lab.namespace("png")
    v4, _ = netns_lab.attach(pinger, bridge, 10)
    yield CaptureNet(bridge, pinger, v4)


@needs_netns
def test_interface_is_found_by_address_whatever_its_spelling(capture_net: CaptureNet) -> None:
    bridge = capture_net.bridge
    found = interface_holding("fd98:0000:0000:0245:0000:0000:0000:0001")
    assert found is not None and found.name == bridge.name
    assert bridge.auditor4 in found.addresses
    assert interface_holding("10.98.245.99") is None


@needs_netns
def test_capture_sees_the_packets_and_stores_the_pcap(capture_net: CaptureNet) -> None:
    sink = MemorySink()
    spec = CaptureSpec(capture_net.bridge.auditor4, "icmp", max_seconds=20, network="lan")
    with running_capture(spec, sink) as capture:
        capture_net.pinger.run(f"ping -c 2 -i 0.2 {capture_net.bridge.auditor4}")
    result = capture.result
    assert result is not None and result.succeeded and result.value is not None
    requests = [p for p in result.value.packets if ICMP in p and p[ICMP].type == 8]
    assert [p[IP].src for p in requests] == [capture_net.pinger4] * 2
    assert result.value.interface == capture_net.bridge.name
    assert result.value.stopped_by == "caller"
    (stored,) = sink.of_type(PCAP)
    assert result.evidence == [result.value.pcap_ref]
    assert len(read_pcap(stored.content)) == len(result.value.packets)
    assert stored.tool_version is not None and "tcpdump" in stored.tool_version


@needs_netns
def test_packet_count_bound_ends_the_capture(capture_net: CaptureNet) -> None:
    spec = CaptureSpec(capture_net.bridge.auditor4, "icmp", max_seconds=20, max_packets=3)
    with running_capture(spec, MemorySink()) as capture:
        capture_net.pinger.run(f"ping -c 4 -i 0.2 {capture_net.bridge.auditor4}")
        time.sleep(0.5)
    assert capture.result is not None and capture.result.value is not None
    assert len(capture.result.value.packets) == 3
    assert capture.result.value.stopped_by == "count"


@needs_netns
def test_time_bound_ends_the_capture(capture_net: CaptureNet) -> None:
    started = time.monotonic()
    attempt = capture_window(CaptureSpec(capture_net.bridge.auditor4, "icmp", 1.0), MemorySink())
    assert attempt.value is not None and attempt.value.stopped_by == "time"
    assert 0.9 < time.monotonic() - started < 8


@needs_netns
def test_address_not_held_here_is_unreachable() -> None:
    attempt = capture_window(CaptureSpec("10.98.245.77", max_seconds=1), MemorySink())
    assert attempt.error is not None and attempt.error.reason is ErrorReason.UNREACHABLE


@needs_netns
def test_bad_filter_is_command_failed(capture_net: CaptureNet) -> None:
    spec = CaptureSpec(capture_net.bridge.auditor4, "tcp and and", max_seconds=1)
    attempt = capture_window(spec, MemorySink())
    assert attempt.error is not None and attempt.error.reason is ErrorReason.COMMAND_FAILED
    assert "syntax" in attempt.error.message


@needs_netns
def test_tcpdump_missing_is_tool_missing(
    capture_net: CaptureNet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ip").symlink_to(shutil.which("ip") or "/usr/sbin/ip")
    monkeypatch.setenv("PATH", str(tmp_path))
    attempt = capture_window(CaptureSpec(capture_net.bridge.auditor4, max_seconds=1), MemorySink())
    assert attempt.error is not None and attempt.error.reason is ErrorReason.TOOL_MISSING
