"""iptables-save tables (legacy or nft backend) as the objects ``nft -j list ruleset`` prints.

:func:`nft_objects` turns the tables of ``iptables-save`` / ``ip6tables-save`` (parsed by
``probes.parsers.iptables``; read here through the protocols below, as topology does not
import probes) into libnftables-json(5) objects, so that :func:`topology.nftjson.parse_ruleset`
compiles them like any other rule set. Each rule's expressions are those nft lists for the
native rule ``iptables-translate`` writes for it (the recorded samples in tests/data/iptables
check this), without the counter iptables-nft adds to every rule; the original ``-A`` line is
kept as the rule's ``"iptables"`` key, its ``handle`` is its position in its chain (1-based).

Chains: a built-in chain is declared with the type, hook and priority iptables-nft registers
for it (filter/mangle/raw/security/nat, the same for both families); a chain with a policy
that is not a built-in of its table is declared without a hook (nothing reaches it).

Translated exactly (the nft form in brackets):
  -s/-d with prefix and "!" (``ip saddr``/``ip6 saddr``, host addresses without a prefix);
  -i/-o with "+" and "!" (``iifname "eth*"``); -p name/number/all and "!" (``ip protocol`` /
  ``meta l4proto``, dropped when a later match reads that protocol's header, as nft lists it);
  -m tcp/udp/sctp --sport/--dport (ports, ranges a:b, :b, a:, "!"), --syn, --tcp-flags;
  -m multiport --dports/--sports (a set, or one value) and --ports (``sport . dport`` set);
  -m conntrack --ctstate / -m state --state (``ct state``; SNAT/DNAT as ``ct status``);
  -m icmp --icmp-type / -m icmp6 --icmpv6-type (name or number, type/code, any);
  -m addrtype --src-type/--dst-type [--limit-iface-in/out] (``fib saddr . iif type local``);
  -m rt --rt-type (``rt type``), -m hl / -m ttl (``ip6 hoplimit``, ``ip ttl``);
  -m iprange (address ranges), -m comment (nothing), -m limit (``limit rate N/u burst B
  packets``), -m mark (``meta mark``), -m pkttype (``meta pkttype``), -m recent --set alone
  (nothing: it records and always matches), -f (``ip frag-off & 0x1fff != 0``).
  Targets: ACCEPT, DROP, RETURN, REJECT --reject-with, a user chain (``jump``), -g (``goto``),
  LOG/NFLOG/ULOG (``log``), MARK/CONNMARK --set-xmark, --save-mark/--restore-mark with full
  masks (``meta mark set``, ``ct mark set``), CLASSIFY (``meta priority set``), TCPMSS
  (``tcp option maxseg size set rt mtu`` / N), DNAT/SNAT (address, range, port, port range),
  MASQUERADE and REDIRECT [--to-ports], NOTRACK and CT --notrack (``notrack``), QUEUE and
  NFQUEUE (``queue``).

Unknown on purpose (an ``xt`` object, as nft -j lists an xtables extension, so the compiler
makes the rule uncertain): -m recent with --rcheck/--update/--remove (depends on history), -m
set (ipset), a negated icmp type/code pair or ``! --icmp-type any``, conntrack options other
than --ctstate (``--ctorigdst`` …) and a --ctstate mixing states with SNAT/DNAT, any option of
a known match this module does not translate (named ``"<match> <option>"``: ``tcp
--tcp-option``, ``rt --rt-segsleft``), any other match (``{"xt": {"type": "match", "name":
NAME}}``) and any other target (``"type": "target"``; CONNMARK with partial masks, CT with
options other than --notrack).

Where this differs from iptables-translate on purpose: ``--ports`` keeps a port range as one
range (the tool writes each port of it as its own element); ``--ctstate SNAT,DNAT`` is both
statuses (the tool 1.8.9 writes only snat); icmp type/code pairs are written (the tool
cannot). iptables-nft itself writes -p in the ip family as ``meta l4proto``, the tool (and so
this module) as ``ip protocol``: the compiler reads both as the protocol.

A rule whose arguments cannot be read at all (a missing value, an unknown option, a bad
address) keeps its verdict behind an ``xt`` match named ``"unparsed: <why>"``; a target that
cannot be read becomes an ``xt`` target of that name. A condition is never dropped.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from auditor.domain.errors import AuditorError
from auditor.domain.facts import Ipset

# -- what is read of the parsed listing -----------------------------------------------------


class SavedRule(Protocol):
    @property
    def chain(self) -> str: ...
    @property
    def args(self) -> tuple[str, ...]: ...
    @property
    def text(self) -> str: ...


class SavedChain(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def policy(self) -> str | None: ...


class SavedTable(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def chains(self) -> Sequence[SavedChain]: ...
    @property
    def rules(self) -> Sequence[SavedRule]: ...


#: (table, chain) -> (type, hook, priority) as iptables-nft registers its built-in chains.
BUILTIN_CHAINS: dict[tuple[str, str], tuple[str, str, int]] = {
    ("filter", "INPUT"): ("filter", "input", 0),
    ("filter", "FORWARD"): ("filter", "forward", 0),
    ("filter", "OUTPUT"): ("filter", "output", 0),
    ("nat", "PREROUTING"): ("nat", "prerouting", -100),
    ("nat", "INPUT"): ("nat", "input", 100),
    ("nat", "OUTPUT"): ("nat", "output", -100),
    ("nat", "POSTROUTING"): ("nat", "postrouting", 100),
    ("mangle", "PREROUTING"): ("filter", "prerouting", -150),
    ("mangle", "INPUT"): ("filter", "input", -150),
    ("mangle", "FORWARD"): ("filter", "forward", -150),
    ("mangle", "OUTPUT"): ("route", "output", -150),
    ("mangle", "POSTROUTING"): ("filter", "postrouting", -150),
    ("raw", "PREROUTING"): ("filter", "prerouting", -300),
    ("raw", "OUTPUT"): ("filter", "output", -300),
    ("security", "INPUT"): ("filter", "input", 150),
    ("security", "FORWARD"): ("filter", "forward", 150),
    ("security", "OUTPUT"): ("filter", "output", 150),
}


def nft_objects(
    tables: Sequence[SavedTable],
    family: str,
    table_name: Callable[[str], str] = lambda t: t,
    ipsets: Sequence[Ipset] = (),
) -> list[dict[str, Any]]:
    """The nft -j objects of ``tables``: ``family`` is "ip" (iptables) or "ip6" (ip6tables);
    ``table_name`` names each table in the output; ``ipsets`` are the sets ``-m set`` reads."""
    sets = {ipset.name: ipset for ipset in ipsets}
    if family not in ("ip", "ip6"):
        raise FamilyError(f"iptables tables are of family ip or ip6, not {family!r}")
    objects: list[dict[str, Any]] = []
    for table in tables:
        name = table_name(table.name)
        objects.append({"table": {"family": family, "name": name}})
        objects += [{"chain": _chain(family, table.name, name, c)} for c in table.chains]
        chains = frozenset(c.name for c in table.chains)
        positions: dict[str, int] = {}
        for rule in table.rules:
            positions[rule.chain] = positions.get(rule.chain, 0) + 1
            body: dict[str, Any] = {"family": family, "table": name, "chain": rule.chain}
            body["handle"] = positions[rule.chain]
            body["expr"] = rule_exprs(rule.args, family, chains, sets)
            body["iptables"] = rule.text
            objects.append({"rule": body})
    return objects


class FamilyError(AuditorError):
    """nft_objects was asked for a family iptables does not write (a caller's mistake)."""


def _chain(family: str, table: str, name: str, chain: SavedChain) -> dict[str, Any]:
    body: dict[str, Any] = {"family": family, "table": name, "name": chain.name}
    builtin = BUILTIN_CHAINS.get((table, chain.name))
    if chain.policy is not None and builtin is not None:
        kind, hook, prio = builtin
        body |= {"type": kind, "hook": hook, "prio": prio, "policy": chain.policy.lower()}
    return body


# -- one rule -------------------------------------------------------------------------------


class UnparsedError(AuditorError):
    """Arguments this module cannot read; the rule keeps an unknown condition."""


def xt(kind: str, name: str) -> dict[str, Any]:
    return {"xt": {"type": kind, "name": name}}


def rule_exprs(
    args: Sequence[str],
    family: str,
    chains: frozenset[str],
    sets: Mapping[str, Ipset] | None = None,
) -> list[Any]:
    """The expressions of one rule: its matches, then its target (none without ``-j``).
    ``sets``: the host's ipsets by name, for ``-m set`` (unknown without them)."""
    conditions, target = _split_target(list(args))
    try:
        matches = _Matches(family, dict(sets or {})).read(conditions)
    except UnparsedError as exc:
        matches = [xt("match", f"unparsed: {exc}")]
    return matches + _target(target, family, chains)


Target = tuple[str, str, list[str]] | None  #: (-j or -g, name, options)


def _split_target(args: list[str]) -> tuple[list[str], Target]:
    """(condition words, target): the target is the first ``-j``/``-g`` and what follows it
    (iptables-save writes it last). A ``-j`` without a name gives a target named ""."""
    for index, word in enumerate(args):
        if word in ("-j", "--jump", "-g", "--goto"):
            kind = "-g" if word in ("-g", "--goto") else "-j"
            name = args[index + 1] if index + 1 < len(args) else ""
            return args[:index], (kind, name, args[index + 2 :])
    return args, None


# -- matches --------------------------------------------------------------------------------

_GENERIC = {
    "-s": "source",
    "--source": "source",
    "--src": "source",
    "-d": "destination",
    "--destination": "destination",
    "--dst": "destination",
    "-i": "in",
    "--in-interface": "in",
    "-o": "out",
    "--out-interface": "out",
    "-p": "protocol",
    "--protocol": "protocol",
}
_MATCH_WORDS = ("-m", "--match")


@dataclass
class _Option:
    name: str
    negated: bool
    values: list[str]


@dataclass
class _Matches:
    family: str
    sets: Mapping[str, Ipset] = field(default_factory=dict)  #: ``ipset save``'s, by name
    generic: dict[str, _Option] = field(default_factory=dict)
    fragment: bool | None = None
    protocol: str | None = None  #: the -p value when not negated (for the ports' header)

    def read(self, words: list[str]) -> list[Any]:
        stream = _Words(words)
        self._read_generic(stream)
        exprs: list[Any] = []
        while not stream.done():
            word = stream.next()
            if word not in _MATCH_WORDS:
                raise UnparsedError(f"{word} where a match (-m) was expected")
            exprs += self._module(stream.value(word), stream)
        return self._generic_exprs(exprs) + exprs

    def _read_generic(self, stream: _Words) -> None:
        while not stream.done() and stream.peek() not in _MATCH_WORDS:
            negated = stream.bang()
            word = stream.next()
            if word in ("-f", "--fragment"):
                if self.family != "ip":
                    raise UnparsedError("-f in ip6tables")
                self.fragment = not negated
                continue
            key = _GENERIC.get(word)
            if key is None or key in self.generic:
                raise UnparsedError(f"unexpected {word}")
            self.generic[key] = _Option(key, negated, [stream.value(word)])
        protocol = self.generic.get("protocol")
        if protocol is not None and not protocol.negated:
            self.protocol = _protocol_name(protocol.values[0])

    def _generic_exprs(self, later: list[Any]) -> list[Any]:
        exprs: list[Any] = []
        for key, meta in (("in", "iifname"), ("out", "oifname")):
            option = self.generic.get(key)
            if option is not None:
                right = _interface(option.values[0])
                exprs.append(_match(option.negated, {"meta": {"key": meta}}, right))
        protocol = self.generic.get("protocol")
        if protocol is not None:
            exprs += self._protocol_exprs(protocol, later)
        for key, field_name in (("source", "saddr"), ("destination", "daddr")):
            option = self.generic.get(key)
            if option is not None:
                left = _payload(self.family, field_name)
                exprs.append(_match(option.negated, left, _address(option.values[0], self.family)))
        if self.fragment is not None:
            left = {"&": [_payload("ip", "frag-off"), 0x1FFF]}
            exprs.append(
                {"match": {"op": "!=" if self.fragment else "==", "left": left, "right": 0}}
            )
        return exprs

    def _protocol_exprs(self, option: _Option, later: list[Any]) -> list[Any]:
        value = option.values[0]
        if _protocol_number(value) == 0:
            if option.negated:
                raise UnparsedError(f"! -p {value}")  # matches nothing: rare, kept unknown
            return []
        name = _protocol_name(value)
        # nft lists no protocol match before a match on that protocol's header: the header
        # match carries it as its dependency (``tcp dport 22`` is only TCP).
        header = {"ipv6-icmp": "icmpv6", "icmp": "icmp" if self.family == "ip" else None}
        if not option.negated and header.get(name, name) in _payload_protocols(later):
            return []
        right: Any = int(name) if name.isdigit() else name
        left = _payload("ip", "protocol") if self.family == "ip" else {"meta": {"key": "l4proto"}}
        return [_match(option.negated, left, right)]

    def _module(self, name: str, stream: _Words) -> list[Any]:
        handler = _MODULES.get(name)
        if handler is None:
            stream.skip_module()
            return [xt("match", name)]
        options = _read_options(name, _OPTIONS[name], stream)
        return handler(self, options)


def _payload_protocols(exprs: Any) -> set[str]:
    found: set[str] = set()
    stack = [exprs]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            payload = item.get("payload")
            if isinstance(payload, dict) and isinstance(payload.get("protocol"), str):
                found.add(payload["protocol"])
            stack += list(item.values())
        elif isinstance(item, list):
            stack += item
    return found


class _Words:
    def __init__(self, words: list[str]) -> None:
        self._words = words
        self._at = 0

    def done(self) -> bool:
        return self._at >= len(self._words)

    def peek(self) -> str:
        return self._words[self._at]

    def next(self) -> str:
        if self.done():
            raise UnparsedError("missing argument at the end")
        word = self._words[self._at]
        self._at += 1
        return word

    def bang(self) -> bool:
        if not self.done() and self.peek() == "!":
            self._at += 1
            return True
        return False

    def value(self, option: str) -> str:
        if self.done():
            raise UnparsedError(f"{option} without a value")
        return self.next()

    def at_module_end(self) -> bool:
        return self.done() or self.peek() in _MATCH_WORDS

    def skip_module(self) -> None:
        while not self.at_module_end():
            self._at += 1


def _read_options(module: str, arity: dict[str, int], stream: _Words) -> list[_Option]:
    options: list[_Option] = []
    while not stream.at_module_end():
        negated = stream.bang()
        word = stream.next()
        if word not in arity:
            raise UnparsedError(f"-m {module} {word}")
        values = [stream.value(word) for _ in range(arity[word])]
        options.append(_Option(word, negated, values))
    return options


# -- values ---------------------------------------------------------------------------------


def _match(negated: bool, left: Any, right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": "!=" if negated else op, "left": left, "right": right}}


def _payload(protocol: str, name: str) -> dict[str, Any]:
    return {"payload": {"protocol": protocol, "field": name}}


def _interface(name: str) -> str:
    if not name or len(name) > 16 or any(c.isspace() for c in name):
        raise UnparsedError(f"interface {name!r}")
    # iptables' "eth+" is every name starting with "eth"; nft writes it "eth*".
    return name[:-1] + "*" if name.endswith("+") else name


def _address(text: str, family: str) -> Any:
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise UnparsedError(f"address {text!r}") from exc
    if network.version != (4 if family == "ip" else 6):
        raise UnparsedError(f"address {text!r} in {family}")
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    if "/" in text and not text.split("/", 1)[1].isdigit():
        raise UnparsedError(f"mask {text!r}")  # dotted masks: only as written when not a prefix
    return {"prefix": {"addr": str(network.network_address), "len": network.prefixlen}}


def _protocol_number(value: str) -> int | None:
    if value.isdigit():
        return int(value)
    return 0 if value == "all" else None


def _protocol_name(value: str) -> str:
    if not (value.isdigit() and int(value) <= 255) and not re.fullmatch(r"[a-z0-9.\-]+", value):
        raise UnparsedError(f"protocol {value!r}")
    # iptables-save writes the name /etc/protocols gives, as nft prints it; a few numbers
    # have names nft also uses.
    return _PROTOCOL_NAMES.get(value, value)


_PROTOCOL_NAMES = {"6": "tcp", "17": "udp", "1": "icmp", "58": "ipv6-icmp", "icmpv6": "ipv6-icmp"}
_PROTOCOL_NAMES |= {"132": "sctp", "33": "dccp", "136": "udplite", "47": "gre", "50": "esp"}
_PROTOCOL_NAMES |= {"51": "ah"}


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise UnparsedError(f"port {text!r}")
    return int(text)


def _port_value(text: str) -> Any:
    """``22``, ``1000:2000``, ``:1023``, ``1024:`` as nft lists them."""
    if ":" not in text:
        return _port(text)
    low, high = text.split(":", 1)
    lo, hi = _port(low) if low else 0, _port(high) if high else 65535
    if lo > hi:
        raise UnparsedError(f"port range {text!r}")
    return lo if lo == hi else {"range": [lo, hi]}


def _one_or_set(values: list[Any]) -> Any:
    return values[0] if len(values) == 1 else {"set": values}


# -- the modules ----------------------------------------------------------------------------

_PORT_OPTIONS = {"--sport": 1, "--source-port": 1, "--dport": 1, "--destination-port": 1}
_OPTIONS: dict[str, dict[str, int]] = {
    "tcp": {**_PORT_OPTIONS, "--syn": 0, "--tcp-flags": 2, "--tcp-option": 1},
    "udp": dict(_PORT_OPTIONS),
    "sctp": {**_PORT_OPTIONS, "--chunk-types": 2},
    "multiport": {
        "--dports": 1,
        "--destination-ports": 1,
        "--sports": 1,
        "--source-ports": 1,
        "--ports": 1,
    },
    "conntrack": {"--ctstate": 1, "--ctproto": 1, "--ctstatus": 1, "--ctdir": 1}
    | {f"--ct{k}": 1 for k in ("origsrc", "origdst", "replsrc", "repldst")}
    | {f"--ct{k}": 1 for k in ("origsrcport", "origdstport", "replsrcport", "repldstport")}
    | {"--ctexpire": 1},
    "state": {"--state": 1},
    "icmp": {"--icmp-type": 1},
    "icmp6": {"--icmpv6-type": 1},
    "addrtype": {"--src-type": 1, "--dst-type": 1, "--limit-iface-in": 0, "--limit-iface-out": 0},
    "ttl": {"--ttl-eq": 1, "--ttl-lt": 1, "--ttl-gt": 1},
    "hl": {"--hl-eq": 1, "--hl-lt": 1, "--hl-gt": 1},
    "rt": {"--rt-type": 1, "--rt-segsleft": 1, "--rt-len": 1, "--rt-0-res": 0},
    "iprange": {"--src-range": 1, "--dst-range": 1},
    "comment": {"--comment": 1},
    "limit": {"--limit": 1, "--limit-burst": 1},
    "mark": {"--mark": 1},
    "pkttype": {"--pkt-type": 1},
    "recent": {
        "--set": 0,
        "--rcheck": 0,
        "--update": 0,
        "--remove": 0,
        "--name": 1,
        "--rsource": 0,
        "--rdest": 0,
        "--mask": 1,
        "--seconds": 1,
        "--hitcount": 1,
        "--rttl": 0,
        "--reap": 0,
    },
    "set": {"--match-set": 2, "--return-nomatch": 0, "--update-counters": 0}
    | {"--update-subcounters": 0, "--packets-eq": 1, "--packets-lt": 1, "--packets-gt": 1}
    | {"--bytes-eq": 1, "--bytes-lt": 1, "--bytes-gt": 1},
}


def _ports_module(protocol: str) -> Callable[[_Matches, list[_Option]], list[Any]]:
    def handle(matches: _Matches, options: list[_Option]) -> list[Any]:
        exprs: list[Any] = []
        for option in options:
            if option.name in ("--sport", "--source-port", "--dport", "--destination-port"):
                field_name = "sport" if option.name[2] == "s" else "dport"
                value = _port_value(option.values[0])
                exprs.append(_match(option.negated, _payload(protocol, field_name), value))
            elif option.name == "--syn":
                exprs.append(_tcp_flags(option.negated, "FIN,SYN,RST,ACK", "SYN"))
            elif option.name == "--tcp-flags":
                exprs.append(_tcp_flags(option.negated, *option.values))
            else:
                exprs.append(xt("match", f"{protocol} {option.name}"))
        return exprs

    return handle


#: In nft's order (the bit order), as it lists flag lists.
TCP_FLAGS = ("fin", "syn", "rst", "psh", "ack", "urg", "ecn", "cwr")


def _flags(text: str) -> list[str]:
    if text == "ALL":
        return list(TCP_FLAGS[:6])
    if text == "NONE":
        return []
    named = {f.lower() for f in text.split(",")}
    if not named <= set(TCP_FLAGS):
        raise UnparsedError(f"tcp flags {text!r}")
    return [f for f in TCP_FLAGS if f in named]


def _flag_value(flags: list[str]) -> Any:
    return flags[0] if len(flags) == 1 else flags


def _tcp_flags(negated: bool, mask_text: str, comp_text: str) -> dict[str, Any]:
    mask, comp = _flags(mask_text), _flags(comp_text)
    left = _payload("tcp", "flags")
    if not mask:
        raise UnparsedError(f"--tcp-flags {mask_text} {comp_text}")
    if not comp:
        # "flags & mask == 0": nft lists it with the operator "!" (none of the bits).
        op = "in" if negated else "!"
        return {"match": {"op": op, "left": left, "right": _flag_value(mask)}}
    masked = {"&": [left, _flag_value(mask)]}
    return _match(negated, masked, _flag_value(comp))


def _multiport(matches: _Matches, options: list[_Option]) -> list[Any]:
    protocol = matches.protocol
    if protocol not in ("tcp", "udp", "sctp", "dccp", "udplite"):
        raise UnparsedError(f"-m multiport with -p {protocol}")
    exprs: list[Any] = []
    for option in options:
        values = [_port_value(v) for v in option.values[0].split(",")]
        if option.name == "--ports":
            exprs.append(_either_port(protocol, option.negated, values))
            continue
        field_name = "sport" if option.name in ("--sports", "--source-ports") else "dport"
        exprs.append(_match(option.negated, _payload(protocol, field_name), _one_or_set(values)))
    return exprs


def _either_port(protocol: str, negated: bool, values: list[Any]) -> dict[str, Any]:
    """``--ports``: the source or the destination port is one of them; nft (as
    iptables-translate writes it) a set of ``sport . dport`` pairs, any port on the other."""
    anything = {"range": [0, 65535]}
    elements: list[Any] = []
    for value in values:
        elements += [{"concat": [anything, value]}, {"concat": [value, anything]}]
    left = {"concat": [_payload(protocol, "sport"), _payload(protocol, "dport")]}
    return _match(negated, left, {"set": elements})


#: ct state bits in nft's order (invalid, established, related, new, untracked).
CT_STATES = ("invalid", "established", "related", "new", "untracked")
CT_STATUS = ("snat", "dnat")


def _conntrack(matches: _Matches, options: list[_Option]) -> list[Any]:
    exprs: list[Any] = []
    for option in options:
        if option.name in ("--ctstate", "--state"):
            exprs.append(_ct_state(option))
        else:
            exprs.append(xt("match", f"conntrack {option.name}"))
    return exprs


def _ct_state(option: _Option) -> dict[str, Any]:
    named = {v.lower() for v in option.values[0].split(",")}
    states = [s for s in CT_STATES if s in named]
    status = [s for s in CT_STATUS if s in named]
    if len(states) + len(status) != len(named):
        raise UnparsedError(f"{option.name} {option.values[0]}")
    if states and status:
        # A packet matches either: not one nft match. Unknown rather than narrower.
        return xt("match", f"conntrack {option.values[0]}")
    key, chosen = ("state", states) if states else ("status", status)
    right = chosen[0] if len(chosen) == 1 else chosen
    return {
        "match": {
            "op": "!" if option.negated else "in",
            "left": {"ct": {"key": key}},
            "right": right,
        }
    }


#: nft's names of the ICMP and ICMPv6 types and codes (what it lists instead of numbers).
ICMP_TYPES = {
    0: "echo-reply",
    3: "destination-unreachable",
    4: "source-quench",
    5: "redirect",
    8: "echo-request",
    9: "router-advertisement",
    10: "router-solicitation",
    11: "time-exceeded",
    12: "parameter-problem",
    13: "timestamp-request",
    14: "timestamp-reply",
    15: "info-request",
    16: "info-reply",
    17: "address-mask-request",
    18: "address-mask-reply",
}
ICMPV6_TYPES = {
    1: "destination-unreachable",
    2: "packet-too-big",
    3: "time-exceeded",
    4: "parameter-problem",
    128: "echo-request",
    129: "echo-reply",
    130: "mld-listener-query",
    131: "mld-listener-report",
    132: "mld-listener-done",
    133: "nd-router-solicit",
    134: "nd-router-advert",
    135: "nd-neighbor-solicit",
    136: "nd-neighbor-advert",
    137: "nd-redirect",
    138: "router-renumbering",
    141: "ind-neighbor-solicit",
    142: "ind-neighbor-advert",
    143: "mld2-listener-report",
}
ICMP_CODES = {
    0: "net-unreachable",
    1: "host-unreachable",
    2: "prot-unreachable",
    3: "port-unreachable",
    4: "frag-needed",
    9: "net-prohibited",
    10: "host-prohibited",
    13: "admin-prohibited",
}
ICMPV6_CODES = {
    0: "no-route",
    1: "admin-prohibited",
    3: "addr-unreachable",
    4: "port-unreachable",
    5: "policy-fail",
    6: "reject-route",
}


def _icmp_module(v6: bool) -> Callable[[_Matches, list[_Option]], list[Any]]:
    protocol = "icmpv6" if v6 else "icmp"
    types, codes = (ICMPV6_TYPES, ICMPV6_CODES) if v6 else (ICMP_TYPES, ICMP_CODES)

    def handle(matches: _Matches, options: list[_Option]) -> list[Any]:
        exprs: list[Any] = []
        for option in options:
            text = option.values[0]
            if text == "any":
                if option.negated:
                    exprs.append(xt("match", f"{protocol} ! any"))
                continue  # every type: the -p match stays and says it all
            kind, _, code = text.partition("/")
            type_value = _icmp_number(kind, types)
            if code and option.negated:
                exprs.append(xt("match", f"{protocol} ! {text}"))
                continue
            exprs.append(_match(option.negated, _payload(protocol, "type"), type_value))
            if code:
                code_value = _icmp_number(code, codes)
                exprs.append(_match(False, _payload(protocol, "code"), code_value))
        return exprs

    return handle


def _icmp_number(text: str, names: dict[int, str]) -> Any:
    if text.isdigit() and int(text) <= 255:
        return names.get(int(text), int(text))
    if text in names.values():
        return text
    raise UnparsedError(f"icmp type {text!r}")


_ADDRESS_TYPES = frozenset(
    {"unspec", "unicast", "local", "broadcast", "anycast", "multicast", "blackhole"}
    | {"unreachable", "prohibit", "throw", "nat", "xresolve"}
)


def _addrtype(matches: _Matches, options: list[_Option]) -> list[Any]:
    flags = {o.name for o in options}
    device = ["iif"] if "--limit-iface-in" in flags else []
    device += ["oif"] if "--limit-iface-out" in flags else []
    exprs: list[Any] = []
    for option in options:
        if option.name not in ("--src-type", "--dst-type"):
            continue
        kinds = [k.lower() for k in option.values[0].split(",")]
        if not set(kinds) <= _ADDRESS_TYPES:
            raise UnparsedError(f"address type {option.values[0]!r}")
        address = "saddr" if option.name == "--src-type" else "daddr"
        left = {"fib": {"result": "type", "flags": [address, *device]}}
        exprs.append(_match(option.negated, left, _one_or_set(kinds)))
    return exprs


def _hop_module(protocol: str, field_name: str, prefix: str) -> Callable[..., list[Any]]:
    operators = {f"--{prefix}-eq": "==", f"--{prefix}-lt": "<", f"--{prefix}-gt": ">"}

    def handle(matches: _Matches, options: list[_Option]) -> list[Any]:
        exprs = []
        for option in options:
            value = _byte(option.values[0])
            op = operators[option.name]
            if option.negated and op != "==":
                raise UnparsedError(f"! {option.name}")
            exprs.append(_match(option.negated, _payload(protocol, field_name), value, op))
        return exprs

    return handle


def _byte(text: str) -> int:
    if not text.isdigit() or int(text) > 255:
        raise UnparsedError(f"value {text!r}")
    return int(text)


def _rt(matches: _Matches, options: list[_Option]) -> list[Any]:
    exprs: list[Any] = []
    for option in options:
        if option.name != "--rt-type":
            exprs.append(xt("match", f"rt {option.name}"))
            continue
        left = {"exthdr": {"name": "rt", "field": "type"}}
        exprs.append(_match(option.negated, left, _byte(option.values[0])))
    return exprs


def _iprange(matches: _Matches, options: list[_Option]) -> list[Any]:
    exprs: list[Any] = []
    for option in options:
        low, _, high = option.values[0].partition("-")
        bounds = [_address(low, matches.family), _address(high or low, matches.family)]
        if not all(isinstance(b, str) for b in bounds):
            raise UnparsedError(f"range {option.values[0]!r}")
        field_name = "saddr" if option.name == "--src-range" else "daddr"
        left = _payload(matches.family, field_name)
        exprs.append(_match(option.negated, left, {"range": bounds}))
    return exprs


def _comment(matches: _Matches, options: list[_Option]) -> list[Any]:
    return []


_UNITS = {"s": "second", "sec": "second", "second": "second", "m": "minute", "min": "minute"}
_UNITS |= {"minute": "minute", "h": "hour", "hour": "hour", "d": "day", "day": "day"}


def _limit(matches: _Matches, options: list[_Option]) -> list[Any]:
    rate, per, burst = 3, "hour", 5  # iptables' defaults
    for option in options:
        if option.negated:
            raise UnparsedError(f"! {option.name}")
        if option.name == "--limit":
            number, _, unit = option.values[0].partition("/")
            if not number.isdigit() or unit not in _UNITS:
                raise UnparsedError(f"--limit {option.values[0]!r}")
            rate, per = int(number), _UNITS[unit]
        else:
            if not option.values[0].isdigit():
                raise UnparsedError(f"--limit-burst {option.values[0]!r}")
            burst = int(option.values[0])
    return [{"limit": {"rate": rate, "burst": burst, "per": per}}]


def _number(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError as exc:
        raise UnparsedError(f"number {text!r}") from exc
    if not 0 <= value <= 0xFFFFFFFF:
        raise UnparsedError(f"number {text!r}")
    return value


def _mark(matches: _Matches, options: list[_Option]) -> list[Any]:
    exprs: list[Any] = []
    for option in options:
        value, _, mask = option.values[0].partition("/")
        left: Any = {"meta": {"key": "mark"}}
        if mask and _number(mask) != 0xFFFFFFFF:
            left = {"&": [left, _number(mask)]}
        exprs.append(_match(option.negated, left, _number(value)))
    return exprs


#: iptables' packet types, as nft names them.
_PACKET_TYPES = {
    "unicast": "host",
    "host": "host",
    "broadcast": "broadcast",
    "multicast": "multicast",
    "otherhost": "other",
}


def _pkttype(matches: _Matches, options: list[_Option]) -> list[Any]:
    exprs: list[Any] = []
    for option in options:
        kind = _PACKET_TYPES.get(option.values[0].lower())
        if kind is None:
            raise UnparsedError(f"--pkt-type {option.values[0]!r}")
        exprs.append(_match(option.negated, {"meta": {"key": "pkttype"}}, kind))
    return exprs


def _recent(matches: _Matches, options: list[_Option]) -> list[Any]:
    commands = [o for o in options if o.name in ("--set", "--rcheck", "--update", "--remove")]
    if len(commands) == 1 and commands[0].name == "--set" and not commands[0].negated:
        # --set records the address and always matches: no condition.
        return []
    return [xt("match", "recent")]


#: ipset types whose one dimension is an address (what ``--match-set NAME src`` can ask).
_ADDRESS_SETS = {"hash:ip", "hash:net", "bitmap:ip"}
_SET_FAMILY = {"ip": "inet", "ip6": "inet6"}


def _set(matches: _Matches, options: list[_Option]) -> list[Any]:
    """``-m set --match-set NAME src|dst``: a lookup in the set's members as ``ipset save``
    listed them (a snapshot, as nft's named sets are). Sets of other types, several
    dimensions, ``nomatch`` exceptions, options that change the lookup, or a set not listed
    stay unknown."""
    found = [o for o in options if o.name == "--match-set"]
    extra = [o for o in options if o.name != "--match-set"]
    if len(found) != 1 or extra:
        return [xt("match", "set")]
    option = found[0]
    name, direction = option.values
    ipset = matches.sets.get(name)
    usable = (
        ipset is not None
        and ipset.type in _ADDRESS_SETS
        and not ipset.nomatch
        and (ipset.family or "inet") == _SET_FAMILY[matches.family]
        and direction in ("src", "dst")
    )
    if ipset is None or not usable:
        return [xt("match", "set")]
    field_name = "saddr" if direction == "src" else "daddr"
    try:
        members = [_member(m, matches.family) for m in ipset.members]
    except UnparsedError:
        return [xt("match", "set")]
    return [_match(option.negated, _payload(matches.family, field_name), {"set": members})]


def _member(text: str, family: str) -> Any:
    if "-" in text:
        low, high = text.split("-", 1)
        return {"range": [_address(low, family), _address(high, family)]}
    return _address(text, family)


_MODULES: dict[str, Callable[[_Matches, list[_Option]], list[Any]]] = {
    "tcp": _ports_module("tcp"),
    "udp": _ports_module("udp"),
    "sctp": _ports_module("sctp"),
    "multiport": _multiport,
    "conntrack": _conntrack,
    "state": _conntrack,
    "icmp": _icmp_module(v6=False),
    "icmp6": _icmp_module(v6=True),
    "addrtype": _addrtype,
    "ttl": _hop_module("ip", "ttl", "ttl"),
    "hl": _hop_module("ip6", "hoplimit", "hl"),
    "rt": _rt,
    "iprange": _iprange,
    "comment": _comment,
    "limit": _limit,
    "mark": _mark,
    "pkttype": _pkttype,
    "recent": _recent,
    "set": _set,
}

# -- targets --------------------------------------------------------------------------------


def _target(target: Target, family: str, chains: frozenset[str]) -> list[Any]:
    if target is None:
        return []
    kind, name, options = target
    if kind == "-g" or name in chains:
        return [_chain_verdict(kind, name, options, chains)]
    handler = _TARGETS.get(name)
    if handler is None:
        return [xt("target", name or f"unparsed: {kind} without a target")]
    try:
        return handler(_target_options(name, options), family)
    except UnparsedError as exc:
        return [xt("target", f"unparsed: {exc}")]


def _chain_verdict(kind: str, name: str, options: list[str], chains: frozenset[str]) -> Any:
    """``-j CHAIN`` (jump) or ``-g CHAIN`` (goto) to a chain of the table."""
    if name not in chains or options:
        return xt("target", f"unparsed: {kind} {' '.join([name, *options])}")
    return {"goto" if kind == "-g" else "jump": {"target": name}}


def _target_options(name: str, words: list[str]) -> dict[str, list[str]]:
    arity = _TARGET_OPTIONS.get(name, {})
    stream = _Words(words)
    found: dict[str, list[str]] = {}
    while not stream.done():
        word = stream.next()
        if word not in arity or word in found:
            raise UnparsedError(f"-j {name} {word}")
        found[word] = [stream.value(word) for _ in range(arity[word])]
    return found


_TARGET_OPTIONS: dict[str, dict[str, int]] = {
    "REJECT": {"--reject-with": 1},
    "LOG": {"--log-prefix": 1, "--log-level": 1}
    | {f"--log-{k}": 0 for k in ("tcp-sequence", "tcp-options", "ip-options", "uid")}
    | {"--log-macdecode": 0},
    "NFLOG": {"--nflog-group": 1, "--nflog-prefix": 1, "--nflog-range": 1, "--nflog-size": 1}
    | {"--nflog-threshold": 1},
    "ULOG": {"--ulog-nlgroup": 1, "--ulog-prefix": 1, "--ulog-cprange": 1, "--ulog-qthreshold": 1},
    "MARK": {"--set-xmark": 1, "--set-mark": 1},
    "CONNMARK": {"--set-xmark": 1, "--set-mark": 1, "--save-mark": 0, "--restore-mark": 0}
    | {"--nfmask": 1, "--ctmask": 1, "--mask": 1},
    "CLASSIFY": {"--set-class": 1},
    "TCPMSS": {"--clamp-mss-to-pmtu": 0, "--set-mss": 1},
    "DNAT": {"--to-destination": 1, "--random": 0, "--persistent": 0},
    "SNAT": {"--to-source": 1, "--random": 0, "--random-fully": 0, "--persistent": 0},
    "MASQUERADE": {"--to-ports": 1, "--random": 0, "--random-fully": 0},
    "REDIRECT": {"--to-ports": 1, "--random": 0},
    "CT": {"--notrack": 0},
    "NFQUEUE": {"--queue-num": 1, "--queue-balance": 1, "--queue-bypass": 0}
    | {"--queue-cpu-fanout": 0},
}

_REJECT4 = {
    "icmp-net-unreachable": "net-unreachable",
    "icmp-host-unreachable": "host-unreachable",
    "icmp-port-unreachable": "port-unreachable",
    "icmp-proto-unreachable": "prot-unreachable",
    "icmp-net-prohibited": "net-prohibited",
    "icmp-host-prohibited": "host-prohibited",
    "icmp-admin-prohibited": "admin-prohibited",
}
_REJECT6 = {
    "icmp6-no-route": "no-route",
    "icmp6-adm-prohibited": "admin-prohibited",
    "icmp6-addr-unreachable": "addr-unreachable",
    "icmp6-port-unreachable": "port-unreachable",
    "icmp6-policy-fail": "policy-fail",
    "icmp6-reject-route": "reject-route",
}

Options = dict[str, list[str]]


def _simple(verdict: str) -> Callable[[Options, str], list[Any]]:
    return lambda options, family: [{verdict: None}]


def _reject(options: Options, family: str) -> list[Any]:
    kind = options.get("--reject-with", ["icmp-port-unreachable" if family == "ip" else ""])[0]
    if kind == "tcp-reset":
        return [{"reject": {"type": "tcp reset"}}]
    codes = _REJECT4 if family == "ip" else _REJECT6
    code = codes.get(kind or "icmp6-port-unreachable")
    if code is None:
        raise UnparsedError(f"--reject-with {kind}")
    return [{"reject": {"type": "icmp" if family == "ip" else "icmpv6", "expr": code}}]


_LOG_LEVELS = ("emerg", "alert", "crit", "err", "warn", "notice", "info", "debug")
_LOG_NAMES = {"warning": "warn", "error": "err", "panic": "emerg"}


def _log(options: Options, family: str) -> list[Any]:
    body: dict[str, Any] = {}
    if "--log-prefix" in options:
        body["prefix"] = options["--log-prefix"][0]
    level = options.get("--log-level", ["4"])[0]
    level = _LOG_LEVELS[int(level)] if level.isdigit() and int(level) < 8 else level
    level = _LOG_NAMES.get(level, level)
    if level not in _LOG_LEVELS:
        raise UnparsedError(f"--log-level {level}")
    if level != "warn":
        body["level"] = level
    return [{"log": body or None}]


def _nflog(options: Options, family: str) -> list[Any]:
    body: dict[str, Any] = {}
    if "--nflog-prefix" in options:
        body["prefix"] = options["--nflog-prefix"][0]
    body["group"] = _number(options.get("--nflog-group", ["0"])[0])
    size = options.get("--nflog-size") or options.get("--nflog-range")
    if size:
        body["snaplen"] = _number(size[0])
    if "--nflog-threshold" in options:
        body["queue-threshold"] = _number(options["--nflog-threshold"][0])
    return [{"log": body}]


def _ulog(options: Options, family: str) -> list[Any]:
    body: dict[str, Any] = {}
    if "--ulog-prefix" in options:
        body["prefix"] = options["--ulog-prefix"][0]
    body["group"] = _number(options.get("--ulog-nlgroup", ["1"])[0])
    return [{"log": body}]


def _mark_value(key: dict[str, Any], text: str) -> Any:
    """``--set-xmark value/mask``: mark = (mark & ~mask) ^ value, as nft lists it."""
    value_text, _, mask_text = text.partition("/")
    value, mask = _number(value_text), _number(mask_text or "0xffffffff")
    keep = ~mask & 0xFFFFFFFF
    if keep == 0:
        return value
    if value == 0:
        return {"&": [key, keep]}
    if keep & value == 0:
        # Bits set by the xor were cleared first: nft shows "or", with them in the mask
        # (and no mask at all when that keeps every bit).
        if keep | value == 0xFFFFFFFF:
            return {"|": [key, value]}
        return {"|": [{"&": [key, keep | value]}, value]}
    return {"^": [{"&": [key, keep]}, value]}


def _mark_target(options: Options, family: str) -> list[Any]:
    key = {"meta": {"key": "mark"}}
    text = _one_of(options, "--set-xmark", "--set-mark")
    return [{"mangle": {"key": key, "value": _mark_value(key, text)}}]


def _one_of(options: Options, *names: str) -> str:
    given = [options[n][0] for n in names if n in options]
    if len(given) != 1 or len(options) != 1:
        raise UnparsedError(" ".join(options) or "no option")
    return given[0]


_FULL = ["0xffffffff"]


def _connmark(options: Options, family: str) -> list[Any]:
    ct, meta = {"ct": {"key": "mark"}}, {"meta": {"key": "mark"}}
    masks_full = all(options.get(m, _FULL) == _FULL for m in ("--nfmask", "--ctmask", "--mask"))
    if "--save-mark" in options and masks_full:
        return [{"mangle": {"key": ct, "value": meta}}]
    if "--restore-mark" in options and masks_full:
        return [{"mangle": {"key": meta, "value": ct}}]
    if "--save-mark" in options or "--restore-mark" in options:
        return [xt("target", "CONNMARK")]
    text = _one_of(options, "--set-xmark", "--set-mark")
    return [{"mangle": {"key": ct, "value": _mark_value(ct, text)}}]


def _classify(options: Options, family: str) -> list[Any]:
    major, _, minor = options.get("--set-class", [""])[0].partition(":")
    try:
        value = f"{int(major, 16):x}:{int(minor, 16):x}"
    except ValueError as exc:
        raise UnparsedError(f"--set-class {major}:{minor}") from exc
    return [{"mangle": {"key": {"meta": {"key": "priority"}}, "value": value}}]


def _tcpmss(options: Options, family: str) -> list[Any]:
    key = {"tcp option": {"name": "maxseg", "field": "size"}}
    if "--clamp-mss-to-pmtu" in options and len(options) == 1:
        return [{"mangle": {"key": key, "value": {"rt": {"key": "mtu"}}}}]
    size = _one_of(options, "--set-mss")
    if not size.isdigit() or int(size) > 65535:
        raise UnparsedError(f"--set-mss {size}")
    return [{"mangle": {"key": key, "value": int(size)}}]


def _ports_spec(text: str) -> Any:
    low, _, high = text.partition("-")
    if not high:
        return _port(low)
    return {"range": [_port(low), _port(high)]}


_V6_TO = re.compile(r"\[(?P<addr>[^\]]+)\](?::(?P<ports>.+))?|(?P<bare>[0-9a-fA-F:.\-]+)")


def _nat_to(text: str, family: str) -> dict[str, Any]:
    """``addr[-addr][:port[-port]]`` (IPv6 addresses in brackets when a port follows)."""
    if family == "ip":
        addresses, _, ports = text.partition(":")
    else:
        found = _V6_TO.fullmatch(text)
        if found is None:
            raise UnparsedError(f"nat target {text!r}")
        addresses = found["addr"] or found["bare"] or ""
        ports = found["ports"] or ""
    body: dict[str, Any] = {}
    if addresses:
        low, _, high = addresses.replace("]-[", "-").partition("-")
        bounds = [_address(a, family) for a in (low, high) if a]
        if not all(isinstance(b, str) for b in bounds):
            raise UnparsedError(f"nat address {addresses!r}")
        body["addr"] = bounds[0] if len(bounds) == 1 else {"range": bounds}
    if ports:
        body["port"] = _ports_spec(ports)
    if not body:
        raise UnparsedError(f"nat target {text!r}")
    return body


def _nat_flags(options: Options) -> Any:
    names = {"--random": "random", "--random-fully": "fully-random", "--persistent": "persistent"}
    flags = [flag for option, flag in names.items() if option in options]
    return flags[0] if len(flags) == 1 else flags or None


def _nat(kind: str, option: str) -> Callable[[Options, str], list[Any]]:
    def handle(options: Options, family: str) -> list[Any]:
        if option not in options:
            raise UnparsedError(f"{kind} without {option}")
        body = _nat_to(options[option][0], family)
        flags = _nat_flags(options)
        if flags:
            body["flags"] = flags
        return [{kind: body}]

    return handle


def _port_nat(kind: str) -> Callable[[Options, str], list[Any]]:
    def handle(options: Options, family: str) -> list[Any]:
        body: dict[str, Any] = {}
        if "--to-ports" in options:
            body["port"] = _ports_spec(options["--to-ports"][0])
        flags = _nat_flags(options)
        if flags:
            body["flags"] = flags
        return [{kind: body or None}]

    return handle


def _ct(options: Options, family: str) -> list[Any]:
    if list(options) == ["--notrack"]:
        return [{"notrack": None}]
    return [xt("target", "CT")]


def _nfqueue(options: Options, family: str) -> list[Any]:
    body: dict[str, Any] = {}
    if "--queue-balance" in options:
        low, _, high = options["--queue-balance"][0].partition(":")
        body["num"] = {"range": [_number(low), _number(high or low)]}
    else:
        body["num"] = _number(options.get("--queue-num", ["0"])[0])
    flags = [f for o, f in (("--queue-bypass", "bypass"), ("--queue-cpu-fanout", "fanout"))
             if o in options]  # fmt: skip
    if flags:
        body["flags"] = flags[0] if len(flags) == 1 else flags
    return [{"queue": body}]


_TARGETS: dict[str, Callable[[Options, str], list[Any]]] = {
    "ACCEPT": _simple("accept"),
    "DROP": _simple("drop"),
    "RETURN": _simple("return"),
    "REJECT": _reject,
    "LOG": _log,
    "NFLOG": _nflog,
    "ULOG": _ulog,
    "MARK": _mark_target,
    "CONNMARK": _connmark,
    "CLASSIFY": _classify,
    "TCPMSS": _tcpmss,
    "DNAT": _nat("dnat", "--to-destination"),
    "SNAT": _nat("snat", "--to-source"),
    "MASQUERADE": _port_nat("masquerade"),
    "REDIRECT": _port_nat("redirect"),
    "NOTRACK": lambda options, family: [{"notrack": None}],
    "CT": _ct,
    "QUEUE": lambda options, family: [{"queue": {"num": 0}}],
    "NFQUEUE": _nfqueue,
}
