"""Address types (``fib daddr type``, iptables' ``-m addrtype``) from a host's local routing
table, on the routes the collector read from a lab host, and the rules that use them."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from auditor.domain.facts import PolicyRule, Route
from topology.addrtypes import AddressTypes
from topology.firewall import Firewall, Hook, Verdict
from topology.space import Packet

BASELINE = Path(__file__).parents[2] / "data" / "contexts" / "baseline" / "observations.json.gz"
#: proc-srv's own addresses in the lab baseline.
OWN4, OWN6 = "10.98.21.30", "fd98:0:0:21::30"


@pytest.fixture(scope="module")
def routes() -> list[Route]:
    observations = json.loads(gzip.decompress(BASELINE.read_bytes()))
    value = observations["collection"]["proc-srv"]["value"]
    return [Route.model_validate(r) for r in value["routes"]]


@pytest.fixture(scope="module")
def types(routes: list[Route]) -> AddressTypes:
    found = AddressTypes.from_routes(routes)
    assert found is not None
    return found


@pytest.mark.parametrize(
    ("address", "family", "expected"),
    [
        (OWN4, 4, "local"),
        ("127.0.0.1", 4, "local"),
        ("127.3.2.1", 4, "local"),  # all of 127.0.0.0/8 is a local route
        ("127.255.255.255", 4, "broadcast"),  # the longer broadcast entry wins
        ("10.98.21.255", 4, "broadcast"),  # the directed broadcast of proc-srv's network
        ("255.255.255.255", 4, "broadcast"),
        ("0.1.2.3", 4, "broadcast"),  # the zero network, before any table
        ("224.0.0.1", 4, "multicast"),
        ("10.98.21.31", 4, "unicast"),  # a neighbour
        ("10.98.99.1", 4, "unicast"),  # not in the local table at all
        (OWN6, 6, "local"),
        ("::1", 6, "local"),
    ],
)
def test_each_address_gets_the_kernels_type(
    types: AddressTypes, address: str, family: int, expected: str
) -> None:
    for name in ("local", "broadcast", "multicast", "unicast"):
        found = types.addresses(name, family)
        if family == 6 and name in ("multicast", "unicast"):
            assert found is None  # decided by a route lookup: not modelled
            continue
        assert found is not None
        assert (address in found) == (name == expected), (address, name)


def test_routes_without_a_local_table_give_no_types(routes: list[Route]) -> None:
    assert AddressTypes.from_routes([r for r in routes if r.table != "local"]) is None


def _fib_doc(op: str, right: Any, family: str = "inet") -> dict[str, Any]:
    fib = {"fib": {"result": "type", "flags": ["daddr"]}}
    expr = [{"match": {"op": op, "left": fib, "right": right}}, {"accept": None}]
    rule: dict[str, Any] = {"family": family, "table": "t", "chain": "c", "handle": 1}
    rule["expr"] = expr
    chain: dict[str, Any] = {"family": family, "table": "t", "name": "c", "type": "filter"}
    chain |= {"hook": "input", "prio": 0, "policy": "drop"}
    table = {"table": {"family": family, "name": "t"}}
    return {"nftables": [table, {"chain": chain}, {"rule": rule}]}


def _verdicts(firewall: Firewall, packet: Packet) -> list[tuple[Verdict, bool]]:
    return sorted((o.verdict, o.certain) for o in firewall.decision_for(Hook.INPUT, packet))


def test_fib_daddr_type_local_is_decided_from_the_hosts_own_addresses(
    types: AddressTypes,
) -> None:
    firewall = Firewall.from_nft_json(_fib_doc("==", "local"), types=types)
    to_self = Packet(4, 6, "10.98.21.20", OWN4, sport=40000, dport=22, iif="eth0")
    to_other = Packet(4, 6, "10.98.21.20", "10.98.21.31", sport=40000, dport=22, iif="eth0")
    assert _verdicts(firewall, to_self) == [(Verdict.ACCEPT, True)]
    assert _verdicts(firewall, to_other) == [(Verdict.DROP, True)]
    negated = Firewall.from_nft_json(_fib_doc("!=", "local"), types=types)
    assert _verdicts(negated, to_self) == [(Verdict.DROP, True)]
    assert _verdicts(negated, to_other) == [(Verdict.ACCEPT, True)]


def test_fib_types_the_model_cannot_tell_stay_uncertain(types: AddressTypes) -> None:
    unicast = Firewall.from_nft_json(_fib_doc("==", {"set": ["unicast"]}), types=types)
    v6 = Packet(6, 6, "fd98:0:0:21::20", "fd98:0:0:21::31", sport=40000, dport=22, iif="eth0")
    v4 = Packet(4, 6, "10.98.21.20", "10.98.21.31", sport=40000, dport=22, iif="eth0")
    assert _verdicts(unicast, v4) == [(Verdict.ACCEPT, True)]  # IPv4: decided
    assert {c for _, c in _verdicts(unicast, v6)} == {False}  # IPv6 unicast: a route lookup
    unknown_host = Firewall.from_nft_json(_fib_doc("==", "local"))
    assert {c for _, c in _verdicts(unknown_host, v4)} == {False}


def test_an_extension_header_field_never_matches_a_connection_attempt() -> None:
    rt = {"exthdr": {"name": "rt", "field": "type"}}
    doc = _fib_doc("==", 0, family="ip6")
    rule = doc["nftables"][2]["rule"]
    rule["expr"] = [{"match": {"op": "==", "left": rt, "right": 0}}, {"drop": None}]
    doc["nftables"][1]["chain"]["policy"] = "accept"
    packet = Packet(6, 6, "fd98:0:0:21::20", OWN6, sport=40000, dport=22, iif="eth0")
    assert _verdicts(Firewall.from_nft_json(doc), packet) == [(Verdict.ACCEPT, True)]
    exists = {"match": {"op": "==", "left": {"exthdr": {"name": "rt"}}, "right": True}}
    rule["expr"] = [exists, {"drop": None}]
    assert _verdicts(Firewall.from_nft_json(doc), packet) == [(Verdict.ACCEPT, True)]
    missing = {"match": {"op": "==", "left": {"exthdr": {"name": "rt"}}, "right": False}}
    rule["expr"] = [missing, {"drop": None}]
    assert _verdicts(Firewall.from_nft_json(doc), packet) == [(Verdict.DROP, True)]


# -- ct status dnat: a property of the flow --------------------------------------------------


def _status_doc() -> dict[str, Any]:
    ct_status = {"ct": {"key": "status"}}
    doc = _fib_doc("==", "local")
    doc["nftables"][2]["rule"]["expr"] = [
        {"match": {"op": "in", "left": ct_status, "right": "dnat"}},
        {"accept": None},
    ]
    return doc


def test_ct_status_dnat_is_decided_from_what_the_host_did_to_the_flow() -> None:
    firewall = Firewall.from_nft_json(_status_doc())
    packet = Packet(4, 6, "10.98.21.20", OWN4, sport=40000, dport=22, iif="eth0")
    translated = firewall.decision_for(Hook.INPUT, packet, dnat=True)
    untouched = firewall.decision_for(Hook.INPUT, packet, dnat=False)
    unknown = firewall.decision_for(Hook.INPUT, packet)
    assert [(o.verdict, o.certain) for o in translated] == [(Verdict.ACCEPT, True)]
    assert [(o.verdict, o.certain) for o in untouched] == [(Verdict.DROP, True)]
    assert {o.certain for o in unknown} == {False}
    assert any("ct status dnat" in r for o in unknown for r in o.reasons)


# -- the IPv6 reverse path (firewalld's rpfilter) ----------------------------------------------


def _rpfilter_doc() -> dict[str, Any]:
    fib = {"fib": {"result": "oif", "flags": ["saddr", "mark", "iif"]}}
    doc = _fib_doc("==", "local")
    chain = doc["nftables"][1]["chain"]
    chain |= {"hook": "prerouting", "policy": "accept"}
    doc["nftables"][2]["rule"]["expr"] = [
        {"match": {"op": "==", "left": fib, "right": False}},
        {"drop": None},
    ]
    return doc


@pytest.fixture(scope="module")
def rules() -> list[PolicyRule]:
    observations = json.loads(gzip.decompress(BASELINE.read_bytes()))
    value = observations["collection"]["proc-srv"]["value"]
    return [PolicyRule.model_validate(r) for r in value["policy_rules"]]


def _arriving(source: str, device: str) -> Packet:
    return Packet(6, 6, source, OWN6, sport=40000, dport=22, iif=device)


def test_the_reverse_path_check_follows_the_hosts_routes(
    routes: list[Route], rules: list[PolicyRule]
) -> None:
    types = AddressTypes.from_routes(routes, rules)
    assert types is not None and types.reverse_v6 is not None
    devices = {r.device for r in routes if r.family == 6 and r.table == "main" and r.device}
    on_link = next(
        r for r in routes
        if r.family == 6 and r.table == "main" and r.destination.startswith("fd98:0:0:21::")
    )  # fmt: skip
    assert on_link.device is not None
    firewall = Firewall.from_nft_json(_rpfilter_doc(), types=types)

    def verdicts(packet: Packet) -> list[tuple[Verdict, bool]]:
        outcomes = firewall.decision_for(Hook.PREROUTING, packet)
        return sorted((o.verdict, o.certain) for o in outcomes)

    neighbour = "fd98:0:0:21::20"
    assert verdicts(_arriving(neighbour, on_link.device)) == [(Verdict.ACCEPT, True)]
    other = next(iter(devices - {on_link.device}))
    assert verdicts(_arriving(neighbour, other)) == [(Verdict.DROP, True)]  # spoofed there
    assert verdicts(_arriving(OWN6, on_link.device)) == [(Verdict.DROP, True)]  # its own
    assert verdicts(_arriving("fe80::1", on_link.device))[0][1] is False  # device-bound


def test_policy_rules_that_may_redirect_the_lookup_leave_it_unknown(
    routes: list[Route], rules: list[PolicyRule]
) -> None:
    marked = PolicyRule(family=6, priority=100, table="7", selector={"fwmark": "0x1"})
    types = AddressTypes.from_routes(routes, [*rules, marked])
    assert types is not None and types.reverse_v6 is None
    by_input = PolicyRule(family=6, priority=100, table="7", selector={"iif": "eth9"})
    kept = AddressTypes.from_routes(routes, [*rules, by_input])
    assert kept is not None and kept.reverse_v6 is not None
