"""A host the inventory declares as Windows is collected by the Windows collector.

No Windows machine runs in the lab; declaring term-2 as Windows points the Windows collector
(OpenSSH + `reg query` / PowerShell) at a Linux host. Its commands fail there, so the
terminal control must come out inconclusive for term-2, naming the Windows commands that
failed — never a pass, and never the Linux collector's facts.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.runtime import LabState
from tests.faults import faultkit as fk

pytestmark = pytest.mark.lab


def test_a_windows_declared_host_goes_through_the_windows_collector(
    lab: LabState, tmp_path: Path
) -> None:
    inventory = fk.inventory_copy(lab, tmp_path / "inv", hosts={"term-2": {"os": "windows"}})
    run = fk.run_audit_cli(inventory, tmp_path / "out", network=False, timeout=300)
    assert run.exit_code == 2, run.stderr[-2000:]
    statuses = run.status()
    assert statuses[("terminal-removable-media-blocked", "term-2")] == "inconclusive"
    assert statuses[("terminal-removable-media-blocked", "term-1")] == "pass"
    reason = next(
        f["reason"] for f in run.of("term-2") if f["control"] == "terminal-removable-media-blocked"
    )
    assert "reg" in reason.lower() or "powershell" in reason.lower(), reason
    term2 = [a.command for a in fk.artifacts(run.out) if a.host == "term-2"]
    assert any(c.startswith("reg query") for c in term2), term2
    assert not any(c.startswith("ip ") for c in term2), term2
    fk.assert_verifies(run.out)
