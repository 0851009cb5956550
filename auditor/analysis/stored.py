"""A stored run as the model questions see it: the inventory, the observations and the
topology rebuilt from the collected facts (policies.snapshot.restore_context).

A run folder written by ``auditor audit`` holds everything needed: the inventory copy
(inventory.yaml), observations.json and findings.json. A recorded context of the lab
(tests/data/contexts/NAME) holds the same with the observations compressed
(observations.json.gz), and is read the same way.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from auditor.domain.errors import AuditorError
from auditor.domain.findings import FindingsDocument, read_findings
from auditor.domain.inventory import Inventory, load_inventory
from auditor.domain.yamlsource import SourceError
from policies.context import AuditContext
from policies.snapshot import OBSERVATIONS_FILE, Observations, from_json, restore_context
from topology.graph import Topology

INVENTORY_COPY = "inventory.yaml"
FINDINGS_FILE = "findings.json"


class StoredRunError(AuditorError):
    """The folder is not a run whose model can be rebuilt (names the missing or bad file)."""


@dataclass
class StoredModel:
    run_dir: Path
    inventory: Inventory
    observations: Observations
    context: AuditContext
    #: the run's findings, when the folder holds a readable findings.json
    findings: FindingsDocument | None = None

    @property
    def topology(self) -> Topology:
        if self.context.topology is None:
            raise StoredRunError(
                f"{self.run_dir}: the model could not be rebuilt: {self.context.topology_error}"
            )
        return self.context.topology


def load_stored_model(run_dir: Path, *, inventory_path: Path | None = None) -> StoredModel:
    """Read a run folder; raises StoredRunError naming what is missing or unreadable."""
    if not run_dir.is_dir():
        raise StoredRunError(f"{run_dir} is not a folder")
    inventory = _inventory(inventory_path or run_dir / INVENTORY_COPY)
    observations = read_stored_observations(run_dir)
    context = restore_context(inventory, observations)
    return StoredModel(run_dir, inventory, observations, context, _findings(run_dir))


def _inventory(path: Path) -> Inventory:
    if not path.is_file():
        raise StoredRunError(f"{path}: no inventory (a run folder keeps a copy as {path.name})")
    try:
        return load_inventory(path)
    except (SourceError, ValidationError, OSError) as exc:
        raise StoredRunError(f"{path}: the inventory cannot be loaded: {exc}") from exc


def read_stored_observations(run_dir: Path) -> Observations:
    plain = run_dir / OBSERVATIONS_FILE
    packed = run_dir / (OBSERVATIONS_FILE + ".gz")
    try:
        if plain.is_file():
            return from_json(plain.read_bytes())
        if packed.is_file():
            return from_json(gzip.decompress(packed.read_bytes()))
    except (ValidationError, ValueError, OSError, EOFError) as exc:
        raise StoredRunError(f"{run_dir}: {OBSERVATIONS_FILE} cannot be read: {exc}") from exc
    raise StoredRunError(
        f"{run_dir} holds no {OBSERVATIONS_FILE}: not a run folder, or the audit stopped "
        "before judging"
    )


def _findings(run_dir: Path) -> FindingsDocument | None:
    path = run_dir / FINDINGS_FILE
    if not path.is_file():
        return None
    try:
        return read_findings(path)
    except (ValidationError, ValueError, OSError):
        return None
