"""Waivers: a failing control accepted for a while, by a named approver, for a stated reason.

A waivers file (docs/waivers.md) lists entries of control, subject, justification, approver and
the last day in force, optionally with the finding text it accepts. Applying it never changes a
verdict: a fail it accepts stays a fail and carries the waiver, and the exit code and summaries
count it apart. It never touches a pass, an inconclusive or a not-applicable finding: a waiver
accepts a known deviation, it cannot stand in for evidence that is missing. Every problem of
the file (an expired entry, one that accepts nothing, an unknown control or subject) is a
warning that is returned, printed and recorded, never silently dropped.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from auditor.domain.findings import (
    AppliedWaiver,
    Finding,
    Status,
    WaiverWarning,
    WaiverWarningKind,
)
from auditor.domain.yamlsource import LocatedDocument, SourceError, load_located, validate_document

#: The copy of the waivers file kept in a run folder and sealed with its other files.
WAIVERS_COPY = "waivers.yaml"

_Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class Waiver(BaseModel):
    """One entry of the waivers file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    control: _Text
    subject: _Text
    justification: _Text
    approved_by: _Text
    expires: date  #: the last day the waiver is in force
    #: when given, the waiver accepts only a finding whose summary (English or Japanese) is
    #: this text: a fail that changed its nature is not accepted by a waiver of the old one
    finding: _Text | None = None

    @field_validator("expires", mode="before")
    @classmethod
    def _a_calendar_day(cls, value: Any) -> Any:
        # pydantic alone would take a number of seconds since 1970 or a time of day as a date.
        if isinstance(value, datetime):
            raise ValueError("expires must be a day (YYYY-MM-DD), without a time")
        if isinstance(value, date):
            return value
        if isinstance(value, str) and _ISO_DATE.fullmatch(value.strip()):
            return value.strip()
        raise ValueError("expires must be a day written YYYY-MM-DD")

    def in_force_on(self, today: date) -> bool:
        return today <= self.expires

    def accepts_text_of(self, finding: Finding) -> bool:
        if self.finding is None:
            return True
        wanted = _flat(self.finding)
        return wanted in (_flat(finding.summary), _flat(finding.summary_ja))

    def applied(self, in_force: bool) -> AppliedWaiver:
        return AppliedWaiver(
            justification=self.justification,
            approved_by=self.approved_by,
            expires=self.expires,
            finding=self.finding,
            in_force=in_force,
        )


def _flat(text: str) -> str:
    return " ".join(text.split())


class WaiverFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    waivers: list[Waiver] = Field(default_factory=list)


@dataclass(frozen=True)
class LoadedWaivers:
    """A validated waivers file and the exact bytes it was read from (copied into the run)."""

    path: Path
    content: bytes
    waivers: list[Waiver]


def load_waivers(path: Path) -> LoadedWaivers:
    """Read and validate a waivers file. Raises SourceError naming file:line:column of each
    problem, like the inventory."""
    try:
        before = path.read_bytes()
    except OSError as exc:
        raise SourceError(path, [f"{path}: cannot read: {exc.strerror or exc}"]) from exc
    document = load_located(path)
    parsed = validate_document(document, WaiverFile)
    _refuse_duplicates(document, parsed.waivers)
    # The copy sealed into the run must be the text that was applied, not a later edit.
    if path.read_bytes() != before:
        raise SourceError(path, [f"{path}: changed while it was being read; try again"])
    return LoadedWaivers(path=path, content=before, waivers=parsed.waivers)


def _refuse_duplicates(document: LocatedDocument, waivers: Sequence[Waiver]) -> None:
    # One finding per (control, subject): a second entry could only contradict the first.
    first: dict[tuple[str, str], int] = {}
    problems = []
    for index, waiver in enumerate(waivers):
        key = (waiver.control, waiver.subject)
        if key in first:
            earlier = document.where(("waivers", first[key]))
            problems.append(
                f"{document.where(('waivers', index))}: waivers.{index}: a second waiver for "
                f"{waiver.control} on {waiver.subject} (the first is at {earlier})"
            )
        else:
            first[key] = index
    if problems:
        raise SourceError(document.path, problems)


@dataclass(frozen=True)
class WaiverOutcome:
    findings: list[Finding]
    warnings: list[WaiverWarning]


def apply_waivers(
    findings: Sequence[Finding],
    waivers: Sequence[Waiver],
    *,
    today: date,
    controls: Collection[str],
) -> WaiverOutcome:
    """The findings with each accepted fail carrying its waiver, and the warnings of the file.

    ``controls`` are the ids of the controls that exist (policies.model.load_controls); the
    subjects a control has are those it was judged for in ``findings`` (one finding per control
    and subject of the inventory). Waivers the findings carry already are replaced, so a stored
    run can be waived again. Pure: nothing is read or written.
    """
    by_key = {(w.control, w.subject): w for w in waivers}
    waived = [
        _waive(finding, by_key.get((finding.control, finding.subject)), today)
        for finding in findings
    ]
    subjects = _subjects_by_control(findings, controls)
    warnings = [
        warning for waiver in waivers for warning in _warnings_for(waiver, waived, subjects, today)
    ]
    return WaiverOutcome(findings=waived, warnings=warnings)


def _waive(finding: Finding, waiver: Waiver | None, today: date) -> Finding:
    applies = (
        waiver is not None and finding.status is Status.FAIL and waiver.accepts_text_of(finding)
    )
    carried = waiver.applied(waiver.in_force_on(today)) if waiver is not None and applies else None
    if carried == finding.waiver:
        return finding
    return finding.model_copy(update={"waiver": carried})


def _subjects_by_control(
    findings: Sequence[Finding], controls: Collection[str]
) -> dict[str, set[str]]:
    subjects: dict[str, set[str]] = {control: set() for control in controls}
    for finding in findings:
        # A not-applicable finding's subject names what the inventory lacks: not a subject.
        if finding.control in subjects and finding.status is not Status.NOT_APPLICABLE:
            subjects[finding.control].add(finding.subject)
    return subjects


def _warnings_for(
    waiver: Waiver, findings: Sequence[Finding], subjects: dict[str, set[str]], today: date
) -> list[WaiverWarning]:
    def warning(kind: WaiverWarningKind, message: str) -> WaiverWarning:
        return WaiverWarning(
            kind=kind, control=waiver.control, subject=waiver.subject, message=message
        )

    if waiver.control not in subjects:
        return [warning("unknown-control", f"no control is named {waiver.control!r}")]
    if waiver.subject not in subjects[waiver.control]:
        known = ", ".join(sorted(subjects[waiver.control])) or "none in this inventory"
        return [
            warning(
                "unknown-subject",
                f"{waiver.subject!r} is not a subject of {waiver.control} (its subjects: {known})",
            )
        ]
    found: list[WaiverWarning] = []
    if not waiver.in_force_on(today):
        found.append(
            warning(
                "expired",
                f"expired on {waiver.expires.isoformat()} (approved by {waiver.approved_by}): "
                "it no longer waives anything",
            )
        )
    finding = next(
        (f for f in findings if (f.control, f.subject) == (waiver.control, waiver.subject)), None
    )
    if finding is not None and finding.waiver is None:
        found.append(warning("unmatched", _why_unmatched(waiver, finding)))
    return found


def _why_unmatched(waiver: Waiver, finding: Finding) -> str:
    if finding.status is not Status.FAIL:
        return (
            f"{waiver.control} on {waiver.subject} is {finding.status.value}: "
            "a waiver applies only to a fail"
        )
    return (
        f"the finding text it accepts does not match the fail of {waiver.control} on "
        f"{waiver.subject}: {_flat(finding.summary)!r}"
    )


def waived(finding: Finding) -> bool:
    """A fail accepted by a waiver in force: still a fail, but not one the exit code counts."""
    return finding.status is Status.FAIL and finding.waiver is not None and finding.waiver.in_force


def unwaived_fail(finding: Finding) -> bool:
    return finding.status is Status.FAIL and not waived(finding)
