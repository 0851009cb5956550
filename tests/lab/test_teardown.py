"""After `lab down` nothing of the lab is left (runs after every other lab test)."""

from __future__ import annotations

import pytest

from lab import guard, runtime
from lab.runtime import LabState


@pytest.mark.lab
@pytest.mark.lab_teardown
def test_down_removes_containers_networks_and_guard(lab: LabState) -> None:
    assert runtime.lab_containers() and guard.is_installed()
    runtime.down()
    assert runtime.lab_containers() == []
    assert runtime.lab_networks() == []
    assert not guard.is_installed()
    assert runtime.current() is None
