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
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from auditor.domain.inventory import load_inventory
from auditor.evidence.verify import verify_run
from lab import runtime
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


def audit_of(lab: LabState, tmp_root: Path, *, remote: bool = False) -> AuditRun:
    """One audit per scenario and inventory, shared by the tests of that scenario. ``remote``:
    through the remote-vantage inventory (the auditor plugged into term-lan only)."""
    key = f"{lab.scenario}-remote" if remote else lab.scenario
    if key not in _RUNS:
        out = tmp_root / f"audit-{key}"
        inventory = lab.remote_inventory_path if remote else lab.inventory_path
        with taps_running() if remote else nullcontext():
            proc = subprocess.run(
                [*AUDITOR, "audit", "--inventory", str(inventory), "--out", str(out)],
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
        document = json.loads((out / "findings.json").read_text(encoding="utf-8"))
        _RUNS[key] = AuditRun(out, proc.returncode, proc.stdout, proc.stderr, document["findings"])
    return _RUNS[key]


@contextmanager
def taps_running() -> Iterator[None]:
    """The vantage taps up (mirror ports included) for a remote audit only, and down again
    before anything else of the scenario runs: to the direct layout a tap would be an unknown
    neighbour."""
    runtime.taps_up()
    try:
        yield
    finally:
        runtime.taps_down()


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


# -- the remote-vantage layout ----------------------------------------------------------------

#: Pairs whose probe side the remote layout may judge differently from the direct audit, per
#: scenario, and why. The remote audit stands where an auditor on site can: its machine on
#: term-lan only, the taps (docs/lab.md) on the other segments, inet-canary on inet.
REMOTE_PROBE_EXPLAINED: dict[str, dict[tuple[str, str], str]] = {}


def _verdicts(run: AuditRun) -> dict[tuple[str, str], tuple[str, str | None, str | None]]:
    """(status, model's status, probe's status) of every pair."""
    return {
        (f["control"], f["subject"]): (
            f["status"],
            (f.get("model") or {}).get("status"),
            (f.get("empirical") or {}).get("status"),
        )
        for f in run.findings
    }


def _remote_disagreements(direct: AuditRun, remote: AuditRun) -> dict[tuple[str, str], str]:
    """Each pair the two audits judge differently (overall, model or probe), with the
    remote finding's verdicts and reason."""
    before, after = _verdicts(direct), _verdicts(remote)
    assert set(before) == set(after), set(before) ^ set(after)
    reasons = {
        (f["control"], f["subject"]): f.get("reason") or f["summary"] for f in remote.findings
    }
    return {
        pair: f"{before[pair]} -> {after[pair]}: {reasons[pair]}"
        for pair in before
        if before[pair] != after[pair]
    }


@pytest.mark.lab
@pytest.mark.parametrize("scenario", _params())
def test_the_remote_layout_gives_the_same_findings_as_the_direct_audit(
    scenario: str, lab: LabState, tmp_root: Path
) -> None:
    """Audited right after the direct audit, with the scenario still up and the taps brought
    up for it: every pair gets the same verdict, and the same model and probe verdicts,
    although this machine is plugged into term-lan only and every other probe runs from a
    vantage host over SSH (scans, sweeps, link and egress captures)."""
    direct = audit_of(lab, tmp_root)
    remote = audit_of(lab, tmp_root, remote=True)
    differing = _remote_disagreements(direct, remote)
    explained = REMOTE_PROBE_EXPLAINED.get(scenario, {})
    assert {pair: why for pair, why in differing.items() if pair not in explained} == {}
    assert verdicts_of(direct.findings) == verdicts_of(remote.findings)
    # And it did stand elsewhere: every network but term-lan was scanned from its tap.
    scans = json.loads((remote.out / OBSERVATIONS_FILE).read_text(encoding="utf-8"))["scans"]
    vantages = {
        network: (scan.get("value") or {}).get("vantage") for network, scan in scans.items()
    }
    assert str(vantages.pop("term-lan", "")).startswith("local ")
    assert vantages and vantages == {network: f"ssh tap-{network}" for network in vantages}
    verdicts = verdicts_of(remote.findings)
    assert remote.exit_code == (1 if verdicts.failed else (2 if verdicts.undecided else 0))
    report = verify_run(remote.out)
    assert report.intact, report.problems
