"""One host's whole packet filter as one nftables document: nftables, and iptables beside it.

The kernel runs every table registered on a hook, whichever tool registered it: nftables'
own tables, the tables iptables-nft writes into nftables, and iptables-legacy's tables (which
``nft list ruleset`` does not show). A packet passes a hook only if every one of them lets it
through. This module builds the document the engine compiles:

- the ``nft -j`` listing as collected;
- each table iptables-nft wrote with xtables extensions (listed by ``nft -j`` as ``xt``
  expressions it cannot open) replaced by the translation of ``iptables-nft-save``'s listing of
  the same table, rule for rule, keeping nft's handles; a table whose listings disagree in shape
  is kept as nft listed it (uncertain where it uses xt), and the reason noted;
- iptables-legacy's tables, translated, as tables ``iptables-legacy:NAME`` of family ip / ip6;
- where the iptables listings could not be read, a table ``iptables-legacy:unread`` on every
  hook whose one rule may drop anything: the legacy rules cannot be known, so no packet is
  certainly let through (never "unfiltered" unless both backends were read).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from auditor.domain.facts import Ipset, IptablesListings, IptablesSave
from topology.iptables import nft_objects

LEGACY_PREFIX = "iptables-legacy:"
UNREAD_TABLE = f"{LEGACY_PREFIX}unread"
_FAMILIES = {4: "ip", 6: "ip6"}
_HOOKS = ("prerouting", "input", "forward", "output", "postrouting")

Objects = list[dict[str, Any]]


def host_document(
    nftables: Mapping[str, Any],
    iptables: IptablesListings | None,
    unread_reason: str | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The combined document and notes on what could not be combined.

    ``iptables`` None with ``unread_reason`` None: facts from before iptables was collected,
    read as no legacy rules. With a reason: the listings could not be read.
    """
    objects: Objects = [o for o in nftables.get("nftables", []) if isinstance(o, dict)]
    notes: list[str] = []
    if iptables is None:
        if unread_reason is not None:
            objects += _unread_tables(unread_reason)
            notes.append(f"iptables rules not read ({unread_reason}): no packet certainly passes")
        return {"nftables": objects}, notes
    sets = iptables.ipsets or ()
    for version, family in _FAMILIES.items():
        nft_listing = getattr(iptables, f"nft_v{version}")
        if nft_listing is not None:
            objects = _with_nft_translation(objects, family, nft_listing, sets, notes)
        legacy = getattr(iptables, f"legacy_v{version}")
        if legacy is not None:
            objects += _legacy_objects(legacy, family, sets)
    return {"nftables": objects}, notes


def _legacy_objects(listing: IptablesSave, family: str, sets: Sequence[Ipset]) -> Objects:
    return nft_objects(listing.tables, family, lambda name: f"{LEGACY_PREFIX}{name}", sets)


def _with_nft_translation(
    objects: Objects,
    family: str,
    listing: IptablesSave,
    sets: Sequence[Ipset],
    notes: list[str],
) -> Objects:
    what = f"{family}tables-nft-save"
    for table in listing.tables:
        if table.name in listing.incompatible or not _holds_xt(objects, family, table.name):
            continue
        translated = nft_objects([table], family, ipsets=sets)
        replaced = _replace_xt_rules(objects, family, table.name, translated)
        if replaced is None:
            notes.append(
                f"{family} {table.name}: {what} and nft list the table differently; "
                "its xt expressions stay unknown"
            )
        else:
            objects = replaced
    return objects


def _holds_xt(objects: Objects, family: str, table: str) -> bool:
    return any(_has_xt(rule) for rule in _rules_of(objects, family, table))


def _rules_of(objects: Iterable[dict[str, Any]], family: str, table: str) -> list[dict[str, Any]]:
    return [
        o["rule"]
        for o in objects
        if isinstance(o.get("rule"), dict)
        and o["rule"].get("family") == family
        and o["rule"].get("table") == table
    ]


def _by_chain(rules: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    chains: dict[str, list[dict[str, Any]]] = {}
    for rule in rules:
        chains.setdefault(str(rule.get("chain")), []).append(rule)
    return chains


def _replace_xt_rules(
    objects: Objects, family: str, table: str, translated: Objects
) -> Objects | None:
    """Each rule nft lists with ``xt`` expressions replaced by its translation from the
    iptables listing (the rule at the same place of the same chain; nft's handle kept).

    Only those: iptables-nft-save prints a native nft rule it cannot express broader than it
    is (a set lookup dropped, say), so rules nft can open stay as nft lists them. A rule whose
    translation lacks one of nft's own expressions of it is kept too (xt unknown). None when
    the two listings do not have the same chains with the same number of rules."""
    listed = _by_chain(_rules_of(objects, family, table))
    fresh = _by_chain(_rules_of(translated, family, table))
    if {c: len(r) for c, r in listed.items()} != {c: len(r) for c, r in fresh.items()}:
        return None
    replacement = {
        id(old): {**new, "handle": old.get("handle")}
        for chain, rules in listed.items()
        for old, new in zip(rules, fresh[chain], strict=True)
        if _has_xt(old) and _native_parts_kept(old, new)
    }
    result: Objects = []
    for obj in objects:
        rule = obj.get("rule")
        found = replacement.get(id(rule)) if isinstance(rule, dict) else None
        result.append({"rule": found} if found is not None else obj)
    return result


def _has_xt(rule: Mapping[str, Any]) -> bool:
    return any(isinstance(e, dict) and "xt" in e for e in rule.get("expr", []))


#: Statements that neither match nor decide: their absence from a translation changes nothing.
_INERT = frozenset({"counter", "log", "comment"})


def _native_parts_kept(nft_rule: Mapping[str, Any], translation: Mapping[str, Any]) -> bool:
    """Every expression nft itself could open (not ``xt``, not a counter) is in the
    translation too: the iptables line describes the same rule, not a broader one."""
    translated = [_normalised(e) for e in translation.get("expr", [])]
    for expr in nft_rule.get("expr", []):
        if not isinstance(expr, dict) or len(expr) != 1:
            return False
        (kind,) = expr
        if kind == "xt" or kind in _INERT:
            continue
        if _normalised(expr) not in translated and not _implied(expr, translated):
            return False
    return True


#: The protocol a header's payload match implies (nft leaves the explicit test out then).
_HEADER_OF_PROTOCOL = {"icmp": "icmp", "ipv6-icmp": "icmpv6", "tcp": "tcp", "udp": "udp"}


def _implied(expr: Any, translated: list[Any]) -> bool:
    """``meta l4proto icmp`` where the translation matches an icmp header field: the
    header match carries the protocol test itself."""
    normal = _normalised(expr)
    match = normal.get("match") if isinstance(normal, dict) else None
    if not (isinstance(match, dict) and match.get("op") == "=="):
        return False
    if match.get("left") != {"meta": {"key": "l4proto"}}:
        return False
    header = _HEADER_OF_PROTOCOL.get(str(match.get("right")))
    return header is not None and any(
        isinstance(e, dict)
        and isinstance(e.get("match"), dict)
        and isinstance(e["match"].get("left"), dict)
        and e["match"]["left"].get("payload", {}).get("protocol") == header
        for e in translated
    )


def _normalised(expr: Any) -> Any:
    """``ip protocol tcp`` and ``meta l4proto tcp`` test the same thing (iptables-nft writes
    the first, the translation the second)."""
    match = expr.get("match") if isinstance(expr, dict) else None
    left = match.get("left") if isinstance(match, dict) else None
    payload = left.get("payload") if isinstance(left, dict) else None
    if not (isinstance(payload, dict) and isinstance(match, dict)):
        return expr
    if payload.get("field") in ("protocol", "nexthdr") and payload.get("protocol") in ("ip", "ip6"):
        return {"match": {**match, "left": {"meta": {"key": "l4proto"}}}}
    return expr


def _unread_tables(reason: str) -> Objects:
    objects: Objects = []
    for family in _FAMILIES.values():
        objects.append({"table": {"family": family, "name": UNREAD_TABLE}})
        for hook in _HOOKS:
            where = {"family": family, "table": UNREAD_TABLE}
            chain = {**where, "name": hook, "type": "filter", "hook": hook, "prio": 0}
            objects.append({"chain": {**chain, "policy": "accept"}})
            expr = [{"xt": {"type": "match", "name": f"iptables rules not read: {reason}"}}]
            rule = {**where, "chain": hook, "handle": 1, "expr": [*expr, {"drop": None}]}
            objects.append({"rule": rule})
    return objects
