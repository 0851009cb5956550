"""The evaluation budget: past it, what is left is uncertain (accepted and dropped), never
decided certainly; under it, nothing changes. No timings here (see bench/firewall_worst.py)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.firewall_worst import overlapping_ranges
from tests.unit.topology.test_firewall_property import rulesets
from topology.fields import ports, protos
from topology.firewall import DEFAULT_BUDGET, Budget, Firewall, Hook, Outcome, Verdict
from topology.space import Packet, PacketSpace

SPACE = PacketSpace.new_connections()


def _outcomes(doc: dict[str, Any], budget: Budget, space: PacketSpace = SPACE) -> list[Outcome]:
    return Firewall.from_nft_json(doc, budget).evaluate(Hook.INPUT, space)


def _budget_reasons(outcomes: list[Outcome]) -> set[str]:
    return {r for o in outcomes for r in o.reasons if "evaluation budget" in r}


def test_a_tiny_budget_makes_the_rest_uncertain_both_ways() -> None:
    doc = overlapping_ranges(12)
    exact = _outcomes(doc, Budget.unlimited())
    assert all(o.certain for o in exact)
    cut = _outcomes(doc, Budget(cubes=5, tests=None))
    reasons = _budget_reasons(cut)
    assert reasons == {"evaluation budget of 5 cubes exceeded on input; the rest is uncertain"}
    uncertain = [o for o in cut if not o.certain]
    assert {o.verdict for o in uncertain} == {Verdict.ACCEPT, Verdict.DROP}
    # The packets cut are reported both ways: the same space maybe accepted and maybe dropped.
    maybe_accepted = PacketSpace.of(
        c for o in uncertain if o.verdict is Verdict.ACCEPT for c in o.space
    )
    maybe_dropped = PacketSpace.of(
        c for o in uncertain if o.verdict is Verdict.DROP for c in o.space
    )
    assert not maybe_accepted.subtract(maybe_dropped) and not maybe_dropped.subtract(maybe_accepted)


def test_what_the_budget_cuts_is_never_decided_certainly() -> None:
    """Every certain answer under a budget is the exact one; every packet is answered."""
    doc = overlapping_ranges(16)
    firewall = Firewall.from_nft_json(doc, Budget.unlimited())
    exact = firewall.evaluate(Hook.INPUT, SPACE)
    for budget in (Budget(cubes=0), Budget(cubes=40), Budget(tests=1), Budget(tests=200)):
        cut = _outcomes(doc, budget)
        assert _budget_reasons(cut)
        for outcome in cut:
            if outcome.certain:
                same = [
                    o for o in exact if o.verdict is outcome.verdict and o.steps == outcome.steps
                ]
                assert same and not outcome.space.subtract(same[0].space)
        covered = PacketSpace.of(c for o in cut for c in o.origin)
        assert not PacketSpace.of(c for o in exact for c in o.origin).subtract(covered)


def test_a_cut_packet_gets_both_verdicts_uncertain() -> None:
    doc = overlapping_ranges(12)
    # Rule 11 (the last) accepts this packet; rules 0-10 do not match it.
    packet = Packet(4, 6, "10.0.47.1", "10.1.59.1", sport=40100, dport=59945)
    exact = Firewall.from_nft_json(doc, Budget.unlimited()).decision_for(Hook.INPUT, packet)
    assert [(o.verdict, o.certain) for o in exact] == [(Verdict.ACCEPT, True)]
    spent = Budget(cubes=None, tests=None, seconds=0.0)
    cut = Firewall.from_nft_json(doc, spent).decision_for(Hook.INPUT, packet)
    assert sorted((o.verdict, o.certain) for o in cut) == [
        (Verdict.ACCEPT, False),
        (Verdict.DROP, False),
    ]


def test_a_time_budget_cuts_too() -> None:
    cut = _outcomes(overlapping_ranges(12), Budget(cubes=None, tests=None, seconds=0.0))
    assert any("s exceeded on input" in r for r in _budget_reasons(cut))
    assert all(not o.certain for o in cut)


def test_budget_limits_are_not_negative() -> None:
    with pytest.raises(ValueError, match="cubes"):
        Budget(cubes=-1)


@settings(max_examples=200, deadline=None)
@given(rulesets(), st.sampled_from([SPACE, PacketSpace.connection_attempts()]))
def test_a_small_budget_changes_nothing_on_small_rule_sets(
    doc: dict[str, Any], space: PacketSpace
) -> None:
    small = Budget(cubes=500, tests=2000)
    assert _outcomes(doc, small, space) == _outcomes(doc, Budget.unlimited(), space)
    assert _outcomes(doc, DEFAULT_BUDGET, space) == _outcomes(doc, Budget.unlimited(), space)


def test_the_default_budget_leaves_a_narrow_query_exact() -> None:
    doc = overlapping_ranges(40)
    space = PacketSpace.new_connections(protocols=protos(6), dports=ports(59000))
    bounded = _outcomes(doc, DEFAULT_BUDGET, space)
    assert not _budget_reasons(bounded)
    assert bounded == _outcomes(doc, Budget.unlimited(), space)
