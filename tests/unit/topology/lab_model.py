"""A model of the reference lab (docs/lab.md) as Inventory + HostFacts, for the tests.

Interface names follow podman's order of networks: recv-srv eth0 carrier-in, eth1 line-recv;
proc-srv eth0 line-recv, eth1 line-send, eth2 term-lan (eth3 office when dual-homed);
send-srv eth0 line-send, eth1 carrier-out; office-gw eth0 office, eth1 inet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from netaddr import IPNetwork

from auditor.domain.facts import HostFacts, Interface, InterfaceAddress, Listener, Route
from auditor.domain.inventory import Inventory
from tests.unit.topology.topo_helpers import ruleset

NETWORKS: dict[str, tuple[int, str, str]] = {
    # name: (third octet, zone, medium)
    "inet": (0, "external", "internet"),
    "carrier-in": (10, "external", "ip-vpn"),
    "carrier-out": (11, "external", "ip-vpn"),
    "line-recv": (21, "protected", "leased-line"),
    "line-send": (22, "protected", "leased-line"),
    "term-lan": (30, "protected", "lan"),
    "office": (40, "office", "lan"),
}
HOSTS: dict[str, tuple[list[str], dict[str, int]]] = {
    "hospital": (["external-party"], {"carrier-in": 10}),
    "recv-srv": (["receiving"], {"carrier-in": 20, "line-recv": 20}),
    "proc-srv": (["processing"], {"line-recv": 30, "line-send": 30, "term-lan": 30}),
    "send-srv": (["sending"], {"line-send": 20, "carrier-out": 20}),
    "recipient": (["external-party"], {"carrier-out": 10}),
    "term-1": (["terminal"], {"term-lan": 41}),
    "office-gw": (["router"], {"office": 254, "inet": 254}),
    "office-pc": (["office"], {"office": 20}),
    "inet-canary": (["vantage"], {"inet": 100}),
}
TUNNEL_ADDRESSES = {"hospital": ("wg-in", 10), "recv-srv": ("wg-in", 20)}
TUNNEL_ADDRESSES |= {"recipient": ("wg-out", 10), "send-srv": ("wg-out", 20)}
TUNNEL_OCTET = {"wg-in": 100, "wg-out": 101}


def v4(network: str, host: int) -> str:
    return f"10.98.{NETWORKS[network][0]}.{host}"


def v6(network: str, host: int) -> str:
    return f"fd98:0:0:{NETWORKS[network][0]}::{host}"


def prefix4(network: str) -> str:
    return f"10.98.{NETWORKS[network][0]}.0/24"


def prefix6(network: str) -> str:
    return f"fd98:0:0:{NETWORKS[network][0]}::/64"


def inventory(extra_addresses: dict[str, dict[str, int]] | None = None) -> Inventory:
    hosts: dict[str, Any] = {}
    for name, (roles, addrs) in HOSTS.items():
        merged = {**addrs, **(extra_addresses or {}).get(name, {})}
        addresses: dict[str, list[str]] = {n: [v4(n, h), v6(n, h)] for n, h in merged.items()}
        if name in TUNNEL_ADDRESSES:
            tunnel, host = TUNNEL_ADDRESSES[name]
            addresses[tunnel] = [f"10.98.{TUNNEL_OCTET[tunnel]}.{host}"]
        first = next(iter(merged))
        organisation = roles[0] in ("receiving", "processing", "sending", "terminal")
        hosts[name] = {
            "roles": roles,
            "addresses": addresses,
            **({"ssh": v4(first, merged[first])} if organisation else {}),
        }
    return Inventory.model_validate(
        {
            "organisation": "lab",
            "scope": {"authorized": ["10.98.0.0/16", "fd98::/16"]},
            "ssh": {"key": Path("/nonexistent/key"), "known_hosts": Path("/nonexistent/kh")},
            "networks": {
                n: {"zone": z, "medium": m, "ipv4": prefix4(n), "ipv6": prefix6(n)}
                for n, (_, z, m) in NETWORKS.items()
            },
            "tunnels": {
                "wg-in": {
                    "type": "wireguard",
                    "over": "carrier-in",
                    "ipv4": "10.98.100.0/24",
                    "endpoints": ["hospital", "recv-srv"],
                },
                "wg-out": {
                    "type": "wireguard",
                    "over": "carrier-out",
                    "ipv4": "10.98.101.0/24",
                    "endpoints": ["recipient", "send-srv"],
                },
            },
            "hosts": hosts,
        }
    )


def interface(name: str, network: str, host: int) -> Interface:
    return Interface(
        name=name,
        kind="veth",
        up=True,
        addresses=[
            InterfaceAddress(address=v4(network, host), prefixlen=24, family=4),
            InterfaceAddress(address=v6(network, host), prefixlen=64, family=6),
        ],
    )


def tunnel_interface(tunnel: str, host: int) -> Interface:
    address = f"10.98.{TUNNEL_OCTET[tunnel]}.{host}"
    return Interface(
        name=tunnel,
        kind="wireguard",
        up=True,
        addresses=[InterfaceAddress(address=address, prefixlen=24, family=4)],
    )


LOOPBACK = Interface(
    name="lo",
    kind="loopback",
    up=True,
    addresses=[
        InterfaceAddress(address="127.0.0.1", prefixlen=8, family=4, scope="host"),
        InterfaceAddress(address="::1", prefixlen=128, family=6, scope="host"),
    ],
)


def connected_routes(interfaces: list[Interface]) -> list[Route]:
    routes = []
    for i in interfaces:
        for a in i.addresses:
            if a.scope != "global":
                continue
            net = IPNetwork(f"{a.address}/{a.prefixlen}").cidr
            routes.append(Route(family=a.family, destination=str(net), device=i.name))
    return routes


def default_routes(gateway4: str | None, gateway6: str | None, device: str) -> list[Route]:
    routes = []
    if gateway4:
        routes.append(Route(family=4, destination="default", gateway=gateway4, device=device))
    if gateway6:
        routes.append(Route(family=6, destination="default", gateway=gateway6, device=device))
    return routes


def facts(
    name: str,
    nft: str | None,
    interfaces: list[Interface],
    *,
    extra_routes: list[Route] | None = None,
    forwarding: bool = False,
    listeners: list[Listener] | None = None,
) -> HostFacts:
    all_interfaces = [LOOPBACK, *interfaces]
    return HostFacts(
        host=name,
        interfaces=all_interfaces,
        routes=connected_routes(all_interfaces) + (extra_routes or []),
        forwarding_v4=forwarding,
        forwarding_v6=forwarding,
        nftables=ruleset(nft) if nft else None,
        listeners=listeners,
    )


def recv_srv(nft: str = "recv-srv", routes: list[Route] | None = None) -> HostFacts:
    ifaces = [
        interface("eth0", "carrier-in", 20),
        interface("eth1", "line-recv", 20),
        tunnel_interface("wg-in", 20),
    ]
    return facts("recv-srv", nft, ifaces, extra_routes=routes)


def proc_srv(*, office: bool = False, routes: list[Route] | None = None) -> HostFacts:
    ifaces = [
        interface("eth0", "line-recv", 30),
        interface("eth1", "line-send", 30),
        interface("eth2", "term-lan", 30),
    ]
    if office:
        ifaces.append(interface("eth3", "office", 30))
    return facts("proc-srv", "open", ifaces, extra_routes=routes)


def send_srv(
    nft: str = "send-srv", listeners: list[Listener] | None = None, *, forwarding: bool = False
) -> HostFacts:
    ifaces = [
        interface("eth0", "line-send", 20),
        interface("eth1", "carrier-out", 20),
        tunnel_interface("wg-out", 20),
    ]
    return facts("send-srv", nft, ifaces, listeners=listeners, forwarding=forwarding)


def office_gw(*, forwarding: bool = True) -> HostFacts:
    ifaces = [interface("eth0", "office", 254), interface("eth1", "inet", 254)]
    return facts("office-gw", "nat-router", ifaces, forwarding=forwarding)
