"""The reference lab described once, in Python (docs/lab.md describes it).

Both the container set-up and the generated inventory read this description, so the two
cannot drift apart: networks with their zone and medium, tunnels, hosts with roles,
addresses, the SSH address the auditor uses, declared services, routes and pipeline part.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from auditor.domain.inventory import Medium, Role, Zone

ORGANISATION = "Reference Lab 認定匿名加工医療情報作成事業者"
AUTHORIZED_SCOPE = ("10.98.0.0/16", "fd98::/16")
WIREGUARD_PORT = 51820


@dataclass(frozen=True)
class LabNetwork:
    name: str
    index: int  #: X in 10.98.X.0/24 and fd98:0:0:X::/64
    zone: Zone
    medium: Medium
    description: str

    @property
    def ipv4(self) -> str:
        return f"10.98.{self.index}.0/24"

    @property
    def ipv6(self) -> str:
        return f"fd98:0:0:{self.index}::/64"

    def address4(self, octet: int) -> str:
        return f"10.98.{self.index}.{octet}"

    def address6(self, octet: int) -> str:
        # The IPv6 address mirrors the IPv4 one digit for digit: .20 is ::20.
        return f"fd98:0:0:{self.index}::{octet}"

    @property
    def podman_name(self) -> str:
        return f"lab-{self.name}"

    @property
    def interface(self) -> str:
        """The interface name inside every container attached to it (used by the rule sets)."""
        return self.name


NETWORKS: dict[str, LabNetwork] = {
    n.name: n
    for n in (
        LabNetwork("inet", 0, Zone.EXTERNAL, Medium.INTERNET, "the Internet"),
        LabNetwork(
            "carrier-in",
            10,
            Zone.EXTERNAL,
            Medium.IP_VPN,
            "carrier IP-VPN between medical institutions and the receiving server",
        ),
        LabNetwork(
            "carrier-out",
            11,
            Zone.EXTERNAL,
            Medium.IP_VPN,
            "carrier IP-VPN between the sending server and data users",
        ),
        LabNetwork(
            "line-recv",
            21,
            Zone.PROTECTED,
            Medium.LEASED_LINE,
            "dedicated line, processing ↔ receiving",
        ),
        LabNetwork(
            "line-send",
            22,
            Zone.PROTECTED,
            Medium.LEASED_LINE,
            "dedicated line, processing ↔ sending",
        ),
        LabNetwork("term-lan", 30, Zone.PROTECTED, Medium.LAN, "analyst terminal LAN"),
        LabNetwork(
            "office", 40, Zone.OFFICE, Medium.LAN, "ordinary office LAN with Internet access"
        ),
    )
}

#: The auditor's laptop holds this host part on every segment (podman's bridge address).
AUDITOR_OCTET = 1


class TunnelSide(StrEnum):
    INITIATOR = "initiator"  #: has the peer's endpoint and a keepalive
    RESPONDER = "responder"  #: no endpoint: it can only answer


@dataclass(frozen=True)
class LabTunnel:
    name: str  #: also the WireGuard interface name in the containers
    index: int  #: 10.98.X.0/24
    over: str  #: the network carrying the encrypted packets
    initiator: str
    initiator_octet: int
    responder: str
    responder_octet: int

    @property
    def ipv4(self) -> str:
        return f"10.98.{self.index}.0/24"

    def address4(self, octet: int) -> str:
        return f"10.98.{self.index}.{octet}"

    def octet_of(self, host: str) -> int:
        return self.initiator_octet if host == self.initiator else self.responder_octet

    def peer_of(self, host: str) -> str:
        return self.responder if host == self.initiator else self.initiator

    @property
    def endpoints(self) -> list[str]:
        """Hosts ordered by address, as the inventory lists them."""
        pairs = sorted(
            [(self.initiator_octet, self.initiator), (self.responder_octet, self.responder)]
        )
        return [name for _, name in pairs]


TUNNELS: dict[str, LabTunnel] = {
    t.name: t
    for t in (
        LabTunnel("wg-in", 100, "carrier-in", "hospital", 10, "recv-srv", 20),
        LabTunnel("wg-out", 101, "carrier-out", "send-srv", 20, "recipient", 10),
    )
}


@dataclass(frozen=True)
class Service:
    port: int
    proto: str
    sources: tuple[str, ...]
    purpose: str


@dataclass(frozen=True)
class LabHost:
    name: str
    roles: tuple[Role, ...]
    addresses: dict[str, int]  #: network -> host octet
    description: str
    ssh_network: str | None = None  #: where the auditor logs in (organisation hosts, vantage)
    services: tuple[Service, ...] = ()
    router: bool = False
    default_via: tuple[str, int] | None = None  #: (network, octet) of the gateway
    pipeline: tuple[str, ...] = ()  #: the parts of the data pipeline this host runs
    auditor_login: bool = False

    @property
    def container(self) -> str:
        return f"lab-{self.name}"

    @property
    def tunnels(self) -> list[LabTunnel]:
        return [t for t in TUNNELS.values() if self.name in (t.initiator, t.responder)]

    @property
    def ssh_address(self) -> str | None:
        if self.ssh_network is None:
            return None
        return NETWORKS[self.ssh_network].address4(self.addresses[self.ssh_network])

    @property
    def is_organisation(self) -> bool:
        return any(
            r in (Role.RECEIVING, Role.PROCESSING, Role.SENDING, Role.TERMINAL) for r in self.roles
        )


SSH_TERM_LAN = Service(22, "tcp", ("term-lan",), "analysts log in from the terminal LAN")


def _terminal(name: str, octet: int) -> LabHost:
    return LabHost(
        name,
        (Role.TERMINAL,),
        {"term-lan": octet},
        "analyst terminal; USB mass storage blocked",
        ssh_network="term-lan",
        services=(SSH_TERM_LAN,),
        auditor_login=True,
    )


HOSTS: dict[str, LabHost] = {
    h.name: h
    for h in (
        LabHost(
            "hospital",
            (Role.EXTERNAL_PARTY,),
            {"carrier-in": 10},
            "medical institution (data provider): pushes files to recv-srv through wg-in",
            pipeline=("produce",),
        ),
        LabHost(
            "recv-srv",
            (Role.RECEIVING,),
            {"carrier-in": 20, "line-recv": 20},
            "receiving server: SFTP target for hospital via wg-in, source for proc-srv",
            ssh_network="line-recv",
            services=(
                Service(22, "tcp", ("line-recv", "wg-in"), "SFTP from hospital and proc-srv"),
                Service(WIREGUARD_PORT, "udp", ("carrier-in",), "WireGuard wg-in"),
            ),
            auditor_login=True,
        ),
        LabHost(
            "proc-srv",
            (Role.PROCESSING,),
            {"line-recv": 30, "line-send": 30, "term-lan": 30},
            "processing server: pulls from recv-srv, pushes to send-srv",
            ssh_network="term-lan",
            services=(SSH_TERM_LAN,),
            pipeline=("process",),
            auditor_login=True,
        ),
        LabHost(
            "send-srv",
            (Role.SENDING,),
            {"line-send": 20, "carrier-out": 20},
            "sending server: pushes files to recipient through wg-out",
            ssh_network="line-send",
            services=(Service(22, "tcp", ("line-send",), "SFTP from proc-srv"),),
            pipeline=("send",),
            auditor_login=True,
        ),
        LabHost(
            "recipient",
            (Role.EXTERNAL_PARTY,),
            {"carrier-out": 10},
            "data user: SFTP target of send-srv through wg-out",
            pipeline=("receive",),
        ),
        _terminal("term-1", 41),
        _terminal("term-2", 42),
        LabHost(
            "office-gw",
            (Role.ROUTER,),
            {"office": 254, "inet": 254},
            "office router: forwards and NATs office → inet",
            router=True,
        ),
        LabHost(
            "office-pc",
            (Role.OFFICE,),
            {"office": 20},
            "office client",
            default_via=("office", 254),
        ),
        LabHost(
            "inet-canary",
            (Role.VANTAGE,),
            {"inet": 100},
            "the auditor's outside machine on the Internet: egress canary and vantage point",
            ssh_network="inet",
            pipeline=("canary",),
            auditor_login=True,
        ),
    )
}

#: Hosts in the order containers are started (peers before the hosts that connect to them).
START_ORDER = list(HOSTS)

#: The host part every tap holds on its network: free on every segment, in the baseline and
#: in every scenario (lab/scenarios), so a tap never collides with a host a scenario adds.
TAP_OCTET = 250

#: The networks the remote-vantage layout leaves out of reach and where something must be
#: probed (docs/lab.md, "The remote-vantage inventory"); inet has inet-canary already.
TAPPED_NETWORKS = ("carrier-in", "carrier-out", "line-recv", "line-send", "office")


def _tap(network: str) -> LabHost:
    # Single-homed on purpose: a container's IPv4 forwarding follows the host's, and a tap on
    # two segments could bridge them.
    return LabHost(
        f"tap-{network}",
        (Role.VANTAGE,),
        {network: TAP_OCTET},
        f"the auditor's vantage host on {network} (a capture port that sees the whole segment)",
        ssh_network=network,
        auditor_login=True,
    )


#: Vantage hosts of the remote-vantage layout, kept out of HOSTS: they run only while a remote
#: audit runs (``auditor lab taps up``), so nothing of the direct layout ever sees them.
TAPS: dict[str, LabHost] = {tap.name: tap for tap in map(_tap, TAPPED_NETWORKS)}


@dataclass
class PipelinePaths:
    """Folders of the SFTP pipeline (the same on every host, created by lab-init)."""

    outbox: str = "/srv/outbox"
    incoming: str = "/home/xfer/incoming"
    outgoing: str = "/home/xfer/outgoing"
    inbox: str = "/home/xfer/inbox"
    log: str = "/var/log/lab/pipeline.log"


PIPELINE = PipelinePaths()
