"""SARIF 2.1.0 of the findings, for pipelines.

A control is a rule; a finding is a result whose ``kind`` says the verdict (``fail``, ``pass``,
``review`` for inconclusive, ``notApplicable``). SARIF requires ``level`` to be ``none`` for
every kind but ``fail``, so only failures carry a level (``error`` for high-severity controls).
The subject is a logical location (there is no source file), a path is a code flow whose
locations are the hops with the rule that allowed each, and the evidence is listed as
artifacts with their SHA-256. A fail that carries a waiver (docs/waivers.md) has a suppression
of kind ``external`` (the waivers file): ``accepted`` while in force, ``rejected`` once expired,
so that a pipeline reading suppressions counts it as the exit code does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from auditor.domain.files import write_text_atomically
from auditor.domain.findings import AppliedWaiver, Finding, Hop, Status
from auditor.evidence.store import object_path
from auditor.report.run import StoredRun, sorted_findings, utc_timestamp
from policies.model import Control

SARIF_FILE = "findings.sarif"
SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"

_KIND = {
    Status.FAIL: "fail",
    Status.PASS: "pass",
    Status.INCONCLUSIVE: "review",
    Status.NOT_APPLICABLE: "notApplicable",
}
_LEVEL = {"high": "error", "medium": "warning", "low": "note"}


def _rule(control: Control) -> dict[str, Any]:
    return {
        "id": control.id,
        "name": "".join(part.capitalize() for part in control.id.split("-")),
        "shortDescription": {"text": control.title.en},
        "fullDescription": {"text": control.criteria.en},
        "help": {"text": control.remediation.en},
        "defaultConfiguration": {"level": _LEVEL[control.severity]},
        "properties": {
            "title_ja": control.title.ja,
            "clauses": list(control.clauses),
            "severity": control.severity,
            "supporting": control.supporting,
        },
    }


def _unknown_rule(control_id: str) -> dict[str, Any]:
    return {"id": control_id, "shortDescription": {"text": control_id}}


def _location(subject: str) -> dict[str, Any]:
    return {
        "logicalLocations": [{"name": subject, "fullyQualifiedName": subject, "kind": "resource"}]
    }


def _hop_location(hop: Hop, number: int) -> dict[str, Any]:
    where = f"{hop.host} {hop.direction}" + (f" ({hop.network})" if hop.network else "")
    return {
        "location": {
            "logicalLocations": [{"name": hop.host, "kind": "resource"}],
            "message": {"text": f"{where}: {hop.rule or 'unknown rule'}"},
        },
        "executionOrder": number,
        "properties": {
            "direction": hop.direction,
            "network": hop.network,
            "rule_ref": hop.rule_ref,
            "evidence": list(hop.evidence),
        },
    }


def _result(finding: Finding, rule_index: int, control: Control | None) -> dict[str, Any]:
    result: dict[str, Any] = {
        "ruleId": finding.control,
        "ruleIndex": rule_index,
        "kind": _KIND[finding.status],
        "message": {"text": finding.summary or finding.control},
        "locations": [_location(finding.subject)],
        "partialFingerprints": {"controlSubject/v1": f"{finding.control}/{finding.subject}"},
        "properties": {
            "status": finding.status.value,
            "summary_ja": finding.summary_ja,
            "clauses": list(finding.clauses),
            "expected": finding.expected,
            "actual": finding.actual,
            "reason": finding.reason,
            "model": finding.model.model_dump(mode="json") if finding.model else None,
            "empirical": finding.empirical.model_dump(mode="json") if finding.empirical else None,
            "disagreement": finding.disagreement,
            "evidence": list(finding.evidence),
        },
    }
    # SARIF: a level other than "none" only with kind "fail".
    if finding.status is Status.FAIL:
        result["level"] = _LEVEL[control.severity] if control else "error"
    else:
        result["level"] = "none"
    if finding.waiver is not None:
        result["suppressions"] = [_suppression(finding.waiver)]
    if finding.path:
        result["codeFlows"] = [
            {
                "threadFlows": [
                    {"locations": [_hop_location(h, n) for n, h in enumerate(finding.path, 1)]}
                ]
            }
        ]
    return result


def _suppression(waiver: AppliedWaiver) -> dict[str, Any]:
    expires = waiver.expires.isoformat()
    justification = f"{waiver.justification} (approved by {waiver.approved_by} until {expires})"
    return {
        "kind": "external",
        "status": "accepted" if waiver.in_force else "rejected",
        "justification": justification if waiver.in_force else f"expired: {justification}",
        "properties": {
            "approved_by": waiver.approved_by,
            "expires": expires,
            "in_force": waiver.in_force,
            "finding": waiver.finding,
        },
    }


def build_sarif(run: StoredRun) -> dict[str, Any]:
    findings = sorted_findings(run.findings, run.controls)
    rule_ids = list(run.controls) + sorted({f.control for f in findings} - set(run.controls))
    rules = [
        _rule(run.controls[cid]) if cid in run.controls else _unknown_rule(cid) for cid in rule_ids
    ]
    index = {cid: n for n, cid in enumerate(rule_ids)}
    info = run.document.run
    invocation: dict[str, Any] = {"executionSuccessful": True}
    for key, value in (("startTimeUtc", info.started), ("endTimeUtc", info.finished)):
        stamp = utc_timestamp(value)
        if stamp is not None:
            invocation[key] = stamp
    sarif_run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "anon-infra-auditor",
                "version": info.tool_version or "unknown",
                "rules": rules,
            }
        },
        "automationDetails": {"id": f"anon-infra-auditor/{info.id}"},
        "invocations": [invocation],
        "artifacts": [
            {
                "location": {"uri": object_path(record.sha256)},
                "length": record.size,
                "mimeType": record.media_type,
                "hashes": {"sha-256": record.sha256},
                "description": {"text": f"#{record.seq} {record.probe}: {record.command}"},
            }
            for record in run.artifacts
        ],
        "results": [_result(f, index[f.control], run.controls.get(f.control)) for f in findings],
        "properties": {"framework": run.framework.id, "framework_version": run.framework.version},
    }
    return {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": [sarif_run]}


def write_sarif(run: StoredRun) -> Path:
    path = run.run_dir / SARIF_FILE
    text = json.dumps(build_sarif(run), ensure_ascii=False, indent=2) + "\n"
    write_text_atomically(path, text, refuse_link=True)  # 0600, see html.py
    return path
