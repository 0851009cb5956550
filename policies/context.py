"""What a check reads: the inventory, the collected facts, the topology and the empirical results.

Checks never open a connection; everything they judge was gathered beforehand by the probes
and is handed over here. Each empirical result is an ``Attempt``: a failed attempt carries its
reason, which the check turns into an inconclusive finding instead of a pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from netaddr import IPAddress

from auditor.inventory import Inventory, Role, Zone
from probes.base import Attempt
from probes.facts import HostFacts

if TYPE_CHECKING:
    from policies.empirical import (
        DiscoveryObservation,
        EgressObservation,
        LinkObservation,
        ScanObservation,
    )
    from topology.graph import Topology


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
        return self.inventory.networks_in(Zone.EXTERNAL, Zone.OFFICE)

    def outside_parties(self, host: str) -> dict[str, set[str]]:
        """Outside parties (other organisations) the host shares an external network or a
        tunnel with: party -> the shared networks and tunnels. These are the host's
        external links, over which it exchanges data with outside parties."""
        mine = self.host_networks(host)
        external = set(self.external_networks()) | set(self.inventory.tunnels)
        shared: dict[str, set[str]] = {}
        for party in self.inventory.hosts_with(Role.EXTERNAL_PARTY):
            common = mine & self.host_networks(party) & external
            if common:
                shared[party] = common
        return shared

    def host_networks(self, host: str) -> set[str]:
        """Networks (and tunnels) a host is attached to: collected addresses, else declared ones."""
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
