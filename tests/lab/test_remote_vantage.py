"""Scans from the lab's vantage host, inet-canary, through the path an audit uses: SSH with
strict host keys, the auditor's allow-list of nmap templates, and inet-canary's sudoers.

No organisation host is on inet, so an audit of the lab never has a target there (docs/lab.md,
"The remote-vantage inventory"); office-gw's inet address stands in: a real host on the
vantage host's own link, inside the authorized scope, with sshd listening and no filter.
"""

from __future__ import annotations

import pytest

from auditor.audit.remote import NMAP_TEMPLATES, SshRemote
from auditor.audit.scope import ScopeGuard
from auditor.domain.attempts import ErrorReason
from auditor.domain.inventory import load_inventory
from lab.runtime import LabState
from probes.scanner import NMAP_XML, ScanProfile, Vantage, scan_from_remote
from tests.unit.probes.netns_fixtures import MemorySink

VANTAGE = "inet-canary"
OFFICE_GW_INET = ("10.98.0.254", "fd98::254")
NOBODY_ON_INET = ("10.98.0.77", "fd98::77")
SMALL = ScanProfile(tcp_ports="1-1024", udp_ports=(53,), host_timeout=120, process_timeout=180)


@pytest.mark.lab
def test_scan_from_the_vantage_host_finds_the_listener_and_checks_presence(
    lab: LabState,
) -> None:
    inventory = load_inventory(lab.inventory_path)
    guard = ScopeGuard.from_inventory(inventory)
    sink = MemorySink()
    with SshRemote(inventory, guard.check, NMAP_TEMPLATES) as remote:
        attempts = scan_from_remote(
            list(OFFICE_GW_INET),
            vantage_host=VANTAGE,
            run_remote=remote,
            sink=sink,
            check_target=guard.check,
            profile=SMALL,
        )
    for attempt in attempts:
        assert attempt.succeeded, attempt.error
        scan = attempt.value
        assert scan is not None
        assert scan.vantage is Vantage.REMOTE and scan.vantage_host == VANTAGE
        assert scan.open_ports("tcp") == [22]
        assert scan.status == "up"
    # tcp, udp and the presence check, per family, all run on inet-canary
    xml = sink.of_type(NMAP_XML)
    assert len(xml) == 6 and {a.host for a in xml} == {VANTAGE}
    assert sum(" -sn " in a.command for a in xml) == 2


@pytest.mark.lab
def test_an_absent_address_on_the_vantage_hosts_link_is_unreachable(lab: LabState) -> None:
    inventory = load_inventory(lab.inventory_path)
    guard = ScopeGuard.from_inventory(inventory)
    with SshRemote(inventory, guard.check, NMAP_TEMPLATES) as remote:
        attempts = scan_from_remote(
            list(NOBODY_ON_INET),
            vantage_host=VANTAGE,
            run_remote=remote,
            sink=MemorySink(),
            check_target=guard.check,
            profile=SMALL,
        )
    for attempt in attempts:
        assert attempt.error is not None, attempt.value
        assert attempt.error.reason is ErrorReason.UNREACHABLE


@pytest.mark.lab
def test_the_vantage_host_refuses_a_target_outside_the_scope(lab: LabState) -> None:
    """The scope guard runs on this side, before any command reaches inet-canary."""
    inventory = load_inventory(lab.inventory_path)
    guard = ScopeGuard.from_inventory(inventory)
    sink = MemorySink()
    with SshRemote(inventory, guard.check, NMAP_TEMPLATES) as remote:
        (attempt,) = scan_from_remote(
            ["192.0.2.10"],
            vantage_host=VANTAGE,
            run_remote=remote,
            sink=sink,
            check_target=guard.check,
            profile=SMALL,
        )
    assert attempt.error is not None and attempt.error.reason is ErrorReason.OUT_OF_SCOPE
    assert sink.items == {}
