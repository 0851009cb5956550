"""What kind of traffic crosses an external network: classify the flows of a capture.

Passive: a capture (``probes.capture``) on this machine's interface on the network while the
data pipeline runs, then every IP flow (the 5-tuple, both directions together) is put in one
class by what its packets carry, never by port alone:

- WIREGUARD: UDP datagrams of WireGuard's four message types with their fixed sizes;
- IPSEC: ESP (IP protocol 50) or AH (51), IKE on UDP 500, UDP 4500 (ESP-in-UDP, or IKE after
  the four-zero-byte non-ESP marker);
- OPENVPN: datagrams (or 2-byte-framed TCP records) with OpenVPN opcodes, starting with a hard
  reset when the start was captured;
- SSH: an ``SSH-2.0-`` banner, or a TCP/22 flow between the same endpoints as one with a banner;
- TLS: TLS records; ClientHello / ServerHello versions and the chosen suite when visible;
- CLEARTEXT: application payload that is none of the above (HTTP, FTP, SMTP, DNS commands, or
  mostly printable text), with a short sample (the evidence store redacts it);
- NO_PAYLOAD (handshakes, resets only), CONTROL (ICMP, neighbour discovery), UNKNOWN (opaque
  payload that matches nothing: not shown to be encrypted).
"No traffic captured" is a result of its own, never an empty pass.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from netaddr import IPAddress
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.packet import Packet

from auditor.domain.attempts import Attempt
from auditor.domain.protocols import EvidenceSink
from probes.capture import CaptureResult, CaptureSpec, capture_window
from probes.redact import redact_flow_sample

PROBE = "link-classification"
#: How much of each direction of a TCP flow is reassembled for classification.
STREAM_LIMIT = 16_384
SAMPLE_BYTES = 80


class LinkClass(StrEnum):
    WIREGUARD = "wireguard"
    IPSEC = "ipsec"
    OPENVPN = "openvpn"
    SSH = "ssh"
    TLS = "tls"
    CLEARTEXT = "cleartext"
    NO_PAYLOAD = "no-payload"
    CONTROL = "control"
    UNKNOWN = "unknown"


class CaptureStatus(StrEnum):
    TRAFFIC = "traffic"
    NO_TRAFFIC = "no-traffic"


@dataclass(frozen=True)
class TlsInfo:
    client_versions: tuple[str, ...] = ()  #: offered (supported_versions, else legacy)
    server_version: str | None = None  #: chosen
    cipher_suite: str | None = None  #: chosen, "TLS_AES_256_GCM_SHA384 (0x1302)"


@dataclass(frozen=True)
class Flow:
    proto: str  #: "tcp", "udp", "esp", "icmp", "ip-47", ...
    client: str  #: the side that sent the first packet seen (the SYN's sender for TCP)
    client_port: int | None
    server: str
    server_port: int | None
    link_class: LinkClass
    detail: str
    packets: int
    bytes: int  #: IP bytes, both directions
    first_seen: float
    last_seen: float
    tls: TlsInfo | None = None
    sample: str | None = None  #: cleartext only: the first bytes, non-printables as "."


@dataclass(frozen=True)
class LinkClassification:
    status: CaptureStatus
    flows: tuple[Flow, ...]
    packets: int  #: all packets captured
    non_ip_packets: int  #: ARP and the like: not flows

    def by_class(self, link_class: LinkClass) -> list[Flow]:
        return [f for f in self.flows if f.link_class is link_class]


# -- flows ---------------------------------------------------------------------------------


@dataclass
class _Side:
    address: str
    port: int | None


@dataclass
class _FlowData:
    proto: str
    client: _Side
    server: _Side
    packets: int = 0
    size: int = 0
    first: float = 0.0
    last: float = 0.0
    #: per direction ("c2s", "s2c"): TCP (seq, payload) segments, or UDP / other datagrams
    segments: dict[str, list[tuple[int, bytes]]] = field(
        default_factory=lambda: {"c2s": [], "s2c": []}
    )
    syn_from_server: bool = False

    def stream(self, direction: str) -> bytes:
        """The direction's payload: TCP reassembled by sequence number (retransmissions
        dropped), datagrams in arrival order; at most STREAM_LIMIT bytes."""
        seen: set[int] = set()
        out = bytearray()
        for seq, data in sorted(self.segments[direction]):
            if seq in seen:
                continue
            seen.add(seq)
            out += data
            if len(out) >= STREAM_LIMIT:
                break
        return bytes(out[:STREAM_LIMIT])

    def datagrams(self) -> list[bytes]:
        """Both directions' datagrams in arrival order."""
        merged = sorted(self.segments["c2s"] + self.segments["s2c"])
        return [data for _, data in merged if data]


def _ip_layer(packet: Packet) -> Packet | None:
    for layer in (IP, IPv6):
        if layer in packet:
            found: Packet = packet[layer]
            return found
    return None


def _proto_name(ip: Packet) -> tuple[str, int]:
    number = int(ip.proto if IP in ip else ip.nh)
    names = {6: "tcp", 17: "udp", 50: "esp", 51: "ah", 1: "icmp", 58: "icmpv6"}
    if number == 0 and IPv6 in ip:  # hop-by-hop first (MLD): control traffic
        return "icmpv6", 58
    return names.get(number, f"ip-{number}"), number


def _ports(packet: Packet) -> tuple[int | None, int | None]:
    for layer in (TCP, UDP):
        if layer in packet:
            return int(packet[layer].sport), int(packet[layer].dport)
    return None, None


def _payload(packet: Packet, ip: Packet, proto: str) -> tuple[int, bytes]:
    if proto == "tcp" and TCP in packet:
        return int(packet[TCP].seq), bytes(packet[TCP].payload)
    if proto == "udp" and UDP in packet:
        return 0, bytes(packet[UDP].payload)
    return 0, bytes(ip.payload)


def build_flows(packets: Sequence[Packet]) -> tuple[list[_FlowData], int]:
    """Group IP packets into bidirectional flows; returns them and the non-IP count."""
    flows: dict[tuple[str, frozenset[tuple[str, int | None]]], _FlowData] = {}
    non_ip = 0
    for packet in packets:
        ip = _ip_layer(packet)
        if ip is None:
            non_ip += 1
            continue
        proto, _ = _proto_name(ip)
        sport, dport = _ports(packet)
        src, dst = str(IPAddress(ip.src)), str(IPAddress(ip.dst))
        key = (proto, frozenset({(src, sport), (dst, dport)}))
        flow = flows.get(key)
        if flow is None:
            flow = flows[key] = _FlowData(proto, _Side(src, sport), _Side(dst, dport))
            flow.first = float(packet.time)
        _add(flow, packet, ip, (src, sport))
    return list(flows.values()), non_ip


def _add(flow: _FlowData, packet: Packet, ip: Packet, sender: tuple[str, int | None]) -> None:
    proto = flow.proto
    direction = "c2s" if sender == (flow.client.address, flow.client.port) else "s2c"
    if proto == "tcp" and TCP in packet:
        flags = int(packet[TCP].flags)
        if flags & 0x02 and not flags & 0x10 and direction == "s2c":
            flow.syn_from_server = True  # the capture began after an earlier packet: swap
    flow.packets += 1
    flow.size += len(ip)
    flow.last = float(packet.time)
    seq, data = _payload(packet, ip, proto)
    if proto != "tcp":
        seq = flow.packets  # datagrams: ordered by arrival, across both directions
    if data:
        flow.segments[direction].append((seq, data))


def _orient(flow: _FlowData) -> None:
    if flow.syn_from_server:
        flow.client, flow.server = flow.server, flow.client
        flow.segments = {"c2s": flow.segments["s2c"], "s2c": flow.segments["c2s"]}


# -- recognisers ----------------------------------------------------------------------------

_WG_SIZES = {1: 148, 2: 92, 3: 64}


def is_wireguard(datagram: bytes) -> bool:
    if len(datagram) < 4 or datagram[1:4] != b"\0\0\0" or datagram[0] not in (1, 2, 3, 4):
        return False
    if datagram[0] == 4:
        # Transport data: 16-byte header, data padded to 16 bytes, 16-byte tag. The padding
        # never goes past the tunnel's MTU, so a full-size packet need not be a multiple of
        # 16 (1452 bytes with the default MTU of 1420): only the minimum size is certain.
        return len(datagram) >= 32
    return len(datagram) == _WG_SIZES[datagram[0]]


def is_ike(datagram: bytes) -> bool:
    """An IKE header: two 8-byte SPIs, next payload, version 1.0 or 2.0, exchange type."""
    return len(datagram) >= 28 and datagram[17] in (0x10, 0x20) and datagram[8:16] != b""


#: OpenVPN opcodes (high 5 bits of the first byte): control, ack, data v1/v2, hard resets.
_OPENVPN_OPCODES = frozenset({3, 4, 5, 6, 7, 8, 9, 10, 11})
_OPENVPN_RESETS = frozenset({7, 8, 10})


def is_openvpn(messages: Sequence[bytes]) -> bool:
    opcodes = [m[0] >> 3 for m in messages if m]
    if not opcodes or any(op not in _OPENVPN_OPCODES for op in opcodes):
        return False
    return opcodes[0] in _OPENVPN_RESETS or len(opcodes) >= 8


def _tcp_records(stream: bytes) -> list[bytes]:
    """OpenVPN over TCP: each packet is prefixed by its 2-byte length."""
    records = []
    while len(stream) >= 3:
        size = int.from_bytes(stream[:2], "big")
        if size == 0 or size > len(stream) - 2 + 2048:
            break
        records.append(stream[2 : 2 + size])
        stream = stream[2 + size :]
    return records


_TLS_VERSIONS = {0x0300: "SSL 3.0", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2"}
_TLS_VERSIONS[0x0304] = "TLS 1.3"
_SUITES = {
    0x1301: "TLS_AES_128_GCM_SHA256",
    0x1302: "TLS_AES_256_GCM_SHA384",
    0x1303: "TLS_CHACHA20_POLY1305_SHA256",
    0xC02B: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    0xC02C: "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    0xC02F: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    0xC030: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    0xCCA8: "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCA9: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    0x009E: "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
    0x009F: "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
    0x002F: "TLS_RSA_WITH_AES_128_CBC_SHA",
    0x0035: "TLS_RSA_WITH_AES_256_CBC_SHA",
    0x000A: "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    0x0005: "TLS_RSA_WITH_RC4_128_SHA",
}


def is_tls_record(stream: bytes) -> bool:
    return (
        len(stream) >= 5
        and stream[0] in (0x14, 0x15, 0x16, 0x17)
        and stream[1] == 3
        and stream[2] <= 4
        and int.from_bytes(stream[3:5], "big") <= 18_432
    )


def _version_name(value: int) -> str:
    return _TLS_VERSIONS.get(value, f"0x{value:04x}")


def _extensions(body: bytes, at: int) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    if at + 2 > len(body):
        return found
    end = min(len(body), at + 2 + int.from_bytes(body[at : at + 2], "big"))
    at += 2
    while at + 4 <= end:
        ext_type = int.from_bytes(body[at : at + 2], "big")
        size = int.from_bytes(body[at + 2 : at + 4], "big")
        found[ext_type] = body[at + 4 : at + 4 + size]
        at += 4 + size
    return found


def _handshake(stream: bytes, wanted: int) -> bytes | None:
    """The body of the first handshake message of type ``wanted`` in the first record."""
    if not is_tls_record(stream) or stream[0] != 0x16 or len(stream) < 9 or stream[5] != wanted:
        return None
    size = int.from_bytes(stream[6:9], "big")
    return stream[9 : 9 + size]


def _is_grease(value: int) -> bool:
    return (value & 0x0F0F) == 0x0A0A and (value >> 8) == (value & 0xFF)


def client_hello_versions(stream: bytes) -> tuple[str, ...]:
    body = _handshake(stream, 1)
    if body is None or len(body) < 35:
        return ()
    at = 34 + 1 + body[34]  # legacy version, random, session id
    if at + 2 > len(body):
        return (_version_name(int.from_bytes(body[:2], "big")),)
    at += 2 + int.from_bytes(body[at : at + 2], "big")  # cipher suites
    at += 1 + (body[at] if at < len(body) else 0)  # compression methods
    listed = _extensions(body, at).get(43)
    if listed:
        values = [int.from_bytes(listed[i : i + 2], "big") for i in range(1, len(listed), 2)]
        return tuple(_version_name(v) for v in values if not _is_grease(v))
    return (_version_name(int.from_bytes(body[:2], "big")),)


def server_hello_choice(stream: bytes) -> tuple[str | None, str | None]:
    body = _handshake(stream, 2)
    if body is None or len(body) < 35:
        return None, None
    at = 34 + 1 + body[34]
    if at + 3 > len(body):
        return _version_name(int.from_bytes(body[:2], "big")), None
    suite = int.from_bytes(body[at : at + 2], "big")
    chosen = _extensions(body, at + 3).get(43)
    version = int.from_bytes(chosen[:2] if chosen else body[:2], "big")
    name = _SUITES.get(suite, "unknown")
    return _version_name(version), f"{name} (0x{suite:04x})"


_HTTP = re.compile(rb"^(GET|POST|PUT|DELETE|HEAD|OPTIONS|PATCH|CONNECT) \S+ HTTP/\d")
_HTTP_RESPONSE = re.compile(rb"^HTTP/\d(\.\d)? \d{3}")
_FTP = re.compile(rb"^(USER|PASS|STOR|RETR|LIST|PASV|EPSV|TYPE|CWD|QUIT|AUTH)( |\r\n)")
_BANNER = re.compile(rb"^(220|230|331|250)[ -]")
_SMTP = re.compile(rb"^(EHLO|HELO|MAIL FROM:|RCPT TO:)", re.IGNORECASE)


def cleartext_kind(data: bytes) -> str | None:
    """What cleartext protocol ``data`` (the start of a stream) is, or None."""
    for pattern, name in (
        (_HTTP, "HTTP request"),
        (_HTTP_RESPONSE, "HTTP response"),
        (_FTP, "FTP command"),
        (_SMTP, "SMTP command"),
        (_BANNER, "FTP/SMTP reply"),
    ):
        if pattern.match(data):
            return name
    head = data[:256]
    printable = sum(1 for b in head if 32 <= b < 127 or b in (9, 10, 13))
    if len(head) >= 8 and printable / len(head) >= 0.85:
        return "printable text"
    return None


def is_dns(datagram: bytes) -> bool:
    """A DNS header with one to a few questions and a sane opcode."""
    if len(datagram) < 12:
        return False
    questions = int.from_bytes(datagram[4:6], "big")
    opcode = (datagram[2] >> 3) & 0x0F
    return 1 <= questions <= 4 and opcode in (0, 4, 5)


def sample_of(data: bytes) -> str:
    """The first bytes of a cleartext flow, printable, secrets redacted: the sample reaches
    observations.json and the reports, so it passes the same door as every collected text."""
    # Line breaks are kept for redaction (its rules are line-bound: "PASS x", headers) and shown
    # as "." afterwards, like every other non-printable byte.
    text = "".join(chr(b) if 32 <= b < 127 or b in (10, 13) else "." for b in data[:SAMPLE_BYTES])
    return re.sub(r"[\r\n]", ".", redact_flow_sample(text))


# -- classification ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Verdict:
    link_class: LinkClass
    detail: str
    tls: TlsInfo | None = None
    sample: str | None = None


def _udp_tunnel(datagrams: Sequence[bytes], ports: set[int | None]) -> _Verdict | None:
    if all(is_wireguard(d) for d in datagrams):
        types = sorted({d[0] for d in datagrams})
        return _Verdict(LinkClass.WIREGUARD, f"message types {types}")
    if 4500 in ports:
        ike = any(d[:4] == b"\0\0\0\0" and is_ike(d[4:]) for d in datagrams)
        return _Verdict(LinkClass.IPSEC, "IKE (NAT-T)" if ike else "ESP in UDP")
    if 500 in ports and all(is_ike(d) for d in datagrams):
        return _Verdict(LinkClass.IPSEC, "IKE")
    if is_openvpn(datagrams):
        return _Verdict(LinkClass.OPENVPN, "OpenVPN over UDP")
    return None


def _classify_udp(flow: _FlowData) -> _Verdict:
    datagrams = flow.datagrams()
    ports = {flow.client.port, flow.server.port}
    if not datagrams:
        return _Verdict(LinkClass.NO_PAYLOAD, "empty datagrams")
    tunnel = _udp_tunnel(datagrams, ports)
    if tunnel is not None:
        return tunnel
    if 53 in ports and all(is_dns(d) for d in datagrams):
        return _Verdict(LinkClass.CLEARTEXT, "DNS", sample=sample_of(datagrams[0]))
    return _payload_verdict(datagrams[0], "datagrams")


def _payload_verdict(first: bytes, what: str) -> _Verdict:
    kind = cleartext_kind(first)
    if kind is not None:
        return _Verdict(LinkClass.CLEARTEXT, kind, sample=sample_of(first))
    return _Verdict(LinkClass.UNKNOWN, f"opaque {what}, no known protocol")


def _classify_tcp(flow: _FlowData, ssh_pairs: set[frozenset[str]]) -> _Verdict:
    c2s, s2c = flow.stream("c2s"), flow.stream("s2c")
    if not c2s and not s2c:
        return _Verdict(LinkClass.NO_PAYLOAD, "no payload (handshake or reset only)")
    if c2s.startswith(b"SSH-") or s2c.startswith(b"SSH-"):
        banner = (s2c if s2c.startswith(b"SSH-") else c2s).split(b"\r\n")[0]
        return _Verdict(LinkClass.SSH, sample_of(banner))
    if is_tls_record(c2s) or is_tls_record(s2c):
        server_version, suite = server_hello_choice(s2c)
        info = TlsInfo(client_hello_versions(c2s), server_version, suite)
        return _Verdict(LinkClass.TLS, server_version or "TLS records", tls=info)
    if is_openvpn(_tcp_records(c2s)) and is_openvpn(_tcp_records(s2c) or [b"\x40"]):
        return _Verdict(LinkClass.OPENVPN, "OpenVPN over TCP")
    pair = frozenset({flow.client.address, flow.server.address})
    if 22 in (flow.client.port, flow.server.port) and pair in ssh_pairs:
        return _Verdict(LinkClass.SSH, "TCP/22 between endpoints seen speaking SSH")
    return _payload_verdict(c2s or s2c, "stream")


def _classify(flow: _FlowData, ssh_pairs: set[frozenset[str]]) -> _Verdict:
    if flow.proto in ("esp", "ah"):
        return _Verdict(LinkClass.IPSEC, flow.proto.upper())
    if flow.proto in ("icmp", "icmpv6"):
        return _Verdict(LinkClass.CONTROL, flow.proto)
    if flow.proto == "udp":
        return _classify_udp(flow)
    if flow.proto == "tcp":
        return _classify_tcp(flow, ssh_pairs)
    return _payload_verdict(flow.stream("c2s"), f"{flow.proto} payload")


def _ssh_pairs(flows: Sequence[_FlowData]) -> set[frozenset[str]]:
    """Endpoint pairs seen exchanging an SSH banner: their banner-less TCP/22 flows (begun
    before the capture) are the same service."""
    return {
        frozenset({f.client.address, f.server.address})
        for f in flows
        if f.proto == "tcp"
        and (f.stream("c2s").startswith(b"SSH-") or f.stream("s2c").startswith(b"SSH-"))
    }


def classify_flows(packets: Sequence[Packet]) -> LinkClassification:
    """Classify every flow of ``packets`` (as read from a capture)."""
    data, non_ip = build_flows(packets)
    for flow in data:
        _orient(flow)
    pairs = _ssh_pairs(data)
    flows = []
    for flow in sorted(data, key=lambda f: f.first):
        verdict = _classify(flow, pairs)
        flows.append(
            Flow(
                proto=flow.proto,
                client=flow.client.address,
                client_port=flow.client.port,
                server=flow.server.address,
                server_port=flow.server.port,
                link_class=verdict.link_class,
                detail=verdict.detail,
                packets=flow.packets,
                bytes=flow.size,
                first_seen=flow.first,
                last_seen=flow.last,
                tls=verdict.tls,
                sample=verdict.sample,
            )
        )
    status = CaptureStatus.TRAFFIC if flows else CaptureStatus.NO_TRAFFIC
    return LinkClassification(status, tuple(flows), len(packets), non_ip)


def classify_link(spec: CaptureSpec, sink: EvidenceSink) -> Attempt[LinkClassification]:
    """Capture on the network of ``spec`` for its time window, then classify the flows.

    A capture error is returned as it is; a capture that saw no IP packet completes with
    status NO_TRAFFIC (a check must treat it as inconclusive, not as "nothing in clear").
    """
    return classify_captured(capture_window(spec, sink))


def classify_captured(captured: Attempt[CaptureResult]) -> Attempt[LinkClassification]:
    """The flows of a finished capture (this machine's, or a vantage host's), classified; a
    capture error is returned as it is."""
    if not captured.succeeded or captured.value is None:
        assert captured.error is not None
        return Attempt.failed(
            PROBE, captured.target, captured.error.reason, captured.error.message,
            captured.evidence,
        )  # fmt: skip
    return Attempt.ok(
        PROBE, captured.target, classify_flows(captured.value.packets), captured.evidence
    )


__all__ = [
    "CaptureStatus",
    "Flow",
    "LinkClass",
    "LinkClassification",
    "TlsInfo",
    "classify_captured",
    "classify_flows",
    "classify_link",
    "cleartext_kind",
    "is_openvpn",
    "is_tls_record",
    "is_wireguard",
]
