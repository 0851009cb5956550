"""A stored run judged again under proposed changes, without probing (``auditor whatif``).

The model is rebuilt from the run's inventory and collected facts with the changes applied
(auditor.analysis.changes), and every control is judged on it. Nothing was measured for the
change, so no probe result may stand in a verdict as if it had been:

- the run's empirical observations (egress tests, scans, link captures, neighbour sweeps) are
  removed before judging, so none is mixed into a verdict;
- a finding with a model side takes the model's status; its probe side says "not measured for
  this change (what-if on run RUN)", with no disagreement;
- a finding judged on host facts alone (neither side) is what the check gives on the changed
  facts;
- a probe-only finding (inventory-complete) cannot be judged by a model: the run's verdict is
  carried, its probe detail prefixed "measured in run RUN, not for this change: ";
- a down host's own findings are not-applicable: a host that is absent holds nothing to judge
  (what it did to the others' paths is in their findings).

The output folder holds findings.json, facts.json and observations.json of the changed model
(so ``auditor report`` and ``auditor query`` read it as a run), the inventory copy, the
reports and whatif.json, the changes applied. Links and hosts taken down are not facts: they
are in whatif.json only, and a later re-judging of the folder's observations alone does not
see them.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from auditor.analysis.changes import (
    Change,
    apply_to_collection,
    apply_to_topology,
    check_names,
    describe,
    down_hosts,
    down_segments,
)
from auditor.analysis.stored import FINDINGS_FILE, INVENTORY_COPY, StoredModel, load_stored_model
from auditor.audit.orchestrator import write_facts
from auditor.domain.errors import AuditorError
from auditor.domain.files import (
    UnsafePathError,
    check_output_dir,
    write_bytes_atomically,
    write_text_atomically,
)
from auditor.domain.findings import (
    Finding,
    FindingsDocument,
    Hop,
    Judgement,
    RunInfo,
    Status,
    WaiverWarning,
    write_findings,
)
from auditor.domain.waivers import WAIVERS_COPY, LoadedWaivers, apply_waivers
from auditor.report import render_reports
from policies.context import AuditContext
from policies.model import load_controls
from policies.registry import evaluate_all
from policies.snapshot import OBSERVATIONS_FILE, Observations, restore_context, write_observations

WHATIF_FILE = "whatif.json"
WHATIF_FORMAT = "anon-infra-auditor-whatif/1"
CARRIED_PREFIX = "measured in run {run}, not for this change: "
NOT_MEASURED = "not measured for this change (what-if on run {run})"


class WhatifError(AuditorError):
    """The what-if cannot run: the output folder, the stored run or a change (named)."""


@dataclass(frozen=True)
class VerdictChange:
    """A (control, subject) whose verdict or path differs from the stored run's."""

    control: str
    subject: str
    old: str  #: the stored status, or "absent"
    new: str
    new_path: tuple[str, ...] = ()  #: the what-if's path, when it differs from the stored one
    vanished_path: tuple[str, ...] = ()  #: the stored path, when the what-if's differs


@dataclass
class WhatifResult:
    out_dir: Path
    run_id: str  #: the what-if's own id
    stored_run_id: str
    findings: list[Finding]
    changed: list[VerdictChange] = field(default_factory=list)
    reports: list[Path] = field(default_factory=list)
    #: the problems of the waivers file applied; None when no waivers file was given
    waiver_warnings: list[WaiverWarning] | None = None


def run_whatif(
    run_dir: Path,
    out_dir: Path,
    changes: Sequence[Change],
    waivers: LoadedWaivers | None = None,
    today: date | None = None,
) -> WhatifResult:
    """Judge the run in ``run_dir`` under ``changes`` and write the result into ``out_dir``.

    With ``waivers``, they are applied to the what-if's findings on ``today`` (default: the
    local date) as ``auditor audit`` applies them, and the file is kept in ``out_dir`` as its
    waivers copy (docs/waivers.md)."""
    _check_out_dir(out_dir)
    stored = load_stored_model(run_dir)
    check_names(stored.inventory, changes)
    stored_id = stored_run_id(stored)
    ctx = changed_context(stored, changes)
    findings = rejudge(ctx, stored, changes, stored_id)
    result = WhatifResult(out_dir, _new_id(stored_id), stored_id, findings)
    if waivers is not None:
        outcome = apply_waivers(
            findings, waivers.waivers, today=today or date.today(), controls=load_controls()
        )
        result.findings, result.waiver_warnings = outcome.findings, outcome.warnings
    result.changed = verdict_changes(stored, result.findings)
    _write(result, stored, ctx, changes, waivers)
    return result


def _check_out_dir(out_dir: Path) -> None:
    try:
        check_output_dir(out_dir, {WHATIF_FILE})
    except UnsafePathError as exc:
        raise WhatifError(f"{exc} (an earlier what-if holds {WHATIF_FILE})") from exc


def stored_run_id(stored: StoredModel) -> str:
    """The run's own id, or its folder's name when it keeps no findings (a recording)."""
    return stored.findings.run.id if stored.findings is not None else stored.run_dir.name


def _new_id(stored_id: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stored_id}.whatif-{stamp}-{secrets.token_hex(3)}"


def changed_context(stored: StoredModel, changes: Sequence[Change]) -> AuditContext:
    """The run's context with the changes applied and no empirical observation."""
    collection = apply_to_collection(stored.observations.collection, changes)
    ctx = restore_context(stored.inventory, Observations(collection=collection))
    if ctx.topology is not None:
        ctx.topology = apply_to_topology(
            ctx.topology, down_segments(stored.inventory, changes), down_hosts(changes)
        )
    return ctx


def rejudge(
    ctx: AuditContext, stored: StoredModel, changes: Sequence[Change], stored_id: str
) -> list[Finding]:
    """Every control judged on the changed context, each finding's sides set as the module
    docstring says."""
    down = down_hosts(changes)
    before = _by_key(stored.findings.findings if stored.findings is not None else [])
    findings = []
    for finding in evaluate_all(ctx):
        earlier = before.get(_key(finding))
        if finding.subject in down:
            findings.append(_host_down(finding, stored_id))
        elif finding.model is not None:
            findings.append(_model_verdict(finding, finding.model, stored_id))
        elif _probe_only(earlier) or finding.empirical is not None:
            findings.append(_carried(finding, earlier, stored_id))
        else:
            findings.append(finding)
    return findings


def _probe_only(finding: Finding | None) -> bool:
    """Judged by a probe alone in the run. (Judged again without the run's observations,
    such a check has no side at all, so the run's finding is what tells it apart from one
    judged on host facts.)"""
    return finding is not None and finding.model is None and finding.empirical is not None


def _model_verdict(finding: Finding, model: Judgement, stored_id: str) -> Finding:
    not_measured = NOT_MEASURED.format(run=stored_id)
    update: dict[str, object] = {
        "status": model.status,
        "empirical": Judgement(status=Status.INCONCLUSIVE, detail=not_measured),
        "disagreement": None,
        "reason": model.detail if model.status is Status.INCONCLUSIVE else None,
        "actual": f"model: {model.detail} | probe: {not_measured}",
    }
    if finding.status is not model.status:
        # The check's sentences describe its combined verdict (a missing probe made it
        # inconclusive): they would contradict the model's status shown beside them.
        update["summary"] = f"the model says {model.status}: {model.detail}"
        update["summary_ja"] = f"モデルの判定は {model.status}: {model.detail}"
    return finding.model_copy(update=update)


def _carried(finding: Finding, stored: Finding | None, stored_id: str) -> Finding:
    if stored is None or stored.empirical is None:
        # Nothing was measured for this subject in the run either: the check's own
        # inconclusive verdict, saying so.
        not_measured = NOT_MEASURED.format(run=stored_id)
        return finding.model_copy(
            update={
                "status": Status.INCONCLUSIVE,
                "empirical": Judgement(status=Status.INCONCLUSIVE, detail=not_measured),
                "reason": not_measured,
            }
        )
    prefix = CARRIED_PREFIX.format(run=stored_id)
    empirical = stored.empirical.model_copy(update={"detail": prefix + stored.empirical.detail})
    # The run's waiver is not carried: only the waivers given to the what-if apply to it.
    return stored.model_copy(update={"empirical": empirical, "waiver": None})


def _host_down(finding: Finding, stored_id: str) -> Finding:
    en = (
        f"{finding.subject} is down in this what-if (on run {stored_id}): it holds nothing to judge"
    )
    ja = f"{finding.subject} はこの what-if（実行 {stored_id}）で停止している: 判定の対象がない"
    return finding.model_copy(
        update={
            "status": Status.NOT_APPLICABLE,
            "summary": en,
            "summary_ja": ja,
            "actual": en,
            "reason": None,
            "model": None,
            "empirical": None,
            "disagreement": None,
            "path": [],
        }
    )


def _key(finding: Finding) -> tuple[str, str]:
    return finding.control, finding.subject


def _by_key(findings: Sequence[Finding]) -> dict[tuple[str, str], Finding]:
    return {_key(f): f for f in findings}


def hop_texts(path: Sequence[Hop]) -> tuple[str, ...]:
    """A finding's path, one ``host(direction network: rule)`` per hop."""
    return tuple(_hop_text(hop) for hop in path)


def _hop_text(hop: Hop) -> str:
    where = f"{hop.direction} {hop.network}" if hop.network else hop.direction
    return f"{hop.host}({where}: {hop.rule})" if hop.rule else f"{hop.host}({where})"


def verdict_changes(stored: StoredModel, findings: Sequence[Finding]) -> list[VerdictChange]:
    """What differs from the stored run, (control, subject) by (control, subject)."""
    before = _by_key(stored.findings.findings if stored.findings is not None else [])
    changed = []
    for finding in sorted(findings, key=_key):
        old = before.get(_key(finding))
        old_status = str(old.status) if old is not None else "absent"
        old_path = hop_texts(old.path) if old is not None else ()
        new_path = hop_texts(finding.path)
        if old_status == str(finding.status) and old_path == new_path:
            continue
        differ = old_path != new_path
        changed.append(
            VerdictChange(
                finding.control,
                finding.subject,
                old_status,
                str(finding.status),
                new_path=new_path if differ else (),
                vanished_path=old_path if differ else (),
            )
        )
    return changed


def command_line(change: Change) -> str:
    """The change as it is written on the command line: ``--route recv-srv=…``."""
    described = describe(change)
    return f"--{described['kind']} {described['spec']}"


def _write(
    result: WhatifResult,
    stored: StoredModel,
    ctx: AuditContext,
    changes: Sequence[Change],
    waivers: LoadedWaivers | None,
) -> None:
    out = result.out_dir
    out.mkdir(parents=True, exist_ok=True)
    inventory_copy = out / INVENTORY_COPY
    source = stored.run_dir / INVENTORY_COPY
    write_text_atomically(inventory_copy, source.read_text(encoding="utf-8"), mode=0o600)
    _keep_waivers(out, waivers)
    now = datetime.now(UTC).isoformat()
    info = RunInfo(
        id=result.run_id,
        started=now,
        finished=now,
        inventory=str(inventory_copy),
        whatif_of=result.stored_run_id,
        changes=[command_line(c) for c in changes],
    )
    document = FindingsDocument(
        run=info, findings=result.findings, waiver_warnings=result.waiver_warnings
    )
    write_findings(out / FINDINGS_FILE, document)
    write_facts(out / "facts.json", ctx)
    write_observations(out / OBSERVATIONS_FILE, ctx)
    write_text_atomically(out / WHATIF_FILE, _whatif_json(result, stored, changes), mode=0o600)
    result.reports = render_reports(out, inventory_path=inventory_copy)


def _keep_waivers(out: Path, waivers: LoadedWaivers | None) -> None:
    """The exact waivers applied, beside the findings they changed; none left over from an
    earlier what-if written into the same folder, which would claim waivers not applied."""
    copy = out / WAIVERS_COPY
    if waivers is not None:
        write_bytes_atomically(copy, waivers.content, refuse_link=True)
        return
    copy.unlink(missing_ok=True)  # a link there is removed, never followed


def _whatif_json(result: WhatifResult, stored: StoredModel, changes: Sequence[Change]) -> str:
    document = {
        "format": WHATIF_FORMAT,
        "id": result.run_id,
        "of_run": result.stored_run_id,
        "run_dir": str(stored.run_dir),
        "changes": [describe(c) for c in changes],
        "changed_verdicts": [
            {
                "control": c.control,
                "subject": c.subject,
                "old": c.old,
                "new": c.new,
                "new_path": list(c.new_path),
                "vanished_path": list(c.vanished_path),
            }
            for c in result.changed
        ],
    }
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"
