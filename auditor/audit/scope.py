"""The scope guard: the last check before any probe sends a packet.

An audit runs against production infrastructure, often beside networks that belong to someone
else. The inventory's ``scope.authorized`` lists the only ranges the auditor was allowed to
touch; every probe asks ``ScopeGuard.check`` before it sends anything, and a refusal is final.

The guard never resolves a name through DNS: an answer from DNS is not the organisation's
declaration, and could point anywhere. A name is accepted only when it is a host of the
inventory, and it stands for the addresses the inventory declares for that host.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from netaddr import IPAddress

from auditor.domain.errors import AuditorError
from auditor.domain.inventory import Inventory, Scope

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_LOOPBACK: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)


class OutOfScopeError(AuditorError):
    """A target the auditor is not authorized to send packets to."""

    def __init__(self, target: str, reason: str, authorized: Sequence[str]) -> None:
        self.target = target
        self.reason = reason
        self.authorized = list(authorized)
        ranges = ", ".join(self.authorized) or "none"
        super().__init__(
            f"refusing {target!r}: {reason}; authorized scope: {ranges} (and loopback)"
        )


@dataclass(frozen=True)
class _Resolved:
    networks: tuple[IPNetwork, ...]
    kind: str  #: "address", "network" or "host"


class ScopeGuard:
    """Decides whether a target (address, network or inventory host name) may be probed."""

    def __init__(self, scope: Scope, hosts: Mapping[str, Sequence[IPAddress]] | None = None):
        self._authorized: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(str(prefix)) for prefix in scope.authorized
        )
        self._hosts = {
            name: tuple(ipaddress.ip_network(str(a)) for a in addresses)
            for name, addresses in (hosts or {}).items()
        }

    @classmethod
    def from_inventory(cls, inventory: Inventory) -> ScopeGuard:
        """A guard for an inventory's scope that knows its hosts' declared addresses."""
        hosts: dict[str, list[IPAddress]] = {}
        for name, host in inventory.hosts.items():
            addresses = host.all_addresses()
            if host.ssh is not None and host.ssh not in addresses:
                addresses.append(host.ssh)
            hosts[name] = addresses
        return cls(inventory.scope, hosts)

    @property
    def authorized(self) -> list[str]:
        return [str(network) for network in self._authorized]

    def check(self, target: str) -> None:
        """Return quietly when every address ``target`` stands for is authorized (or loopback);
        raise OutOfScopeError otherwise, naming the target and the authorized ranges."""
        resolved = self._resolve(target)
        outside = [n for n in resolved.networks if not self._permits(n)]
        if outside:
            raise self._refusal(target, _describe_outside(resolved, outside))

    def permits(self, target: str) -> bool:
        try:
            self.check(target)
        except OutOfScopeError:
            return False
        return True

    def filter(self, targets: Iterable[str]) -> list[str]:
        """The targets that may be probed, in their order; refused ones are dropped."""
        return [target for target in targets if self.permits(target)]

    def addresses_of(self, target: str) -> list[str]:
        """What a permitted target stands for: an inventory host's addresses, or itself."""
        self.check(target)
        return [
            str(n.network_address) if n.num_addresses == 1 else str(n)
            for n in self._resolve(target).networks
        ]

    # -- internals -----------------------------------------------------------------------
    def _resolve(self, target: str) -> _Resolved:
        if not isinstance(target, str) or not target:
            raise self._refusal(str(target), "not an address, a network or an inventory host name")
        # An IP literal is judged as itself even if a host happens to bear that name: a socket
        # given this string connects to the literal address, not to the host's addresses.
        network = _parse_ip_target(target)
        if network is not None:
            kind = "address" if "/" not in target else "network"
            return _Resolved((_unmapped(network),), kind)
        if target in self._hosts:
            networks = self._hosts[target]
            if not networks:
                raise self._refusal(target, "the inventory declares no address for this host")
            return _Resolved(networks, "host")
        raise self._refusal(
            target,
            "not an address, a network or an inventory host name (names are never resolved "
            "through DNS)",
        )

    def _permits(self, network: IPNetwork) -> bool:
        if any(_within(network, loop) for loop in _LOOPBACK):
            return True
        # A network is permitted only when all of it lies inside the authorized ranges; it may
        # straddle two adjacent authorized ranges, so subtract them one by one.
        remaining: list[IPNetwork] = [network]
        for allowed in self._authorized:
            remaining = [part for r in remaining for part in _subtract(r, allowed)]
            if not remaining:
                return True
        return False

    def _refusal(self, target: str, reason: str) -> OutOfScopeError:
        return OutOfScopeError(target, reason, self.authorized)


def _parse_ip_target(target: str) -> IPNetwork | None:
    """An address or a network in strict textual form; None for anything else.

    Python's parser refuses the ambiguous forms ("010.1.1.1", "10.1", integers); host bits in a network ("10.98.21.5/24") are accepted because a scanner given that
    target covers the whole network, so the whole network must be in scope.
    """
    # A zone id ("fe80::1%eth0") picks an interface, which is the probe's business, not a
    # target's; refusing it keeps "the same address" meaning one thing.
    if target != target.strip() or "%" in target:
        return None
    try:
        return ipaddress.ip_network(target, strict=False)
    except ValueError:
        return None


def _unmapped(network: IPNetwork) -> IPNetwork:
    """An IPv4-mapped IPv6 address (::ffff:a.b.c.d) reaches the IPv4 host: judge it as such."""
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen == 128:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.ip_network(mapped)
    return network


def _within(inner: IPNetwork, outer: IPNetwork) -> bool:
    if isinstance(inner, ipaddress.IPv4Network) and isinstance(outer, ipaddress.IPv4Network):
        return inner.subnet_of(outer)
    if isinstance(inner, ipaddress.IPv6Network) and isinstance(outer, ipaddress.IPv6Network):
        return inner.subnet_of(outer)
    return False


def _subtract(network: IPNetwork, allowed: IPNetwork) -> list[IPNetwork]:
    """The parts of ``network`` outside ``allowed``."""
    if network.version != allowed.version:
        return [network]
    if _within(network, allowed):
        return []
    if _within(allowed, network):
        return list(network.address_exclude(allowed))  # type: ignore[arg-type]
    return [network]


def _describe_outside(resolved: _Resolved, outside: Sequence[IPNetwork]) -> str:
    parts = ", ".join(str(n) for n in outside)
    if resolved.kind == "host":
        return f"the inventory host's address(es) {parts} are outside the authorized scope"
    if resolved.kind == "network" and len(resolved.networks) == 1:
        return f"{parts} is not entirely inside the authorized scope"
    return f"{parts} is outside the authorized scope"


__all__ = ["OutOfScopeError", "ScopeGuard"]
