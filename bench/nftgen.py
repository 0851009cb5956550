"""Building blocks for synthetic ``nft -j list ruleset`` documents.

Each function returns the JSON objects nft itself prints (libnftables' schema, version 1), so
that the synthetic organisation exercises exactly the parser path real hosts do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from netaddr import IPAddress, IPNetwork

Json = dict[str, Any]

#: The ICMPv6 types every host must accept for neighbour discovery, as nft lists them.
ND_TYPES = [
    "nd-router-solicit",
    "nd-router-advert",
    "nd-neighbor-solicit",
    "nd-neighbor-advert",
]


def _address_value(value: IPAddress | IPNetwork) -> Any:
    """nft prints a single address as a string, a prefix as {"prefix": {...}}."""
    if isinstance(value, IPNetwork):
        full = 32 if value.version == 4 else 128
        if value.prefixlen < full:
            return {"prefix": {"addr": str(value.network), "len": value.prefixlen}}
        return str(value.ip)
    return str(value)


def addr_match(direction: str, value: IPAddress | IPNetwork, *, negate: bool = False) -> Json:
    """``ip saddr 10.98.1.2`` / ``ip6 daddr fd98::/64``: the family follows the value."""
    protocol = "ip" if value.version == 4 else "ip6"
    return {
        "match": {
            "op": "!=" if negate else "==",
            "left": {"payload": {"protocol": protocol, "field": direction}},
            "right": _address_value(value),
        }
    }


def set_match(direction: str, family: int, set_name: str) -> Json:
    protocol = "ip" if family == 4 else "ip6"
    return {
        "match": {
            "op": "==",
            "left": {"payload": {"protocol": protocol, "field": direction}},
            "right": f"@{set_name}",
        }
    }


def port_match(proto: str, ports: int | list[int], field_name: str = "dport") -> Json:
    right: Any = ports if isinstance(ports, int) else {"set": sorted(ports)}
    return {
        "match": {
            "op": "==",
            "left": {"payload": {"protocol": proto, "field": field_name}},
            "right": right,
        }
    }


def iface_match(key: str, name: str) -> Json:
    """``iifname "term-lan"`` / ``oif "lo"``."""
    return {"match": {"op": "==", "left": {"meta": {"key": key}}, "right": name}}


def ct_state(*states: str) -> Json:
    right: Any = list(states) if len(states) > 1 else states[0]
    return {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": right}}


def icmpv6_nd() -> Json:
    return {
        "match": {
            "op": "==",
            "left": {"payload": {"protocol": "icmpv6", "field": "type"}},
            "right": {"set": list(ND_TYPES)},
        }
    }


def icmp_echo(family: int) -> Json:
    protocol = "icmp" if family == 4 else "icmpv6"
    return {
        "match": {
            "op": "==",
            "left": {"payload": {"protocol": protocol, "field": "type"}},
            "right": "echo-request",
        }
    }


COUNTER: Json = {"counter": {"packets": 0, "bytes": 0}}
ACCEPT: Json = {"accept": None}
DROP: Json = {"drop": None}


def log(prefix: str) -> Json:
    return {"log": {"prefix": prefix}}


def jump(target: str) -> Json:
    return {"jump": {"target": target}}


def masquerade() -> Json:
    return {"masquerade": None}


@dataclass
class RulesetBuilder:
    """One ``inet`` table with base chains, regular chains, named sets and rules, in the order
    and with the handles ``nft -j list ruleset`` prints them."""

    table: str = "filter"
    family: str = "inet"
    _handle: int = 0
    _chains: list[Json] = field(default_factory=list)
    _sets: list[Json] = field(default_factory=list)
    _rules: list[Json] = field(default_factory=list)

    def _next_handle(self) -> int:
        self._handle += 1
        return self._handle

    def base_chain(self, name: str, hook: str, policy: str, *, kind: str = "filter") -> None:
        prio = 100 if kind == "nat" and hook == "postrouting" else 0
        self._chains.append(
            {
                "chain": {
                    "family": self.family,
                    "table": self.table,
                    "name": name,
                    "handle": self._next_handle(),
                    "type": kind,
                    "hook": hook,
                    "prio": prio,
                    "policy": policy,
                }
            }
        )

    def chain(self, name: str) -> None:
        self._chains.append(
            {
                "chain": {
                    "family": self.family,
                    "table": self.table,
                    "name": name,
                    "handle": self._next_handle(),
                }
            }
        )

    def address_set(self, name: str, family: int, elements: list[IPAddress | IPNetwork]) -> None:
        interval = any(isinstance(e, IPNetwork) for e in elements)
        body: Json = {
            "family": self.family,
            "name": name,
            "table": self.table,
            "type": "ipv4_addr" if family == 4 else "ipv6_addr",
            "handle": self._next_handle(),
        }
        if interval:
            body["flags"] = ["interval"]
        if elements:
            body["elem"] = [_address_value(e) for e in elements]
        self._sets.append({"set": body})

    def rule(self, chain: str, *expr: Json, comment: str | None = None) -> None:
        body: Json = {
            "family": self.family,
            "table": self.table,
            "chain": chain,
            "handle": self._next_handle(),
            "expr": list(expr),
        }
        if comment:
            body["comment"] = comment
        self._rules.append({"rule": body})

    @property
    def rule_count(self) -> int:
        return len(self._rules)

    def document(self) -> Json:
        table = {"table": {"family": self.family, "name": self.table, "handle": 0}}
        metainfo = {
            "metainfo": {
                "version": "1.0.6",
                "release_name": "Lester Gooch #5",
                "json_schema_version": 1,
            }
        }
        return {"nftables": [metainfo, table, *self._chains, *self._sets, *self._rules]}
