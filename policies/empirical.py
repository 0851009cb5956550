"""Empirical observations, as the checks read them.

The network probes have richer results of their own; the orchestrator condenses them into
these small records, so that a check depends on what was observed and not on how a probe
happens to represent it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class EgressAttempt:
    proto: Literal["tcp", "udp", "icmp"]
    destination: str
    port: int | None
    executed: bool  #: the command really ran on the host
    outcome: str  #: what the host's command said: "connected", "refused", "timeout", ...
    seen_on: tuple[str, ...] = ()  #: external networks on which a packet of it was captured


@dataclass(frozen=True)
class EgressObservation:
    host: str
    captured_networks: tuple[str, ...]  #: networks where a capture really ran
    attempts: tuple[EgressAttempt, ...]
    evidence: tuple[str, ...] = ()

    def escaped(self) -> list[EgressAttempt]:
        return [a for a in self.attempts if a.seen_on or a.outcome == "connected"]


@dataclass(frozen=True)
class OpenPort:
    address: str
    proto: Literal["tcp", "udp"]
    port: int
    state: str  #: "open" (or "open|filtered" for UDP without an answer)
    service: str = ""


@dataclass(frozen=True)
class ScanObservation:
    network: str
    vantage: str  #: "local 10.98.11.1" or "ssh inet-canary"
    targets: tuple[str, ...]
    open_ports: tuple[OpenPort, ...]
    evidence: tuple[str, ...] = ()


@dataclass(frozen=True)
class Flow:
    src: str
    dst: str
    proto: str
    sport: int | None
    dport: int | None
    kind: str  #: "wireguard", "ipsec", "openvpn", "ssh", "tls", "cleartext", "unknown"
    detail: str = ""
    packets: int = 0


@dataclass(frozen=True)
class LinkObservation:
    network: str
    seconds: float
    flows: tuple[Flow, ...]
    evidence: tuple[str, ...] = ()


@dataclass(frozen=True)
class DiscoveryObservation:
    network: str
    live: dict[str, str | None] = field(default_factory=dict)  #: address -> MAC
    evidence: tuple[str, ...] = ()
