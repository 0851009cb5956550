"""The lab's scenarios for the tests: what an audit of each must conclude, what an audit did
conclude (in one shape), and where each one's recorded observations are.

Shared by the lab matrix (tests/lab/test_audit_matrix.py, findings.json of a live audit), the
offline re-judging of the recorded scenarios (tests/unit/policies/test_recorded_scenarios.py)
and their recorder (tests/data/contexts/record.py), so that all three apply the same rule:
exactly the scenario's ``expect.fail`` pairs fail, exactly its ``expect.inconclusive`` pairs are
inconclusive (each for the cause it names), and everything else passes or is not applicable.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auditor.domain.inventory import Inventory, load_inventory
from lab.scenario import load_scenario
from policies.snapshot import OBSERVATIONS_FILE, Observations, from_json

SCENARIO_DIR = Path(__file__).parents[1] / "lab" / "scenarios"
SCENARIOS = sorted(p.parent.name for p in SCENARIO_DIR.glob("*/scenario.yaml"))

#: tests/data/contexts/<scenario>/: the lab's inventory and a live audit's observations
RECORDINGS = Path(__file__).parent / "data" / "contexts"
INVENTORY_FILE = "inventory.yaml"
#: gzipped: the ten scenarios' observations come to 4.5 MB of JSON (one line each, so no more
#: readable in a diff than the 1 MB of gzip), and they grow with every fact collected
RECORDING_FILE = OBSERVATIONS_FILE + ".gz"

Pair = tuple[str, str]  #: (control, subject)


def expected_failures(scenario: str) -> set[Pair]:
    """The scenario's ``expect.fail`` pairs (its scenario.yaml is the one authority)."""
    return {(control, subject) for control, subject in load_scenario(scenario).expect_fail}


def expected_undecided(scenario: str) -> dict[Pair, str]:
    """The scenario's ``expect.inconclusive`` pairs, each with the text its reason contains."""
    return dict(load_scenario(scenario).expect_inconclusive)


def undecided_mismatch(scenario: str, verdicts: Verdicts) -> str | None:
    """Why the inconclusive findings are not exactly the expected ones, or None."""
    expected = expected_undecided(scenario)
    problems = []
    if set(verdicts.undecided) != set(expected):
        unexpected = {p: r for p, r in verdicts.undecided.items() if p not in expected}
        missing = sorted(set(expected) - set(verdicts.undecided))
        if unexpected:
            problems.append(f"inconclusive: {sorted(unexpected.items())}")
        if missing:
            problems.append(f"expected to be inconclusive but were not: {missing}")
    for pair, cause in expected.items():
        reason = verdicts.undecided.get(pair)
        if reason is not None and cause not in reason:
            problems.append(f"{pair} inconclusive without naming {cause!r}: {reason}")
    return "; ".join(problems) or None


@dataclass(frozen=True)
class Verdicts:
    failed: set[Pair]
    #: each inconclusive pair with its reason, so a failing assertion shows why
    undecided: dict[Pair, str]
    statuses: set[str]


def verdicts_of(findings: Iterable[Mapping[str, Any]]) -> Verdicts:
    """From findings as findings.json holds them (``Finding.model_dump(mode="json")``)."""
    listed = list(findings)
    return Verdicts(
        failed={(f["control"], f["subject"]) for f in listed if f["status"] == "fail"},
        undecided={
            (f["control"], f["subject"]): f.get("reason") or f["summary"]
            for f in listed
            if f["status"] == "inconclusive"
        },
        statuses={f["status"] for f in listed},
    )


def mismatch(scenario: str, verdicts: Verdicts) -> str | None:
    """Why the verdicts are not exactly what the scenario expects, or None when they are."""
    expected = expected_failures(scenario)
    problems = []
    undecided = undecided_mismatch(scenario, verdicts)
    if undecided is not None:
        problems.append(undecided)
    if verdicts.failed - expected:
        problems.append(f"unexpected fail: {sorted(verdicts.failed - expected)}")
    if expected - verdicts.failed:
        problems.append(f"expected to fail but did not: {sorted(expected - verdicts.failed)}")
    return f"{scenario}: " + "; ".join(problems) if problems else None


def recording_text(scenario: str) -> bytes:
    """The recorded observations.json of the scenario, as the audit wrote it."""
    return gzip.decompress((RECORDINGS / scenario / RECORDING_FILE).read_bytes())


def recording(scenario: str) -> tuple[Inventory, Observations]:
    inventory = load_inventory(RECORDINGS / scenario / INVENTORY_FILE)
    return inventory, from_json(recording_text(scenario))
