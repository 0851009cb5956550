"""The findings model: one verdict per (control, subject), with what it rests on.

findings.json is a contract (ARCHITECTURE.md): fields may be added, none removed.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Status(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    NOT_APPLICABLE = "not-applicable"


class Hop(BaseModel):
    """One step of a path: the host a packet passes or reaches and the rule that let it."""

    model_config = ConfigDict(extra="forbid")

    host: str
    network: str | None = None  #: the network the packet arrives from or leaves to
    direction: str  #: "output", "forward", "input", "route" or "link"
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
