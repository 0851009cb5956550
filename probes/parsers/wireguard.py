"""Parser for the per-field outputs of ``wg show``.

The collector asks for each field separately (``wg show all public-key``, ``... peers``, ...)
and never for ``private-key``, ``preshared-keys`` or ``dump``, which would carry secrets.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from auditor.domain.facts import WireguardInterface, WireguardPeer
from probes.parsers.errors import ParseError

_KEY = re.compile(r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=")
_IFNAME = re.compile(r"[^\s/]{1,15}")
_MAX_PORT = 65535

T = TypeVar("T")
#: Turns one cell into its value, or raises ParseError naming (tool, line).
_Converter = Callable[[str, int, str], T]


@dataclass(frozen=True)
class WgOutputs:
    """The raw text of each ``wg show`` command the collector runs."""

    interfaces: str  #: wg show interfaces
    public_key: str  #: wg show all public-key
    listen_port: str  #: wg show all listen-port
    peers: str  #: wg show all peers
    endpoints: str  #: wg show all endpoints
    allowed_ips: str  #: wg show all allowed-ips
    latest_handshakes: str  #: wg show all latest-handshakes
    persistent_keepalive: str  #: wg show all persistent-keepalive


def parse_wireguard(outputs: WgOutputs) -> list[WireguardInterface]:
    names = _interface_names(outputs.interfaces)
    public_keys = _per_interface("wg show all public-key", outputs.public_key, names, _public_key)
    ports = _per_interface("wg show all listen-port", outputs.listen_port, names, _port)
    peers = _peer_keys(outputs.peers, names)
    endpoints = _per_peer("wg show all endpoints", outputs.endpoints, peers, _endpoint)
    allowed = _per_peer("wg show all allowed-ips", outputs.allowed_ips, peers, _allowed_ips)
    handshakes = _per_peer(
        "wg show all latest-handshakes", outputs.latest_handshakes, peers, _handshake
    )
    keepalives = _per_peer(
        "wg show all persistent-keepalive", outputs.persistent_keepalive, peers, _keepalive
    )
    result: list[WireguardInterface] = []
    for name in names:
        if name not in public_keys:
            raise ParseError("wg show all public-key", None, f"no public key for {name}")
        result.append(
            WireguardInterface(
                name=name,
                public_key=public_keys[name],
                listen_port=ports.get(name),
                peers=[
                    WireguardPeer(
                        public_key=peer,
                        endpoint=endpoints.get((name, peer)),
                        allowed_ips=allowed.get((name, peer)) or [],
                        latest_handshake=handshakes.get((name, peer)),
                        persistent_keepalive=keepalives.get((name, peer)),
                    )
                    for peer in peers.get(name, [])
                ],
            )
        )
    return result


def _interface_names(text: str) -> list[str]:
    names = text.split()
    for name in names:
        if not _IFNAME.fullmatch(name):
            raise ParseError("wg show interfaces", 1, f"{name!r} is not an interface name")
    if len(set(names)) != len(names):
        raise ParseError("wg show interfaces", 1, "an interface is listed twice")
    return names


def _rows(tool: str, text: str, columns: int) -> list[tuple[int, list[str]]]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) != columns:
            raise ParseError(tool, number, f"expected {columns} tab-separated fields")
        rows.append((number, cells))
    return rows


def _per_interface(tool: str, text: str, names: list[str], convert: _Converter[T]) -> dict[str, T]:
    values: dict[str, T] = {}
    for number, (name, value) in _rows(tool, text, 2):
        if name not in names:
            raise ParseError(tool, number, f"unknown interface {name!r}")
        values[name] = convert(tool, number, value)
    return values


def _peer_keys(text: str, names: list[str]) -> dict[str, list[str]]:
    tool = "wg show all peers"
    peers: dict[str, list[str]] = {}
    for number, (name, key) in _rows(tool, text, 2):
        if name not in names:
            raise ParseError(tool, number, f"unknown interface {name!r}")
        peers.setdefault(name, []).append(_public_key(tool, number, key))
    return peers


def _per_peer(
    tool: str, text: str, peers: dict[str, list[str]], convert: _Converter[T]
) -> dict[tuple[str, str], T]:
    values: dict[tuple[str, str], T] = {}
    for number, (name, peer, value) in _rows(tool, text, 3):
        if peer not in peers.get(name, []):
            raise ParseError(tool, number, f"peer not listed by 'wg show all peers' on {name}")
        values[(name, peer)] = convert(tool, number, value)
    return values


def _public_key(tool: str, number: int, value: str) -> str:
    if not _KEY.fullmatch(value):
        raise ParseError(tool, number, "not a WireGuard public key")
    try:
        base64.b64decode(value, validate=True)
    except binascii.Error:
        raise ParseError(tool, number, "not a WireGuard public key") from None
    return value


def _port(tool: str, number: int, value: str) -> int | None:
    if not value.isascii() or not value.isdigit() or int(value) > _MAX_PORT:
        raise ParseError(tool, number, f"bad port {value!r}")
    # 0 means no port is set (a client-only interface picks a random one).
    return int(value) or None


def _endpoint(tool: str, number: int, value: str) -> str | None:
    if value == "(none)":
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isascii() or not port.isdigit():
        raise ParseError(tool, number, f"bad endpoint {value!r}")
    return value


def _allowed_ips(tool: str, number: int, value: str) -> list[str]:
    if value == "(none)":
        return []
    prefixes = value.split(" ")
    for prefix in prefixes:
        address, sep, length = prefix.partition("/")
        if not sep or not length.isascii() or not length.isdigit() or not address:
            raise ParseError(tool, number, f"bad allowed IP {prefix!r}")
    return prefixes


def _handshake(tool: str, number: int, value: str) -> int | None:
    if not value.isascii() or not value.isdigit():
        raise ParseError(tool, number, f"bad handshake time {value!r}")
    return int(value) or None  # 0: never


def _keepalive(tool: str, number: int, value: str) -> int | None:
    if value == "off":
        return None
    if not value.isascii() or not value.isdigit():
        raise ParseError(tool, number, f"bad keepalive {value!r}")
    return int(value)
