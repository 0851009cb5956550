"""Constructs decided from what a new connection's first packet carries, and those that are not.

Their kernel behaviour is checked in test_kernel_oracle.py; here, on JSON as nft -j writes it,
the engine's side that the kernel cannot show: packets other than connection attempts, and
the name sets behind interface wildcards.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from topology.fields import NO_DEVICE, NameSet
from topology.firewall import Firewall, Hook, Verdict
from topology.space import Packet

A, B = "10.98.21.30", "10.98.21.20"
TCP_FLAGS = {"payload": {"protocol": "tcp", "field": "flags"}}


def _doc(*exprs: list[Any], hook: str = "input") -> dict[str, Any]:
    base = {"family": "inet", "table": "t", "chain": "c"}
    chain: dict[str, Any] = {"family": "inet", "table": "t", "name": "c", "type": "filter"}
    chain |= {"hook": hook, "prio": 0, "policy": "accept"}
    rules = [{"rule": {**base, "handle": i + 1, "expr": e}} for i, e in enumerate(exprs)]
    return {"nftables": [{"table": {"family": "inet", "name": "t"}}, {"chain": chain}, *rules]}


def _outcomes(doc: dict[str, Any], packet: Packet, hook: Hook = Hook.INPUT) -> list[Any]:
    outcomes = Firewall.from_nft_json(doc).decision_for(hook, packet)
    return sorted((o.verdict, o.certain) for o in outcomes)


CERTAIN_DROP = [(Verdict.DROP, True)]
CERTAIN_ACCEPT = [(Verdict.ACCEPT, True)]
UNCERTAIN = [(Verdict.ACCEPT, False), (Verdict.DROP, False)]
SYN = Packet(4, 6, A, B, sport=40000, dport=22, iif="eth0")


def _set_update(*stmt: dict[str, Any], op: str = "add") -> dict[str, Any]:
    elem = {"payload": {"protocol": "ip", "field": "saddr"}}
    return {"set": {"op": op, "elem": elem, "set": "@s", "stmt": list(stmt)}}


def test_a_set_element_with_a_stateful_statement_is_a_condition() -> None:
    limit = {"limit": {"rate": 2000, "burst": 5, "per": "minute", "inv": True}}
    for stmt in (limit, {"ct count": {"val": 5, "inv": True}}, {"quota": {"val": 10}}):
        for op in ("add", "update"):
            doc = _doc([_set_update(stmt, op=op), {"drop": None}])
            assert _outcomes(doc, SYN) == UNCERTAIN, (stmt, op)
    # Without one (or with a counter only) the update records and never decides.
    assert _outcomes(_doc([_set_update(), {"drop": None}]), SYN) == CERTAIN_DROP
    counted = _set_update({"counter": None})
    assert _outcomes(_doc([counted, {"drop": None}]), SYN) == CERTAIN_DROP


def test_tcp_flags_are_decided_for_a_syn_only() -> None:
    masked = {"&": [TCP_FLAGS, ["syn", "ack"]]}
    doc = _doc([{"match": {"op": "==", "left": masked, "right": "syn"}}, {"drop": None}])
    assert _outcomes(doc, SYN) == CERTAIN_DROP
    # An established TCP packet may carry any flags; UDP has no TCP header at all.
    assert _outcomes(doc, Packet(4, 6, A, B, 40000, 22, iif="eth0", ct="established")) == UNCERTAIN
    assert _outcomes(doc, Packet(4, 17, A, B, 40000, 53, iif="eth0")) == CERTAIN_ACCEPT
    numeric = {"match": {"op": "in", "left": TCP_FLAGS, "right": {"|": [1, 16]}}}
    assert _outcomes(_doc([numeric, {"drop": None}]), SYN) == CERTAIN_ACCEPT
    ordered = {"match": {"op": "<", "left": TCP_FLAGS, "right": 4}}
    assert _outcomes(_doc([ordered, {"drop": None}]), SYN) == UNCERTAIN


def test_log_targets_and_mss_clamping_do_not_decide() -> None:
    log = {"xt": {"type": "target", "name": "LOG"}}
    assert _outcomes(_doc([log, {"drop": None}]), SYN) == CERTAIN_DROP
    other = {"xt": {"type": "match", "name": "recent"}}
    assert _outcomes(_doc([other, {"drop": None}]), SYN) == UNCERTAIN
    clamp = {"mangle": {"key": {"tcp option": {"name": "maxseg", "field": "size"}}}}
    clamp["mangle"]["value"] = {"rt": {"key": "mtu"}}
    doc = _doc([clamp, {"drop": None}], hook="output")
    assert _outcomes(doc, Packet(4, 6, A, B, 40000, 22, oif="eth0"), Hook.OUTPUT) == CERTAIN_DROP
    ping = Packet(4, 1, A, B, oif="eth0", icmp_type=8)
    assert _outcomes(doc, ping, Hook.OUTPUT) == CERTAIN_ACCEPT


def test_th_in_a_concatenation_is_exact_for_protocols_with_ports() -> None:
    key = {
        "concat": [
            {"payload": {"protocol": "ip", "field": "protocol"}},
            {"payload": {"protocol": "th", "field": "dport"}},
        ]
    }
    data = {"set": [[{"concat": ["tcp", 22]}, {"drop": None}]]}
    doc = _doc([{"vmap": {"key": key, "data": data}}])
    assert _outcomes(doc, SYN) == CERTAIN_DROP
    assert _outcomes(doc, Packet(4, 6, A, B, 40000, 23, iif="eth0")) == CERTAIN_ACCEPT
    # Any protocol: for ICMP th dport reads other bytes (the checksum).
    l4 = {"meta": {"key": "l4proto"}}
    anyproto = {"set": [{"concat": [1, 22]}]}
    match = {"match": {"op": "==", "left": {"concat": [l4, key["concat"][1]]}, "right": anyproto}}
    ping = Packet(4, 1, A, B, iif="eth0", icmp_type=8)
    assert _outcomes(_doc([match, {"drop": None}]), ping) == UNCERTAIN


def test_interface_names_where_the_hook_has_no_device() -> None:
    def rule(key: str, op: str, name: str) -> list[Any]:
        left = {"meta": {"key": key}}
        return [{"match": {"op": op, "left": left, "right": name}}, {"drop": None}]

    out = Packet(4, 6, A, B, 40000, 22, oif="eth0")
    assert _outcomes(_doc(rule("iifname", "!=", "x"), hook="output"), out, Hook.OUTPUT) == (
        CERTAIN_DROP
    )
    assert _outcomes(_doc(rule("iifname", "==", "x"), hook="output"), out, Hook.OUTPUT) == (
        CERTAIN_ACCEPT
    )
    assert _outcomes(_doc(rule("oifname", "!=", "x")), SYN) == CERTAIN_DROP
    assert _outcomes(_doc(rule("iifname", "==", "et*")), SYN) == CERTAIN_DROP
    assert _outcomes(_doc(rule("iifname", "!=", "eth0*")), SYN) == CERTAIN_ACCEPT
    assert _outcomes(_doc(rule("iifname", "==", "*")), SYN) == UNCERTAIN
    assert _outcomes(_doc(rule("iifname", "==", "e\\*")), SYN) == UNCERTAIN


NAMES = st.sampled_from(["", "e", "et", "eth", "eth0", "eth1", "eth10", "wg0", "w", "x" * 15])
SETS = st.recursive(
    st.builds(NameSet.of, NAMES) | st.builds(NameSet.prefixed, NAMES),
    lambda inner: st.one_of(
        st.builds(lambda a, b: a & b, inner, inner),
        st.builds(lambda a, b: a | b, inner, inner),
        st.builds(lambda a, b: a - b, inner, inner),
        st.builds(NameSet.complement, inner),
    ),
    max_leaves=6,
)
PROBES = ["", "e", "et", "eth", "eth0", "eth1", "eth10", "eth2", "wg0", "w", "x" * 15, "a", "z"]


@settings(max_examples=200, deadline=None)
@given(SETS, SETS)
def test_name_set_operations_agree_with_membership(a: NameSet, b: NameSet) -> None:
    for name in PROBES:
        assert (name in a & b) == (name in a and name in b)
        assert (name in a | b) == (name in a or name in b)
        assert (name in a - b) == (name in a and name not in b)
        assert (name in a.complement()) == (name not in a)
        assert (name in NameSet.prefixed("eth")) == name.startswith("eth")
    assert (a & a.complement()).is_empty()
    assert a == (a | b) - (b - a)
    assert NO_DEVICE not in NameSet.prefixed("e")
    if not a.is_empty():
        assert a.example() in a
    str(a)  # always renders
