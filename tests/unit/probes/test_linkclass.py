"""Link classification on pcaps recorded from real tools in namespaces (wireguard-go, OpenSSH,
curl against python's http.server, openssl s_server/s_client, OpenVPN, netcat), and live."""

from __future__ import annotations

from pathlib import Path

import pytest
from scapy.layers.inet import TCP, UDP
from scapy.packet import Packet

from probes.capture import PCAP, CaptureSpec, read_pcap
from probes.linkclass import (
    CaptureStatus,
    LinkClass,
    classify_flows,
    classify_link,
    is_tls_record,
    is_wireguard,
)
from tests.unit.probes.netns_fixtures import MemorySink, NetnsLab, needs_netns, netns_lab

__all__ = ["netns_lab"]

DATA = Path(__file__).parents[2] / "data" / "pcap"


def packets(name: str) -> list[Packet]:
    return read_pcap((DATA / f"{name}.pcap").read_bytes())


@pytest.mark.parametrize(
    ("name", "expected", "detail"),
    [
        ("wireguard", LinkClass.WIREGUARD, "message types [1, 2, 4]"),
        ("ssh", LinkClass.SSH, "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10"),
        ("openvpn", LinkClass.OPENVPN, "OpenVPN over UDP"),
        ("http-put", LinkClass.CLEARTEXT, "HTTP request"),
        ("ftp-commands", LinkClass.CLEARTEXT, "FTP command"),
    ],
)
def test_each_recorded_link_is_one_flow_of_its_class(
    name: str, expected: LinkClass, detail: str
) -> None:
    result = classify_flows(packets(name))
    assert result.status is CaptureStatus.TRAFFIC
    (flow,) = result.flows
    assert (flow.link_class, flow.detail) == (expected, detail)
    assert flow.packets == result.packets and flow.bytes > 0
    assert flow.client == "10.98.246.10" and flow.server == "10.98.246.20"


def test_cleartext_flow_carries_a_sample_and_encrypted_ones_do_not() -> None:
    (put,) = classify_flows(packets("http-put")).flows
    assert put.sample is not None and put.sample.startswith("PUT /upload.csv HTTP/1.1..Host:")
    for name in ("wireguard", "ssh", "openvpn", "tls"):
        assert all(f.sample is None for f in classify_flows(packets(name)).flows)


def test_tls_versions_and_chosen_suites_are_read_from_the_hellos() -> None:
    flows = classify_flows(packets("tls")).flows
    assert [f.link_class for f in flows] == [LinkClass.TLS, LinkClass.TLS]
    assert [(f.tls.server_version, f.tls.cipher_suite) for f in flows if f.tls] == [
        ("TLS 1.3", "TLS_AES_256_GCM_SHA384 (0x1302)"),
        ("TLS 1.2", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 (0xc02c)"),
    ]
    assert flows[0].server_port == 8443 and flows[0].client.startswith("fd98:0:0:246::")


def test_a_mixed_capture_keeps_every_flow_apart() -> None:
    names = ("wireguard", "ssh", "openvpn", "http-put", "tls", "ftp-commands")
    mixed = [p for name in names for p in packets(name)]
    classes = sorted(f.link_class.value for f in classify_flows(mixed).flows)
    assert classes == sorted(
        ["wireguard", "ssh", "openvpn", "cleartext", "tls", "tls", "cleartext"]
    )


def _without_banner(original: list[Packet], new_port: int) -> list[Packet]:
    """The same SSH session as if the capture had begun after the key exchange started (no
    banner, no KEXINIT with its readable algorithm names), on another port."""
    copies = []
    for packet in original:
        payload = bytes(packet[TCP].payload)
        if payload.startswith(b"SSH-") or (len(payload) > 5 and payload[5] == 20):
            continue
        copy = packet.copy()
        for field in ("sport", "dport"):
            if getattr(copy[TCP], field) != 22:
                setattr(copy[TCP], field, new_port)
        del copy[TCP].chksum
        copies.append(copy)
    return copies


def test_banner_less_tcp22_is_ssh_only_beside_a_flow_that_showed_its_banner() -> None:
    ssh = packets("ssh")
    alone = classify_flows(_without_banner(ssh, 50000)).flows
    assert [f.link_class for f in alone] == [LinkClass.UNKNOWN]
    together = classify_flows([*ssh, *_without_banner(ssh, 50000)]).flows
    assert [f.link_class for f in together] == [LinkClass.SSH, LinkClass.SSH]


def test_full_mtu_wireguard_data_recorded_on_the_lab_is_still_wireguard() -> None:
    # Recorded on the reference lab's carrier-in during the SFTP pipeline: hospital's wg-in
    # tunnel carries full-size packets of 1452 bytes, whose padding the MTU cut short.
    flows = classify_flows(packets("lab-carrier-in-wg-in")).flows
    sizes = {len(bytes(p[UDP].payload)) for p in packets("lab-carrier-in-wg-in") if UDP in p}
    assert 1452 in sizes
    assert [(f.link_class, f.client, f.server) for f in flows] == [
        (LinkClass.WIREGUARD, "10.98.10.10", "10.98.10.20")
    ]


def test_no_packet_is_no_traffic_not_a_pass() -> None:
    result = classify_flows([])
    assert result.status is CaptureStatus.NO_TRAFFIC and result.flows == ()


def test_recognisers_reject_near_misses() -> None:
    assert is_wireguard(bytes([1, 0, 0, 0]) + bytes(144))
    assert not is_wireguard(bytes([1, 0, 0, 0]) + bytes(143))  # initiation is exactly 148
    assert not is_wireguard(bytes([4, 0, 0, 0]) + bytes(27))  # data: header and tag, 32 at least
    assert not is_wireguard(bytes([5, 0, 0, 0]) + bytes(60))
    assert is_tls_record(bytes([0x16, 3, 1, 0, 0x20]))
    assert not is_tls_record(b"GET / HTTP/1.1\r\n")


@needs_netns
def test_live_capture_of_a_quiet_link_is_no_traffic(netns_lab: NetnsLab) -> None:
    bridge = netns_lab.bridge(247)
    sink = MemorySink()
    spec = CaptureSpec(bridge.auditor4, "tcp or udp", max_seconds=1.5, network="quiet")
    attempt = classify_link(spec, sink)
    assert attempt.succeeded and attempt.value is not None
    assert attempt.value.status is CaptureStatus.NO_TRAFFIC
    assert [a.media_type for a in sink.items.values()] == [PCAP]


@needs_netns
def test_live_capture_classifies_cleartext_sent_across_the_link(netns_lab: NetnsLab) -> None:
    bridge = netns_lab.bridge(248)
    sender = netns_lab.namespace("snd")
    netns_lab.attach(sender, bridge, 10)
    listener = netns_lab.start(sender, ["nc", "-l", "-n", bridge.v4(10), "2121"])
    assert listener.poll() is None
    spec = CaptureSpec(bridge.auditor4, "tcp port 2121", max_seconds=3, network="carrier")
    import threading
    import time

    def send() -> None:
        time.sleep(0.8)
        peer = netns_lab.namespace("rcv")
        netns_lab.attach(peer, bridge, 11)
        peer.run(f"sh -c 'printf \"STOR results.csv\\r\\n\" | nc -n -N {bridge.v4(10)} 2121'")

    thread = threading.Thread(target=send)
    thread.start()
    attempt = classify_link(spec, MemorySink())
    thread.join()
    assert attempt.value is not None
    (flow,) = attempt.value.flows
    assert (flow.link_class, flow.detail) == (LinkClass.CLEARTEXT, "FTP command")
