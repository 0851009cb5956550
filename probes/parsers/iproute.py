"""Parsers for iproute2's JSON output: ``ip -j addr``, ``ip -j route``, ``ip -j rule``."""

from __future__ import annotations

import ipaddress
from typing import Any, Literal

from auditor.domain.facts import Interface, InterfaceAddress, PolicyRule, Route
from probes.parsers.errors import (
    ParseError,
    expect_list_of_objects,
    field,
    load_json,
    optional_field,
)

Family = Literal[4, 6]

_ADDR_TOOL = "ip -j addr"
_ROUTE_TOOL = "ip -j route"
_RULE_TOOL = "ip -j rule"
_FAMILIES: dict[str, Family] = {"inet": 4, "inet6": 6}


def parse_ip_addr(text: str) -> list[Interface]:
    """``ip -j addr show`` → interfaces with their addresses.

    ``kind`` comes from ``linkinfo`` when the output has it (``ip -d``), else only loopback is
    known from ``link_type``: a name such as "wg0" is not taken as proof of a kind.
    """
    items = expect_list_of_objects(_ADDR_TOOL, load_json(_ADDR_TOOL, text))
    return [_interface(item, index) for index, item in enumerate(items)]


def _interface(item: dict[str, Any], index: int) -> Interface:
    name = field(_ADDR_TOOL, item, "ifname", str, index)
    flags = optional_field(_ADDR_TOOL, item, "flags", list, index) or []
    addr_info = optional_field(_ADDR_TOOL, item, "addr_info", list, index) or []
    link_type = optional_field(_ADDR_TOOL, item, "link_type", str, index)
    mac = optional_field(_ADDR_TOOL, item, "address", str, index)
    return Interface(
        name=name,
        kind=_interface_kind(item, link_type, index),
        up="UP" in flags,
        # Only Ethernet-like links have a MAC address worth keeping; tunnels show none.
        mac=mac if link_type == "ether" else None,
        addresses=[_address(a, index) for a in addr_info if _is_ip_address(a)],
    )


def _interface_kind(item: dict[str, Any], link_type: str | None, index: int) -> str | None:
    linkinfo = optional_field(_ADDR_TOOL, item, "linkinfo", dict, index)
    if linkinfo is not None:
        kind = optional_field(_ADDR_TOOL, linkinfo, "info_kind", str, index)
        if kind is not None:
            return str(kind)
    return "loopback" if link_type == "loopback" else None


def _is_ip_address(entry: Any) -> bool:
    # addr_info may hold other families (e.g. "link" for some drivers); only IP matters here.
    return isinstance(entry, dict) and entry.get("family") in _FAMILIES


def _address(entry: dict[str, Any], index: int) -> InterfaceAddress:
    family = _FAMILIES[entry["family"]]
    local = field(_ADDR_TOOL, entry, "local", str, index)
    prefixlen = field(_ADDR_TOOL, entry, "prefixlen", int, index)
    _check_ip(_ADDR_TOOL, local, family, index)
    if not 0 <= prefixlen <= (32 if family == 4 else 128):
        raise ParseError(_ADDR_TOOL, None, f"element {index}: prefix length {prefixlen}")
    scope = optional_field(_ADDR_TOOL, entry, "scope", str, index) or "global"
    return InterfaceAddress(address=local, prefixlen=prefixlen, family=family, scope=scope)


def _check_ip(tool: str, text: str, family: Family, index: int) -> None:
    try:
        parsed = ipaddress.ip_address(text)
    except ValueError:
        raise ParseError(tool, None, f"element {index}: {text!r} is not an IP address") from None
    if parsed.version != family:
        raise ParseError(tool, None, f"element {index}: {text!r} is not IPv{family}")


def parse_ip_route(text: str, family: Family) -> list[Route]:
    """``ip -4|-6 -j route show table all`` → routes of every table and type.

    A multipath route becomes one Route per next hop (same destination, table and metric):
    for reachability each next hop is a way the packet may go. Host routes ("10.0.0.1") are
    written as prefixes ("10.0.0.1/32") so that every destination has one form.
    """
    items = expect_list_of_objects(_ROUTE_TOOL, load_json(_ROUTE_TOOL, text))
    routes: list[Route] = []
    for index, item in enumerate(items):
        routes.extend(_routes(item, family, index))
    return routes


def _routes(item: dict[str, Any], family: Family, index: int) -> list[Route]:
    destination = _destination(field(_ROUTE_TOOL, item, "dst", str, index), family, index)
    common: dict[str, Any] = {
        "family": family,
        "destination": destination,
        "table": _table(item, index),
        "type": optional_field(_ROUTE_TOOL, item, "type", str, index) or "unicast",
        "metric": optional_field(_ROUTE_TOOL, item, "metric", int, index),
        "source": _optional_ip(item, "prefsrc", family, index),
    }
    nexthops = optional_field(_ROUTE_TOOL, item, "nexthops", list, index)
    if not nexthops:
        return [
            Route(
                gateway=_gateway(item, family, index),
                device=optional_field(_ROUTE_TOOL, item, "dev", str, index),
                **common,
            )
        ]
    hops = []
    for hop in nexthops:
        if not isinstance(hop, dict):
            raise ParseError(_ROUTE_TOOL, None, f"element {index}: a next hop is not an object")
        hops.append(
            Route(
                gateway=_gateway(hop, family, index),
                device=optional_field(_ROUTE_TOOL, hop, "dev", str, index),
                **common,
            )
        )
    return hops


def _destination(dst: str, family: Family, index: int) -> str:
    if dst == "default":
        return dst
    try:
        network = ipaddress.ip_network(dst, strict=False)
    except ValueError:
        raise ParseError(_ROUTE_TOOL, None, f"element {index}: bad destination {dst!r}") from None
    if network.version != family:
        raise ParseError(_ROUTE_TOOL, None, f"element {index}: {dst!r} is not IPv{family}")
    return str(network)


def _table(item: dict[str, Any], index: int) -> str:
    # iproute2 omits "table" for the main table; numbered tables come as strings.
    table = item.get("table", "main")
    if isinstance(table, bool) or not isinstance(table, str | int):
        raise ParseError(_ROUTE_TOOL, None, f"element {index}: bad table {table!r}")
    return str(table)


def _gateway(obj: dict[str, Any], family: Family, index: int) -> str | None:
    gateway = optional_field(_ROUTE_TOOL, obj, "gateway", str, index)
    if gateway is None:
        via = optional_field(_ROUTE_TOOL, obj, "via", dict, index)
        # "via inet6 fe80::1" on an IPv4 route (RFC 5549) comes as {"family", "host"}.
        gateway = optional_field(_ROUTE_TOOL, via, "host", str, index) if via else None
        if gateway is not None:
            _check_ip(_ROUTE_TOOL, gateway, 6 if ":" in gateway else 4, index)
            return str(gateway)
        return None
    _check_ip(_ROUTE_TOOL, gateway, family, index)
    return str(gateway)


def _optional_ip(item: dict[str, Any], key: str, family: Family, index: int) -> str | None:
    value = optional_field(_ROUTE_TOOL, item, key, str, index)
    if value is not None:
        _check_ip(_ROUTE_TOOL, value, family, index)
    return None if value is None else str(value)


#: Keys of a rule object that are not part of its selector.
_RULE_NON_SELECTOR = frozenset({"priority", "table"})


def parse_ip_rule(text: str, family: Family) -> list[PolicyRule]:
    """``ip [-6] -j rule show`` → policy rules in priority order.

    A rule with an action instead of a lookup ("prohibit", "unreachable", "blackhole",
    "goto") has no table: its table is written "" and the action stays in the selector under
    "action", so nobody can mistake it for a lookup. "not" (present as null) is kept as
    ``{"not": True}``.
    """
    items = expect_list_of_objects(_RULE_TOOL, load_json(_RULE_TOOL, text))
    return [_rule(item, family, index) for index, item in enumerate(items)]


def _rule(item: dict[str, Any], family: Family, index: int) -> PolicyRule:
    priority = field(_RULE_TOOL, item, "priority", int, index)
    table = item.get("table")
    if table is None and "action" not in item:
        raise ParseError(_RULE_TOOL, None, f"element {index}: neither table nor action")
    if table is not None and (isinstance(table, bool) or not isinstance(table, str | int)):
        raise ParseError(_RULE_TOOL, None, f"element {index}: bad table {table!r}")
    selector = {k: v for k, v in item.items() if k not in _RULE_NON_SELECTOR}
    if "not" in selector:
        selector["not"] = True
    return PolicyRule(
        family=family,
        priority=priority,
        table="" if table is None else str(table),
        selector=selector,
    )
