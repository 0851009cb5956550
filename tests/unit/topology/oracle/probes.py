"""New-connection probes derived from a rule set's own literals.

Every address, prefix, range and port a rule compares with gives its boundary values (the
first and last value inside, and the neighbours just outside). A probe starts from a plain
packet of its path and changes one field to one of those values, so every literal is tried on
both sides of each edge without the product of all fields.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from tests.unit.topology.oracle import netlab as nl

KINDS = ("tcp", "udp", "icmp")
BASE_PORT = {"tcp": 22, "udp": 53, "icmp": 0}
BASE_SPORT = 40000

#: Where a path's probes start: (saddr, daddr) per family.
BASE: dict[str, dict[int, tuple[str, str]]] = {
    "in:eth0": {4: (nl.CL4, nl.FW_CL4), 6: (nl.CL6, nl.FW_CL6)},
    "in:docker0": {4: (nl.CT4, nl.FW_CT4), 6: (nl.CT6, nl.FW_CT6)},
    "fwd:eth0>docker0": {4: (nl.CL4, nl.BEYOND_CT[4]), 6: (nl.CL6, nl.BEYOND_CT[6])},
    "fwd:docker0>eth0": {4: (nl.CT4, nl.BEYOND_CL[4]), 6: (nl.CT6, nl.BEYOND_CL[6])},
    "out:eth0": {4: (nl.FW_CL4, nl.CL4), 6: (nl.FW_CL6, nl.CL6)},
    "out:docker0": {4: (nl.FW_CT4, nl.CT4), 6: (nl.FW_CT6, nl.CT6)},
    "local:lo": {4: (nl.FW_CL4, nl.FW_CL4), 6: (nl.FW_CL6, nl.FW_CL6)},
}

#: fw's own addresses: a probe sent out of a link must not be addressed to fw itself.
FW_ADDRESSES = {nl.FW_CL4, nl.FW_CT4, nl.FW_CL6, nl.FW_CT6}


@dataclass(frozen=True)
class Probe:
    path: str
    kind: str
    family: int
    saddr: str
    daddr: str
    sport: int
    dport: int
    ident: int = 0  #: the echo identifier (tells echo requests apart in conntrack)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Literals:
    """The boundary values found in a rule set, by field."""

    addresses: dict[tuple[str, int], set[str]]  #: ("saddr" | "daddr", family) -> values
    ports: dict[str, set[int]]  #: "sport" | "dport" -> values


def _matches(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if "match" in node and isinstance(node["match"], dict):
            yield node["match"]
        for value in node.values():
            yield from _matches(value)
    elif isinstance(node, list):
        for value in node:
            yield from _matches(value)


def _field_of(left: Any) -> str | None:
    payload = left.get("payload") if isinstance(left, dict) else None
    if isinstance(payload, dict):
        field = payload.get("field")
        if field in ("saddr", "daddr", "sport", "dport"):
            return str(field)
    return None


def _atoms(right: Any) -> Iterator[Any]:
    """The literals of a match's right side (sets and concatenations opened up)."""
    if isinstance(right, dict) and "set" in right:
        for item in right["set"]:
            yield from _atoms(item)
    elif isinstance(right, dict) and "concat" in right:
        for item in right["concat"]:
            yield from _atoms(item)
    elif isinstance(right, list):
        for item in right:
            yield from _atoms(item)
    else:
        yield right


def _address_edges(atom: Any) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        if isinstance(atom, str):
            first = last = ipaddress.ip_address(atom)
        elif isinstance(atom, dict) and "prefix" in atom:
            net = ipaddress.ip_network(
                f"{atom['prefix']['addr']}/{atom['prefix']['len']}", strict=False
            )
            first, last = net.network_address, net.broadcast_address
        elif isinstance(atom, dict) and "range" in atom:
            first, last = (ipaddress.ip_address(a) for a in atom["range"])
        else:
            return []
    except (ValueError, TypeError):
        return []  # a set name, a symbolic value: nothing to take an edge of
    edges = [first, last]
    top = 2**first.max_prefixlen - 1
    if int(first) > 0:
        edges.append(first - 1)
    if int(last) < top:
        edges.append(last + 1)
    return edges


def _port_edges(atom: Any) -> list[int]:
    if isinstance(atom, int):
        low = high = atom
    elif (
        isinstance(atom, dict)
        and "range" in atom
        and all(isinstance(v, int) for v in atom["range"])
    ):
        low, high = atom["range"]
    else:
        return []
    return [p for p in (low - 1, low, high, high + 1) if 0 < p <= 65535]


def literals_of(doc: dict[str, Any]) -> Literals:
    found = Literals({}, {"sport": set(), "dport": set()})
    for match in _matches(doc):
        field = _field_of(match.get("left"))
        if field is None:
            continue
        for atom in _atoms(match.get("right")):
            if field in ("sport", "dport"):
                found.ports[field].update(_port_edges(atom))
                continue
            for address in _address_edges(atom):
                found.addresses.setdefault((field, address.version), set()).add(str(address))
    return found


#: The links' broadcast addresses. A socket bound to one as its source sends from the
#: namespace's own address instead (measured: an ipset holding the broadcast address did not
#: match, one holding the sender's address did): such a probe is not the packet it names.
LINK_BROADCASTS = {"10.98.249.255", "10.98.250.255"}


def _sendable(address: str, *, source: bool) -> bool:
    """Addresses a socket can be given at all (the kernel refuses the unspecified one)."""
    parsed = ipaddress.ip_address(address)
    if parsed.is_unspecified:
        return False
    return not (source and (parsed.is_multicast or address in LINK_BROADCASTS))


def _variants(path: str, base: Probe, lit: Literals) -> Iterator[Probe]:
    yield base
    family = base.family
    for address in sorted(lit.addresses.get(("saddr", family), set())):
        if _sendable(address, source=True) and not path.startswith("local"):
            yield _with(base, saddr=address)
    for address in sorted(lit.addresses.get(("daddr", family), set())):
        parsed = ipaddress.ip_address(address)
        if not _sendable(address, source=False) or parsed.is_loopback:
            continue
        if base.kind == "tcp" and parsed.is_multicast:
            continue  # connect() refuses a multicast peer: no packet to observe
        if path.startswith(("out", "fwd")) and address in FW_ADDRESSES:
            continue
        if not path.startswith("local"):
            yield _with(base, daddr=address)
    if base.kind != "icmp":
        for port in sorted(lit.ports["dport"]):
            yield _with(base, dport=port)
        for port in sorted(lit.ports["sport"]):
            yield _with(base, sport=port)


def _with(base: Probe, **changes: Any) -> Probe:
    return Probe(**{**base.as_dict(), **changes})


def probes_for(doc: dict[str, Any], paths: Iterable[str] = tuple(nl.PATHS)) -> list[Probe]:
    """Every probe for the rule set: each path, kind and family, each literal's edges."""
    lit = literals_of(doc)
    found: list[Probe] = []
    seen: set[Probe] = set()
    for path in paths:
        for family in (4, 6):
            saddr, daddr = BASE[path][family]
            for kind in KINDS:
                base = Probe(path, kind, family, saddr, daddr,
                             BASE_SPORT if kind != "icmp" else 0, BASE_PORT[kind])  # fmt: skip
                for probe in _variants(path, base, lit):
                    if probe not in seen:
                        seen.add(probe)
                        found.append(_with(probe, ident=len(found) + 1))
    return found


def sample(probes: list[Probe], size: int, seed: int) -> list[Probe]:
    """A fixed sample: every path's plain packets, then literal edges drawn with ``seed``."""
    plain = [p for p in probes if _is_plain(p)]
    rest = [p for p in probes if not _is_plain(p)]
    drawn = random.Random(seed).sample(rest, max(0, min(len(rest), size - len(plain))))
    return plain + drawn


def _is_plain(probe: Probe) -> bool:
    saddr, daddr = BASE[probe.path][probe.family]
    sport = BASE_SPORT if probe.kind != "icmp" else 0
    return (probe.saddr, probe.daddr, probe.sport, probe.dport) == (
        saddr,
        daddr,
        sport,
        BASE_PORT[probe.kind],
    )
