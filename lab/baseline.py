"""The baseline inventory as plain data, and the merge that applies a scenario's patch to it.

Apart from the scenarios (lab.scenario validates a patch against the baseline) and from the
inventory file the lab writes (lab.labinventory), which both use them.
"""

from __future__ import annotations

import copy
from typing import Any

from lab.model import (
    AUDITOR_OCTET,
    AUTHORIZED_SCOPE,
    HOSTS,
    NETWORKS,
    ORGANISATION,
    TUNNELS,
    LabHost,
)

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


def merge_patch(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``patch`` into a copy of ``base``: mappings merge, ``None`` deletes a key,
    anything else (lists included) replaces."""
    merged = copy.deepcopy(base)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_patch(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
