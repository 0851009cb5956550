"""Typed facts about one host, as parsed from what the SSH collector gathered.

These are the contract between the collector (which fills them) and the topology builder and
checks (which read them). ``None`` always means "not collected": a check that needs it is
inconclusive, never guessing a default.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
)


class _Fact(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InterfaceAddress(_Fact):
    address: str  #: "10.98.21.20"
    prefixlen: int
    family: Literal[4, 6]
    scope: str = "global"  #: "global", "link", "host"


class Interface(_Fact):
    name: str
    kind: str | None = None  #: "veth", "wireguard", "tun", "loopback", ...
    up: bool
    mac: str | None = None
    addresses: list[InterfaceAddress] = Field(default_factory=list)


class Route(_Fact):
    family: Literal[4, 6]
    destination: str  #: "default" or a prefix "10.98.21.0/24"
    gateway: str | None = None
    device: str | None = None
    table: str = "main"
    type: str = "unicast"  #: "unicast", "local", "blackhole", "unreachable", "prohibit", ...
    metric: int | None = None
    source: str | None = None  #: preferred source address


class PolicyRule(_Fact):
    family: Literal[4, 6]
    priority: int
    table: str
    selector: dict[str, Any] = Field(default_factory=dict)


class Listener(_Fact):
    proto: Literal["tcp", "udp"]
    address: str  #: "0.0.0.0", "::", "127.0.0.1", "10.98.21.20", "*"
    port: int
    process: str | None = None
    pid: int | None = None


class Process(_Fact):
    pid: int
    user: str
    command: str  #: the executable's name
    args: str


class WireguardPeer(_Fact):
    public_key: str
    endpoint: str | None = None  #: "10.98.10.10:51820"
    allowed_ips: list[str] = Field(default_factory=list)
    latest_handshake: int | None = None  #: unix time, None when never
    persistent_keepalive: int | None = None


class WireguardInterface(_Fact):
    name: str
    public_key: str
    listen_port: int | None = None
    peers: list[WireguardPeer] = Field(default_factory=list)


class HostKey(_Fact):
    type: str  #: "ssh-ed25519"
    fingerprint: str  #: "SHA256:..."


class SavedRule(_Fact):
    """One ``-A CHAIN ...`` line of an ``iptables-save`` listing."""

    chain: str
    args: tuple[str, ...]  #: the arguments after ``-A CHAIN``, unquoted
    line: int  #: 1-based line in the listing
    text: str  #: the line as written


class SavedChain(_Fact):
    name: str
    policy: str | None = None  #: None for a user-defined chain


class SavedTable(_Fact):
    name: str
    chains: tuple[SavedChain, ...] = ()
    rules: tuple[SavedRule, ...] = ()
    line: int = 0  #: the line of its ``*NAME``


class IptablesSave(_Fact):
    """One ``iptables-save`` listing, parsed; ``incompatible``: tables the nft backend said it
    could not (fully) show, never to be read from this listing."""

    tables: tuple[SavedTable, ...] = ()
    incompatible: tuple[str, ...] = ()


class Ipset(_Fact):
    """One set of ``ipset save``: its type (``hash:ip``, ``hash:net``, ...), family (``inet`` or
    ``inet6``) and members as listed (timeouts and counters dropped). ``nomatch``: a member
    excludes its addresses (a hash:net exception), which the engine does not model."""

    name: str
    type: str
    family: str | None = None
    members: tuple[str, ...] = ()
    nomatch: bool = False


class IptablesListings(_Fact):
    """``iptables-save`` listings. ``None`` where there is nothing to read: no legacy table is
    registered in the kernel (``/proc/net/ip*_tables_names`` empty or absent), or the nftables
    rule set holds no xtables expression of that family (nothing iptables-nft wrote that
    ``nft -j`` cannot open)."""

    legacy_v4: IptablesSave | None = None  #: iptables-legacy-save
    legacy_v6: IptablesSave | None = None  #: ip6tables-legacy-save
    nft_v4: IptablesSave | None = None  #: iptables-nft-save
    nft_v6: IptablesSave | None = None  #: ip6tables-nft-save
    #: ``ipset save``, read only where a listing matches a set (``-m set --match-set``).
    ipsets: tuple[Ipset, ...] | None = None

    @model_serializer(mode="wrap")
    def _without_absent_ipsets(self, handler: SerializerFunctionWrapHandler) -> Any:
        # Written as before ipsets were read when none were: facts recorded then (the lab's
        # recordings) come back byte-identical.
        data = handler(self)
        if self.ipsets is None and isinstance(data, dict):
            data.pop("ipsets", None)
        return data


class HostFacts(_Fact):
    """Everything collected from one host. Each field is None when its collection failed."""

    host: str
    interfaces: list[Interface] | None = None
    routes: list[Route] | None = None
    policy_rules: list[PolicyRule] | None = None
    forwarding_v4: bool | None = None
    forwarding_v6: bool | None = None
    nftables: dict[str, Any] | None = None  #: `nft -j list ruleset` as parsed JSON
    #: Rules beside nftables. None when not collected: an error in ``errors`` says why (the
    #: firewall is then uncertain wherever legacy rules could drop), or, with no error, facts
    #: recorded before this was collected (read as no legacy rules).
    iptables: IptablesListings | None = None
    listeners: list[Listener] | None = None
    processes: list[Process] | None = None
    wireguard: list[WireguardInterface] | None = None
    machine_id: str | None = None
    host_keys: list[HostKey] | None = None
    os_release: dict[str, str] | None = None
    packages: dict[str, str] | None = None  #: installed package name -> version
    files: dict[str, str] = Field(default_factory=dict)  #: path -> content, for config files
    commands: dict[str, str] = Field(default_factory=dict)  #: name -> output, for host checks
    errors: dict[str, str] = Field(default_factory=dict)  #: fact name -> why it is missing
    evidence: dict[str, str] = Field(default_factory=dict)  #: fact name -> "sha256:..."
