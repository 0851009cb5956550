"""Drift: the verdicts that changed between two finished runs, and the drift log.

A change is keyed by (control, subject). A pair that appears or disappears (a host added to the
inventory, a control that no longer applies) is a change too, from or to ``null``: an auditor
wants to know that a verdict stopped being reported as much as that it flipped.

``drift.jsonl`` holds one JSON object a line. Each run's changes are appended in one ``write``
on a file opened with O_APPEND and fsynced, and the run's marker says when they are in; so a
crash never leaves a run's changes half-written without the next run noticing (it re-checks
the log for the run's id before appending, see ``already_recorded``). The log is created 0600
(it names hosts and their weaknesses) and is never opened through a symlink: a link planted at
its name is refused, not appended to.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from auditor.domain.files import PRIVATE, append_bytes, read_text_nofollow
from auditor.domain.findings import Finding, FindingsDocument, Status


class Change(BaseModel):
    """One verdict change, as written to drift.jsonl."""

    model_config = ConfigDict(populate_by_name=True)

    control: str
    subject: str
    from_: Status | None = Field(validation_alias="from", serialization_alias="from")
    to: Status | None
    run: str  #: the run that saw the new verdict (a folder name under runs/)
    previous_run: str  #: the finished run it was compared with
    at: datetime  #: when the new verdict was established (the run's end)
    summary: str = ""  #: the new finding's summary (or the old one's, when it disappeared)
    clauses: list[str] = Field(default_factory=list)

    def line(self) -> str:
        return json.dumps(self.model_dump(mode="json", by_alias=True), ensure_ascii=False)

    def describe(self) -> str:
        return f"{self.control} {self.subject}: {self.from_ or 'absent'} -> {self.to or 'absent'}"


def _by_key(document: FindingsDocument) -> dict[tuple[str, str], Finding]:
    return {(f.control, f.subject): f for f in document.findings}


def compute_changes(
    previous: FindingsDocument,
    current: FindingsDocument,
    *,
    run: str,
    previous_run: str,
    at: datetime,
) -> list[Change]:
    """Every (control, subject) whose status differs between the two documents, sorted."""
    before, after = _by_key(previous), _by_key(current)
    changes = []
    for key in sorted(before.keys() | after.keys()):
        old, new = before.get(key), after.get(key)
        old_status = old.status if old else None
        new_status = new.status if new else None
        if old_status == new_status:
            continue
        shown = new or old
        assert shown is not None  # the key came from one of the two
        changes.append(
            Change(
                control=key[0],
                subject=key[1],
                from_=old_status,
                to=new_status,
                run=run,
                previous_run=previous_run,
                at=at,
                summary=shown.summary,
                clauses=list(shown.clauses),
            )
        )
    return changes


def append_changes(path: Path, changes: list[Change]) -> None:
    """Append a run's changes in a single write, then fsync (see the module docstring)."""
    if not changes:
        return
    payload = "".join(c.line() + "\n" for c in changes).encode("utf-8")
    append_bytes(path, payload, mode=PRIVATE)


def read_changes(path: Path) -> list[Change]:
    """The drift log; a torn last line (a crash mid-write on a full disk) is skipped."""
    try:
        text = read_text_nofollow(path)
    except FileNotFoundError:
        return []
    changes = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            changes.append(Change.model_validate_json(line))
        except ValueError:
            continue
    return changes


def already_recorded(path: Path, run: str) -> bool:
    return any(c.run == run for c in read_changes(path))
