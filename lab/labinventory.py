"""The inventories the lab writes for the auditor, generated from the lab's one description.

``inventory.yaml``: the auditor's machine plugged into every segment (``.1`` / ``::1``).
``inventory-remote.yaml``: the same organisation, the auditor plugged into the analyst
terminal LAN only; every other network is reached through a vantage host (inet-canary, the
taps) or not at all (docs/lab.md, "The remote-vantage inventory").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from auditor.domain.inventory import Inventory, load_inventory
from lab.baseline import baseline_inventory_document, merge_patch
from lab.model import NETWORKS, TAPS, LabHost
from lab.scenario import Scenario


def inventory_document(scenario: Scenario) -> dict[str, Any]:
    document = baseline_inventory_document()
    if scenario.inventory_patch:
        document = merge_patch(document, scenario.inventory_patch)
    return document


INVENTORY_FILE = "inventory.yaml"
REMOTE_INVENTORY_FILE = "inventory-remote.yaml"

#: The one segment the auditor's machine is plugged into in the remote-vantage layout: an
#: auditor on site sits at an analyst terminal's desk; the racks of the receiving and sending
#: servers, the carrier lines and the office are out of reach.
REMOTE_LAYOUT_SEGMENT = "term-lan"


def remote_inventory_document(scenario: Scenario) -> dict[str, Any]:
    """The scenario's inventory with the auditor's address on every network but one
    removed: the layout in which the other probes must run from vantage points, the lab's
    taps (lab.model.TAPS) among them."""
    document = inventory_document(scenario)
    for name, network in document["networks"].items():
        if name != REMOTE_LAYOUT_SEGMENT:
            network.pop("auditor", None)
    document["hosts"].update({tap.name: tap_document(tap) for tap in TAPS.values()})
    return document


def tap_document(tap: LabHost) -> dict[str, Any]:
    """A tap as the remote inventory declares it: a vantage host the auditor logs in to."""
    return {
        "roles": [str(role) for role in tap.roles],
        "ssh": tap.ssh_address,
        "addresses": {
            net: [NETWORKS[net].address4(octet), NETWORKS[net].address6(octet)]
            for net, octet in tap.addresses.items()
        },
        "description": tap.description,
    }


def write_inventory(scenario: Scenario, state: Path) -> Path:
    """Write ``<state>/inventory.yaml`` and ``<state>/inventory-remote.yaml``, and check that
    both load as the auditor will load them. Returns the first."""
    _write(state / REMOTE_INVENTORY_FILE, scenario, remote_inventory_document(scenario))
    return _write(state / INVENTORY_FILE, scenario, inventory_document(scenario))


def _write(path: Path, scenario: Scenario, document: dict[str, Any]) -> Path:
    header = (
        f"# Written by `auditor lab up` for scenario {scenario.name!r}; regenerated each time.\n"
    )
    body = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    path.write_text(header + body, encoding="utf-8")
    load_inventory(path)
    return path


def load_lab_inventory(path: Path) -> Inventory:
    return load_inventory(path)
