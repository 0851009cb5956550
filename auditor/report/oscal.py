"""OSCAL assessment results (JSON) of a run: observations for the evidence, findings per
control and subject.

Mapping:

* each artifact of the evidence store is an *observation* whose ``relevant-evidence`` points at
  the stored object by a relative href (``evidence/objects/ab/ab…``) and names its SHA-256;
* each finding (control, subject) is an OSCAL *finding* targeting the control's objective, with
  ``related-observations`` for every artifact it cites; OSCAL knows only satisfied /
  not-satisfied, so the exact verdict (``inconclusive``, ``not-applicable``) is kept in a
  property of our namespace and in the status remarks;
* a fail that carries a waiver (docs/waivers.md) relates to a *risk* of the result: status
  ``deviation-approved`` while the waiver is in force, with the approver and justification in
  its risk log and the last day in force as its ``deadline``; ``open`` once it has expired;
* hosts are inventory items of the result, the auditor a tool component, the inventory and the
  findings.json back-matter resources.

Every UUID is a version 5 UUID derived from the run id and what it names, so re-rendering a
stored run gives the same document. The OSCAL version is the one whose official NIST JSON
models the tests validate against (see docs/reports.md).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from auditor.domain.files import write_text_atomically
from auditor.domain.findings import AppliedWaiver, Finding, Status
from auditor.evidence.store import ArtifactRecord, object_path, parse_ref
from auditor.report.run import (
    FINDINGS_FILE,
    INVENTORY_COPY,
    StoredRun,
    sorted_findings,
    utc_timestamp,
)

#: OSCAL 1.1.3, the version certification tooling reads today (compliance-trestle 3.x models
#: validate it in the tests); the document is also valid against NIST's 1.2.1 schema.
OSCAL_VERSION = "1.1.3"
OSCAL_FILE = "oscal-assessment-results.json"
#: Namespace of our own properties. OSCAL's ``ns`` is a URI and tools read it as a URL with a
#: host; ``.invalid`` (RFC 6761) is reserved never to resolve: it names, it points nowhere.
NS = "https://anon-infra-auditor.invalid/ns/oscal"
# The UUID namespace keeps the name the properties' namespace first had: changing it would
# change every UUID of re-rendered stored runs.
_UUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:anon-infra-auditor:oscal")

#: Probes that send packets (a test); the others read configuration (an examination).
_TESTING_PROBES = frozenset({"network-scan", "egress", "link-capture", "discovery"})

_STATE = {
    Status.PASS: ("satisfied", "pass"),
    Status.FAIL: ("not-satisfied", "fail"),
    Status.INCONCLUSIVE: ("not-satisfied", "other"),
    Status.NOT_APPLICABLE: ("satisfied", "other"),
}


def stable_uuid(run_id: str, *parts: str) -> str:
    return str(uuid.uuid5(_UUID_NAMESPACE, "\x1f".join((run_id, *parts))))


def _line(text: str) -> str:
    """OSCAL markup-line: one non-empty line."""
    flat = " ".join(text.split())
    return flat or "-"


def _prop(name: str, value: str) -> dict[str, str]:
    return {"name": name, "ns": NS, "value": _line(value)}


def build_assessment_results(run: StoredRun) -> dict[str, Any]:
    run_id = run.run_id
    info = run.document.run
    started = utc_timestamp(info.started) or _epoch()
    organisation = run.inventory.organisation if run.inventory else "unknown organisation"
    document: dict[str, Any] = {
        "uuid": stable_uuid(run_id, "assessment-results"),
        "metadata": {
            "title": _line(f"Technical safety measures audit of {organisation}"),
            "last-modified": utc_timestamp(info.finished) or started,
            "version": run_id,
            "oscal-version": OSCAL_VERSION,
            "props": [
                _prop("framework", run.framework.id),
                _prop("framework-version", run.framework.version),
                _prop("run-id", run_id),
            ],
        },
        "import-ap": {
            # No separate assessment plan: the inventory (scope, hosts, networks) is the plan.
            "href": f"#{stable_uuid(run_id, 'resource', 'inventory')}",
            "remarks": "The assessment plan is the inventory: its authorized scope, networks and "
            "hosts, kept as a back-matter resource.",
        },
        "results": [_result(run, started)],
        "back-matter": {"resources": _resources(run)},
    }
    return {"assessment-results": document}


def _epoch() -> str:
    return "1970-01-01T00:00:00Z"


def _result(run: StoredRun, started: str) -> dict[str, Any]:
    run_id = run.run_id
    result: dict[str, Any] = {
        "uuid": stable_uuid(run_id, "result"),
        "title": _line(f"{run.framework.short.en} [{run.framework.version}]: run {run_id}"),
        "description": (
            f"Controls of {run.framework.name.en} judged on the organisation's infrastructure: "
            "configuration-derived model and empirical probes, with hashed evidence."
        ),
        "start": started,
        "local-definitions": _local_definitions(run),
        "reviewed-controls": {
            "control-selections": [
                {"include-controls": [{"control-id": cid} for cid in _control_ids(run)]}
            ]
        },
    }
    end = utc_timestamp(run.document.run.finished)
    if end is not None:
        result["end"] = end
    observations = [_observation(run, record) for record in run.artifacts]
    if observations:
        result["observations"] = observations
    risks = [
        _waiver_risk(run, f, f.waiver, started)
        for f in sorted_findings(run.findings, run.controls)
        if f.waiver is not None
    ]
    if risks:
        result["risks"] = risks
    findings = [_finding(run, f) for f in sorted_findings(run.findings, run.controls)]
    if findings:
        result["findings"] = findings
    return result


def _risk_uuid(run_id: str, finding: Finding) -> str:
    return stable_uuid(run_id, "risk", finding.control, finding.subject)


def _waiver_risk(
    run: StoredRun, finding: Finding, waiver: AppliedWaiver, applied: str
) -> dict[str, Any]:
    """The risk of a waived fail: an approved deviation while the waiver is in force (OSCAL's
    own word for an accepted risk), open again once it has expired."""
    status = "deviation-approved" if waiver.in_force else "open"
    state = "in force" if waiver.in_force else "expired"
    approval = (
        f"Deviation approved by {waiver.approved_by} until {waiver.expires.isoformat()}: "
        f"{waiver.justification}"
    )
    deadline = _end_of_day(waiver.expires)
    # The approval's own date is not in the waivers file: the log says when the auditor applied
    # it, or, once expired, when it ran out.
    entry: dict[str, Any] = {
        "uuid": stable_uuid(run.run_id, "risk-log", finding.control, finding.subject),
        "title": _line(f"Waiver of {finding.control} on {finding.subject} {state}"),
        "description": approval,
        "start": applied if waiver.in_force else deadline,
        "status-change": status,
    }
    risk: dict[str, Any] = {
        "uuid": _risk_uuid(run.run_id, finding),
        "title": _line(f"{finding.control}: {finding.subject} (waiver {state})"),
        "description": finding.summary or finding.control,
        "statement": approval if waiver.in_force else f"{approval} (expired)",
        "props": [
            _prop("waiver", state),
            _prop("approved-by", waiver.approved_by),
            _prop("expires", waiver.expires.isoformat()),
        ],
        "status": status,
        "deadline": deadline,
        "risk-log": {"entries": [entry]},
    }
    observations = _related_observations(run, finding)
    if observations:
        risk["related-observations"] = observations
    return risk


def _end_of_day(day: date) -> str:
    """The last second of the waiver's last day, in the auditing machine's time zone (the one
    its date was judged in)."""
    moment = datetime.combine(day, time(23, 59, 59)).astimezone()
    return moment.isoformat()


def _control_ids(run: StoredRun) -> list[str]:
    ids = list(run.controls)
    ids += sorted({f.control for f in run.findings} - set(ids))
    return ids


def _hosts(run: StoredRun) -> list[str]:
    names = set(run.inventory.hosts) if run.inventory else set()
    names |= {r.host for r in run.artifacts if r.host}
    return sorted(names)


def _local_definitions(run: StoredRun) -> dict[str, Any]:
    run_id = run.run_id
    tool = {
        "uuid": stable_uuid(run_id, "component", "auditor"),
        "type": "software",
        "title": "anon-infra-auditor",
        "description": "The auditor that collected the evidence and judged the controls.",
        "props": [_prop("version", run.document.run.tool_version or "unknown")],
        "status": {"state": "operational"},
    }
    definitions: dict[str, Any] = {"components": [tool]}
    items = [_inventory_item(run, host) for host in _hosts(run)]
    if items:
        definitions["inventory-items"] = items
    return definitions


def _inventory_item(run: StoredRun, host: str) -> dict[str, Any]:
    definition = run.inventory.hosts.get(host) if run.inventory else None
    roles = ", ".join(r.value for r in definition.roles) if definition else "not in the inventory"
    props = [{"name": "asset-id", "value": host}]
    if definition is not None:
        props += [_prop("role", r.value) for r in definition.roles]
    return {
        "uuid": stable_uuid(run.run_id, "host", host),
        "description": f"Host {host} ({roles})",
        "props": props,
    }


def _observation(run: StoredRun, record: ArtifactRecord) -> dict[str, Any]:
    evidence = {
        "href": object_path(record.sha256),
        "description": f"{record.ref} ({record.media_type}, {record.size} bytes)",
        "props": [_prop("sha256", record.sha256), _prop("media-type", record.media_type)],
    }
    observation: dict[str, Any] = {
        "uuid": observation_uuid(run.run_id, record),
        "title": _line(f"{record.probe}: {record.command}"),
        "description": (
            f"Artifact #{record.seq} collected by the {record.probe} probe "
            f"{'on ' + record.host if record.host else 'on the auditing machine'}: "
            f"`{' '.join(record.command.split())}`."
        ),
        "props": [_prop("sequence", str(record.seq))],
        "methods": ["TEST" if record.probe in _TESTING_PROBES else "EXAMINE"],
        "origins": [
            {
                "actors": [
                    {
                        "type": "tool",
                        "actor-uuid": stable_uuid(run.run_id, "component", "auditor"),
                    }
                ]
            }
        ],
        "relevant-evidence": [evidence],
        "collected": utc_timestamp(record.started) or _epoch(),
    }
    if record.tool_version:
        observation["props"].append(_prop("tool-version", record.tool_version))
    if record.host:
        observation["subjects"] = [
            {"subject-uuid": stable_uuid(run.run_id, "host", record.host), "type": "inventory-item"}
        ]
    return observation


def observation_uuid(run_id: str, record: ArtifactRecord) -> str:
    return stable_uuid(run_id, "observation", str(record.seq))


def _finding(run: StoredRun, finding: Finding) -> dict[str, Any]:
    state, reason = _STATE[finding.status]
    observations = _related_observations(run, finding)
    remarks = f"verdict: {finding.status.value}"
    if finding.reason:
        remarks += f"; reason: {finding.reason}"
    described = _finding_description(finding)
    result: dict[str, Any] = {
        "uuid": stable_uuid(run.run_id, "finding", finding.control, finding.subject),
        "title": _line(f"{finding.control}: {finding.subject}"),
        "description": described,
        "props": [
            _prop("verdict", finding.status.value),
            _prop("subject", finding.subject),
            *[_prop("clause", clause) for clause in finding.clauses],
        ],
        "target": {
            "type": "objective-id",
            "target-id": finding.control,
            "status": {"state": state, "reason": reason, "remarks": remarks},
        },
        "remarks": finding.summary_ja or "-",
    }
    if observations:
        result["related-observations"] = observations
    if finding.waiver is not None:
        result["props"].append(
            _prop("waiver", "in force" if finding.waiver.in_force else "expired")
        )
        result["related-risks"] = [{"risk-uuid": _risk_uuid(run.run_id, finding)}]
        result["target"]["status"]["remarks"] += _waiver_remark(finding.waiver)
    return result


def _waiver_remark(waiver: AppliedWaiver) -> str:
    if waiver.in_force:
        return f"; waived: approved by {waiver.approved_by} until {waiver.expires.isoformat()}"
    return f"; waiver expired on {waiver.expires.isoformat()}"


def _finding_description(finding: Finding) -> str:
    lines = [finding.summary or finding.control]
    for label, value in (
        ("Expected", finding.expected),
        ("Actual", finding.actual),
        ("Model", f"{finding.model.status.value}: {finding.model.detail}" if finding.model else ""),
        (
            "Probe",
            f"{finding.empirical.status.value}: {finding.empirical.detail}"
            if finding.empirical
            else "",
        ),
        ("Disagreement", finding.disagreement or ""),
    ):
        if value:
            lines.append(f"{label}: {value}")
    if finding.path:
        hops = "; ".join(
            f"{h.host} {h.direction}{' ' + h.network if h.network else ''}: {h.rule or '?'}"
            for h in finding.path
        )
        lines.append(f"Path: {hops}")
    return "\n\n".join(lines)


def _related_observations(run: StoredRun, finding: Finding) -> list[dict[str, str]]:
    cited = set(finding.evidence) | {ref for hop in finding.path for ref in hop.evidence}
    uuids = []
    for record in run.artifacts:
        if record.ref in cited:
            uuids.append({"observation-uuid": observation_uuid(run.run_id, record)})
    return uuids


def _resources(run: StoredRun) -> list[dict[str, Any]]:
    run_id = run.run_id
    resources = [
        _file_resource(
            run, "inventory", "Inventory: authorized scope, networks, hosts", INVENTORY_COPY
        ),
        _file_resource(run, "findings", "Findings of the run (findings.json)", FINDINGS_FILE),
        _file_resource(
            run, "manifest", "Evidence manifest (hash chain summary)", "evidence/manifest.json"
        ),
    ]
    for resource in resources:
        resource.setdefault("props", [_prop("run-id", run_id)])
    return resources


def _file_resource(run: StoredRun, key: str, title: str, rel: str) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "uuid": stable_uuid(run.run_id, "resource", key),
        "title": title,
    }
    path = run.run_dir / rel
    if path.is_file():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        resource["rlinks"] = [{"href": rel, "hashes": [{"algorithm": "SHA-256", "value": digest}]}]
    else:
        resource["remarks"] = f"{rel} is not in the run folder"
    return resource


def referenced_hashes(document: dict[str, Any]) -> set[str]:
    """Every artifact hash the observations' relevant evidence names (for tests and checks)."""
    found: set[str] = set()
    for result in document["assessment-results"]["results"]:
        for observation in result.get("observations", []):
            for evidence in observation.get("relevant-evidence", []):
                found.add(parse_ref("sha256:" + evidence["href"].rsplit("/", 1)[-1]))
    return found


def write_oscal(run: StoredRun) -> Path:
    path = run.run_dir / OSCAL_FILE
    payload = json.dumps(build_assessment_results(run), ensure_ascii=False, indent=2)
    write_text_atomically(path, payload + "\n", refuse_link=True)  # 0600, see html.py
    return path
