"""What the kernel calls each destination address of one host: ``fib daddr type`` and
iptables' ``-m addrtype`` (Docker's ``--dst-type LOCAL``, ufw's not-local chain).

Both ask the kernel's address-type lookup. For IPv4 (``inet_dev_addr_type``) that is: the
zero network and the limited broadcast are ``broadcast``, 224.0.0.0/4 is ``multicast``,
otherwise the longest match in the *local* routing table gives the type (its ``local`` and
``broadcast`` entries), and an address it does not hold is ``unicast``. For IPv6 the answer
comes from a route lookup (``local`` for the host's own addresses and ``::1``, ``anycast``,
``unreachable`` where no route leads, never ``broadcast``), of which ``local`` and
``broadcast`` are modelled here: every other IPv6 type is left undecided.

The local table is part of the routes the collector reads (``ip route show table all``), so
the answer is exact for the host as collected; a host whose routes were not collected gets no
``AddressTypes`` and every type match on it stays unknown. A lookup restricted to a device
(``fib daddr . iif type``, ``--limit-iface-in``) is not modelled either.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from netaddr import AddrFormatError, IPNetwork

from auditor.domain.facts import PolicyRule, Route
from topology.intervals import AddressSet

_V4_BROADCAST = AddressSet.of("0.0.0.0/8", "255.255.255.255/32")
_V4_MULTICAST = AddressSet.of("224.0.0.0/4")
_V6_LOOPBACK = AddressSet.of("::1/128")
#: Local-table entry types that decide an IPv4 address's type.
_V4_TABLE_TYPES = ("local", "broadcast", "multicast", "unicast", "anycast")


@dataclass(frozen=True)
class ReversePath:
    """IPv6 reverse-path lookups (``fib saddr . [mark .] iif oif``, firewalld's IPv6
    rpfilter): per device, the sources whose route back leaves through that device.

    The lookup follows the policy rules (local table first, then main) with the packet's
    source as destination. An own address (local or anycast, in the local table) and a
    source with no route or a reject route have no output device ("missing"). Link-local,
    multicast and unspecified sources (device-bound or special lookups) are left ``unsure``.
    """

    by_device: dict[str, AddressSet]
    unsure: AddressSet


@dataclass(frozen=True)
class AddressTypes:
    """What a host's routing tables say of addresses: per type name, the destinations of
    that type (IPv4 complete, IPv6 ``local`` and ``broadcast`` only), and the IPv6 reverse
    path where the host's policy rules allow it to be worked out."""

    v4: dict[str, AddressSet]
    v6_local: AddressSet
    reverse_v6: ReversePath | None = None

    @classmethod
    def from_routes(
        cls, routes: Iterable[Route], rules: Iterable[PolicyRule] | None = None
    ) -> AddressTypes | None:
        """From the host's local routing table; None when the routes hold no local table
        (not collected as ``table all``, or not a Linux host): the types are then unknown.
        The reverse path needs the policy rules too (``rules``)."""
        routes = list(routes)
        local = [r for r in routes if r.table == "local"]
        if not any(r.family == 4 for r in local) or not any(r.family == 6 for r in local):
            return None
        reverse = None
        if rules is not None and _plain_lookup(rules):
            reverse = _reverse_v6(routes)
        return cls(v4=_v4_types(local), v6_local=_v6_local(local), reverse_v6=reverse)

    def addresses(self, type_name: str, family: int) -> AddressSet | None:
        """The destinations of ``type_name`` in ``family``; None where not modelled."""
        if family == 4:
            return self.v4.get(type_name, AddressSet())
        if type_name == "local":
            return self.v6_local
        # The IPv6 lookup never answers broadcast; its other answers depend on routes.
        return AddressSet() if type_name == "broadcast" else None


def _prefix(route: Route, default: str | None = None) -> IPNetwork | None:
    destination = default if route.destination == "default" and default else route.destination
    try:
        return IPNetwork(destination)
    except (AddrFormatError, ValueError):
        return None


def _v4_types(local_table: list[Route]) -> dict[str, AddressSet]:
    # Longest prefix wins: apply entries from the shortest prefix to the longest, each
    # taking its addresses away from every type before giving them to its own.
    entries = [
        (prefix, route.type)
        for route in local_table
        if route.family == 4 and route.type in _V4_TABLE_TYPES
        if (prefix := _prefix(route)) is not None
    ]
    entries.sort(key=lambda entry: entry[0].prefixlen)
    types: dict[str, AddressSet] = {}
    for prefix, kind in entries:
        covered = AddressSet.of(prefix)
        types = {name: addresses - covered for name, addresses in types.items()}
        types[kind] = types.get(kind, AddressSet()) | covered
    # Checked before the table by the kernel: these two win over any entry.
    fixed = _V4_BROADCAST | _V4_MULTICAST
    types = {name: addresses - fixed for name, addresses in types.items()}
    types["broadcast"] = types.get("broadcast", AddressSet()) | _V4_BROADCAST
    types["multicast"] = types.get("multicast", AddressSet()) | _V4_MULTICAST
    listed = AddressSet()
    for addresses in types.values():
        listed = listed | addresses
    types["unicast"] = types.get("unicast", AddressSet()) | (AddressSet.universe(4) - listed)
    return types


def _v6_local(local_table: list[Route]) -> AddressSet:
    found = _V6_LOOPBACK
    for route in local_table:
        if route.family == 6 and route.type == "local":
            prefix = _prefix(route)
            if prefix is not None:
                found = found | AddressSet.of(prefix)
    return found


_STANDARD_RULES = {(0, "local"), (32766, "main"), (32767, "default")}
#: Sources whose lookup is bound to a device or special: not decided here.
_V6_UNSURE = AddressSet.of("fe80::/10", "ff00::/8", "::/128")


def _plain_lookup(rules: Iterable[PolicyRule]) -> bool:
    """Only the standard IPv6 rules take part in a reverse-path lookup: rules that select by
    input interface never match it (nft asks from the loopback interface), unless they name
    ``lo``; any other rule could send it to another table, and the answer is not modelled."""
    for rule in rules:
        if rule.family != 6:
            continue
        selector = {k: v for k, v in rule.selector.items() if k != "src" or v != "all"}
        if not selector and (rule.priority, rule.table) in _STANDARD_RULES:
            continue
        iif = selector.get("iif")
        if isinstance(iif, str) and iif != "lo" and "not" not in selector:
            continue
        return False
    return True


def _reverse_v6(routes: list[Route]) -> ReversePath:
    # The local table is asked first: a source in it (an own or anycast address, the
    # multicast range) is answered there. Then the main table, longest prefix first.
    owned = AddressSet()
    for route in routes:
        if route.family == 6 and route.table == "local" and (prefix := _prefix(route)):
            owned = owned | AddressSet.of(prefix)
    chosen, tied = _best_routes(routes)
    by_device: dict[str, AddressSet] = {}
    for prefix in sorted(chosen, key=lambda p: p.prefixlen):
        covered = AddressSet.of(prefix)
        by_device = {name: addresses - covered for name, addresses in by_device.items()}
        device = chosen[prefix]
        if device is not None:
            by_device[device] = by_device.get(device, AddressSet()) | covered
    unsure = _V6_UNSURE | tied
    taken = owned | unsure
    return ReversePath(
        by_device={name: addresses - taken for name, addresses in by_device.items()},
        unsure=unsure,
    )


def _best_routes(routes: list[Route]) -> tuple[dict[IPNetwork, str | None], AddressSet]:
    """Per IPv6 prefix of the main table, the device of its lowest-metric route (None: a
    reject route, or no single device); and the prefixes whose best routes tie (several
    devices at one metric: the kernel's choice between them is not modelled)."""
    best: dict[IPNetwork, tuple[int, set[str | None]]] = {}
    for route in routes:
        prefix = _prefix(route, default="::/0") if route.family == 6 else None
        if prefix is None or route.table != "main":
            continue
        device = route.device if route.type == "unicast" else None
        metric = route.metric if route.metric is not None else 0
        known = best.get(prefix)
        if known is None or metric < known[0]:
            best[prefix] = (metric, {device})
        elif metric == known[0]:
            known[1].add(device)
    chosen = {p: next(iter(d)) if len(d) == 1 else None for p, (_, d) in best.items()}
    tied = AddressSet()
    for prefix, (_, devices) in best.items():
        if len(devices) > 1:
            tied = tied | AddressSet.of(prefix)
    return chosen, tied
