"""Parser for ``ss -H -t -u -l -n -p`` (listening TCP and UDP sockets, numeric, with owners)."""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from auditor.domain.facts import Listener
from probes.parsers.errors import ParseError

_TOOL = "ss -tulnp"
_PROTOCOLS: dict[str, Literal["tcp", "udp"]] = {"tcp": "tcp", "udp": "udp"}
#: The first process of ``users:(("sshd",pid=612,fd=3),...)``; a name may hold any character
#: but a closing quote followed by ",pid=".
_FIRST_USER = re.compile(r'users:\(\("(?P<name>.*?)",pid=(?P<pid>\d{1,10}),fd=\d{1,10}\)')
_MAX_PORT = 65535


def parse_ss(text: str) -> list[Listener]:
    """Each line: ``Netid State Recv-Q Send-Q Local Peer [Process]``.

    The local address keeps what matters for reachability: "0.0.0.0", "::" (from "[::]"),
    "*" (a dual-stack wildcard), or a specific address. A ``%iface`` suffix (a socket bound to
    a device, or a scoped link-local address) is dropped: the listener then counts as
    reachable on every interface its address allows, which over-states rather than hides.
    """
    listeners: list[Listener] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            listeners.append(_listener(line, number))
    return listeners


def _listener(line: str, number: int) -> Listener:
    fields = line.split(None, 6)
    if len(fields) < 6:
        raise ParseError(_TOOL, number, f"expected at least 6 fields, got {len(fields)}")
    netid, _state, recv_q, send_q, local, _peer = fields[:6]
    proto = _PROTOCOLS.get(netid)
    if proto is None:
        raise ParseError(_TOOL, number, f"unexpected socket type {netid!r}")
    if not (recv_q.isdigit() and send_q.isdigit()):
        raise ParseError(_TOOL, number, "queue sizes are not numbers (a header line?)")
    address, port = _split_local(local, number)
    process, pid = _owner(fields[6] if len(fields) == 7 else "")
    return Listener(proto=proto, address=address, port=port, process=process, pid=pid)


def _split_local(local: str, number: int) -> tuple[str, int]:
    host, sep, port_text = local.rpartition(":")
    if not sep or not port_text.isascii() or not port_text.isdigit():
        raise ParseError(_TOOL, number, f"local address {local!r} has no numeric port")
    port = int(port_text)
    if port > _MAX_PORT:
        raise ParseError(_TOOL, number, f"port {port} out of range")
    return _normalise_host(host, number), port


def _normalise_host(host: str, number: int) -> str:
    bracketed = host.startswith("[")
    if bracketed:
        close = host.find("]")
        if close < 0:
            raise ParseError(_TOOL, number, f"unbalanced bracket in {host!r}")
        host = host[1:close] + host[close + 1 :]
    host = host.partition("%")[0]
    if host == "*":
        return host
    try:
        parsed = ipaddress.ip_address(host)
    except ValueError:
        raise ParseError(_TOOL, number, f"{host!r} is not an address") from None
    if bracketed != (parsed.version == 6):
        raise ParseError(_TOOL, number, f"{host!r}: brackets and address family disagree")
    return str(parsed)


def _owner(process_field: str) -> tuple[str | None, int | None]:
    # Without privileges ss shows no process; that is "unknown", not an error.
    match = _FIRST_USER.search(process_field)
    if match is None:
        return None, None
    return match["name"], int(match["pid"])
