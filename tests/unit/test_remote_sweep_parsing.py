"""The remote neighbour sweep's guards, offline: the vantage host's ``ip -j neigh`` read
defensively, and the scope guard refusing a prefix before anything reaches the host."""

from __future__ import annotations

import pytest

from auditor.domain.attempts import ErrorReason
from probes.discovery import discover_from_remote, parse_neighbours
from probes.netlocal import RemoteResult
from tests.unit.probes.netns_fixtures import MemorySink

#: Shaped as iproute2 6.1 (Debian 12) writes it; addresses of the lab's inet network.
NEIGH = (
    b'[{"dst":"10.98.0.254","lladdr":"5a:1e:2b:3c:4d:5e","state":["REACHABLE"]},'
    b'{"dst":"fd98::254","lladdr":"5a:1e:2b:3c:4d:5e","router":null,"state":["STALE"]},'
    b'{"dst":"10.98.0.9","state":["FAILED"]},'
    b'{"dst":"10.98.0.8","lladdr":"5a:1e:2b:3c:4d:5f","state":["INCOMPLETE"]}]'
)


def test_fresh_neighbours_are_read() -> None:
    found = parse_neighbours(NEIGH)
    assert [(n.address, n.mac, n.state) for n in found] == [
        ("10.98.0.254", "5a:1e:2b:3c:4d:5e", "REACHABLE"),
        ("fd98::254", "5a:1e:2b:3c:4d:5e", "STALE"),
    ]


@pytest.mark.parametrize(
    "output",
    [
        b"",
        b"garbage",
        b"\xff[]",
        b'{"dst": "10.98.0.254"}',
        b'[null, 3, "x"]',
        b'[{"dst": "10.98.0.254; id", "lladdr": "5a:1e:2b:3c:4d:5e", "state": ["STALE"]}]',
        b'[{"dst": "10.98.0.254", "lladdr": "<script>", "state": ["STALE"]}]',
        b'[{"dst": ["10.98.0.254"], "lladdr": "5a:1e:2b:3c:4d:5e", "state": ["STALE"]}]',
        b'[{"dst": "10.98.0.254", "lladdr": 5, "state": "STALE"}]',
    ],
)
def test_anything_else_gives_no_neighbour(output: bytes) -> None:
    assert parse_neighbours(output) == []


class Recorder:
    def __init__(self) -> None:
        self.commands: list[str] = []

    def __call__(self, host: str, command: str, timeout: float) -> RemoteResult:
        self.commands.append(command)
        return RemoteResult(exit_status=None, stdout=b"", stderr=b"")


def refuse_outside_the_lab(target: str) -> None:
    if not target.startswith(("10.98.", "fd98:")):
        raise ValueError(f"{target} is outside the authorized scope")


def test_a_prefix_outside_the_scope_sends_nothing() -> None:
    remote = Recorder()
    attempt = discover_from_remote(
        network="inet",
        prefixes=["10.98.0.0/24", "192.0.2.0/24"],
        vantage_host="inet-canary",
        vantage_addresses=["10.98.0.100"],
        run_remote=remote,
        sink=MemorySink(),
        check_target=refuse_outside_the_lab,
    )
    assert attempt.error is not None and attempt.error.reason is ErrorReason.OUT_OF_SCOPE
    assert "192.0.2.0/24" in attempt.error.message
    assert remote.commands == []


def test_a_prefix_too_large_to_sweep_sends_nothing() -> None:
    remote = Recorder()
    attempt = discover_from_remote(
        network="inet",
        prefixes=["10.98.0.0/16"],
        vantage_host="inet-canary",
        vantage_addresses=["10.98.0.100"],
        run_remote=remote,
        sink=MemorySink(),
        check_target=refuse_outside_the_lab,
    )
    assert attempt.error is not None and attempt.error.reason is ErrorReason.NOT_PERMITTED
    assert remote.commands == []
