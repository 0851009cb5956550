"""The synthetic organisation of the benchmarks is a valid one, and its violations are real.

At a small size: the inventory written to YAML loads with the strict loader, every collected
host's rule set compiles without problems, the planted violations are exactly the failing
findings, and the network controls' model side passes everywhere else (the empirical side is
absent here, so those findings are inconclusive, never passed).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from netaddr import IPNetwork

from auditor.domain.findings import Finding, Status
from auditor.domain.inventory import load_inventory

# bench/ is a top-level package of the repository, not an installed one.
sys.path.insert(0, str(Path(__file__).parents[2]))
from bench.synthetic import VIOLATIONS, AddressPlanError, SyntheticOrganisation, generate
from policies.context import AuditContext
from policies.registry import evaluate_all
from probes.parsers import parse_nft_ruleset
from topology.firewall import Firewall
from topology.graph import Topology

NETWORK_CONTROLS = {"recv-no-outbound", "send-no-inbound", "proc-egress-only-via-gateways"}


@pytest.fixture(scope="module")
def org() -> SyntheticOrganisation:
    return generate(200)


@pytest.fixture(scope="module")
def findings(org: SyntheticOrganisation) -> list[Finding]:
    inventory = org.inventory()
    ctx = AuditContext(inventory=inventory, collection=org.collection())
    ctx.topology = Topology.build(inventory, org.facts)
    return evaluate_all(ctx)


def test_the_same_seed_gives_the_same_organisation() -> None:
    first, second = generate(120, seed=5), generate(120, seed=5)
    assert first.inventory_doc == second.inventory_doc
    assert first.planted == second.planted
    assert generate(120, seed=6).planted != first.planted or (
        generate(120, seed=6).inventory_doc != first.inventory_doc
    )


def test_exact_size_and_every_address_in_the_lab_ranges(org: SyntheticOrganisation) -> None:
    inventory = org.inventory()
    assert len(inventory.hosts) == 200
    lab4, lab6 = IPNetwork("10.98.0.0/16"), IPNetwork("fd98::/16")
    for host in inventory.hosts.values():
        for address in host.all_addresses():
            assert address in (lab4 if address.version == 4 else lab6)


def test_inventory_loads_with_the_strict_file_loader(
    org: SyntheticOrganisation, tmp_path: Path
) -> None:
    loaded = load_inventory(org.write_inventory(tmp_path))
    assert loaded.hosts.keys() == org.inventory().hosts.keys()
    assert loaded.log_host in loaded.hosts


def test_rule_sets_are_nft_json_the_parser_and_compiler_accept(
    org: SyntheticOrganisation,
) -> None:
    import json

    counts = sorted(org.rule_counts.values())
    assert counts[0] >= 10 and counts[-1] >= 100  # tens to hundreds of rules
    for host, facts in org.facts.items():
        assert facts.nftables is not None
        document = parse_nft_ruleset(json.dumps(facts.nftables))
        firewall = Firewall.from_nft_json(document)
        assert firewall.problems == [], host


def test_planted_violations_are_exactly_the_failures(
    org: SyntheticOrganisation, findings: list[Finding]
) -> None:
    failed = {(f.control, f.subject) for f in findings if f.status is Status.FAIL}
    assert org.planted, "no violation was planted"
    assert {control for control, _ in org.planted} == {c for cs in VIOLATIONS.values() for c in cs}
    assert failed == org.planted


def test_network_models_pass_where_nothing_was_planted(
    org: SyntheticOrganisation, findings: list[Finding]
) -> None:
    judged = [f for f in findings if f.control in NETWORK_CONTROLS]
    assert judged
    for finding in judged:
        if (finding.control, finding.subject) in org.planted:
            assert finding.model is not None and finding.model.status is Status.FAIL
            continue
        assert finding.model is not None and finding.model.status is Status.PASS, finding.summary
        # No egress test or scan ran: never a pass on the model alone.
        assert finding.status is Status.INCONCLUSIVE


def test_too_small_or_too_large_is_refused() -> None:
    with pytest.raises(AddressPlanError):
        generate(10)
    with pytest.raises(AddressPlanError):
        generate(200_000)
