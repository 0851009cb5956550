"""SARIF 2.1.0 and JUnit XML, parsed back."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from junitparser import Error, Failure, JUnitXml, Skipped

from auditor.domain.findings import Status
from auditor.report.junit import JUNIT_FILE, build_junit
from auditor.report.run import load_run
from auditor.report.sarif import SARIF_FILE

KINDS = {"notApplicable", "pass", "fail", "review", "open", "informational"}
LEVELS = {"none", "note", "warning", "error"}


def sarif_problems(log: dict[str, Any]) -> list[str]:
    """The structural rules of SARIF 2.1.0 that a consumer relies on (§3.13–§3.27)."""
    problems = [] if log.get("version") == "2.1.0" else ["version is not 2.1.0"]
    runs = log.get("runs")
    if not isinstance(runs, list):
        return [*problems, "runs is not an array"]
    for run in runs:
        problems += _run_problems(run)
    return problems


def _run_problems(run: dict[str, Any]) -> list[str]:
    driver = run.get("tool", {}).get("driver", {})
    problems = [] if driver.get("name") else ["tool.driver.name is required"]
    ids = [r.get("id") for r in driver.get("rules", [])]
    if len(set(ids)) != len(ids) or not all(ids):
        problems.append("rule ids are missing or repeated")
    for n, result in enumerate(run.get("results", [])):
        problems += [f"result {n}: {p}" for p in _result_problems(result, ids)]
    problems += [
        "an artifact needs location.uri"
        for artifact in run.get("artifacts", [])
        if "uri" not in artifact.get("location", {})
    ]
    return problems


def _result_problems(result: dict[str, Any], ids: list[Any]) -> list[str]:
    problems = []
    if not result.get("message", {}).get("text"):
        problems.append("message.text is required")
    index = result.get("ruleIndex")
    if index is not None and (index >= len(ids) or ids[index] != result.get("ruleId")):
        problems.append("ruleIndex does not point at ruleId")
    kind, level = result.get("kind", "fail"), result.get("level", "warning")
    if kind not in KINDS or level not in LEVELS:
        problems.append(f"unknown kind {kind} or level {level}")
    if kind != "fail" and level != "none":
        problems.append(f"level must be none when kind is {kind}")
    for flow in result.get("codeFlows", []):
        if not all(thread.get("locations") for thread in flow["threadFlows"]):
            problems.append("a thread flow needs locations")
    return problems


def test_sarif_has_the_required_structure(failing_run: Path) -> None:
    log = json.loads((failing_run / SARIF_FILE).read_text(encoding="utf-8"))
    assert sarif_problems(log) == []


def test_the_structure_check_can_fail() -> None:
    bad = {
        "version": "2.1.0",
        "runs": [
            {
                "tool": {"driver": {"name": "x", "rules": [{"id": "a"}]}},
                "results": [{"ruleId": "b", "ruleIndex": 0, "kind": "pass", "level": "error"}],
            }
        ],
    }
    found = sarif_problems(bad)
    assert len(found) == 3


def test_sarif_results_match_the_findings(failing_run: Path) -> None:
    log = json.loads((failing_run / SARIF_FILE).read_text(encoding="utf-8"))
    run = load_run(failing_run)
    results = log["runs"][0]["results"]
    assert len(results) == len(run.findings)
    by_key = {(r["ruleId"], r["locations"][0]["logicalLocations"][0]["name"]): r for r in results}
    failed = by_key[("recv-no-outbound", "recv-srv")]
    assert failed["kind"] == "fail" and failed["level"] == "error"
    flow = failed["codeFlows"][0]["threadFlows"][0]["locations"]
    assert [loc["location"]["message"]["text"] for loc in flow][1] == (
        "recv-srv route (carrier-in): default via 10.98.10.1 dev eth0"
    )
    assert by_key[("links-encrypted", "send-srv")]["kind"] == "review"
    hashes = {a["hashes"]["sha-256"] for a in log["runs"][0]["artifacts"]}
    assert hashes == {r.sha256 for r in run.artifacts}


def test_junit_parses_back_with_the_right_counts(failing_run: Path) -> None:
    xml = JUnitXml.fromfile(str(failing_run / JUNIT_FILE))
    run = load_run(failing_run)
    cases = [(suite.name, case) for suite in xml for case in suite]
    assert len(cases) == len(run.findings)
    status = {(f.control, f.subject): f.status for f in run.findings}
    for suite_name, case in cases:
        expected = status[(suite_name, case.name)]
        kinds = {type(r) for r in case.result}
        if expected is Status.FAIL:
            assert kinds == {Failure}
        elif expected is Status.INCONCLUSIVE:
            assert kinds == {Error}
        elif expected is Status.NOT_APPLICABLE:
            assert kinds == {Skipped}
        else:
            assert kinds == set() and case.is_passed
    assert (xml.failures, xml.errors, xml.skipped, xml.tests) == (3, 1, 0, len(run.findings))


def test_junit_time_is_the_runs_wall_time_not_the_sum_of_overlapping_phases(
    failing_run: Path,
) -> None:
    run = load_run(failing_run)
    info = run.document.run
    assert info.finished is not None
    wall = (
        datetime.fromisoformat(info.finished) - datetime.fromisoformat(info.started)
    ).total_seconds()
    run.document.run.phases = {"links": wall, "scan": wall, "egress": wall}  # overlapping
    root = build_junit(run).getroot()
    assert float(root.attrib["time"]) == pytest.approx(wall, abs=0.001)
