"""A stored run as the renderers see it: findings, evidence manifest, inventory, facts, topology,
observations.

Everything here is read from the run folder (or a file named beside it); nothing is probed.
Whatever cannot be read is left out and said so in ``notes``, so that a report of a damaged or
partial run still renders and shows what is missing instead of failing.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from auditor.domain.errors import AuditorError
from auditor.domain.facts import HostFacts
from auditor.domain.findings import Finding, FindingsDocument, Status, read_findings
from auditor.domain.inventory import Inventory, load_inventory
from auditor.domain.yamlsource import SourceError
from auditor.evidence.store import MANIFEST_FILE, ArtifactRecord, EvidenceError, EvidenceStore
from policies.model import Control, Framework, load_controls, load_framework
from policies.snapshot import OBSERVATIONS_FILE, Observations, read_observations
from topology.graph import Topology

FINDINGS_FILE = "findings.json"
FACTS_FILE = "facts.json"
#: The copy of the inventory kept in the run folder, so a later re-render needs nothing else.
INVENTORY_COPY = "inventory.yaml"


class RunReadError(AuditorError):
    """The folder is not a run that can be reported on (no readable findings.json)."""


@dataclass
class StoredRun:
    run_dir: Path
    document: FindingsDocument
    framework: Framework
    controls: dict[str, Control]
    artifacts: list[ArtifactRecord] = field(default_factory=list)
    manifest: dict[str, Any] | None = None
    inventory: Inventory | None = None
    inventory_source: str | None = None
    facts: dict[str, HostFacts] = field(default_factory=dict)
    topology: Topology | None = None
    #: the probes' observations (observations.json), for the zone matrix; None when missing
    observations: Observations | None = None
    #: the bundle signer's public key fingerprint, when the report is rendered for a bundle
    signer_fingerprint: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return self.document.run.id

    @property
    def findings(self) -> list[Finding]:
        return self.document.findings

    def artifact(self, ref: str) -> ArtifactRecord | None:
        return self._by_ref.get(ref)

    @property
    def _by_ref(self) -> dict[str, ArtifactRecord]:
        return {record.ref: record for record in self.artifacts}

    def tool_versions(self) -> dict[str, Any]:
        if self.manifest is None:
            return {}
        versions = self.manifest.get("tool_versions")
        return versions if isinstance(versions, dict) else {}


def utc_timestamp(text: str | None) -> str | None:
    """An ISO 8601 time in UTC with a "Z" (a naive time is taken as UTC); None if unreadable."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def sorted_findings(findings: list[Finding], controls: dict[str, Control]) -> list[Finding]:
    """Control-file order, then subject: the same order in every renderer."""
    order = {control_id: n for n, control_id in enumerate(controls)}
    return sorted(findings, key=lambda f: (order.get(f.control, len(order)), f.control, f.subject))


def failing_findings(run: StoredRun) -> list[Finding]:
    return [f for f in sorted_findings(run.findings, run.controls) if f.status is Status.FAIL]


def load_run(
    run_dir: Path, *, inventory_path: Path | None = None, keep_inventory_copy: bool = True
) -> StoredRun:
    """Read everything a report needs from ``run_dir``. Raises RunReadError without findings."""
    try:
        document = read_findings(run_dir / FINDINGS_FILE)
    except FileNotFoundError as exc:
        raise RunReadError(f"{run_dir} holds no {FINDINGS_FILE}") from exc
    except (ValidationError, ValueError) as exc:
        raise RunReadError(f"{run_dir / FINDINGS_FILE} is not a findings document: {exc}") from exc
    run = StoredRun(
        run_dir=run_dir,
        document=document,
        framework=load_framework(),
        controls=load_controls(),
    )
    _load_evidence(run)
    _load_inventory(run, inventory_path, keep_inventory_copy)
    _load_facts(run)
    _build_topology(run)
    _load_observations(run)
    return run


def _load_evidence(run: StoredRun) -> None:
    try:
        store = EvidenceStore.open(run.run_dir)
    except EvidenceError as exc:
        run.notes.append(f"no evidence index: {exc}")
        return
    try:
        run.artifacts = store.artifacts()
    finally:
        store.close()
    manifest_path = run.run_dir / MANIFEST_FILE
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        run.notes.append(f"no {MANIFEST_FILE}: the run was not closed normally")
        return
    except (ValueError, UnicodeDecodeError) as exc:
        run.notes.append(f"{MANIFEST_FILE} is not readable JSON: {exc}")
        return
    run.manifest = manifest if isinstance(manifest, dict) else None


def _inventory_candidates(run: StoredRun, explicit: Path | None) -> list[Path]:
    if explicit is not None:
        return [explicit]
    candidates = [run.run_dir / INVENTORY_COPY]
    if run.document.run.inventory:
        candidates.append(Path(run.document.run.inventory))
    return candidates


def _load_inventory(run: StoredRun, explicit: Path | None, keep_copy: bool) -> None:
    for path in _inventory_candidates(run, explicit):
        if not path.is_file():
            continue
        try:
            run.inventory = load_inventory(path)
        except (SourceError, ValidationError, OSError) as exc:
            run.notes.append(f"inventory {path} could not be loaded: {exc}")
            continue
        run.inventory_source = str(path)
        copy = run.run_dir / INVENTORY_COPY
        if keep_copy and not copy.exists():
            # Kept beside the findings so that the bundle and later re-renders carry the scope.
            shutil.copyfile(path, copy)
        return
    run.notes.append("no inventory found: the diagram and the scope are not shown")


def _load_facts(run: StoredRun) -> None:
    path = run.run_dir / FACTS_FILE
    if not path.is_file():
        return
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        run.notes.append(f"{FACTS_FILE} is not readable JSON: {exc}")
        return
    if not isinstance(raw, dict):
        run.notes.append(f"{FACTS_FILE} is not a JSON object of host facts")
        return
    for host, value in sorted(raw.items()):
        try:
            run.facts[host] = HostFacts.model_validate(value)
        except ValidationError as exc:
            run.notes.append(
                f"{FACTS_FILE}: facts of {host} are not valid: {exc.error_count()} error(s)"
            )


def _load_observations(run: StoredRun) -> None:
    path = run.run_dir / OBSERVATIONS_FILE
    if not path.is_file():
        run.notes.append(f"no {OBSERVATIONS_FILE}: the zone matrix shows no probe results")
        return
    try:
        run.observations = read_observations(path)
    except (ValidationError, ValueError, UnicodeDecodeError, OSError) as exc:
        # Never a crash: a damaged file costs the probe side of the matrix, nothing else.
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        run.notes.append(f"{OBSERVATIONS_FILE} could not be read: {first_line}")


def _build_topology(run: StoredRun) -> None:
    if run.inventory is None:
        return
    try:
        run.topology = Topology.build(run.inventory, run.facts)
    except Exception as exc:  # a report must render even when the model cannot be rebuilt
        run.notes.append(f"the topology could not be rebuilt: {type(exc).__name__}: {exc}")
