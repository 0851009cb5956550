"""Compile the JSON of ``nft -j list ruleset`` (libnftables-json(5)) into rules over cubes.

Each rule becomes a :class:`Condition` (which packets it certainly matches, which it may match)
and one or more arms (a verdict, possibly after a NAT). Anything this compiler does not
understand becomes an *unknown* part of the condition, named in the rule, never silently true
or false: the evaluator then reports the affected packets as uncertain.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache, cached_property, lru_cache
from typing import Any

from netaddr import AddrFormatError, IPAddress, IPNetwork, IPRange

from auditor.domain.errors import AuditorError
from topology.addrtypes import AddressTypes
from topology.fields import (
    BYTE_TOP,
    CT_STATES,
    ICMP,
    ICMP_TYPES,
    ICMPV6,
    ICMPV6_TYPES,
    NO_DEVICE,
    PORT_PROTOS,
    PORT_TOP,
    PROTO_NUMBERS,
    TCP,
    IntervalSet,
    NameSet,
    family_universe,
    protos,
)
from topology.intervals import AddressSet
from topology.space import TOP, Constraint, Cube, split


class UnsupportedError(AuditorError):
    """An expression outside the modelled subset; the rule gets an unknown condition."""


# -- conditions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    """Which packets a rule matches: ``sure`` certainly, ``possible`` maybe (sure ⊆ possible).

    Both are disjunctions of constraints. A fully understood rule has sure == possible; an
    unknown expression leaves sure empty and possible unconstrained.
    """

    sure: tuple[Constraint, ...]
    possible: tuple[Constraint, ...]
    #: ``ct status dnat``: matches only packets this host did (True) or did not (False)
    #: translate the destination of; a property of the flow, not of the packet's fields.
    dnat: bool | None = None

    @classmethod
    def always(cls) -> Condition:
        return cls.exactly((TOP,))

    @classmethod
    def never(cls) -> Condition:
        return cls((), ())

    @classmethod
    def unknown(cls) -> Condition:
        return cls((), (TOP,))

    @classmethod
    def exactly(cls, terms: Iterable[Constraint]) -> Condition:
        terms = tuple(terms)
        return cls(terms, terms)

    @property
    def exact(self) -> bool:
        # Compiled conditions share one tuple when nothing is unknown (see ``exactly``).
        return self.sure is self.possible

    def and_(self, other: Condition) -> Condition:
        dnat = self.dnat if other.dnat is None else other.dnat
        if self.dnat is not None and other.dnat is not None and self.dnat != other.dnat:
            return Condition.never()
        if self.exact and other.exact:
            terms = _cross(self.sure, other.sure)
            return Condition(terms, terms, dnat)
        return Condition(_cross(self.sure, other.sure), _cross(self.possible, other.possible), dnat)

    def single_term(self) -> Constraint | None:
        """The one constraint of an exact condition of one term (most rules), else None."""
        return self._single_term

    @cached_property
    def _single_term(self) -> Constraint | None:
        # Asked at every rule the firewall walk passes: worked out once per condition.
        plain = self.exact and self.dnat is None
        return self.sure[0] if plain and len(self.sure) == 1 else None

    def split(self, cubes: Iterable[Cube]) -> tuple[list[Cube], list[Cube], list[Cube]]:
        """(certainly matched, maybe matched, certainly not matched), pairwise disjoint."""
        sure, rest = split(cubes, self.sure)
        if self.exact:
            # Nothing outside "sure" can match "possible" when both are the same terms.
            return sure, [], rest
        maybe, never = split(rest, self.possible)
        return sure, maybe, never


def _cross(a: tuple[Constraint, ...], b: tuple[Constraint, ...]) -> tuple[Constraint, ...]:
    return tuple(m for x in a for y in b if (m := x.meet(y)) is not None)


# -- the compiled ruleset -------------------------------------------------------------------


class Action(StrEnum):
    ACCEPT = "accept"
    DROP = "drop"
    REJECT = "reject"
    RETURN = "return"
    JUMP = "jump"
    GOTO = "goto"
    CONTINUE = "continue"
    QUEUE = "queue"  #: userspace decides: both outcomes possible
    NAT = "nat"  #: a NAT statement ends the chain with accept, after translating
    NONE = "none"  #: no verdict statement: go on with the next rule


@dataclass(frozen=True)
class Nat:
    """A translation recorded by a NAT rule; the reachability layer applies it."""

    kind: str  #: "dnat", "snat", "masquerade" or "redirect"
    addr: str | None = None  #: a single address; None for masquerade/redirect or when unknown
    port: int | None = None
    text: str = ""
    exact: bool = True  #: False when the target is a range, a map or an expression


@dataclass(frozen=True)
class Arm:
    condition: Condition
    action: Action
    target: str | None = None  #: chain name for jump/goto
    nat: Nat | None = None


@dataclass(frozen=True)
class Rule:
    family: str
    table: str
    chain: str
    handle: int | None
    exprs: list[Any] = field(compare=False, repr=False)  #: as nft -j lists them
    arms: tuple[Arm, ...] = ()
    unknown: tuple[str, ...] = ()  #: what the compiler could not model, for the report
    #: The rule as its author wrote it, where it was not nft (an iptables-save line).
    source: str | None = field(default=None, compare=False, repr=False)

    # Both are read only for rules that decide something: made on first use, then kept
    # (rendering every rule's text was a fifth of compiling a large rule set).
    @cached_property
    def text(self) -> str:
        return self.source if self.source is not None else render_rule(self.exprs)

    @cached_property
    def ref(self) -> str:
        return f"{self.family} {self.table}/{self.chain}/{self.handle}"


@dataclass(frozen=True)
class Chain:
    family: str
    table: str
    name: str
    type: str | None = None  #: "filter", "nat", "route" for base chains
    hook: str | None = None
    prio: int = 0
    policy: str = "accept"
    rules: tuple[Rule, ...] = ()

    @property
    def is_base(self) -> bool:
        return self.hook is not None

    @property
    def ref(self) -> str:
        return f"{self.family} {self.table}/{self.name}"


@dataclass
class Ruleset:
    chains: dict[tuple[str, str, str], Chain] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  #: objects skipped, for the report


# -- left-hand sides: which field an expression reads ---------------------------------------

Parser = Callable[[Any], Any]


@dataclass(frozen=True)
class Selector:
    """A packet field an expression reads, how to parse its values, what it implies."""

    name: str
    parse: Parser
    implied: Mapping[str, Any] = field(default_factory=dict)
    complement_within: Any = None  #: the domain "!=" complements within


def _selector(expr: Any) -> Selector:
    if isinstance(expr, dict) and len(expr) == 1:
        kind, body = next(iter(expr.items()))
        if kind == "payload" and isinstance(body, dict) and "protocol" in body:
            return _payload_selector(body["protocol"], body.get("field"))
        if kind == "meta" and isinstance(body, dict):
            return _meta_selector(body.get("key"))
        if kind == "ct" and isinstance(body, dict) and body == {"key": "state"}:
            return Selector("ct", _parse_ct_states, complement_within=CT_STATES)
    raise UnsupportedError(f"cannot model {render(expr)}")


_FAMILY4 = {"family": frozenset({4})}
_FAMILY6 = {"family": frozenset({6})}


def _payload_selector(protocol: str, name: str | None) -> Selector:
    found = _payload_table().get((protocol, name))
    if found is None:
        raise UnsupportedError(f"cannot model {protocol} {name}")
    return found


@cache
def _payload_table() -> dict[tuple[str, str | None], Selector]:
    """Every payload field modelled, built once (the parsers are defined further down)."""
    table: dict[tuple[str, str | None], Selector] = {
        ("ip", "saddr"): Selector("saddr", _addr_parser(4), _FAMILY4),
        ("ip", "daddr"): Selector("daddr", _addr_parser(4), _FAMILY4),
        ("ip", "protocol"): Selector("proto", _parse_protos, _FAMILY4),
        ("ip6", "saddr"): Selector("saddr", _addr_parser(6), _FAMILY6),
        ("ip6", "daddr"): Selector("daddr", _addr_parser(6), _FAMILY6),
        # Extension headers make nexthdr differ from the transport protocol; taken as equal.
        ("ip6", "nexthdr"): Selector("proto", _parse_protos, _FAMILY6),
        # nft adds "meta nfproto" to these dependencies (seen with --debug=netlink).
        ("icmp", "type"): Selector(
            "icmp_type", _icmp_parser(ICMP_TYPES), {"proto": protos(1), **_FAMILY4}
        ),
        ("icmpv6", "type"): Selector(
            "icmp_type", _icmp_parser(ICMPV6_TYPES), {"proto": protos(58), **_FAMILY6}
        ),
    }
    port_protos = {"tcp": 6, "udp": 17, "sctp": 132, "dccp": 33, "udplite": 136}
    for protocol, number in port_protos.items():
        for name in ("sport", "dport"):
            table[(protocol, name)] = Selector(name, _parse_ports, {"proto": protos(number)})
    for name in ("sport", "dport"):
        # Handled by _match: for protocols without ports the bytes read are not ports.
        table[("th", name)] = Selector(name, _parse_ports, {"proto": PORT_PROTOS})
    return table


def _meta_selector(key: str | None) -> Selector:
    if key in ("l4proto",):
        return Selector("proto", _parse_protos)
    if key in ("nfproto", "protocol"):
        return Selector("family", _parse_families, complement_within=frozenset({4, 6}))
    if key in ("iifname", "iif"):
        return Selector("iif", _parse_names)
    if key in ("oifname", "oif"):
        return Selector("oif", _parse_names)
    raise UnsupportedError(f"cannot model meta {key}")


# -- right-hand sides: values ---------------------------------------------------------------


def _unwrap(value: Any) -> Any:
    """Set elements may carry timeouts or comments: ``{"elem": {"val": X, ...}}``."""
    while isinstance(value, dict) and "elem" in value:
        value = value["elem"]["val"]
    return value


def _addr_parser(family: int) -> Parser:
    def parse(value: Any) -> AddressSet:
        value = _unwrap(value)
        try:
            if isinstance(value, dict) and "prefix" in value:
                p = value["prefix"]
                return _in_family(_prefix_set(f"{p['addr']}/{p['len']}"), family)
            if isinstance(value, dict) and "range" in value:
                lo, hi = value["range"]
                return _in_family(AddressSet.of(IPRange(str(lo), str(hi))), family)
            if isinstance(value, str):
                return _in_family(_address_set(value), family)
        except (AddrFormatError, ValueError, KeyError, TypeError) as exc:
            raise UnsupportedError(f"address {value!r}: {exc}") from exc
        raise UnsupportedError(f"address {render(value)}")

    return parse


# The same addresses and prefixes recur in every rule set of a site; netaddr's parsing was a
# quarter of compiling. Same texts, same sets (immutable, so shared); errors are not cached.
@lru_cache(maxsize=1 << 16)
def _prefix_set(text: str) -> AddressSet:
    return AddressSet.of(IPNetwork(text))


@lru_cache(maxsize=1 << 16)
def _address_set(text: str) -> AddressSet:
    return AddressSet.of(IPAddress(text))


def _in_family(addresses: AddressSet, family: int) -> AddressSet:
    return addresses & family_universe(family)


def _int_parser(top: int, names: Mapping[str, int], what: str) -> Parser:
    def number(value: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= top:
            return value
        if isinstance(value, str) and value in names:
            return names[value]
        if isinstance(value, str) and value.isdigit() and int(value) <= top:
            return int(value)
        raise UnsupportedError(f"{what} {value!r}")

    def parse(value: Any) -> IntervalSet:
        value = _unwrap(value)
        if isinstance(value, dict) and "range" in value:
            bounds = value["range"]
            if not (isinstance(bounds, list) and len(bounds) == 2):
                raise UnsupportedError(f"{what} range {render(bounds)}")
            lo, hi = number(bounds[0]), number(bounds[1])
            return IntervalSet.of(top, [(lo, hi)])
        return IntervalSet.of(top, [number(value)])

    return parse


def _service_names() -> dict[str, int]:
    names: dict[str, int] = {}
    for service in ("ssh", "http", "https", "domain", "ntp", "smtp", "ftp", "telnet"):
        try:
            names[service] = socket.getservbyname(service)
        except OSError:
            continue
    return names


_parse_ports = _int_parser(PORT_TOP, _service_names(), "port")
_parse_protos = _int_parser(BYTE_TOP, PROTO_NUMBERS, "protocol")


def _icmp_parser(names: Mapping[str, int]) -> Parser:
    return _int_parser(BYTE_TOP, names, "icmp type")


def _parse_families(value: Any) -> frozenset[int]:
    families = {"ipv4": 4, "ip": 4, "ipv6": 6, "ip6": 6}
    value = _unwrap(value)
    if isinstance(value, str) and value in families:
        return frozenset({families[value]})
    raise UnsupportedError(f"family {value!r}")


def _parse_ct_states(value: Any) -> frozenset[str]:
    value = _unwrap(value)
    values = value if isinstance(value, list) else [value]
    if all(isinstance(v, str) and v in CT_STATES for v in values):
        return frozenset(values)
    raise UnsupportedError(f"ct state {value!r}")


def _parse_names(value: Any) -> NameSet:
    """A name, or nft's wildcard ``"eth*"``: the kernel compares the bytes before the star
    only, so every name starting with ``eth`` (``eth`` itself too) matches, and no empty one.
    An escaped star (``"eth\\*"``, a literal star) and a bare ``"*"`` are not modelled."""
    value = _unwrap(value)
    if not isinstance(value, str) or value == NO_DEVICE or "\\" in value:
        raise UnsupportedError(f"interface {value!r}")
    try:
        if value.endswith("*"):
            if len(value) == 1 or "*" in value[:-1]:
                raise UnsupportedError(f"interface wildcard {value!r}")
            return NameSet.prefixed(value[:-1])
        if "*" in value:
            raise UnsupportedError(f"interface {value!r}")
        return NameSet.of(value)
    except ValueError as exc:
        raise UnsupportedError(f"interface {value!r}: {exc}") from exc


# -- matches --------------------------------------------------------------------------------


@dataclass
class _Context:
    family: str
    table: str
    sets: Mapping[tuple[str, str, str], dict[str, Any]]
    #: The host's address types (``fib ... type``); None: not known, such matches unknown.
    types: AddressTypes | None = None
    #: The hook of the base chain the rule is in; None in a chain reached by jumps.
    hook: str | None = None

    def set_elements(self, name: str) -> list[Any]:
        found = self.sets.get((self.family, self.table, name))
        if found is None:
            raise UnsupportedError(f"no set @{name}")
        return list(found.get("elem", []))


def _values_of(right: Any, ctx: _Context) -> list[Any]:
    """The alternatives a right-hand side stands for (a set gives several)."""
    if isinstance(right, str) and right.startswith("@"):
        return ctx.set_elements(right[1:])
    if isinstance(right, dict) and "set" in right:
        return list(right["set"])
    return [right]


def _union(values: list[Any]) -> Any:
    out = values[0]
    for v in values[1:]:
        out = out | v
    return out


def _special_match(op: str, left: Any, right: Any, ctx: _Context) -> Condition | None:
    """Matches decided other than by one field's value set; None for the others."""
    if _reads_tcp_flags(left):
        return _tcp_flags(op, left, right, ctx)
    if _payload_of(left) in (("icmp", "code"), ("icmpv6", "code")):
        return _icmp_code(op, left, right, ctx)
    if left == {"ct": {"key": "status"}}:
        return _ct_status(op, right, ctx)
    kind = next(iter(left), None) if isinstance(left, dict) and len(left) == 1 else None
    handler = _BY_EXPRESSION.get(kind) if isinstance(kind, str) else None
    return None if handler is None else handler(op, left[kind], right, ctx)


def _compile_match(body: dict[str, Any], ctx: _Context) -> Condition:
    op, left, right = body.get("op", "=="), body.get("left"), body.get("right")
    special = _special_match(op, left, right, ctx)
    if special is not None:
        return special
    selector = _selector(left)
    if op in ("==", "in", "!=") and not _values_of(right, ctx):
        return _against_empty_set(op, selector)
    values = _comparison(op, selector, right, ctx)
    terms = [Constraint({**selector.implied, selector.name: values})]
    if _is_th(left):
        # Protocols without ports: nft reads other header bytes there; may or may not match.
        unknown_part = Constraint({"proto": PORT_PROTOS.complement()})
        return Condition(tuple(terms), (*terms, unknown_part))
    return Condition.exactly(terms)


# -- what a connection attempt's first packet carries ---------------------------------------
#
# The space has no TCP flags or ICMP code: a TCP packet in ct state new stands for a connection
# attempt's SYN (flags SYN only, what Linux sends), an ICMP/ICMPv6 echo request for one of code
# 0. A match on those fields is decided for such packets; for other TCP packets (ct state other
# than new) and other ICMP types it may or may not match; for other protocols it never does
# (nft's implicit dependency, meta l4proto, fails).

TCP_FLAGS = {"fin": 1, "syn": 2, "rst": 4, "psh": 8, "ack": 16, "urg": 32, "ecn": 64, "cwr": 128}
#: A new connection's SYN.
SYN_ONLY = TCP_FLAGS["syn"]
_NEW = frozenset({"new"})
_TCP_NEW = Constraint({"proto": protos(TCP), "ct": _NEW})
_TCP_NOT_NEW = Constraint({"proto": protos(TCP), "ct": CT_STATES - _NEW})
ICMP_CODES = {
    "net-unreachable": 0,
    "host-unreachable": 1,
    "prot-unreachable": 2,
    "port-unreachable": 3,
    "frag-needed": 4,
    "net-prohibited": 9,
    "host-prohibited": 10,
    "admin-prohibited": 13,
}
ICMPV6_CODES = {
    "no-route": 0,
    "admin-prohibited": 1,
    "addr-unreachable": 3,
    "port-unreachable": 4,
    "policy-fail": 5,
    "reject-route": 6,
}


def _payload_of(expr: Any) -> tuple[Any, Any] | None:
    body = expr.get("payload") if isinstance(expr, dict) else None
    return (body.get("protocol"), body.get("field")) if isinstance(body, dict) else None


def _reads_tcp_flags(left: Any) -> bool:
    if isinstance(left, dict) and "&" in left:
        operands = left["&"]
        return isinstance(operands, list) and bool(operands) and _reads_tcp_flags(operands[0])
    return _payload_of(left) == ("tcp", "flags")


def _flag_value(value: Any) -> int:
    """``syn``, 2, ``[syn, ack]`` or ``{"|": [syn, ack]}``: the OR of the flags named."""
    value = _unwrap(value)
    if isinstance(value, bool):
        raise UnsupportedError(f"tcp flags {value!r}")
    if isinstance(value, int) and 0 <= value <= BYTE_TOP:
        return value
    if isinstance(value, str) and value in TCP_FLAGS:
        return TCP_FLAGS[value]
    if isinstance(value, dict) and isinstance(value.get("|"), list):
        value = value["|"]
    if isinstance(value, list) and value:
        out = 0
        for item in value:
            out |= _flag_value(item)
        return out
    raise UnsupportedError(f"tcp flags {render(value)}")


def _tcp_flags(op: str, left: Any, right: Any, ctx: _Context) -> Condition:
    """Decide a ``tcp flags`` match for a SYN (see above). nft -j writes ``tcp flags syn``
    as ``in`` (any of the bits: ``flags & syn != 0``), ``syn / syn,ack`` as ``flags &
    [syn, ack] == syn``, and a set as ``==`` a lookup."""
    flags = SYN_ONLY
    if isinstance(left, dict) and "&" in left:
        operands = left["&"]
        if len(operands) != 2:
            raise UnsupportedError(f"tcp flags {render(left)}")
        flags &= _flag_value(operands[1])
    named = isinstance(right, str) and right.startswith("@")
    is_set = named or (isinstance(right, dict) and "set" in right)
    if is_set and op in ("==", "!=", "in"):
        found = flags in {_flag_value(v) for v in _values_of(right, ctx)}
        matched = found if op != "!=" else not found
    elif op == "==":
        matched = flags == _flag_value(right)
    elif op == "!=":
        matched = flags != _flag_value(right)
    elif op == "in":
        matched = flags & _flag_value(right) != 0
    else:
        raise UnsupportedError(f"tcp flags {op} {render(right)}")
    if matched:
        return Condition((_TCP_NEW,), (_TCP_NEW, _TCP_NOT_NEW))
    return Condition((), (_TCP_NOT_NEW,))


def _icmp_code(op: str, left: Any, right: Any, ctx: _Context) -> Condition:
    """Decide an ``icmp code`` / ``icmpv6 code`` match for an echo request (code 0)."""
    v6 = _payload_of(left) == ("icmpv6", "code")
    names, proto, echo, family = (
        (ICMPV6_CODES, ICMPV6, ICMPV6_TYPES["echo-request"], _FAMILY6)
        if v6
        else (ICMP_CODES, ICMP, ICMP_TYPES["echo-request"], _FAMILY4)
    )
    selector = Selector("icmp_type", _int_parser(BYTE_TOP, names, "icmp code"))
    codes = _comparison(op, selector, right, ctx) if _values_of(right, ctx) else None
    if codes is None:
        raise UnsupportedError(f"icmp code {op} an empty set")
    base = {"proto": protos(proto), **family}
    echo_term = Constraint({**base, "icmp_type": protos(echo)})
    other_term = Constraint({**base, "icmp_type": protos(echo).complement()})
    if 0 in codes:
        return Condition((echo_term,), (echo_term, other_term))
    return Condition((), (other_term,))


_FIB_FAMILIES = {"ip": (4,), "ip6": (6,), "inet": (4, 6)}


def _fib_type(op: str, fib: Any, right: Any, ctx: _Context) -> Condition:
    """``fib daddr type local`` (and iptables' ``-m addrtype``): the destination's type on
    this host, from its local routing table (topology/addrtypes.py). Only the destination
    without a device restriction is modelled; other forms, a host whose types are not known,
    and (per family) a type the model cannot tell, stay unknown."""
    flags = fib.get("flags") if isinstance(fib, dict) else None
    if isinstance(fib, dict) and fib.get("result") == "oif" and _is_reverse_path(flags):
        return _reverse_path(op, right, ctx)
    if not (
        isinstance(fib, dict) and fib.get("result") == "type" and flags in (["daddr"], "daddr")
    ):
        raise UnsupportedError(f"cannot model {render({'fib': fib})}")
    if ctx.types is None:
        raise UnsupportedError("fib daddr type: the host's address types are not known")
    if op not in ("==", "!=", "in"):
        raise UnsupportedError(f"fib daddr type {op}")
    names = [_unwrap(v) for v in _values_of(right, ctx)]
    sure: list[Constraint] = []
    unsure: list[Constraint] = []
    for family in _FIB_FAMILIES.get(ctx.family, (4, 6)):
        chosen = _typed_addresses(ctx.types, names, family)
        if chosen is None:
            unsure.append(Constraint({"family": frozenset({family})}))
            continue
        if op == "!=":
            chosen = family_universe(family) - chosen
        sure.append(Constraint({"family": frozenset({family}), "daddr": chosen}))
    if not unsure:
        return Condition.exactly(sure)
    return Condition(tuple(sure), (*sure, *unsure))


def _is_reverse_path(flags: Any) -> bool:
    return isinstance(flags, list) and set(flags) in ({"saddr", "iif"}, {"saddr", "mark", "iif"})


def _reverse_path(op: str, right: Any, ctx: _Context) -> Condition:
    """``fib saddr . [mark .] iif oif missing|exists`` for IPv6 (firewalld's rpfilter): does
    the route back to the source leave through the device the packet came in on? The mark
    is taken as unset (no rule of the host selects by it: see ReversePath). IPv4 packets,
    the loopback device outside a prerouting base chain, and the unsure sources stay
    undecided."""
    reverse = ctx.types.reverse_v6 if ctx.types is not None else None
    if reverse is None:
        raise UnsupportedError("fib saddr . iif oif: the host's reverse path is not known")
    if not (isinstance(right, bool) and op in ("==", "!=")):
        raise UnsupportedError(f"fib saddr . iif oif {op} {render(right)}")
    wants_missing = (right is False) == (op == "==")
    ipv6 = frozenset({6})
    decided = family_universe(6) - reverse.unsure
    sure: list[Constraint] = []
    for device, back in reverse.by_device.items():
        if device in ("lo", NO_DEVICE):
            continue
        chosen = (decided - back) if wants_missing else (decided & back)
        sure.append(Constraint({"family": ipv6, "iif": NameSet.of(device), "saddr": chosen}))
    if wants_missing:
        # No route leaves through a device that carries none: the lookup finds another.
        others = NameSet.all_but(*reverse.by_device, "lo", NO_DEVICE)
        sure.append(Constraint({"family": ipv6, "iif": others, "saddr": decided}))
    unsure = [Constraint({"family": ipv6, "saddr": reverse.unsure})]
    if ctx.hook == "prerouting":
        # nft answers a packet looped back (iif lo) on prerouting with its own device.
        loopback = Constraint({"family": ipv6, "iif": NameSet.of("lo"), "saddr": decided})
        if not wants_missing:
            sure.append(loopback)
        unsure.append(Constraint({"family": ipv6, "iif": NameSet.of(NO_DEVICE)}))
    else:
        unsure.append(Constraint({"family": ipv6, "iif": NameSet.of("lo", NO_DEVICE)}))
    if ctx.family == "inet":
        unsure.append(Constraint({"family": frozenset({4})}))
    return Condition(tuple(sure), (*sure, *unsure))


def _typed_addresses(types: AddressTypes, names: list[Any], family: int) -> AddressSet | None:
    chosen = AddressSet()
    for name in names:
        found = types.addresses(name, family) if isinstance(name, str) else None
        if found is None:
            return None
        chosen = chosen | found
    return chosen


def _ct_status(op: str, right: Any, ctx: _Context) -> Condition:
    """``ct status dnat`` (firewalld accepts what its forward ports translated): whether this
    host translated the connection's destination on an earlier hook, which the firewall walk
    knows of each flow. Other status bits are not modelled."""
    names = [_unwrap(v) for v in _values_of(right, ctx)]
    # nft -j writes the bit test "ct status dnat" as "in"; "==" would compare every bit.
    if names != ["dnat"] or op not in ("in", "!="):
        raise UnsupportedError(f"cannot model ct status {op} {render(right)}")
    terms = (TOP,)
    return Condition(terms, terms, dnat=op == "in")


def _extension_header(op: str, exthdr: Any, right: Any, _ctx: _Context) -> Condition:
    """A match on an IPv6 extension header (``rt type 0``, ``exthdr rt exists``): a connection
    attempt's packet carries none (the engine's model: the next header is the transport), so
    a field match never matches (nft_exthdr breaks the rule). "exists" is false and "missing"
    true for IPv6 packets; for IPv4 ones the lookup's answer is not modelled."""
    if not isinstance(exthdr, dict):
        raise UnsupportedError(f"exthdr {render(exthdr)}")
    if exthdr.get("field") is not None:
        return Condition.never()
    if isinstance(right, bool) and op in ("==", "!="):
        present = right if op == "==" else not right
        ipv6 = Constraint({"family": frozenset({6})})
        ipv4 = Constraint({"family": frozenset({4})})
        return Condition((), (ipv4,)) if present else Condition((ipv6,), (ipv6, ipv4))
    raise UnsupportedError(f"exthdr {render(exthdr)} {op} {render(right)}")


def _against_empty_set(op: str, selector: Selector) -> Condition:
    """A lookup in an empty set (a named set nothing was added to yet) never matches;
    its negation matches every packet the selector applies to."""
    if op == "!=":
        return Condition.exactly([Constraint(dict(selector.implied))])
    return Condition.never()


def _is_th(expr: Any) -> bool:
    return isinstance(expr, dict) and expr.get("payload", {}).get("protocol") == "th"


def _comparison(op: str, selector: Selector, right: Any, ctx: _Context) -> Any:
    if op in ("<", ">", "<=", ">=") and selector.name in ("sport", "dport", "proto"):
        return _ordering(op, selector, right)
    if op == "in" and selector.name != "ct":
        op = "=="  # "in" on a non-flag field is a set lookup
    if op in ("==", "in"):
        return _union([selector.parse(v) for v in _values_of(right, ctx)])
    if op == "!=":
        matched = _union([selector.parse(v) for v in _values_of(right, ctx)])
        return _complement(selector, matched)
    raise UnsupportedError(f"operator {op}")


def _complement(selector: Selector, values: Any) -> Any:
    if selector.complement_within is not None:
        return selector.complement_within - values
    if isinstance(values, NameSet):
        # A hook without that device reads the empty name (NO_DEVICE): "!=" matches it.
        return values.complement()
    if isinstance(values, IntervalSet):
        return values.complement()
    family = 4 if selector.implied.get("family") == frozenset({4}) else 6
    return family_universe(family) - values


def _ordering(op: str, selector: Selector, right: Any) -> IntervalSet:
    bound = selector.parse(right).smallest()
    top = PORT_TOP if selector.name != "proto" else BYTE_TOP
    spans = {
        "<": (0, bound - 1),
        "<=": (0, bound),
        ">": (bound + 1, top),
        ">=": (bound, top),
    }
    return IntervalSet.of(top, [spans[op]])


def _compile_concat(op: str, parts: list[Any], right: Any, ctx: _Context) -> Condition:
    if op not in ("==", "in"):
        raise UnsupportedError(f"negated concatenation {render(parts)}")
    selectors = [_selector(p) for p in parts]
    th = [_is_th(p) for p in parts]
    terms: list[Constraint] = []
    #: Protocols without ports where a part is ``th``: nft reads other header bytes there.
    doubtful: list[Constraint] = []
    for wrapped in _values_of(right, ctx):
        element = _unwrap(wrapped)
        values = element.get("concat") if isinstance(element, dict) else None
        if not isinstance(values, list) or len(values) != len(selectors):
            raise UnsupportedError(f"concatenation element {render(element)}")
        constraint: Constraint | None = TOP
        unsure: Constraint | None = Constraint({"proto": PORT_PROTOS.complement()})
        for sel, value, is_th in zip(selectors, values, th, strict=True):
            piece = Constraint({**sel.implied, sel.name: sel.parse(value)})
            constraint = constraint.meet(piece) if constraint is not None else None
            if not is_th:
                unsure = unsure.meet(piece) if unsure is not None else None
        if constraint is not None:
            terms.append(constraint)
        if any(th) and unsure is not None:
            doubtful.append(unsure)
    if doubtful:
        return Condition(tuple(terms), (*terms, *doubtful))
    return Condition.exactly(terms)


#: Left-hand expressions with a compiler of their own: (op, the expression's body, right, ctx).
_BY_EXPRESSION: dict[str, Callable[[str, Any, Any, _Context], Condition]] = {
    "concat": _compile_concat,
    "fib": _fib_type,
    "exthdr": _extension_header,
}


# -- statements -----------------------------------------------------------------------------

_SIMPLE_VERDICTS = {
    "accept": Action.ACCEPT,
    "drop": Action.DROP,
    "reject": Action.REJECT,
    "return": Action.RETURN,
    "continue": Action.CONTINUE,
    "queue": Action.QUEUE,
}
#: Statements that neither match nor decide (limit/quota, set updates, xt handled apart).
_NEUTRAL = {"counter", "log", "ct helper", "ct timeout", "ct expectation", "synproxy"}
#: iptables-nft targets that only log and go on (XT_CONTINUE), as nft -j shows them.
_XT_NEUTRAL_TARGETS = {"LOG", "NFLOG"}
_NAT = ("dnat", "snat", "masquerade", "redirect")


_ONLY_TCP = Condition.exactly([Constraint({"proto": protos(TCP)})])


def _is_mss_clamp(key: Any) -> bool:
    option = key.get("tcp option") if isinstance(key, dict) else None
    return isinstance(option, dict) and option == {"name": "maxseg", "field": "size"}


def _nat_of(kind: str, body: Any) -> Nat:
    body = body if isinstance(body, dict) else {}
    addr, port = body.get("addr"), body.get("port")
    exact = (addr is None or _is_single_address(addr)) and (port is None or isinstance(port, int))
    return Nat(
        kind=kind,
        addr=addr if isinstance(addr, str) and exact else None,
        port=port if isinstance(port, int) else None,
        text=render({kind: body or None}),
        exact=exact,
    )


def _is_single_address(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        IPAddress(value)
    except (AddrFormatError, ValueError):
        return False
    return True


@dataclass
class _RuleBuilder:
    ctx: _Context
    condition: Condition = field(default_factory=Condition.always)
    unknown: list[str] = field(default_factory=list)
    arms: list[Arm] = field(default_factory=list)

    def add_unknown(self, why: str) -> None:
        self.unknown.append(why)
        self.condition = self.condition.and_(Condition.unknown())

    def feed(self, expr: Any) -> None:
        if not isinstance(expr, dict) or len(expr) != 1:
            self.add_unknown(f"unexpected expression {render(expr)}")
            return
        kind, body = next(iter(expr.items()))
        if self.arms:
            # Statements after the verdict (nft never lists any) are not reached.
            return
        if kind == "match":
            self._match(body)
        elif kind in _SIMPLE_VERDICTS:
            self.arms.append(Arm(self.condition, _SIMPLE_VERDICTS[kind]))
        elif kind in ("jump", "goto"):
            action = Action.JUMP if kind == "jump" else Action.GOTO
            self.arms.append(Arm(self.condition, action, target=body.get("target")))
        elif kind in _NAT:
            self.arms.append(Arm(self.condition, Action.NAT, nat=_nat_of(kind, body)))
        elif kind == "vmap":
            self._vmap(body)
        elif kind in ("limit", "quota"):
            self._rate(kind, body)
        elif kind == "mangle":
            self._mangle(body)
        elif kind == "set":
            self._set_update(body)
        elif kind == "xt":
            self._xt(body)
        elif kind not in _NEUTRAL:
            self.add_unknown(f"statement {render(expr)}")

    def _match(self, body: Any) -> None:
        try:
            self.condition = self.condition.and_(_compile_match(body, self.ctx))
        except UnsupportedError as exc:
            self.add_unknown(str(exc))

    def _rate(self, kind: str, body: Any) -> None:
        # Taken for the first packet of a quiet flow: under the rate, so "limit rate N"
        # matches and "limit rate over N" does not. Quotas depend on history: unknown.
        if kind == "limit" and isinstance(body, dict):
            if body.get("inv"):
                self.condition = Condition.never()
            return
        self.add_unknown(f"{kind} {render(body)}")

    def _set_update(self, body: Any) -> None:
        # "add @s { ip saddr }" only records; an element with a stateful statement (limit,
        # ct count, quota) is a condition depending on history ("add @s { ip saddr limit rate
        # over 10/minute } drop" drops only over the rate). A counter only counts.
        stmts = body.get("stmt", []) if isinstance(body, dict) else None
        if not isinstance(stmts, list):
            self.add_unknown(f"set statement {render({'set': body})}")
            return
        for stmt in stmts:
            if not (isinstance(stmt, dict) and set(stmt) == {"counter"}):
                self.add_unknown(f"set element with {render(stmt)} (depends on history)")

    def _xt(self, body: Any) -> None:
        kind = body.get("type") if isinstance(body, dict) else None
        name = body.get("name") if isinstance(body, dict) else None
        if kind == "target" and name in _XT_NEUTRAL_TARGETS:
            return
        self.add_unknown(f"xt {kind} {name}")
        if kind != "match":
            # A target not known may end the packet's walk either way (TARPIT drops, a
            # REJECT with options not modelled): both verdicts, as for a queue.
            self.arms.append(Arm(self.condition, Action.QUEUE))

    def _mangle(self, body: Any) -> None:
        key = body.get("key") if isinstance(body, dict) else None
        if _is_mss_clamp(key):
            # The MSS is read by nothing modelled; the statement breaks the rule where there
            # is no TCP header (nft_exthdr_tcp_set_eval), and no dependency is added.
            self.condition = self.condition.and_(_ONLY_TCP)
            return
        harmless = isinstance(key, dict) and (
            key.get("meta", {}).get("key") in ("mark", "priority", "nftrace")
            or key.get("ct", {}).get("key") == "mark"
        )
        if not harmless:
            # Rewriting packet fields changes what later rules see.
            self.add_unknown(f"mangle {render(body)}")

    def _vmap(self, body: Any) -> None:
        try:
            selector_left = body["key"]
            data = body["data"]
            pairs = self._vmap_pairs(data)
        except (UnsupportedError, KeyError, TypeError) as exc:
            self.add_unknown(f"vmap: {exc}")
            self.arms.append(Arm(self.condition, Action.QUEUE))
            return
        for key, verdict in pairs:
            match = {"op": "==", "left": selector_left, "right": key}
            try:
                arm_condition = self.condition.and_(_compile_match(match, self.ctx))
            except UnsupportedError as exc:
                self.add_unknown(str(exc))
                arm_condition = self.condition.and_(Condition.unknown())
            kind, target = next(iter(verdict.items()))
            action = _SIMPLE_VERDICTS.get(kind) or (Action.JUMP if kind == "jump" else None)
            action = action or (Action.GOTO if kind == "goto" else Action.QUEUE)
            chain = target.get("target") if isinstance(target, dict) else None
            self.arms.append(Arm(arm_condition, action, target=chain))

    def _vmap_pairs(self, data: Any) -> list[tuple[Any, dict[str, Any]]]:
        if isinstance(data, str) and data.startswith("@"):
            elements = self.ctx.set_elements(data[1:])
        elif isinstance(data, dict) and "set" in data:
            elements = data["set"]
        else:
            raise UnsupportedError(f"map {render(data)}")
        if not all(_is_map_element(e) for e in elements):
            raise UnsupportedError(f"map elements {render(elements)}")
        return [(_unwrap(k), v) for k, v in elements]

    def build(self) -> _Compiled:
        arms = self.arms or [Arm(self.condition, Action.NONE)]
        return tuple(arms), tuple(self.unknown)


#: What compiling a rule's expressions gives: its arms, and what could not be modelled.
_Compiled = tuple[tuple[Arm, ...], tuple[str, ...]]


def _is_map_element(element: Any) -> bool:
    """A verdict map's element as nft prints it: ``[key, {"accept": null}]``."""
    return (
        isinstance(element, list)
        and len(element) == 2
        and isinstance(element[1], dict)
        and len(element[1]) == 1
    )


def compile_rule(
    raw: dict[str, Any],
    sets: Mapping[tuple[str, str, str], dict[str, Any]],
    types: AddressTypes | None = None,
    hook: str | None = None,
) -> Rule:
    exprs = raw.get("expr", [])
    key = _reuse_key(raw["family"], raw["table"], exprs)
    compiled = _COMPILED.get(key) if key is not None else None
    if compiled is None:
        builder = _RuleBuilder(_Context(raw["family"], raw["table"], sets, types, hook))
        for expr in exprs:
            builder.feed(expr)
        compiled = builder.build()
        if key is not None:
            _remember(key, compiled)
    arms, unknown = compiled
    source = raw.get("iptables")
    return Rule(
        raw["family"],
        raw["table"],
        raw["chain"],
        raw.get("handle"),
        exprs,
        arms,
        unknown,
        source if isinstance(source, str) else None,
    )


# The same rules recur in the rule sets of many hosts (a site's administration and logging
# rules, the usual first rules of every chain) while the rule sets differ in a few: a rule's
# compiled arms are kept by the text of its expressions, and reused (they are immutable).
_COMPILED: dict[tuple[str, str, str], _Compiled] = {}
_COMPILED_MAX = 1 << 16
#: Longer texts (rules with large anonymous sets) are compiled each time, not kept as keys.
_KEY_MAX = 4096


def _reuse_key(family: str, table: str, exprs: list[Any]) -> tuple[str, str, str] | None:
    """What compiling depends on, as text; None when that is more than the text.

    ``repr`` keeps the types apart (a tuple is not a list, True is not 1), as the compiler
    does. A rule naming a set (``@name``) depends on that set's elements in its own rule set:
    such rules, and any rule with an "@" anywhere, are compiled each time.
    """
    text = repr(exprs)
    # "fib" also depends on the host's own addresses (its address types).
    if "@" in text or "'fib'" in text or len(text) > _KEY_MAX:
        return None
    return family, table, text


def _remember(key: tuple[str, str, str], compiled: _Compiled) -> None:
    if len(_COMPILED) >= _COMPILED_MAX:
        _COMPILED.clear()  # bounded; what recurs comes back at once
    _COMPILED[key] = compiled


_PRIORITY_NAMES = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50}
_PRIORITY_NAMES["srcnat"] = 100


def _priority(value: Any) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value in _PRIORITY_NAMES:
        return _PRIORITY_NAMES[value]
    return 0


#: The keys naming an object, by kind: (family, table, own name or chain).
_IDENTITY = {
    "set": ("family", "table", "name"),
    "map": ("family", "table", "name"),
    "chain": ("family", "table", "name"),
    "rule": ("family", "table", "chain"),
}


def _identity(kind: str, body: Any) -> tuple[str, str, str] | None:
    """The object's (family, table, name), or None when nft could not have printed it."""
    keys = _IDENTITY[kind]
    if not isinstance(body, dict) or not all(isinstance(body.get(k), str) for k in keys):
        return None
    family, table, name = (body[k] for k in keys)
    return family, table, name


def _well_typed(kind: str, body: dict[str, Any]) -> bool:
    """A rule's ``expr`` is a list; a chain's type, hook and policy are names, its prio a
    number or a name: what libnftables-json(5) prints."""
    if kind == "rule":
        return isinstance(body.get("expr", []), list)
    if kind == "chain":
        names_ok = all(isinstance(body.get(k, ""), str) for k in ("type", "hook", "policy"))
        prio = body.get("prio", 0)
        return names_ok and isinstance(prio, int | str) and not isinstance(prio, bool)
    return True


def parse_ruleset(doc: Mapping[str, Any], types: AddressTypes | None = None) -> Ruleset:
    """Group the flat object list into chains with their compiled rules, in listed order.

    An object that is not what ``nft -j`` prints (identity keys missing or not strings, a
    rule whose ``expr`` is not a list) is skipped and listed in ``problems``: one malformed
    object must not keep the rest of the host's rule set, or the topology, from being built.
    """
    objects = [o for o in doc.get("nftables", []) if isinstance(o, dict) and len(o) == 1]
    sets: dict[tuple[str, str, str], dict[str, Any]] = {}
    raw_chains: dict[tuple[str, str, str], dict[str, Any]] = {}
    raw_rules: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    result = Ruleset()
    for index, obj in enumerate(objects):
        kind, body = next(iter(obj.items()))
        if kind not in _IDENTITY:
            continue
        key = _identity(kind, body)
        if key is None or not _well_typed(kind, body):
            result.problems.append(f"object {index} ({kind}): malformed, skipped")
            continue
        if kind in ("set", "map"):
            sets[key] = body
        elif kind == "chain":
            raw_chains[key] = body
            raw_rules.setdefault(key, [])
        else:
            raw_rules.setdefault(key, []).append(body)
    for key, body in raw_chains.items():
        hook = body.get("hook") if isinstance(body.get("hook"), str) else None
        rules = tuple(compile_rule(r, sets, types, hook) for r in raw_rules.get(key, []))
        result.chains[key] = Chain(
            family=body["family"],
            table=body["table"],
            name=body["name"],
            type=body.get("type"),
            hook=body.get("hook"),
            prio=_priority(body.get("prio", 0)),
            policy=body.get("policy", "accept"),
            rules=rules,
        )
    return result


# -- human-readable text --------------------------------------------------------------------


def render(expr: Any) -> str:
    """nft-like text for an expression, falling back to compact JSON."""
    if expr is None:
        return ""
    if isinstance(expr, bool):
        return str(expr).lower()
    if isinstance(expr, str | int):
        return f'"{expr}"' if isinstance(expr, str) and not _bare(expr) else str(expr)
    if isinstance(expr, list):
        return ",".join(render(e) for e in expr)
    if isinstance(expr, dict) and len(expr) == 1:
        kind, body = next(iter(expr.items()))
        text = _render_known(kind, body)
        if text is not None:
            return text
    return json.dumps(expr, separators=(",", ":"), sort_keys=True)


def _bare(text: str) -> bool:
    return text.startswith("@") or all(c.isalnum() or c in ".:-_/" for c in text)


def _render_known(kind: str, body: Any) -> str | None:
    simple = _SIMPLE_RENDERERS  # defined below, with the functions it names
    if kind in simple and (body is not None or kind in ("counter", "log")):
        try:
            return simple[kind](body)
        except (AttributeError, IndexError, KeyError, TypeError):
            return None
    if kind in _SIMPLE_VERDICTS:
        return kind + (f" with {body['type']}" if isinstance(body, dict) and "type" in body else "")
    if kind in _NAT:
        return _render_nat(kind, body)
    return None


def _render_match(body: dict[str, Any]) -> str:
    op = body.get("op", "==")
    left, right = render(body.get("left")), render(body.get("right"))
    if left.startswith("meta ") and left.split()[1] in ("iifname", "oifname", "iif", "oif"):
        # Interface names are strings: nft shows them quoted.
        left = left.removeprefix("meta ")
        raw = body.get("right")
        right = f'"{raw}"' if isinstance(raw, str) and not raw.startswith("@") else right
    shown = {"==": " ", "in": " "}.get(op, f" {op} ")
    return f"{left}{shown}{right}"


def _render_nat(kind: str, body: Any) -> str:
    if not isinstance(body, dict) or ("addr" not in body and "port" not in body):
        return kind
    target = render(body.get("addr")) if "addr" in body else ""
    if "port" in body:
        target += f":{render(body['port'])}"
    return f"{kind} to {target}"


#: Renderers of the expressions shown as nft shows them, built once (not per expression).
_SIMPLE_RENDERERS: dict[str, Callable[[Any], str]] = {
    "payload": lambda b: f"{b.get('protocol')} {b.get('field')}",
    "meta": lambda b: f"meta {b.get('key')}",
    "ct": lambda b: f"ct {b.get('key')}",
    "prefix": lambda b: f"{b.get('addr')}/{b.get('len')}",
    "range": lambda b: f"{render(b[0])}-{render(b[1])}",
    "set": lambda b: "{ " + ", ".join(render(e) for e in b) + " }",
    "concat": lambda b: " . ".join(render(e) for e in b),
    "elem": lambda b: render(b.get("val")),
    "match": _render_match,
    "jump": lambda b: f"jump {b.get('target')}",
    "goto": lambda b: f"goto {b.get('target')}",
    "counter": lambda b: "counter",
    "log": lambda b: "log" + (f' prefix "{b["prefix"]}"' if b and "prefix" in b else ""),
    "limit": lambda b: (
        f"limit rate {'over ' if b.get('inv') else ''}{b.get('rate')}/{b.get('per')}"
    ),
    "vmap": lambda b: f"{render(b.get('key'))} vmap {render(b.get('data'))}",
    "fib": lambda b: f"fib {' . '.join(b.get('flags', []))} {b.get('result')}",
}


def render_rule(exprs: list[Any]) -> str:
    return " ".join(render(e) for e in exprs)
