"""What a check reads: the inventory, the collected facts, the topology and the empirical results.

Checks never open a connection; everything they judge was gathered beforehand by the probes
and is handed over here. Each empirical result is an ``Attempt``: a failed attempt carries its
reason, which the check turns into an inconclusive finding instead of a pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar, cast

from netaddr import IPAddress

from auditor.domain.attempts import Attempt
from auditor.domain.facts import HostFacts
from auditor.domain.inventory import Inventory, Role, Zone

if TYPE_CHECKING:
    from policies.empirical import (
        DiscoveryObservation,
        EgressObservation,
        LinkObservation,
        ScanObservation,
    )
    from topology.graph import Topology

T = TypeVar("T")


@dataclass
class AuditContext:
    inventory: Inventory
    #: per audited host: the collection attempt (its value is the HostFacts when it succeeded)
    collection: dict[str, Attempt[HostFacts]] = field(default_factory=dict)
    topology: Topology | None = None
    topology_error: str | None = None
    #: per host: egress attempts made from it while captures ran
    egress: dict[str, Attempt[EgressObservation]] = field(default_factory=dict)
    #: per external network: what scans from a vantage point there found open
    scans: dict[str, Attempt[ScanObservation]] = field(default_factory=dict)
    #: per external network: flows captured while the data pipeline ran
    links: dict[str, Attempt[LinkObservation]] = field(default_factory=dict)
    #: per protected network: live addresses found by an ARP / neighbour sweep
    discovery: dict[str, Attempt[DiscoveryObservation]] = field(default_factory=dict)
    # Caches of derived answers (see derived and host_networks); not part of the state.
    _inventory_seen: Inventory | None = field(default=None, init=False, repr=False, compare=False)
    _derived: dict[str, object] = field(default_factory=dict, init=False, repr=False, compare=False)
    _host_networks: dict[str, tuple[Attempt[HostFacts] | None, frozenset[str]]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _party_index: _PartyIndex | None = field(default=None, init=False, repr=False, compare=False)

    def facts(self, host: str) -> HostFacts | None:
        attempt = self.collection.get(host)
        return attempt.value if attempt is not None and attempt.succeeded else None

    def collection_problem(self, host: str) -> str:
        """Why there are no facts for ``host`` (for an inconclusive finding)."""
        attempt = self.collection.get(host)
        if attempt is None:
            return f"{host} was not collected"
        if attempt.error is not None:
            return (
                f"collection from {host} failed ({attempt.error.reason}): {attempt.error.message}"
            )
        return f"no facts for {host}"

    def external_networks(self) -> list[str]:
        """Networks outside the certified area: the external zone and ordinary office LANs."""
        return list(self.derived("external", self._external_networks))

    def _external_networks(self) -> tuple[str, ...]:
        return tuple(self.inventory.networks_in(Zone.EXTERNAL, Zone.OFFICE))

    def outside_parties(self, host: str) -> dict[str, set[str]]:
        """Outside parties (other organisations) the host shares an external network or a
        tunnel with: party -> the shared networks and tunnels. These are the host's
        external links, over which it exchanges data with outside parties."""
        external = self.derived("external-or-tunnel", self._external_or_tunnel)
        mine = self.host_networks(host) & external
        if not mine:
            return {}
        on_network = self._parties_by_network()
        shared: dict[str, set[str]] = {}
        for party in sorted({p for n in mine for p in on_network.get(n, ())}):
            shared[party] = mine & on_network.get_networks(party)
        return shared

    def _external_or_tunnel(self) -> frozenset[str]:
        return frozenset(self.external_networks()) | frozenset(self.inventory.tunnels)

    def _parties_by_network(self) -> _PartyIndex:
        """Which outside parties are on each external network or tunnel, built once per
        inventory and rebuilt only when a party's collection attempt changes (asked for
        every organisation host, a scan over every party made the controls quadratic)."""
        parties = self.derived(
            "parties", lambda: tuple(self.inventory.hosts_with(Role.EXTERNAL_PARTY))
        )
        attempts = [self.collection.get(p) for p in parties]
        cached = self._party_index
        if cached is not None and _same_objects(cached.attempts, attempts):
            return cached
        external = self.derived("external-or-tunnel", self._external_or_tunnel)
        index = _PartyIndex(attempts)
        for party in parties:
            index.add(party, self.host_networks(party) & external)
        self._party_index = index
        return index

    def host_networks(self, host: str) -> set[str]:
        """Networks (and tunnels) a host is attached to: collected addresses, else declared ones."""
        self._fresh()
        attempt = self.collection.get(host)
        # Valid while the host's collection attempt is the same object.
        cached = self._host_networks.get(host)
        if cached is not None and cached[0] is attempt:
            return set(cached[1])
        names = frozenset(self._attached(host))
        self._host_networks[host] = (attempt, names)
        return set(names)

    def _attached(self, host: str) -> set[str]:
        facts = self.facts(host)
        names: set[str] = set()
        if facts is not None and facts.interfaces is not None:
            for interface in facts.interfaces:
                for addr in interface.addresses:
                    if addr.scope != "global":
                        continue
                    name = self.inventory.network_of(IPAddress(addr.address))
                    if name is not None:
                        names.add(name)
        definition = self.inventory.hosts.get(host)
        if definition is not None:
            names.update(definition.addresses)
        return names

    def derived(self, key: str, compute: Callable[[], T]) -> T:
        """A value derived from the inventory alone, computed once per inventory object."""
        self._fresh()
        if key not in self._derived:
            self._derived[key] = compute()
        return cast(T, self._derived[key])

    def _fresh(self) -> None:
        """Forget every cached answer when the inventory object was replaced."""
        if self._inventory_seen is not self.inventory:
            self._derived.clear()
            self._host_networks.clear()
            self._party_index = None
            self._inventory_seen = self.inventory


def _same_objects(a: Sequence[object], b: Sequence[object]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


class _PartyIndex:
    """Outside parties per network, and networks per party (both restricted to external
    networks and tunnels), with the collection attempts it was built from."""

    def __init__(self, attempts: list[Attempt[HostFacts] | None]) -> None:
        self.attempts = attempts
        self._parties: dict[str, list[str]] = {}
        self._networks: dict[str, frozenset[str]] = {}

    def add(self, party: str, networks: set[str]) -> None:
        self._networks[party] = frozenset(networks)
        for network in networks:
            self._parties.setdefault(network, []).append(party)

    def get(self, network: str, default: Sequence[str] = ()) -> Sequence[str]:
        return self._parties.get(network, default)

    def get_networks(self, party: str) -> frozenset[str]:
        return self._networks.get(party, frozenset())
