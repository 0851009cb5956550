"""Bad input is refused at the ``auditor audit`` command line before any packet is sent.

Exit code 3 and a message naming the problem and its place. "Nothing sent" is shown by the
run folder: ``run_audit`` creates it (and the evidence store) only after the inventory is
accepted, and every probe writes its artifacts there, so a refused audit leaves none.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from auditor.cli.main import app

DATA = Path(__file__).parents[1] / "data" / "inventory"
MINIMAL = (DATA / "minimal.yaml").read_text(encoding="utf-8")


def _audit(inventory: Path, out: Path) -> tuple[int, str]:
    # No width is pinned: off a terminal messages are never wrapped, whatever COLUMNS says.
    result = CliRunner().invoke(app, ["audit", "--inventory", str(inventory), "--out", str(out)])
    return result.exit_code, result.output


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "inventory.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("case", "edit", "expected"),
    [
        (
            "ssh target outside the scope",
            ("ssh: 10.98.21.20", "ssh: 192.0.2.20"),
            r"inventory\.yaml:\d+:\d+: hosts\.recv-srv\.ssh: 192\.0\.2\.20 is outside",
        ),
        (
            "network outside the scope",
            ("ipv4: 10.98.10.0/24", "ipv4: 172.16.10.0/24"),
            r"inventory\.yaml:\d+:\d+: networks\.carrier-in\.ipv4: 172\.16\.10\.0/24 is outside",
        ),
        (
            "overlapping networks",
            ("ipv4: 10.98.10.0/24", "ipv4: 10.98.21.128/25"),
            r"inventory\.yaml:\d+:\d+: networks\.carrier-in\.ipv4: 10\.98\.21\.128/25 overlaps line-recv",
        ),
        (
            "a tunnel endpoint that is no host",
            ("endpoints: [hospital, recv-srv]", "endpoints: [hospital, recv-x]"),
            r"tunnels\.wg-in\.endpoints\.1: no host named 'recv-x'",
        ),
    ],
)
def test_refused_before_anything_is_sent(
    tmp_path: Path, case: str, edit: tuple[str, str], expected: str
) -> None:
    old, new = edit
    assert old in MINIMAL, case
    out = tmp_path / "run"
    code, output = _audit(_write(tmp_path, MINIMAL.replace(old, new)), out)
    assert code == 3, output
    assert "invalid inventory" in output
    assert re.search(expected, output), output
    assert not out.exists(), "the run folder (and so any evidence of a probe) was created"


def test_no_organisation_host_is_refused(tmp_path: Path) -> None:
    text = MINIMAL.replace("roles: [receiving]", "roles: [office]").replace(
        "    ssh: 10.98.21.20\n", ""
    )
    out = tmp_path / "run"
    code, output = _audit(_write(tmp_path, text), out)
    assert code == 3, output
    assert "no organisation host to audit" in output
    assert not out.exists()


def test_missing_inventory_file_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    code, output = _audit(tmp_path / "absent.yaml", out)
    assert code == 3, output
    assert "absent.yaml" in output
    assert not out.exists()


def test_the_lab_inventory_copy_is_accepted_by_the_loader(tmp_path: Path) -> None:
    # The negative control: the same loader accepts the unedited reference inventory.
    from auditor.domain.inventory import load_inventory

    shutil.copy(DATA / "lab.yaml", tmp_path / "inventory.yaml")
    assert load_inventory(tmp_path / "inventory.yaml").hosts
