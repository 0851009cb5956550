"""The egress tester against namespaces: one host allowed out, one whose output chain drops
new connections, one behind a NAT gateway. The "remote" commands really run in the host's
namespace (``ip netns exec``); the captures are real tcpdump captures on the bridges."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap, wrpcap

from probes.capture import PCAP, CaptureSpec, running_capture
from probes.egress import (
    DEFAULT_KINDS,
    Commands,
    EgressPlan,
    ExternalNetwork,
    Kind,
    Outcome,
    Summary,
    _capture_filter,
    classify,
    run_egress_test,
)
from probes.netlocal import RunRemote
from tests.unit.probes.netns_fixtures import (
    Bridge,
    MemorySink,
    NetnsLab,
    needs_netns,
    netns_lab,
    netns_run_remote,
    scope_check,
    start_listeners,
)

__all__ = ["netns_lab"]

SCOPE = scope_check("10.98.240.0/20", "fd98:0:0:240::/60")
BEYOND = ("10.98.249.200", "fd98:0:0:249::c8")  # on no network: only a default route goes there
CANARY_TCP = (22, 80, 443, 8080)
CANARY_UDP = (53, 123)


@pytest.mark.parametrize(
    ("kind", "exit_status", "output", "expected"),
    [
        (Kind("tcp", 22), 0, "Connection to 10.98.0.100 22 port [tcp/*] succeeded!", "connected"),
        (
            Kind("tcp", 22),
            1,
            "nc: connect to 10.98.0.1 port 22 (tcp) failed: Connection refused",
            "refused",
        ),
        (
            Kind("tcp", 22),
            1,
            "nc: connect to 10.98.0.1 port 22 (tcp) failed: Operation not permitted",
            "blocked-locally",
        ),
        (
            Kind("tcp", 22),
            1,
            "nc: connect to 10.98.9.1 port 22 (tcp) timed out: Operation now in progress",
            "timeout",
        ),
        (
            Kind("tcp", 22),
            1,
            "nc: connect to 10.98.9.1 port 22 (tcp) failed: Network is unreachable",
            "no-route",
        ),
        (Kind("icmp"), 1, "1 packets transmitted, 0 received, 100% packet loss", "timeout"),
        (Kind("icmp"), 2, "ping: sendmsg: Operation not permitted", "blocked-locally"),
        (Kind("icmp"), 1, "sudo: a password is required", "not-executed"),
        (Kind("udp", 53), 127, "bash: nc: command not found", "not-executed"),
        (Kind("udp", 53), 0, "", "no-error"),
    ],
)
def test_command_outcomes(kind: Kind, exit_status: int, output: str, expected: str) -> None:
    assert classify(kind, exit_status, False, output) is Outcome(expected)


def test_a_command_that_outlived_its_bound_is_a_timeout() -> None:
    assert classify(Kind("tcp", 22), None, True, "") is Outcome.TIMEOUT


def test_a_command_refused_a_channel_was_not_executed_not_timed_out() -> None:
    """What auditor.audit.remote.SshRemote answers when the server refuses a session (more
    than its MaxSessions open at once): no exit status, not stopped at the bound."""
    refused = (
        "unreachable: recv-srv (10.98.21.20:22): cannot open a channel: "
        "ChannelException(2, 'Connect failed')"
    )
    assert classify(Kind("tcp", 80), None, False, refused) is Outcome.NOT_EXECUTED
    assert classify(Kind("icmp"), None, False, "") is Outcome.NOT_EXECUTED


@dataclass
class EgressNet:
    inet: Bridge
    carrier: Bridge
    protected: Bridge
    run_remote: RunRemote
    addresses: dict[str, tuple[str, ...]]
    gateway_inet: str

    def plan(
        self, host: str, *extra: ExternalNetwork, beyond: tuple[str, ...] = BEYOND
    ) -> EgressPlan:
        inet = ExternalNetwork(
            "inet",
            (self.inet.prefix4, self.inet.prefix6),
            (self.inet.auditor4, self.inet.auditor6),
            (self.inet.v4(100), self.inet.v6(100)),
        )
        carrier = ExternalNetwork(
            "carrier",
            (self.carrier.prefix4, self.carrier.prefix6),
            (self.carrier.auditor4, self.carrier.auditor6),
        )
        return EgressPlan(host, self.addresses[host], (inet, carrier, *extra), beyond)


DROP_NEW_OUTPUT = [
    "nft add table inet f",
    "nft add chain inet f out { type filter hook output priority 0 ; policy drop ; }",
    "nft add rule inet f out oifname lo accept",
    "nft add rule inet f out ct state established,related accept",
]


@pytest.fixture(scope="module")
def egress_net(netns_lab: NetnsLab) -> Iterator[EgressNet]:
    protected, inet, carrier = netns_lab.bridge(242), netns_lab.bridge(243), netns_lab.bridge(244)
    canary = netns_lab.namespace("can")
    netns_lab.attach(canary, inet, 100)
    start_listeners(netns_lab, canary, CANARY_TCP, CANARY_UDP)
    hosts = {}
    for name, number in (("open", 20), ("shut", 21)):
        ns = netns_lab.namespace(name)
        netns_lab.attach(ns, protected, number)
        netns_lab.attach(ns, inet, number)
        # Its default route points at the canary, which does not forward: a packet to an
        # address on no network leaves toward the canary, is seen there, and goes no further.
        ns.run(f"ip route add default via {inet.v4(100)}")
        ns.run(f"ip -6 route add default via {inet.v6(100)}")
        hosts[name] = ns
    for command in DROP_NEW_OUTPUT:
        hosts["shut"].run(command)
    gateway = netns_lab.namespace("gw")
    netns_lab.attach(gateway, protected, 254)
    netns_lab.attach(gateway, inet, 254)
    gateway.run("sysctl -q -w net.ipv4.ip_forward=1")
    gateway.run("nft add table ip nat")
    gateway.run("nft add chain ip nat post { type nat hook postrouting priority 100 ; }")
    gateway.run(f"nft add rule ip nat post ip saddr {protected.prefix4} masquerade")
    natted = netns_lab.namespace("nat")
    netns_lab.attach(natted, protected, 30)
    natted.run(f"ip route add default via {protected.v4(254)}")
    hosts["nat"] = natted
    yield EgressNet(
        inet,
        carrier,
        protected,
        netns_run_remote(hosts),
        {name: tuple(ns.all_addresses()) for name, ns in hosts.items()},
        inet.v4(254),
    )


@needs_netns
def test_attempts_from_a_host_allowed_out_are_seen_leaving(egress_net: EgressNet) -> None:
    sink = MemorySink()
    attempt = run_egress_test(
        egress_net.plan("open"),
        run_remote=egress_net.run_remote,
        sink=sink,
        check_target=SCOPE,
        parallel=8,
    )
    assert attempt.succeeded and attempt.value is not None
    result = attempt.value
    assert result.summary is Summary.LEFT
    assert all(c.ran for c in result.captures)
    # 7 kinds x (auditor and canary on inet, auditor on carrier, beyond) x 2 families
    assert len(result.attempts) == 7 * 4 * 2
    assert all(a.executed for a in result.attempts)
    unseen = [(str(a.kind), a.target, a.outcome) for a in result.attempts if not a.left]
    assert unseen == []
    by_key = {(str(a.kind), a.target): a for a in result.attempts}
    ssh_to_canary = by_key[("tcp/22", egress_net.inet.v4(100))]
    assert ssh_to_canary.outcome is Outcome.CONNECTED
    assert [(s.network, s.from_host_address) for s in ssh_to_canary.seen] == [("inet", True)]
    # Toward the carrier network it has no route but the default one: seen on inet only.
    to_carrier = by_key[("tcp/443", egress_net.carrier.auditor4)]
    assert [s.network for s in to_carrier.seen] == ["inet"]
    assert by_key[("icmp", BEYOND[1])].seen[0].network == "inet"
    assert len(sink.of_type(PCAP)) == 2
    assert set(attempt.evidence) <= set(sink.items)


@needs_netns
def test_a_host_whose_output_drops_new_connections_lets_nothing_leave(
    egress_net: EgressNet,
) -> None:
    attempt = run_egress_test(
        egress_net.plan("shut"),
        run_remote=egress_net.run_remote,
        sink=MemorySink(),
        check_target=SCOPE,
        parallel=8,
    )
    assert attempt.value is not None
    result = attempt.value
    assert result.summary is Summary.NOTHING_LEFT, result.reasons
    assert result.seen_attempts() == []
    assert all(a.executed for a in result.attempts)
    # The filter drops silently: TCP times out, ping gets no reply, nc -u just fails.
    assert {a.outcome for a in result.attempts} <= {
        Outcome.TIMEOUT,
        Outcome.BLOCKED_LOCALLY,
        Outcome.FAILED,
    }
    assert all(c.ran and c.pcap_ref for c in result.captures)


@needs_netns
def test_natted_attempts_are_matched_by_their_signature(egress_net: EgressNet) -> None:
    attempt = run_egress_test(
        egress_net.plan("nat", beyond=()),
        run_remote=egress_net.run_remote,
        sink=MemorySink(),
        check_target=SCOPE,
        kinds=(Kind("tcp", 80), Kind("icmp")),
        parallel=8,
    )
    assert attempt.value is not None
    result = attempt.value
    assert result.summary is Summary.LEFT
    to_canary = [a for a in result.attempts if a.target == egress_net.inet.v4(100)]
    assert len(to_canary) == 2
    for sent in to_canary:
        assert [(s.network, s.from_host_address, s.sources) for s in sent.seen] == [
            ("inet", False, (egress_net.gateway_inet,))
        ]


@needs_netns
def test_an_unwatched_network_makes_nothing_seen_incomplete(egress_net: EgressNet) -> None:
    unwatched = ExternalNetwork("office", ("10.98.245.0/24",), ())
    attempt = run_egress_test(
        egress_net.plan("shut", unwatched),
        run_remote=egress_net.run_remote,
        sink=MemorySink(),
        check_target=SCOPE,
        kinds=(Kind("tcp", 22),),
        parallel=8,
    )
    assert attempt.value is not None
    assert attempt.value.summary is Summary.INCOMPLETE
    assert any("office" in reason for reason in attempt.value.reasons)


@needs_netns
def test_commands_that_cannot_run_make_the_result_incomplete(egress_net: EgressNet) -> None:
    attempt = run_egress_test(
        egress_net.plan("shut"),
        run_remote=egress_net.run_remote,
        sink=MemorySink(),
        check_target=SCOPE,
        kinds=(Kind("tcp", 22),),
        commands=Commands(tcp="/nonexistent/nc -z {address} {port}"),
        parallel=8,
    )
    assert attempt.value is not None
    assert attempt.value.summary is Summary.INCOMPLETE
    assert all(a.outcome is Outcome.NOT_EXECUTED for a in attempt.value.attempts)


@needs_netns
def test_out_of_scope_target_is_refused_before_any_packet(egress_net: EgressNet) -> None:
    outside = "10.98.248.7"
    watch = CaptureSpec(egress_net.inet.auditor4, f"host {outside}", max_seconds=60)
    with running_capture(watch, MemorySink()) as capture:
        attempt = run_egress_test(
            egress_net.plan("open", beyond=(outside,)),
            run_remote=egress_net.run_remote,
            sink=MemorySink(),
            check_target=scope_check("10.98.243.0/24", "10.98.244.0/24", "fd98:0:0:240::/60"),
            kinds=(Kind("tcp", 22), Kind("icmp")),
            parallel=8,
        )
    assert attempt.value is not None
    refused = [a for a in attempt.value.attempts if a.target == outside]
    assert len(refused) == 2
    assert all(a.outcome is Outcome.NOT_EXECUTED and "scope" in a.detail for a in refused)
    assert attempt.value.summary is Summary.LEFT  # the others did leave
    assert capture.result is not None and capture.result.value is not None
    assert capture.result.value.packets == []


# -- the capture filter: attempts only, so a port scan may run beside the egress test --------


def test_tcpdump_keeps_the_attempts_and_leaves_out_a_scans_answers_to_the_same_address(
    tmp_path: Path,
) -> None:
    """The filter compiled and run by tcpdump itself on packets written for it. The target
    (this machine's address on an external network) is also where a port scan's answers
    arrive: SYN-ACKs, resets, UDP replies, ICMP errors and echo replies, over IPv4 and IPv6.
    Only the new connections toward the targets are kept."""
    target4, target6 = "10.98.240.1", "fd98:0:0:240::1"
    bpf = _capture_filter([target4, target6], DEFAULT_KINDS)
    attempts = [
        IP(src="10.98.240.20", dst=target4) / TCP(sport=40000, dport=443, flags="S"),
        IPv6(src="fd98:0:0:240::20", dst=target6) / TCP(sport=40001, dport=22, flags="S"),
        IP(src="10.98.240.20", dst=target4) / UDP(sport=40002, dport=53),
        IPv6(src="fd98:0:0:240::20", dst=target6) / UDP(sport=40003, dport=123),
        IP(src="10.98.240.20", dst=target4) / ICMP(type=8),
        IPv6(src="fd98:0:0:240::20", dst=target6) / ICMPv6EchoRequest(),
    ]
    scan_answers = [
        IP(src="10.98.240.20", dst=target4) / TCP(sport=22, dport=61000, flags="SA"),
        IP(src="10.98.240.20", dst=target4) / TCP(sport=23, dport=61000, flags="RA"),
        IPv6(src="fd98:0:0:240::20", dst=target6) / TCP(sport=22, dport=61000, flags="SA"),
        IP(src="10.98.240.20", dst=target4) / UDP(sport=53, dport=61000),
        IP(src="10.98.240.20", dst=target4) / ICMP(type=3, code=3),
        IP(src="10.98.240.20", dst=target4) / ICMP(type=0),
        IPv6(src="fd98:0:0:240::20", dst=target6) / ICMPv6EchoReply(),
        # an attempt's shape, but toward an address that is no target (a scanned host)
        IP(src="10.98.240.1", dst="10.98.240.20") / TCP(sport=61000, dport=443, flags="S"),
    ]
    mac = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    pcap, kept = tmp_path / "mixed.pcap", tmp_path / "kept.pcap"
    wrpcap(str(pcap), [mac / p for p in attempts + scan_answers])
    subprocess.run(
        ["tcpdump", "-r", str(pcap), "-w", str(kept), bpf], check=True, capture_output=True
    )
    survivors = [bytes(p.payload) for p in rdpcap(str(kept))]
    assert survivors == [bytes(p) for p in attempts]
