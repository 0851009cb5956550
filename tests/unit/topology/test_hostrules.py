"""One host's packet filter from nftables and iptables together (topology/hostrules.py), on
listings recorded from the real tools (tests/data/iptables, made by its record.py)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from auditor.domain.facts import Ipset, IptablesListings
from probes.parsers.iptables import iptables_save_fact
from topology.firewall import Firewall, Hook, Verdict
from topology.hostrules import LEGACY_PREFIX, UNREAD_TABLE, host_document
from topology.space import Packet

DATA = Path(__file__).parents[2] / "data" / "iptables"


def _nft(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((DATA / f"{name}.nft.json").read_text())
    return doc


def _listings(name: str, backend: str) -> IptablesListings:
    def read(version: int) -> Any:
        path = DATA / f"{name}.v{version}.{backend}-save"
        return iptables_save_fact(path.read_text()) if path.is_file() else None

    key = "legacy" if backend == "legacy" else "nft"
    return IptablesListings.model_validate({f"{key}_v4": read(4), f"{key}_v6": read(6)})


def _rules(doc: dict[str, Any], family: str, table: str) -> list[dict[str, Any]]:
    return [
        o["rule"]
        for o in doc["nftables"]
        if "rule" in o and o["rule"]["family"] == family and o["rule"]["table"] == table
    ]


def _xt_rules(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        o["rule"]
        for o in doc["nftables"]
        if "rule" in o and any("xt" in e for e in o["rule"]["expr"])
    ]


def test_xt_rules_of_iptables_nft_are_replaced_by_their_translation_keeping_handles() -> None:
    nft = _nft("ufw-server")
    assert _xt_rules(nft), "the recorded ufw rule set uses xt matches"
    document, notes = host_document(nft, _listings("ufw-server", "nft"))
    assert notes == []
    remaining = {e["xt"]["name"] for r in _xt_rules(document) for e in r["expr"] if "xt" in e}
    assert remaining <= {"recent"}, remaining  # history-dependent: stays unknown on purpose
    before = {
        (r["family"], r["table"], r["chain"], r["handle"]) for r in _rules(nft, "ip", "filter")
    }
    after = {
        (r["family"], r["table"], r["chain"], r["handle"]) for r in _rules(document, "ip", "filter")
    }
    assert before == after
    translated = [r for r in _rules(document, "ip", "filter") if "iptables" in r]
    assert translated and all(r["iptables"].startswith("-A ") for r in translated)


def test_rules_nft_can_open_are_kept_as_nft_lists_them() -> None:
    """iptables-nft-save prints a native rule it cannot express broader than it is; such a
    rule has no xt expression and is never taken from the iptables listing."""
    nft = _nft("ufw-server")
    native = [r for r in _rules(nft, "ip", "filter") if not any("xt" in e for e in r["expr"])]
    document, _ = host_document(nft, _listings("ufw-server", "nft"))
    kept = {json.dumps(r, sort_keys=True) for r in _rules(document, "ip", "filter")}
    assert native and all(json.dumps(r, sort_keys=True) in kept for r in native)


def test_a_translation_missing_part_of_the_nft_rule_is_not_used() -> None:
    nft = _nft("ufw-server")
    listings = _listings("ufw-server", "nft")
    # The first xt rule of ip filter gains a native address match the save listing lacks.
    doctored = copy.deepcopy(nft)
    target = _xt_rules({"nftables": [o for o in doctored["nftables"] if "rule" in o]})[0]
    saddr = {"payload": {"protocol": "ip", "field": "saddr"}}
    target["expr"].insert(0, {"match": {"op": "==", "left": saddr, "right": "10.98.1.1"}})
    document, _ = host_document(doctored, listings)
    same = [
        r
        for r in _rules(document, target["family"], target["table"])
        if (r["chain"], r["handle"]) == (target["chain"], target["handle"])
    ]
    assert same == [target]


def test_listings_of_a_different_shape_leave_the_xt_rules_unknown_with_a_note() -> None:
    nft = _nft("ufw-server")
    listings = _listings("ufw-server", "nft")
    assert listings.nft_v4 is not None
    table = listings.nft_v4.tables[0]
    shorter = table.model_copy(update={"rules": table.rules[:-1]})
    changed = listings.model_copy(
        update={"nft_v4": listings.nft_v4.model_copy(update={"tables": (shorter,)})}
    )
    document, notes = host_document(nft, changed)
    assert any("list the table differently" in n for n in notes)
    assert _rules(document, "ip", table.name) == _rules(nft, "ip", table.name)


def test_legacy_tables_join_the_nft_rule_set_under_their_own_names() -> None:
    # The rules live only in the legacy backend: nft lists nothing.
    document, _ = host_document({"nftables": []}, _listings("legacy-host", "legacy"))
    tables = {o["table"]["name"] for o in document["nftables"] if "table" in o}
    assert {f"{LEGACY_PREFIX}filter"} <= tables
    firewall = Firewall.from_nft_json(document)
    outcomes = firewall.decision_for(
        Hook.INPUT, Packet(4, 17, "10.98.249.1", "10.98.249.2", sport=40000, dport=53, iif="eth0")
    )
    assert [(o.verdict, o.certain) for o in outcomes] == [(Verdict.DROP, True)]
    assert outcomes[0].rule_ref is not None and LEGACY_PREFIX in outcomes[0].rule_ref


@pytest.mark.parametrize("family", [4, 6])
def test_unread_iptables_rules_leave_no_packet_certainly_accepted(family: int) -> None:
    accept_all: dict[str, Any] = {"nftables": []}
    document, notes = host_document(accept_all, None, "command-failed: sudo refused")
    assert any("not read" in n for n in notes)
    assert {o["table"]["name"] for o in document["nftables"] if "table" in o} == {UNREAD_TABLE}
    saddr, daddr = ("10.98.1.1", "10.98.1.2") if family == 4 else ("fd98::1", "fd98::2")
    packet = Packet(family, 6, saddr, daddr, sport=40000, dport=22, iif="eth0")
    outcomes = Firewall.from_nft_json(document).decision_for(Hook.INPUT, packet)
    assert {o.verdict for o in outcomes} == {Verdict.ACCEPT, Verdict.DROP}
    assert not any(o.certain for o in outcomes)
    assert any("iptables rules not read" in r for o in outcomes for r in o.reasons)


def test_facts_from_before_iptables_was_collected_read_as_no_iptables_rules() -> None:
    nft = _nft("ufw-server")
    document, notes = host_document(nft, None)
    assert document == {"nftables": nft["nftables"]} and notes == []


# -- ipsets: -m set --match-set read from ipset save --------------------------------------------


def _ipset_host(*sets: Ipset) -> Firewall:
    listing = iptables_save_fact(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
        "-A INPUT -m set --match-set blocked src -j DROP\nCOMMIT\n"
    )
    listings = IptablesListings(legacy_v4=listing, ipsets=sets)
    return Firewall.from_nft_json(host_document({"nftables": []}, listings)[0])


def _from(source: str) -> Packet:
    return Packet(4, 6, source, "10.98.249.2", sport=40000, dport=22, iif="eth0")


def _verdicts(firewall: Firewall, packet: Packet) -> list[tuple[Verdict, bool]]:
    return sorted((o.verdict, o.certain) for o in firewall.decision_for(Hook.INPUT, packet))


def test_an_ipset_of_networks_is_looked_up_like_an_nft_set() -> None:
    blocked = Ipset(name="blocked", type="hash:net", family="inet", members=("10.98.1.0/24",))
    firewall = _ipset_host(blocked)
    assert _verdicts(firewall, _from("10.98.1.77")) == [(Verdict.DROP, True)]
    assert _verdicts(firewall, _from("10.98.2.77")) == [(Verdict.ACCEPT, True)]


@pytest.mark.parametrize(
    "ipset",
    [
        Ipset(name="blocked", type="hash:net", members=("10.98.1.0/24",), nomatch=True),
        Ipset(name="blocked", type="hash:ip,port", members=("10.98.1.77,tcp:22",)),
        Ipset(name="blocked", type="hash:net", family="inet6", members=("fd98::/64",)),
        Ipset(name="other", type="hash:net", members=("10.98.1.0/24",)),
    ],
    ids=["nomatch", "two-dimensions", "other-family", "not-listed"],
)
def test_an_ipset_the_engine_cannot_read_leaves_the_rule_unknown(ipset: Ipset) -> None:
    firewall = _ipset_host(ipset)
    assert {c for _, c in _verdicts(firewall, _from("10.98.1.77"))} == {False}
