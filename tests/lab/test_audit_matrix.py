"""The whole audit, end to end, on every scenario of the lab: exactly the expected failures.

For each scenario, `auditor audit` runs against the live lab (SSH collection, scans, egress
tests, captures, discovery, the model, every control). The scenario's ``expect.fail`` pairs
must fail, exactly its ``expect.inconclusive`` pairs must be inconclusive (naming their cause),
every other finding must pass or be not applicable; the
exit code must say so, every finding must rest on stored evidence, and the run must verify.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from auditor.domain.inventory import load_inventory
from auditor.evidence.verify import verify_run
from lab.runtime import LabState
from lab.scenario import load_scenario
from policies.registry import evaluate_all
from policies.snapshot import OBSERVATIONS_FILE, read_observations, restore_context
from tests.lab_scenarios import SCENARIOS, expected_failures, undecided_mismatch, verdicts_of

AUDITOR = [sys.executable, "-m", "auditor"]


@dataclass
class AuditRun:
    out: Path
    exit_code: int
    stdout: str
    stderr: str
    findings: list[dict[str, Any]]


_RUNS: dict[str, AuditRun] = {}


def audit_of(lab: LabState, tmp_root: Path) -> AuditRun:
    """One audit per scenario, shared by the tests of that scenario."""
    if lab.scenario not in _RUNS:
        out = tmp_root / f"audit-{lab.scenario}"
        proc = subprocess.run(
            [*AUDITOR, "audit", "--inventory", str(lab.inventory_path), "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        document = json.loads((out / "findings.json").read_text(encoding="utf-8"))
        _RUNS[lab.scenario] = AuditRun(
            out, proc.returncode, proc.stdout, proc.stderr, document["findings"]
        )
    return _RUNS[lab.scenario]


def _params(names: list[str] = SCENARIOS) -> list[Any]:
    return [pytest.param(name, marks=pytest.mark.scenario(name), id=name) for name in names]


#: The scenarios that plant secrets on their hosts (``expect.secrets``).
PLANTING = [name for name in SCENARIOS if load_scenario(name).planted_secrets]


@pytest.fixture(scope="module")
def tmp_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("matrix")


@pytest.mark.lab
@pytest.mark.parametrize("scenario", _params())
def test_audit_fails_exactly_the_expected_pairs(
    scenario: str, lab: LabState, tmp_root: Path
) -> None:
    run = audit_of(lab, tmp_root)
    expected = expected_failures(scenario)
    verdicts = verdicts_of(run.findings)
    assert undecided_mismatch(scenario, verdicts) is None
    assert verdicts.failed == expected
    assert verdicts.statuses <= {"pass", "fail", "inconclusive", "not-applicable"}
    exit_code = 1 if expected else (2 if verdicts.undecided else 0)
    assert run.exit_code == exit_code, run.stderr[-2000:]


@pytest.mark.lab
@pytest.mark.parametrize("scenario", _params())
def test_every_finding_rests_on_stored_evidence_and_the_run_verifies(
    scenario: str, lab: LabState, tmp_root: Path
) -> None:
    run = audit_of(lab, tmp_root)
    report = verify_run(run.out)
    assert report.intact, report.problems
    facts = json.loads((run.out / "facts.json").read_text(encoding="utf-8"))
    assert {"recv-srv", "proc-srv", "term-1", "term-2"} <= set(facts)
    objects = run.out / "evidence" / "objects"
    for finding in run.findings:
        assert finding["evidence"], f"{finding['control']} {finding['subject']} cites nothing"
        for ref in finding["evidence"]:
            digest = ref.removeprefix("sha256:")
            assert (objects / digest[:2] / digest).is_file(), ref


@pytest.mark.lab
@pytest.mark.parametrize("scenario", _params())
def test_the_stored_observations_judge_again_to_the_same_findings(
    scenario: str, lab: LabState, tmp_root: Path
) -> None:
    """observations.json holds everything the checks read but the model, which is rebuilt:
    re-judging the run offline must give back exactly its findings."""
    run = audit_of(lab, tmp_root)
    observations = read_observations(run.out / OBSERVATIONS_FILE)
    ctx = restore_context(load_inventory(lab.inventory_path), observations)
    again = [f.model_dump(mode="json") for f in evaluate_all(ctx)]
    assert again == run.findings


@pytest.mark.lab
@pytest.mark.parametrize("scenario", _params())
def test_failing_reachability_findings_show_model_probe_and_path(
    scenario: str, lab: LabState, tmp_root: Path
) -> None:
    run = audit_of(lab, tmp_root)
    reachability = {"recv-no-outbound", "send-no-inbound", "proc-egress-only-via-gateways"}
    for finding in run.findings:
        assert finding["summary"] and finding["summary_ja"]
        if finding["control"] not in reachability:
            continue
        assert finding["model"] is not None and finding["empirical"] is not None
        if finding["status"] == "fail" and finding["model"]["status"] == "fail":
            hops = finding["path"]
            assert hops and hops[0]["host"] == finding["subject"]
            assert any(h.get("rule") for h in hops), hops


@pytest.mark.lab
@pytest.mark.parametrize("scenario", _params(PLANTING))
def test_no_planted_secret_reaches_the_run_folder_or_the_bundle(
    scenario: str, lab: LabState, tmp_root: Path
) -> None:
    """A scenario's ``expect.secrets`` (planted in process arguments and configuration files)
    appear in no file of the run folder, evidence included, nor in any member of its bundle."""
    secrets = load_scenario(scenario).planted_secrets
    run = audit_of(lab, tmp_root)
    bundle = tmp_root / f"{scenario}.zip"
    made = subprocess.run(
        [*AUDITOR, "bundle", str(run.out), "--out", str(bundle)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    contents = {str(path): path.read_bytes() for path in run.out.rglob("*") if path.is_file()}
    with zipfile.ZipFile(bundle) as archive:
        contents |= {f"{bundle}:{name}": archive.read(name) for name in archive.namelist()}
    leaks = [
        (where, secret)
        for where, data in contents.items()
        for secret in secrets
        if secret.encode() in data
    ]
    assert leaks == []
