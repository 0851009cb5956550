"""A criterion of a host control: met, not met or unknown, with the lines that decided it."""

from __future__ import annotations

from dataclasses import dataclass, field

from auditor.domain.facts import HostFacts
from auditor.domain.findings import Status
from policies.model import Control
from policies.support.common import Outcome


@dataclass(frozen=True)
class Line:
    where: str  #: "file:line", or "`command` line N"
    text: str

    def __str__(self) -> str:
        return f"{self.where}: {self.text.strip()}"


@dataclass
class Criterion:
    name: str
    holds: bool | None
    detail: str
    lines: list[Line] = field(default_factory=list)

    def describe(self) -> str:
        mark = {True: "met", False: "NOT met", None: "unknown"}[self.holds]
        decided = "; ".join(str(x) for x in self.lines[:4])
        return f"{self.name}: {mark}: {self.detail}" + (f" [{decided}]" if decided else "")


def any_of(name: str, routes: list[Criterion]) -> Criterion:
    """Met when one route is met (its detail and lines decide); otherwise unknown when one
    route is unknown, else not met; then every route's detail and lines are shown."""
    met = [r for r in routes if r.holds]
    if met:
        return Criterion(name, True, met[0].detail, met[0].lines)
    holds = None if any(r.holds is None for r in routes) else False
    detail = "; ".join(f"{r.name}: {r.detail}" for r in routes)
    return Criterion(name, holds, detail, [x for r in routes for x in r.lines])


@dataclass(frozen=True)
class CriteriaWording:
    """How a host control names itself in its verdicts; the criteria fill in the rest."""

    topic_ja: str  #: "認証強化": "... は認証強化の基準を満たさない"
    passed_en: str  #: "hardens its logins": "HOST hardens its logins: <details>"
    passed_ja: str  #: "はログインの認証を強化している": "HOST はログイン... (全基準を満たす)"


def evidence_of(facts: HostFacts, prefixes: tuple[str, ...]) -> list[str]:
    """The artifacts of the facts a check read (their keys start with one of ``prefixes``)."""
    return [ref for key, ref in facts.evidence.items() if key.startswith(prefixes)]


def criteria_outcome(
    control: Control,
    host: str,
    criteria: list[Criterion],
    wording: CriteriaWording,
    evidence: list[str],
) -> Outcome:
    """Every criterion must be met: a fail names the ones not met, an inconclusive the ones
    unknown (never a pass while one is unknown); ``actual`` quotes every criterion's lines."""
    failing = [c for c in criteria if c.holds is False]
    unknown = [c for c in criteria if c.holds is None]
    if failing:
        status, names = Status.FAIL, ", ".join(c.name for c in failing)
        en = f"{host} does not meet: {names} ({'; '.join(c.detail for c in failing)})"
        ja = f"{host} は{wording.topic_ja}の基準を満たさない: {names}"
    elif unknown:
        status, names = Status.INCONCLUSIVE, ", ".join(c.name for c in unknown)
        en = f"cannot tell whether {host} meets: {names} ({'; '.join(c.detail for c in unknown)})"
        ja = f"{host} の{wording.topic_ja}の基準 {names} を判定できない"
    else:
        status = Status.PASS
        en = f"{host} {wording.passed_en}: " + "; ".join(c.detail for c in criteria)
        ja = f"{host} {wording.passed_ja}(全基準を満たす)"
    return Outcome(
        status,
        en,
        ja,
        expected=control.criteria.en,
        actual=" | ".join(c.describe() for c in criteria),
        reason=en if status is Status.INCONCLUSIVE else None,
        evidence=evidence,
    )
