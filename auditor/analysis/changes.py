"""Proposed changes to a stored run's model, as ``auditor whatif`` takes them, and their effect.

Each change is parsed from its command-line form into the facts' own models (a ``Route``, a
``Listener``, an ``nft -j`` document), so the topology and the checks read a changed host
exactly as they read a collected one. What each change means:

- ``--ruleset HOST=FILE``: the host's whole rule set is FILE's (the ``nftables`` fact replaced).
- ``--route HOST='LINE'``: an ``ip route`` line added to the host's routes; ``HOST='-LINE'``
  removes every route that matches the fields the line gives (destination and table always,
  the others only when written). Adding a route the host already has (same destination,
  table, type and metric: what ``ip route add`` calls "File exists") is refused.
- ``--forwarding HOST=on|off``: IPv4 and IPv6 forwarding both set.
- ``--listen HOST=[ADDR:]PORT/PROTO``: a listening socket added; without ADDR it listens on
  every address of both families (``*``, as ``ss`` shows a dual-stack socket).
- ``--link-down NETWORK``: the network (or tunnel) carries nothing. Every attachment of every
  host to it is removed from the model, and so are the tunnels that run over it. The
  inventory is not changed: a control that judges the declared design (which links exist and
  what medium they are) still sees the link. The routes through the interfaces on it go too,
  as the kernel removes them when an interface goes down.
- ``--host-down HOST``: the host is absent: the model keeps it with no attachment, so nothing
  reaches it or passes through it. Its own findings become not-applicable (see whatif).

A fact changed here no longer rests on the run's evidence: its evidence hash and any
collection error recorded for it are dropped from the host's facts.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from auditor.analysis.nftcheck import load_ruleset
from auditor.domain.attempts import Attempt
from auditor.domain.errors import AuditorError
from auditor.domain.facts import HostFacts, Listener, Route
from auditor.domain.inventory import Inventory
from topology.graph import HostModel, RouteTable, Topology

Family = Literal[4, 6]
ROUTE_TYPES = frozenset({"unicast", "local", "blackhole", "unreachable", "prohibit", "throw"})
#: Types whose packets go nowhere: a gateway or device on them is a contradiction.
_NOWHERE_TYPES = frozenset({"blackhole", "unreachable", "prohibit", "throw"})
#: The metric the kernel gives an IPv6 route added without one (IPv4 routes have none).
DEFAULT_IPV6_METRIC = 1024
_ROUTE_KEYWORDS = frozenset({"via", "dev", "table", "metric", "preference", "src"})


class ChangeError(AuditorError):
    """A proposed change is malformed, names an unknown host or network, or cannot apply."""


@dataclass(frozen=True)
class RulesetChange:
    host: str
    path: Path
    kind: str = "ruleset"

    @property
    def spec(self) -> str:
        return f"{self.host}={self.path}"


@dataclass(frozen=True)
class RouteSpec:
    """A parsed ``ip route`` line: the route and which of its fields the line wrote."""

    route: Route
    given: frozenset[str]
    line: str

    def matches(self, route: Route) -> bool:
        always = ("family", "destination", "table")
        fields = set(always) | set(self.given)
        return all(getattr(route, name) == getattr(self.route, name) for name in fields)


@dataclass(frozen=True)
class RouteChange:
    host: str
    route: RouteSpec
    remove: bool
    kind: str = "route"

    @property
    def spec(self) -> str:
        return f"{self.host}={'-' if self.remove else ''}{self.route.line}"


@dataclass(frozen=True)
class ForwardingChange:
    host: str
    enabled: bool
    kind: str = "forwarding"

    @property
    def spec(self) -> str:
        return f"{self.host}={'on' if self.enabled else 'off'}"


@dataclass(frozen=True)
class ListenChange:
    host: str
    listener: Listener
    text: str
    kind: str = "listen"

    @property
    def spec(self) -> str:
        return f"{self.host}={self.text}"


@dataclass(frozen=True)
class LinkDownChange:
    network: str
    kind: str = "link-down"

    @property
    def spec(self) -> str:
        return self.network


@dataclass(frozen=True)
class HostDownChange:
    host: str
    kind: str = "host-down"

    @property
    def spec(self) -> str:
        return self.host


FactChange = RulesetChange | RouteChange | ForwardingChange | ListenChange
Change = FactChange | LinkDownChange | HostDownChange


def describe(change: Change) -> dict[str, str]:
    """The change as whatif.json lists it: its kind and its command-line form."""
    return {"kind": change.kind, "spec": change.spec}


# --- parsing the command-line forms -------------------------------------------------------


def split_host_spec(option: str, spec: str) -> tuple[str, str]:
    """``HOST=VALUE`` -> (HOST, VALUE), refusing anything else naming the option."""
    host, sep, value = spec.partition("=")
    host, value = host.strip(), value.strip()
    if not sep or not host or not value:
        raise ChangeError(f"--{option} {spec!r}: expected HOST=VALUE")
    return host, value


def parse_ruleset_spec(spec: str) -> RulesetChange:
    host, value = split_host_spec("ruleset", spec)
    return RulesetChange(host, Path(value))


def parse_route_spec(spec: str) -> RouteChange:
    host, value = split_host_spec("route", spec)
    remove = value.startswith("-")
    line = value[1:].strip() if remove else value
    try:
        return RouteChange(host, parse_route_line(line), remove)
    except ChangeError as exc:
        raise ChangeError(f"--route {spec}: {exc}") from exc


def parse_forwarding_spec(spec: str) -> ForwardingChange:
    host, value = split_host_spec("forwarding", spec)
    states = {"on": True, "off": False}
    if value.lower() not in states:
        raise ChangeError(f"--forwarding {spec!r}: the state must be on or off, not {value!r}")
    return ForwardingChange(host, states[value.lower()])


def parse_listen_spec(spec: str) -> ListenChange:
    host, value = split_host_spec("listen", spec)
    try:
        return ListenChange(host, parse_listener(value), value)
    except ChangeError as exc:
        raise ChangeError(f"--listen {spec}: {exc}") from exc


def parse_listener(text: str) -> Listener:
    """``[ADDR:]PORT/PROTO``: ``8443/tcp``, ``10.98.11.20:8443/tcp``, ``[::]:53/udp``."""
    where, sep, proto = text.rpartition("/")
    if not sep or proto not in ("tcp", "udp"):
        raise ChangeError(f"listener {text!r}: expected [ADDR:]PORT/tcp or [ADDR:]PORT/udp")
    address, port_text = _split_address_port(where, text)
    try:
        port = int(port_text)
    except ValueError:
        raise ChangeError(f"listener {text!r}: the port {port_text!r} is not a number") from None
    if not 1 <= port <= 65535:
        raise ChangeError(f"listener {text!r}: the port {port} is not in 1-65535")
    return Listener(proto="tcp" if proto == "tcp" else "udp", address=address, port=port)


def _split_address_port(where: str, text: str) -> tuple[str, str]:
    if where.startswith("["):
        address, sep, port = where[1:].partition("]:")
        if not sep:
            raise ChangeError(f"listener {text!r}: expected [IPV6]:PORT")
        return _listen_address(address, text), port
    if where.count(":") > 1:
        raise ChangeError(f"listener {text!r}: write an IPv6 address in brackets, [ADDR]:PORT")
    address, sep, port = where.rpartition(":")
    return (_listen_address(address, text), port) if sep else ("*", where)


def _listen_address(address: str, text: str) -> str:
    if address == "*":
        return address
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        raise ChangeError(f"listener {text!r}: {address!r} is not an IP address") from None


def parse_route_line(line: str) -> RouteSpec:
    """An ``ip route`` line (``[TYPE] DEST [via GW] [dev DEV] [table T] [metric N]
    [src ADDR]``) as the facts' Route; a line it cannot read is refused naming it."""
    words = line.split()
    if not words:
        raise ChangeError("route '': empty route line")
    route_type = "unicast"
    given: set[str] = set()
    if words[0] in ROUTE_TYPES:
        route_type, words = words[0], words[1:]
        given.add("type")
    if not words:
        raise ChangeError(f"route {line!r}: no destination")
    options = _route_options(words[1:], line)
    family, destination = _route_destination(words[0], options, line)
    fields: dict[str, Any] = {"family": family, "destination": destination, "type": route_type}
    for word, name in (
        ("via", "gateway"),
        ("dev", "device"),
        ("table", "table"),
        ("src", "source"),
    ):
        if word in options:
            fields[name] = options[word]
            given.add(name)
    fields["gateway"] = _checked_address(fields.get("gateway"), family, "gateway", line)
    fields["source"] = _checked_address(fields.get("source"), family, "src", line)
    fields["metric"] = _metric(options, family, line)
    if "metric" in options or "preference" in options:
        given.add("metric")
    if route_type in _NOWHERE_TYPES and fields["gateway"] is not None:
        raise ChangeError(f"route {line!r}: a {route_type} route has no gateway")
    return RouteSpec(Route(**fields), frozenset(given), line)


def _route_options(words: Sequence[str], line: str) -> dict[str, str]:
    if len(words) % 2:
        raise ChangeError(f"route {line!r}: {words[-1]!r} has no value")
    options: dict[str, str] = {}
    for key, value in zip(words[::2], words[1::2], strict=True):
        if key not in _ROUTE_KEYWORDS:
            raise ChangeError(
                f"route {line!r}: {key!r} is not understood (known: "
                f"{', '.join(sorted(_ROUTE_KEYWORDS))})"
            )
        if key in options:
            raise ChangeError(f"route {line!r}: {key!r} given twice")
        options[key] = value
    return options


def _route_destination(text: str, options: dict[str, str], line: str) -> tuple[Family, str]:
    if text == "default":
        hint = options.get("via") or options.get("src")
        if hint is None:
            raise ChangeError(
                f"route {line!r}: cannot tell IPv4 from IPv6; write the destination as "
                "0.0.0.0/0 or ::/0"
            )
        return _family_of(hint, line), "default"
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ChangeError(f"route {line!r}: {text!r} is not a destination") from None
    family: Family = 4 if network.version == 4 else 6
    # As the collector writes them: the whole space is "default", a host a /32 or /128.
    return family, "default" if network.prefixlen == 0 else str(network)


def _family_of(address: str, line: str) -> Family:
    try:
        return 4 if ipaddress.ip_address(address).version == 4 else 6
    except ValueError:
        raise ChangeError(f"route {line!r}: {address!r} is not an IP address") from None


def _checked_address(value: str | None, family: Family, word: str, line: str) -> str | None:
    if value is None:
        return None
    if _family_of(value, line) != family:
        raise ChangeError(f"route {line!r}: {word} {value} is not IPv{family}")
    return str(ipaddress.ip_address(value))


def _metric(options: dict[str, str], family: Family, line: str) -> int | None:
    text = options.get("metric", options.get("preference"))
    if text is None:
        return DEFAULT_IPV6_METRIC if family == 6 else None
    if not text.isdigit():
        raise ChangeError(f"route {line!r}: metric {text!r} is not a number")
    return int(text)


# --- checking names and applying ----------------------------------------------------------


def check_names(inventory: Inventory, changes: Iterable[Change]) -> None:
    """Every host and network a change names exists in the run's inventory."""
    for change in changes:
        if isinstance(change, LinkDownChange):
            if change.network not in inventory.networks and change.network not in inventory.tunnels:
                known = sorted([*inventory.networks, *inventory.tunnels])
                raise ChangeError(
                    f"--link-down {change.network}: no such network or tunnel in the inventory "
                    f"(known: {', '.join(known)})"
                )
        elif change.host not in inventory.hosts:
            raise ChangeError(
                f"--{change.kind} {change.spec}: no host {change.host!r} in the inventory "
                f"(known: {', '.join(sorted(inventory.hosts))})"
            )


def apply_to_collection(
    collection: dict[str, Attempt[HostFacts]], changes: Sequence[Change]
) -> dict[str, Attempt[HostFacts]]:
    """The collection attempts with every fact change applied, in the order given."""
    result = dict(collection)
    for change in changes:
        if isinstance(change, LinkDownChange | HostDownChange):
            continue
        attempt = result.get(change.host)
        facts = attempt.collected if attempt is not None else None
        if attempt is None or facts is None:
            raise ChangeError(
                f"--{change.kind} {change.spec}: the stored run has no facts of {change.host} "
                "to change"
            )
        result[change.host] = dataclasses.replace(attempt, value=_changed(facts, change))
    return result


def _changed(facts: HostFacts, change: FactChange) -> HostFacts:
    if isinstance(change, RulesetChange):
        # iptables-nft's own listing described the old nftables rules; legacy rules stay.
        iptables = facts.iptables
        if iptables is not None:
            iptables = iptables.model_copy(update={"nft_v4": None, "nft_v6": None})
        return _with(facts, {"nftables": load_ruleset(change.path), "iptables": iptables})
    if isinstance(change, ForwardingChange):
        return _with(facts, {"forwarding_v4": change.enabled, "forwarding_v6": change.enabled})
    if isinstance(change, ListenChange):
        return _with(facts, {"listeners": [*(facts.listeners or []), change.listener]})
    return _with(facts, {"routes": _changed_routes(facts, change)})


def _with(facts: HostFacts, update: dict[str, Any]) -> HostFacts:
    # A fact set by hand rests on no collected output and no longer misses: drop both records
    # ("routes:v4", "routes:v6" ... are the steps of the "routes" fact).
    changed = tuple(update)
    return facts.model_copy(
        update={
            **update,
            "evidence": {k: v for k, v in facts.evidence.items() if not _about(k, changed)},
            "errors": {k: v for k, v in facts.errors.items() if not _about(k, changed)},
        }
    )


def _about(key: str, facts: tuple[str, ...]) -> bool:
    return any(key == fact or key.startswith(fact + ":") for fact in facts)


def _changed_routes(facts: HostFacts, change: RouteChange) -> list[Route]:
    routes = list(facts.routes or [])
    spec = change.route
    if change.remove:
        kept = [r for r in routes if not spec.matches(r)]
        if len(kept) == len(routes):
            raise ChangeError(f"--route {change.spec}: {change.host} has no route matching it")
        return kept
    route = _with_device(spec.route, facts, change)
    if any(_same_slot(route, existing) for existing in routes):
        raise ChangeError(
            f"--route {change.spec}: {change.host} already has a route to {route.destination} "
            f"in table {route.table} (remove it first with '-…')"
        )
    return [*routes, route]


def _same_slot(a: Route, b: Route) -> bool:
    """The kernel's "File exists": one route per destination, table, type and metric."""
    keys = ("family", "destination", "table", "type", "metric")
    return all(getattr(a, k) == getattr(b, k) for k in keys)


def _with_device(route: Route, facts: HostFacts, change: RouteChange) -> Route:
    """A gateway route written without ``dev`` leaves by the interface whose network holds
    the gateway, as the kernel chooses it; a gateway on none of them is refused as the
    kernel refuses it."""
    if route.device is not None or route.gateway is None:
        return route
    gateway = ipaddress.ip_address(route.gateway)
    for interface in facts.interfaces or []:
        for address in interface.addresses:
            network = ipaddress.ip_interface(f"{address.address}/{address.prefixlen}").network
            if gateway in network:
                return route.model_copy(update={"device": interface.name})
    raise ChangeError(
        f"--route {change.spec}: the gateway {route.gateway} is on none of {change.host}'s "
        "networks (give dev NAME)"
    )


def down_hosts(changes: Iterable[Change]) -> set[str]:
    return {c.host for c in changes if isinstance(c, HostDownChange)}


def down_segments(inventory: Inventory, changes: Iterable[Change]) -> set[str]:
    """The networks taken down, with the tunnels that run over them."""
    networks = {c.network for c in changes if isinstance(c, LinkDownChange)}
    tunnels = {name for name, t in inventory.tunnels.items() if t.over in networks}
    return networks | tunnels


def apply_to_topology(topology: Topology, segments: set[str], hosts: set[str]) -> Topology:
    """The model without the attachments of the down hosts and to the down segments, and
    without the routes through the interfaces those attachments were on."""
    if not segments and not hosts:
        return topology
    models = {
        name: _without(model, segments, everything=name in hosts)
        for name, model in topology.hosts.items()
    }
    return Topology(topology.segments, models)


def _without(model: HostModel, segments: set[str], *, everything: bool) -> HostModel:
    gone = [a for a in model.attachments if everything or a.segment in segments]
    if not gone:
        return model
    # As the kernel does when an interface goes down: its routes go with it. Kept, they
    # would point into an interface the model no longer places anywhere.
    dead = {a.interface for a in gone if a.interface is not None}
    routes = model.routes
    if routes is not None and dead:
        routes = RouteTable(
            e for family in (4, 6) for e in routes.entries(family) if e.device not in dead
        )
    kept = [a for a in model.attachments if a not in gone]
    return dataclasses.replace(model, attachments=kept, routes=routes)
