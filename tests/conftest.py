"""The lab session, shared by every lab test (tests/lab, tests/faults): each scenario is brought up once per test session, baseline first.

Reusable by any test that needs the running lab (audit tests included)::

    @pytest.mark.lab
    @pytest.mark.scenario("recv-egress")      # omit for the baseline
    def test_something(lab: LabState) -> None:
        ...

``lab`` brings up the test's scenario (only when the running one differs) and returns its
``LabState``; ``lab_session.ensure(name)`` does the same for any name. Lab tests are reordered
so that tests of one scenario run together, in ``SCENARIO_ORDER`` (others after, by name), and
the lab is torn down at the end of the session.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from hypothesis import settings

from lab import runtime
from lab.runtime import LabState

SCENARIO_ORDER = [
    "baseline",
    "recv-egress",
    "send-inbound",
    "proc-dual-homed",
    "plaintext-link",
    "terminal-usb",
    "shared-host",
    "remote-control",
    "logging-off",
    "rogue-device",
    "hostile-host",
    "proc-via-sending",
    "weak-authentication",
    "security-update-pending",
    "detection-off",
    "ufw-managed",
    "recv-ufw-egress",
    "send-legacy-inbound",
    "send-firewalld-inbound",
]

# `make test` must give the same answer on every run: by default every property and fuzz test
# draws the same examples (derived from the test's own name), so CI never fails by luck.
# Bugs are hunted with the random profile, many times over (docs/faults.md):
#   HYPOTHESIS_PROFILE=explore .venv/bin/pytest -q tests/fuzz tests/unit -p no:cacheprovider
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "lab_teardown: runs after every other lab test (it takes the lab down)"
    )


def scenario_of(item: pytest.Item) -> str:
    marker = item.get_closest_marker("scenario")
    return str(marker.args[0]) if marker is not None and marker.args else "baseline"


def _rank(item: pytest.Item) -> tuple[int, int, str]:
    if item.get_closest_marker("lab") is None:
        return (0, 0, "")
    if item.get_closest_marker("lab_teardown") is not None:
        return (2, 0, "")
    name = scenario_of(item)
    index = SCENARIO_ORDER.index(name) if name in SCENARIO_ORDER else len(SCENARIO_ORDER)
    return (1, index, name)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A stable sort: within one scenario, tests keep their file order.
    items.sort(key=_rank)


class LabSession:
    """Keeps one lab running across tests; rebuilds only when another scenario is asked for."""

    def __init__(self) -> None:
        self.state: LabState | None = None

    def ensure(self, scenario: str) -> LabState:
        if self.state is None or self.state.scenario != scenario:
            self.state = runtime.up(scenario)
        return self.state

    def close(self) -> None:
        if self.state is not None or runtime.lab_containers():
            runtime.down()
        self.state = None


@pytest.fixture(scope="session")
def lab_session() -> Iterator[LabSession]:
    if os.geteuid() != 0 or shutil.which("podman") is None:
        pytest.fail("lab tests need root and podman (run `make setup` as root)")
    session = LabSession()
    yield session
    session.close()


@pytest.fixture
def lab(request: pytest.FixtureRequest, lab_session: LabSession) -> LabState:
    return lab_session.ensure(scenario_of(request.node))
