"""Shared helpers for the topology tests: recorded rule sets and one-packet verdicts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from topology.firewall import Firewall, Hook, Outcome, Verdict
from topology.space import Packet

NFT_DATA = Path(__file__).resolve().parents[2] / "data" / "nft"


def ruleset(name: str) -> dict[str, Any]:
    """The recorded ``nft -j list ruleset`` of tests/data/nft/<name>.nft."""
    loaded: dict[str, Any] = json.loads((NFT_DATA / f"{name}.json").read_text(encoding="utf-8"))
    return loaded


def firewall(name: str) -> Firewall:
    return Firewall.from_nft_json(ruleset(name))


def tcp4(saddr: str, daddr: str, dport: int, **kw: Any) -> Packet:
    return Packet(4, 6, saddr, daddr, sport=40000, dport=dport, **kw)


def udp4(saddr: str, daddr: str, dport: int, **kw: Any) -> Packet:
    return Packet(4, 17, saddr, daddr, sport=40000, dport=dport, **kw)


def tcp6(saddr: str, daddr: str, dport: int, **kw: Any) -> Packet:
    return Packet(6, 6, saddr, daddr, sport=40000, dport=dport, **kw)


def udp6(saddr: str, daddr: str, dport: int, **kw: Any) -> Packet:
    return Packet(6, 17, saddr, daddr, sport=40000, dport=dport, **kw)


def only(outcomes: list[Outcome]) -> Outcome:
    assert len(outcomes) == 1, [(o.verdict, o.rule, o.certain) for o in outcomes]
    return outcomes[0]


def verdict(fw: Firewall, hook: Hook, packet: Packet) -> tuple[Verdict, str]:
    """The certain verdict for one packet and the text of the rule that gave it."""
    outcome = only(fw.decision_for(hook, packet))
    assert outcome.certain, outcome.reasons
    return outcome.verdict, outcome.rule
