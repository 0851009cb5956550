"""`auditor inventory draft` against the running baseline lab.

The draft is made by the real command (SSH collection with strict host keys, this machine's
interfaces, neighbour sweeps of every lab network). Left as drafted it is refused for its
TODOs; once they are decided as the lab's own inventory decides them (``fill_todos``: networks
and tunnels matched by prefix, hosts by address), it describes every host and network of the
lab, and an audit with it gives the same (control, subject, status) as with the lab's own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from auditor.domain.inventory import Inventory, SourceError, load_inventory
from lab.runtime import LabState
from tests.conftest import LabSession
from tests.lab.labtools import ORGANISATION_SSH
from tests.unit import test_inventory_draft as drafting

pytestmark = pytest.mark.lab

AUDITOR = [sys.executable, "-m", "auditor"]
#: Every machine the auditor may log in to: the organisation's and its outside vantage point.
LOGINS = {**ORGANISATION_SSH, "inet-canary": "10.98.0.100"}

Verdicts = set[tuple[str, str, str]]


@dataclass
class Drafted:
    lab: LabState
    draft: Path
    filled: Path
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def drafted(lab_session: LabSession, tmp_path_factory: pytest.TempPathFactory) -> Drafted:
    lab = lab_session.ensure("baseline")
    folder = tmp_path_factory.mktemp("draft")
    draft = folder / "draft.yaml"
    args = [*AUDITOR, "inventory", "draft", "--out", str(draft)]
    args += ["--key", str(lab.auditor_key), "--known-hosts", str(lab.known_hosts)]
    args += ["--scope", "10.98.0.0/16", "--scope", "fd98::/16"]
    for name, address in sorted(LOGINS.items()):
        args += ["--host", f"{name}={address}"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr
    text = draft.read_text(encoding="utf-8")
    filled = drafting.write_filled(text, load_inventory(lab.inventory_path), folder / "filled.yaml")
    return Drafted(lab, draft, filled, proc.stdout, proc.stderr)


def test_the_draft_is_refused_until_its_todos_are_decided(drafted: Drafted) -> None:
    with pytest.raises(SourceError) as caught:
        load_inventory(drafted.draft)
    assert caught.value.problems
    assert all("still a TODO from `auditor inventory draft`" in p for p in caught.value.problems)
    assert all(p.startswith(f"{drafted.draft}:") for p in caught.value.problems)


def test_the_draft_describes_every_host_network_and_tunnel_of_the_lab(drafted: Drafted) -> None:
    lab = load_inventory(drafted.lab.inventory_path)
    filled = load_inventory(drafted.filled)
    assert _shape(filled) == _shape(lab)
    for name in LOGINS:
        assert filled.hosts[name].ssh == lab.hosts[name].ssh
    assert _tunnels(filled) == _tunnels(lab)


def _tunnels(inventory: Inventory) -> dict[str, tuple[str, str, object, set[str]]]:
    """Tunnels by name; the order of the two endpoints means nothing."""
    return {n: (t.type, t.over, t.prefixes, set(t.endpoints)) for n, t in inventory.tunnels.items()}


def _shape(inventory: Inventory) -> dict[str, object]:
    """What a probe can know: segments with their prefixes, hosts with their addresses."""
    return {
        "networks": {n: d.prefixes for n, d in inventory.networks.items()},
        "auditor": {n: d.auditor for n, d in inventory.networks.items()},
        "hosts": {n: h.addresses for n, h in inventory.hosts.items()},
    }


def _audit(inventory: Path, out: Path, *options: str) -> Verdicts:
    proc = subprocess.run(
        [*AUDITOR, "audit", "--inventory", str(inventory), "--out", str(out), *options],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert (out / "findings.json").is_file(), proc.stderr
    findings = json.loads((out / "findings.json").read_text(encoding="utf-8"))["findings"]
    return {(f["control"], f["subject"], f["status"]) for f in findings}


def test_the_filled_draft_judges_like_the_lab_inventory_over_ssh(
    drafted: Drafted, tmp_path: Path
) -> None:
    reference = _audit(drafted.lab.inventory_path, tmp_path / "lab", "--no-network")
    mine = _audit(drafted.filled, tmp_path / "draft", "--no-network")
    assert len(reference) > 20
    assert mine == reference, (sorted(mine - reference), sorted(reference - mine))


def test_the_filled_draft_judges_like_the_lab_inventory_in_a_full_audit(
    drafted: Drafted, tmp_path: Path
) -> None:
    reference = _audit(drafted.lab.inventory_path, tmp_path / "lab")
    mine = _audit(drafted.filled, tmp_path / "draft")
    assert len(reference) > 20
    assert mine == reference, (sorted(mine - reference), sorted(reference - mine))
