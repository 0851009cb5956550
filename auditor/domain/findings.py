"""The findings model: one verdict per (control, subject), with what it rests on.

findings.json is a contract (docs/architecture.md): fields may be added, none removed.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from auditor.domain.files import write_text_atomically


class Status(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    NOT_APPLICABLE = "not-applicable"


#: Where on a host a hop was decided: a hook, the routing decision, or delivery on a segment.
HopDirection = Literal["output", "forward", "input", "route", "link"]


class Hop(BaseModel):
    """One step of a path: the host a packet passes or reaches and the rule that let it."""

    model_config = ConfigDict(extra="forbid")

    host: str
    network: str | None = None  #: the network the packet arrives from or leaves to
    direction: HopDirection
    rule: str | None = None  #: the rule text that decided (or "policy accept")
    rule_ref: str | None = None  #: table/chain/handle of that rule
    evidence: list[str] = Field(default_factory=list)


class Judgement(BaseModel):
    """What one source of truth (the model or an empirical probe) says."""

    model_config = ConfigDict(extra="forbid")

    status: Status
    detail: str


class Finding(BaseModel):
    model_config = ConfigDict(extra="forbid")

    control: str
    subject: str
    status: Status
    clauses: list[str]
    summary: str  #: English
    summary_ja: str
    expected: str = ""
    actual: str = ""
    reason: str | None = None  #: why, when inconclusive
    model: Judgement | None = None
    empirical: Judgement | None = None
    disagreement: str | None = None
    path: list[Hop] = Field(default_factory=list)
    evidence: list[str] = Field(default_factory=list)  #: "sha256:<hex>" of every artifact used


class RunInfo(BaseModel):
    id: str
    started: str
    finished: str | None = None
    inventory: str | None = None
    tool_version: str | None = None
    phases: dict[str, float] = Field(default_factory=dict)  #: seconds per phase


class FindingsDocument(BaseModel):
    run: RunInfo
    findings: list[Finding]


def write_findings(path: Path, document: FindingsDocument) -> None:
    payload = json.dumps(document.model_dump(mode="json"), ensure_ascii=False, indent=2)
    write_text_atomically(path, payload + "\n", mode=0o600)


def read_findings(path: Path) -> FindingsDocument:
    return FindingsDocument.model_validate_json(path.read_text(encoding="utf-8"))
