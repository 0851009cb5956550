"""The inventory the lab writes for the auditor, generated from the lab's one description."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from auditor.inventory import Inventory, load_inventory
from auditor.lab.model import (
    AUDITOR_OCTET,
    AUTHORIZED_SCOPE,
    HOSTS,
    NETWORKS,
    ORGANISATION,
    TUNNELS,
    LabHost,
)
from auditor.lab.scenario import Scenario, merge_patch

KEY_FILE = "keys/auditor_ed25519"
KNOWN_HOSTS_FILE = "known_hosts"


def baseline_inventory_document() -> dict[str, Any]:
    """The baseline inventory as plain data (what an organisation would write down)."""
    return {
        "version": 1,
        "organisation": ORGANISATION,
        "scope": {"authorized": list(AUTHORIZED_SCOPE)},
        "ssh": {"user": "auditor", "key": KEY_FILE, "known_hosts": KNOWN_HOSTS_FILE},
        "networks": {
            n.name: {
                "zone": str(n.zone),
                "medium": str(n.medium),
                "ipv4": n.ipv4,
                "ipv6": n.ipv6,
                "auditor": {
                    "ipv4": n.address4(AUDITOR_OCTET),
                    "ipv6": n.address6(AUDITOR_OCTET),
                },
                "description": n.description,
            }
            for n in NETWORKS.values()
        },
        "tunnels": {
            t.name: {
                "type": "wireguard",
                "over": t.over,
                "ipv4": t.ipv4,
                "endpoints": t.endpoints,
            }
            for t in TUNNELS.values()
        },
        "hosts": {h.name: _host_document(h) for h in HOSTS.values()},
    }


def _host_document(host: LabHost) -> dict[str, Any]:
    addresses: dict[str, list[str]] = {
        net: [NETWORKS[net].address4(octet), NETWORKS[net].address6(octet)]
        for net, octet in host.addresses.items()
    }
    for tunnel in host.tunnels:
        addresses[tunnel.name] = [tunnel.address4(tunnel.octet_of(host.name))]
    document: dict[str, Any] = {"roles": [str(r) for r in host.roles]}
    if host.ssh_address is not None:
        document["ssh"] = host.ssh_address
    document["addresses"] = addresses
    if host.services:
        document["services"] = [
            {"port": s.port, "proto": s.proto, "from": list(s.sources), "purpose": s.purpose}
            for s in host.services
        ]
    document["description"] = host.description
    return document


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
