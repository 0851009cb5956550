"""Controls as data: one YAML file per control under ``policies/controls/``, validated strictly.

A control names its clause of 施行規則第6条 (with the framework and version), its subjects, its
ja/en texts and its parameters. The check code that judges it is looked up in
``policies.registry`` by the control id.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from auditor.domain.inventory import Role, Zone
from auditor.domain.yamlsource import load_model

CONTROL_ID_PATTERN = r"^[a-z][a-z0-9-]{2,62}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Text(_Strict):
    ja: str = Field(min_length=1)
    en: str = Field(min_length=1)


class Framework(_Strict):
    id: str
    short: Text
    name: Text
    version: str
    version_note: Text


class Subjects(_Strict):
    """Which inventory items a control is judged for: exactly one selector."""

    role: Role | None = None
    zone: Zone | None = None
    external_link: bool | None = None
    organisation: bool | None = None

    def selector(self) -> str:
        chosen = [k for k, v in self.model_dump().items() if v is not None]
        if len(chosen) != 1:
            raise ValueError(f"subjects needs exactly one selector, got {chosen or 'none'}")
        return chosen[0]


class Control(_Strict):
    id: str = Field(pattern=CONTROL_ID_PATTERN)
    clauses: list[str] = Field(min_length=1)
    supporting: bool = False
    subjects: Subjects
    severity: Literal["high", "medium", "low"]
    title: Text
    rationale: Text
    criteria: Text
    remediation: Text
    parameters: dict[str, Any] = Field(default_factory=dict)

    def clause_refs(self, framework: Framework) -> list[str]:
        """Full references, e.g. "次世代医療基盤法施行規則第6条 第4号ニ(2) [2018]"."""
        suffix = " (supporting)" if self.supporting else ""
        return [f"{framework.short.ja} {c} [{framework.version}]{suffix}" for c in self.clauses]


def _data_dir() -> Path:
    return Path(str(resources.files("policies")))


@cache
def load_framework() -> Framework:
    return load_model(_data_dir() / "framework.yaml", Framework)


def load_control_file(path: Path) -> Control:
    control = load_model(path, Control)
    control.subjects.selector()  # exactly one selector, or ValueError naming the problem
    if control.id != path.stem:
        raise ValueError(f"{path}: id {control.id!r} does not match the file name")
    return control


@cache
def load_controls() -> dict[str, Control]:
    """Every control shipped in ``policies/controls``, by id, in file-name order."""
    folder = _data_dir() / "controls"
    controls = [load_control_file(p) for p in sorted(folder.glob("*.yaml"))]
    return {c.id: c for c in controls}
