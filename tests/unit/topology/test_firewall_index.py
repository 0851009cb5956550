"""The walk's rule index changes nothing: with it, the outcomes are the very ones (same order,
same cubes, same rules) the walk gives when it tests every rule against every flow."""

from __future__ import annotations

from typing import Any
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.topology.test_firewall_property import rulesets
from topology.fields import NameSet, ports, protos
from topology.firewall import Firewall, Hook, Outcome, _ChainIndex
from topology.space import Cube, PacketSpace

SPACES = [
    PacketSpace.connection_attempts(),
    PacketSpace.new_connections(),
    PacketSpace.new_connections(protocols=protos(6), dports=ports(22)),
    PacketSpace.new_connections(protocols=protos(17), dports=ports(53)).where(
        iif=NameSet.of("eth1")
    ),
    PacketSpace.everything().where(iif=NameSet.of("eth0")),
]


def _every_rule(_index: _ChainIndex, _cube: Cube) -> int:
    return -1  # every bit set: each rule is tried on each flow, as without the index


def _outcomes(doc: dict[str, Any], space: PacketSpace, *, indexed: bool) -> list[Outcome]:
    firewall = Firewall.from_nft_json(doc)
    if indexed:
        return firewall.evaluate(Hook.INPUT, space)
    with mock.patch.object(_ChainIndex, "rules_for", _every_rule):
        return firewall.evaluate(Hook.INPUT, space)


@settings(max_examples=300, deadline=None)
@given(rulesets(), st.sampled_from(SPACES))
def test_the_index_only_skips_rules_that_could_not_match(
    doc: dict[str, Any], space: PacketSpace
) -> None:
    assert _outcomes(doc, space, indexed=True) == _outcomes(doc, space, indexed=False)


def test_a_narrow_query_skips_the_rules_of_other_ports_and_interfaces() -> None:
    rule_exprs: list[list[dict[str, Any]]] = [
        [{"match": _match({"meta": {"key": "iifname"}}, "eth1")}, {"accept": None}],
        [{"match": _match(_tcp_dport(), 443)}, {"accept": None}],
        [{"match": _match(_tcp_dport(), 22)}, {"accept": None}],
    ]
    doc = _input_chain(rule_exprs)
    chain = Firewall.from_nft_json(doc).chains_on(Hook.INPUT)[0]
    index = _ChainIndex(chain)
    ssh_on_eth0 = PacketSpace.new_connections(protocols=protos(6), dports=ports(22)).where(
        iif=NameSet.of("eth0")
    )
    assert [index.rules_for(cube) for cube in ssh_on_eth0] == [0b100, 0b100]


def _tcp_dport() -> dict[str, Any]:
    return {"payload": {"protocol": "tcp", "field": "dport"}}


def _match(left: dict[str, Any], right: Any) -> dict[str, Any]:
    return {"op": "==", "left": left, "right": right}


def _input_chain(rule_exprs: list[list[dict[str, Any]]]) -> dict[str, Any]:
    base = {"family": "inet", "table": "t"}
    chain = {**base, "name": "in", "type": "filter", "hook": "input", "prio": 0}
    objects: list[dict[str, Any]] = [{"table": {"family": "inet", "name": "t"}}]
    objects.append({"chain": {**chain, "policy": "drop"}})
    objects += [
        {"rule": {**base, "chain": "in", "handle": i, "expr": exprs}}
        for i, exprs in enumerate(rule_exprs, 1)
    ]
    return {"nftables": objects}
