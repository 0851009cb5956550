"""Shared pieces of the checks: subjects, outcomes, and how model and probe verdicts combine."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from auditor.domain.facts import HostFacts
from auditor.domain.findings import Defence, Finding, Hop, Judgement, Status
from auditor.domain.inventory import Role
from policies.context import AuditContext
from policies.model import Control, load_framework

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """A check's verdict for one subject, before it becomes a Finding."""

    status: Status
    en: str
    ja: str
    expected: str = ""
    actual: str = ""
    reason: str | None = None
    model: Judgement | None = None
    empirical: Judgement | None = None
    disagreement: str | None = None
    path: list[Hop] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    #: for a model-side pass of a no-path control, the rules holding it (docs/controls.md)
    defence: Defence | None = None


def inconclusive(en: str, ja: str, evidence: Iterable[str] = (), **extra: object) -> Outcome:
    """No verdict could be reached; ``en`` is also the reason shown to the auditor."""
    outcome = Outcome(Status.INCONCLUSIVE, en, ja, reason=en, evidence=list(evidence))
    for key, value in extra.items():
        setattr(outcome, key, value)
    return outcome


def facts_or_inconclusive(
    ctx: AuditContext, host: str, en: str, ja: str, *, with_evidence: bool = False
) -> HostFacts | Outcome:
    """The host's collected facts, or the inconclusive outcome saying why there are none:
    ``en``/``ja`` say what cannot be judged ("cannot judge X's logging"), the collection's
    problem follows. ``with_evidence``: the failed attempt's artifacts go with it."""
    facts = ctx.facts(host)
    if facts is not None:
        return facts
    problem = ctx.collection_problem(host)
    attempt = ctx.collection.get(host) if with_evidence else None
    evidence = attempt.evidence if attempt is not None else ()
    return inconclusive(f"{en}: {problem}", f"{ja}: {problem}", evidence=evidence)


def to_finding(control: Control, subject: str, outcome: Outcome) -> Finding:
    return Finding(
        control=control.id,
        subject=subject,
        status=outcome.status,
        clauses=control.clause_refs(load_framework()),
        summary=outcome.en,
        summary_ja=outcome.ja,
        expected=outcome.expected,
        actual=outcome.actual,
        reason=outcome.reason,
        model=outcome.model,
        empirical=outcome.empirical,
        disagreement=outcome.disagreement,
        path=outcome.path,
        evidence=sorted(set(outcome.evidence)),
        defence=outcome.defence,
    )


def subjects_of(ctx: AuditContext, control: Control) -> list[str]:
    """The inventory items a control is judged for, by its ``subjects`` selector."""
    selector = control.subjects
    inventory = ctx.inventory
    if selector.role is not None:
        return inventory.hosts_with(Role(selector.role))
    if selector.zone is not None:
        return inventory.networks_in(selector.zone)
    if selector.organisation:
        return inventory.organisation_hosts()
    if selector.external_link:
        return [h for h in inventory.organisation_hosts() if ctx.outside_parties(h)]
    raise ValueError(f"{control.id}: no subject selector")


def not_applicable(control: Control) -> Finding:
    """The one finding of a control whose subjects the inventory does not have (no receiving
    server, no host with an outside party, ...): said, never silently left out of the report.
    Its subject names what is absent."""
    what_en, what_ja = _absent_subjects(control)
    outcome = Outcome(
        Status.NOT_APPLICABLE,
        f"not applicable: the inventory has no {what_en}",
        f"対象外: インベントリに{what_ja}がない",
    )
    return to_finding(control, f"(no {what_en})", outcome)


def _absent_subjects(control: Control) -> tuple[str, str]:
    selector = control.subjects
    if selector.role is not None:
        return f"{selector.role} host", f"役割 {selector.role} のホスト"
    if selector.zone is not None:
        return f"{selector.zone} network", f"{selector.zone} ゾーンのネットワーク"
    if selector.external_link:
        return "host linked to an outside party", "外部の相手と接続するホスト"
    return "organisation host", "組織のホスト"


def judge_each(
    ctx: AuditContext, control: Control, judge: Callable[[str], Outcome]
) -> list[Finding]:
    """Judge every subject; a check that raises yields an inconclusive finding, never a crash."""
    findings = []
    for subject in subjects_of(ctx, control):
        try:
            outcome = judge(subject)
        except Exception as exc:  # a bug in one check must not lose the rest of the audit
            log.exception("check %s failed on %s", control.id, subject)
            outcome = inconclusive(
                f"internal error while judging: {type(exc).__name__}: {exc}",
                f"判定中に内部エラーが発生した: {type(exc).__name__}: {exc}",
            )
        findings.append(to_finding(control, subject, outcome))
    return findings


def combine(model: Judgement | None, empirical: Judgement | None) -> tuple[Status, str | None]:
    """Model and probe together: a fail from either fails; a pass needs both to pass.

    Returns the status and, when the two disagree, a sentence saying so.
    """
    statuses = [j.status if j is not None else Status.INCONCLUSIVE for j in (model, empirical)]
    disagreement = None
    if Status.PASS in statuses and Status.FAIL in statuses:
        assert model is not None and empirical is not None
        disagreement = (
            f"the model says {model.status} ({model.detail}) but the probe says "
            f"{empirical.status} ({empirical.detail})"
        )
    if Status.FAIL in statuses:
        return Status.FAIL, disagreement
    if all(s is Status.PASS for s in statuses):
        return Status.PASS, disagreement
    return Status.INCONCLUSIVE, disagreement


def missing_parts(model: Judgement | None, empirical: Judgement | None) -> str:
    """Which side kept a combined verdict from passing (for the inconclusive reason)."""
    parts = []
    if model is None or model.status is Status.INCONCLUSIVE:
        parts.append("model: " + (model.detail if model else "not built"))
    if empirical is None or empirical.status is Status.INCONCLUSIVE:
        parts.append("probe: " + (empirical.detail if empirical else "not run"))
    return "; ".join(parts)
