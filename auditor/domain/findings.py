"""The findings model: one verdict per (control, subject), with what it rests on.

findings.json is a contract (docs/architecture.md): fields may be added, none removed.
"""

from __future__ import annotations

import json
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

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


class Protection(BaseModel):
    """One rule (or a base chain's drop policy) whose removal alone would open a path that a
    passing no-path control forbids: a single point of protection."""

    model_config = ConfigDict(extra="forbid")

    host: str
    rule: str  #: the rule text, or "policy drop"
    rule_ref: str  #: table/chain/handle, or "table/chain policy"
    opens: str = ""  #: what would get through without it (packet classes, one line)


class Defence(BaseModel):
    """How many independent layers hold a passing no-path control (see docs/controls.md):
    ``single`` when removing one rule alone would open a path (listed in ``single_points``),
    ``layered`` when no single removal does, ``unknown`` when it could not be decided."""

    model_config = ConfigDict(extra="forbid")

    depth: Literal["single", "layered", "unknown"]
    single_points: list[Protection] = Field(default_factory=list)
    examined: int = 0  #: rules and policies whose removal was tried
    note: str = ""  #: why unknown, or what was not examined


class AppliedWaiver(BaseModel):
    """The waiver a failing finding carries (docs/waivers.md): the entry of the waivers file that
    accepts it, less the control and subject it shares with the finding, and whether it was in
    force on the day it was applied. An expired one is kept, to show it expired, and waives
    nothing: the fail counts again."""

    model_config = ConfigDict(extra="forbid")

    justification: str
    approved_by: str
    expires: date  #: the last day it is in force
    finding: str | None = None  #: the finding text it accepts, when the entry names one
    in_force: bool


WaiverWarningKind = Literal["expired", "unmatched", "unknown-control", "unknown-subject"]


class WaiverWarning(BaseModel):
    """Something wrong with one entry of the waivers file, said and recorded, never silent."""

    model_config = ConfigDict(extra="forbid")

    kind: WaiverWarningKind
    control: str
    subject: str
    message: str


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
    #: for a passing no-path control: the layers holding it (None when not examined)
    defence: Defence | None = None
    #: a fail accepted by an entry of the waivers file (None for every other finding)
    waiver: AppliedWaiver | None = None

    @model_serializer(mode="wrap")
    def _without_absent_waiver(self, handler: SerializerFunctionWrapHandler) -> Any:
        # An unwaived finding is written as it was before waivers existed, so that findings
        # of runs without waivers (and the recordings' judged findings) stay byte-identical.
        data = handler(self)
        if self.waiver is None and isinstance(data, dict):
            data.pop("waiver", None)
        return data


class RunInfo(BaseModel):
    id: str
    started: str
    finished: str | None = None
    inventory: str | None = None
    tool_version: str | None = None
    phases: dict[str, float] = Field(default_factory=dict)  #: seconds per phase
    #: the id of the stored run a what-if judged again (auditor whatif); None for an audit
    whatif_of: str | None = None
    #: the what-if's changes, each in its command-line form (``--route recv-srv=…``)
    changes: list[str] = Field(default_factory=list)

    @model_serializer(mode="wrap")
    def _without_whatif_fields_of_an_audit(self, handler: SerializerFunctionWrapHandler) -> Any:
        # An audit's run is written as it was before what-ifs existed (findings.json of
        # ordinary runs stays byte-identical); a what-if says what it was made from.
        data = handler(self)
        if self.whatif_of is None and not self.changes and isinstance(data, dict):
            data.pop("whatif_of", None)
            data.pop("changes", None)
        return data


class FindingsDocument(BaseModel):
    run: RunInfo
    findings: list[Finding]
    #: the problems of the waivers file applied to the run; None (left out) when none was
    waiver_warnings: list[WaiverWarning] | None = None

    @model_serializer(mode="wrap")
    def _without_absent_warnings(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)  # a run without a waivers file is written as before
        if self.waiver_warnings is None and isinstance(data, dict):
            data.pop("waiver_warnings", None)
        return data


def write_findings(path: Path, document: FindingsDocument) -> None:
    payload = json.dumps(document.model_dump(mode="json"), ensure_ascii=False, indent=2)
    write_text_atomically(path, payload + "\n", mode=0o600)


def read_findings(path: Path) -> FindingsDocument:
    return FindingsDocument.model_validate_json(path.read_text(encoding="utf-8"))
