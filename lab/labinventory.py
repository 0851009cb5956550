"""The inventory the lab writes for the auditor, generated from the lab's one description."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from auditor.domain.inventory import Inventory, load_inventory
from lab.baseline import baseline_inventory_document, merge_patch
from lab.scenario import Scenario


def inventory_document(scenario: Scenario) -> dict[str, Any]:
    document = baseline_inventory_document()
    if scenario.inventory_patch:
        document = merge_patch(document, scenario.inventory_patch)
    return document


def write_inventory(scenario: Scenario, state: Path) -> Path:
    """Write ``<state>/inventory.yaml`` and check that it loads as the auditor will load it."""
    path = state / "inventory.yaml"
    header = (
        f"# Written by `auditor lab up` for scenario {scenario.name!r}; regenerated each time.\n"
    )
    body = yaml.safe_dump(inventory_document(scenario), sort_keys=False, allow_unicode=True)
    path.write_text(header + body, encoding="utf-8")
    load_inventory(path)
    return path


def load_lab_inventory(path: Path) -> Inventory:
    return load_inventory(path)
