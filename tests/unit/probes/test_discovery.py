"""Discovery: an ARP / neighbour-discovery sweep of a bridge of throwaway namespaces."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from auditor.domain.attempts import ErrorReason
from probes.capture import CaptureSpec, running_capture
from probes.discovery import discover, ipv6_candidates
from probes.scanner import NMAP_XML
from tests.unit.probes.netns_fixtures import (
    Bridge,
    MemorySink,
    Namespace,
    NetnsLab,
    needs_netns,
    netns_lab,
    scope_check,
)

__all__ = ["netns_lab"]

SCOPE = scope_check("10.98.241.0/24", "fd98:0:0:241::/64")


def test_ipv6_candidates_cover_named_low_and_mirrored_hosts() -> None:
    candidates = ipv6_candidates(
        "fd98:0:0:21::/64",
        named=["fd98:0:0:21::1234", "fd98:0:0:22::5"],  # the second is on another network
        ipv4_answers=["10.98.21.100"],
        low_hosts=0x30,
    )
    assert candidates[0] == "fd98:0:0:21::1234"
    assert "fd98:0:0:21::1" in candidates and "fd98:0:0:21::30" in candidates
    assert "fd98:0:0:21::31" not in candidates
    assert "fd98:0:0:21::100" in candidates  # the mirror of .100
    assert "fd98:0:0:22::5" not in candidates
    assert len(candidates) == len(set(candidates)) == 1 + 0x30 + 1


@dataclass
class SweepNet:
    bridge: Bridge
    expected: set[str]
    macs: dict[str, str]
    far: Namespace


@pytest.fixture(scope="module")
def sweep_net(netns_lab: NetnsLab) -> Iterator[SweepNet]:
    bridge = netns_lab.bridge(241)
    expected: set[str] = set()
    macs: dict[str, str] = {}
    for short, host in (("a", 10), ("b", 0x42), ("c", 200)):
        ns = netns_lab.namespace(short)
        v4, v6 = netns_lab.attach(ns, bridge, host)
        mac = ns.run("cat /sys/class/net/eth0/address").stdout.strip()
        expected |= {v4, v6}
        macs[v4] = macs[v6] = mac
    # A host numbered outside ::1-::ff (as SLAAC or a careless admin would): only a named
    # candidate finds it actively.
    far = netns_lab.namespace("far")
    netns_lab.attach(far, bridge, 99, v6_host=0x1234)
    expected |= set(far.all_addresses())
    yield SweepNet(bridge, expected, macs, far)


@needs_netns
def test_sweep_finds_exactly_the_namespaces(sweep_net: SweepNet) -> None:
    sink = MemorySink()
    bridge = sweep_net.bridge
    attempt = discover(
        network="test-lan",
        prefixes=[bridge.prefix4, bridge.prefix6],
        auditor_addresses=[bridge.auditor4, bridge.auditor6],
        sink=sink,
        check_target=SCOPE,
        known_ipv6=[bridge.v6(0x1234)],
    )
    assert attempt.succeeded, attempt.error
    result = attempt.value
    assert result is not None
    assert result.addresses() == sweep_net.expected  # this machine's .1 / ::1 excluded
    assert result.interface == bridge.name
    for host in result.hosts:
        if host.address in sweep_net.macs:
            assert host.mac == sweep_net.macs[host.address]
        assert host.reason in {"arp-response", "nd-response"}
    assert len(sink.of_type(NMAP_XML)) == 2
    assert set(attempt.evidence) == set(sink.items)


@needs_netns
def test_unnamed_far_ipv6_host_is_still_seen_in_the_neighbour_table(sweep_net: SweepNet) -> None:
    bridge = sweep_net.bridge
    # It talks to this machine (as any live device does sooner or later)...
    sweep_net.far.run(f"ping -c 1 -W 1 {bridge.auditor6}")
    attempt = discover(
        network="test-lan",
        prefixes=[bridge.prefix6],
        auditor_addresses=[bridge.auditor6],
        sink=MemorySink(),
        check_target=SCOPE,
    )
    assert attempt.value is not None
    far6 = bridge.v6(0x1234)
    assert far6 not in attempt.value.addresses()  # ...so no candidate: no answer...
    assert far6 in {n.address for n in attempt.value.neighbours}  # ...but it was seen


@needs_netns
def test_out_of_scope_prefix_is_refused_before_any_packet(sweep_net: SweepNet) -> None:
    bridge = sweep_net.bridge
    spec = CaptureSpec(local_address=bridge.auditor4, bpf="arp or icmp6", max_seconds=30)
    with running_capture(spec, MemorySink()) as capture:
        attempt = discover(
            network="test-lan",
            prefixes=[bridge.prefix4, bridge.prefix6],
            auditor_addresses=[bridge.auditor4],
            sink=MemorySink(),
            check_target=scope_check("10.98.241.0/25"),  # half the prefix only
        )
    assert attempt.error is not None and attempt.error.reason is ErrorReason.OUT_OF_SCOPE
    assert capture.result is not None and capture.result.value is not None
    assert capture.result.value.packets == []
