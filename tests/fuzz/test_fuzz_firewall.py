"""Every document ``parse_nft_ruleset`` accepts compiles and evaluates without crashing.

``probes.parsers.parse_nft_ruleset`` checks only the outer shape of ``nft -j`` output (its text
fuzzing lives in tests/unit/probes/test_parsers_fuzz.py). What it lets through goes to
``Firewall.from_nft_json``: there, anything malformed or unknown must become a listed problem
or an unknown condition, never an exception, and evaluation must end within the deadline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probes.parsers import ParseError, parse_nft_ruleset
from topology.firewall import Firewall, Hook
from topology.space import PacketSpace

RECORDED = Path(__file__).parents[1] / "data" / "recorded"
SETTINGS = settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])

NAMES = st.sampled_from(["filter", "nat", "input", "output", "forward", "x", ""])
FAMILIES = st.sampled_from(["inet", "ip", "ip6", "arp", "bridge", "netdev", "bogus"])
HOOKS = st.sampled_from(["input", "output", "forward", "prerouting", "postrouting", "ingress"])
SCALARS = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=12)
ADDRESSES = st.sampled_from(
    ["10.98.21.20", "fd98::1", "10.98.0.0", "999.1.1.1", "lo", "@s", "::ffff:10.98.0.1", ""]
)

PAYLOAD = st.fixed_dictionaries(
    {
        "payload": st.fixed_dictionaries(
            {
                "protocol": st.sampled_from(["ip", "ip6", "tcp", "udp", "th", "icmp", "icmpv6"]),
                "field": st.sampled_from(["saddr", "daddr", "sport", "dport", "type", "protocol"]),
            }
        )
    }
)
META = st.fixed_dictionaries(
    {"meta": st.fixed_dictionaries({"key": st.sampled_from(["iifname", "oif", "l4proto", "mark"])})}
)
CT = st.just({"ct": {"key": "state"}})
VALUES: st.SearchStrategy[Any] = st.recursive(
    SCALARS | ADDRESSES | st.integers(0, 70000),
    lambda inner: (
        st.fixed_dictionaries({"set": st.lists(inner, max_size=4)})
        | st.fixed_dictionaries(
            {"prefix": st.fixed_dictionaries({"addr": ADDRESSES, "len": st.integers(-1, 200)})}
        )
        | st.fixed_dictionaries({"range": st.lists(inner, min_size=0, max_size=3)})
        | st.fixed_dictionaries({"concat": st.lists(inner, max_size=3)})
        | st.lists(inner, max_size=3)
    ),
    max_leaves=6,
)
MATCH = st.fixed_dictionaries(
    {
        "match": st.fixed_dictionaries(
            {
                "op": st.sampled_from(["==", "!=", "in", "<", ">=", "~"]),
                "left": PAYLOAD | META | CT | SCALARS,
                "right": VALUES,
            }
        )
    }
)
STATEMENTS = st.one_of(
    MATCH,
    st.sampled_from(
        [
            {"accept": None},
            {"drop": None},
            {"reject": None},
            {"return": None},
            {"counter": {"packets": 0, "bytes": 0}},
            {"log": {"prefix": "x"}},
            {"masquerade": None},
            {"limit": {"rate": 10, "per": "second"}},
        ]
    ),
    st.fixed_dictionaries({"jump": st.fixed_dictionaries({"target": NAMES})}),
    st.fixed_dictionaries({"goto": st.fixed_dictionaries({"target": NAMES})}),
    st.fixed_dictionaries({"snat": st.fixed_dictionaries({"addr": ADDRESSES})}),
    st.fixed_dictionaries({"dnat": st.fixed_dictionaries({"addr": ADDRESSES, "port": SCALARS})}),
    st.fixed_dictionaries({"vmap": st.fixed_dictionaries({"key": PAYLOAD, "data": VALUES})}),
    st.dictionaries(st.text(max_size=6), SCALARS, min_size=1, max_size=1),
)


def _without_some_keys(body: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    keys = sorted(body)
    return st.sets(st.sampled_from(keys)).map(
        lambda drop: {k: v for k, v in body.items() if k not in drop}
    )


def _with_one_junk_value(body: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.sampled_from(sorted(body)).map(lambda key: {**body, key: [1, {"x": None}]})


def _maybe_drop_keys(body: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[Any]:
    """The well-formed object, or the same with some keys missing or one replaced by junk."""
    return st.one_of(body, body.flatmap(_without_some_keys), body.flatmap(_with_one_junk_value))


CHAIN = st.fixed_dictionaries(
    {"family": FAMILIES, "table": NAMES, "name": NAMES},
    optional={
        "type": st.sampled_from(["filter", "nat", "route", 7]),
        "hook": HOOKS,
        "prio": st.integers(-500, 500) | st.sampled_from(["filter", "dstnat", "srcnat", "weird"]),
        "policy": st.sampled_from(["accept", "drop", "maybe"]),
        "handle": st.integers(0, 10),
    },
)
RULE = st.fixed_dictionaries(
    {
        "family": FAMILIES,
        "table": NAMES,
        "chain": NAMES,
        "expr": st.lists(STATEMENTS, max_size=5) | SCALARS,
    }
)
SET = st.fixed_dictionaries(
    {
        "family": FAMILIES,
        "table": NAMES,
        "name": st.just("s"),
        "type": st.sampled_from(["ipv4_addr", "ipv6_addr", "inet_service", ["ipv4_addr"]]),
        "elem": st.lists(VALUES, max_size=4) | SCALARS,
    }
)
OBJECTS = st.one_of(
    _maybe_drop_keys(CHAIN).map(lambda b: {"chain": b}),
    _maybe_drop_keys(RULE).map(lambda b: {"rule": b}),
    _maybe_drop_keys(SET).map(lambda b: {"set": b}),
    st.fixed_dictionaries({"table": st.fixed_dictionaries({"family": FAMILIES, "name": NAMES})}),
    st.just({"metainfo": {"json_schema_version": 1}}),
)
DOCUMENTS = st.lists(OBJECTS, max_size=12).map(lambda objects: {"nftables": objects})


def compiles_and_evaluates(text: str) -> None:
    try:
        document = parse_nft_ruleset(text)
    except ParseError as exc:
        assert exc.tool == "nft -j" and str(exc)
        return
    firewall = Firewall.from_nft_json(document)
    assert isinstance(firewall.problems, list)
    space = PacketSpace.connection_attempts()
    for hook in Hook:
        for outcome in firewall.evaluate(hook, space):
            assert outcome.space is not None


@SETTINGS
@given(document=DOCUMENTS)
def test_nft_shaped_documents(document: dict[str, Any]) -> None:
    compiles_and_evaluates(json.dumps(document))


@SETTINGS
@given(data=st.data())
def test_real_rule_sets_with_one_value_replaced(data: st.DataObject) -> None:
    document = json.loads((RECORDED / "lab-proc-srv.nft-ruleset.json").read_text())
    objects = document["nftables"]
    index = data.draw(st.integers(0, len(objects) - 1))
    (_kind, body) = next(iter(objects[index].items()))
    if isinstance(body, dict) and body:
        key = data.draw(st.sampled_from(sorted(body)))
        body[key] = data.draw(VALUES | st.lists(STATEMENTS, max_size=3))
    compiles_and_evaluates(json.dumps(document))
