"""The lab's remote-vantage inventory, offline: what `lab up` writes beside inventory.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditor.domain.inventory import Role, load_inventory
from lab.labinventory import (
    INVENTORY_FILE,
    REMOTE_INVENTORY_FILE,
    REMOTE_LAYOUT_SEGMENT,
    write_inventory,
)
from lab.model import TAPS
from lab.paths import SCENARIOS_DIR
from lab.scenario import load_scenario

SCENARIOS = sorted(p.parent.name for p in SCENARIOS_DIR.glob("*/scenario.yaml"))


@pytest.mark.parametrize("name", SCENARIOS)
def test_remote_inventory_is_the_same_organisation_with_the_auditor_on_one_segment(
    name: str, tmp_path: Path
) -> None:
    write_inventory(load_scenario(name), tmp_path)
    direct = load_inventory(tmp_path / INVENTORY_FILE)
    remote = load_inventory(tmp_path / REMOTE_INVENTORY_FILE)
    plugged = {n for n, d in remote.networks.items() if d.auditor is not None}
    assert plugged == {REMOTE_LAYOUT_SEGMENT}
    assert remote.networks[REMOTE_LAYOUT_SEGMENT].auditor == (
        direct.networks[REMOTE_LAYOUT_SEGMENT].auditor
    )
    # Everything else is what the direct inventory says: hosts (plus the taps, which only the
    # remote layout declares), tunnels, scope, SSH.
    assert {n: h for n, h in remote.hosts.items() if n not in TAPS} == direct.hosts
    assert set(remote.hosts) - set(direct.hosts) == set(TAPS)
    assert remote.tunnels == direct.tunnels
    assert remote.scope == direct.scope and remote.ssh == direct.ssh
    for network, definition in direct.networks.items():
        assert remote.networks[network].prefixes == definition.prefixes
        assert remote.networks[network].zone == definition.zone


def test_the_lab_vantage_host_stays_a_vantage_point_in_the_remote_layout(tmp_path: Path) -> None:
    write_inventory(load_scenario("baseline"), tmp_path)
    remote = load_inventory(tmp_path / REMOTE_INVENTORY_FILE)
    assert sorted(remote.hosts_with(Role.VANTAGE)) == sorted(["inet-canary", *TAPS])
    assert all(remote.hosts[h].ssh is not None for h in remote.hosts_with(Role.VANTAGE))
