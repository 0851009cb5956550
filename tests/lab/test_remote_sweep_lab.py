"""The neighbour sweep of inet from the lab's vantage host, inet-canary: nmap as root through
the sudoers' sweep form, the IPv6 candidates named, the canary's own neighbour table."""

from __future__ import annotations

import pytest

from auditor.audit.remote import VANTAGE_TEMPLATES, SshRemote
from auditor.audit.scope import ScopeGuard
from auditor.domain.inventory import load_inventory
from lab.runtime import LabState
from probes.discovery import discover_from_remote
from probes.scanner import NMAP_XML
from tests.unit.probes.netns_fixtures import MemorySink

VANTAGE = "inet-canary"
CANARY = ("10.98.0.100", "fd98::100")
OFFICE_GW = ("10.98.0.254", "fd98::254")


@pytest.mark.lab
def test_a_sweep_of_inet_from_the_canary_finds_office_gw_and_not_itself(lab: LabState) -> None:
    inventory = load_inventory(lab.inventory_path)
    guard = ScopeGuard.from_inventory(inventory)
    sink = MemorySink()
    definition = inventory.networks["inet"]
    with SshRemote(inventory, guard.check, VANTAGE_TEMPLATES) as remote:
        attempt = discover_from_remote(
            network="inet",
            prefixes=[str(p) for p in definition.prefixes],
            vantage_host=VANTAGE,
            vantage_addresses=list(CANARY),
            run_remote=remote,
            sink=sink,
            check_target=guard.check,
            known_ipv6=[OFFICE_GW[1]],
            low_ipv6_hosts=0,
            timeout=120,
        )
    assert attempt.succeeded, attempt.error
    result = attempt.value
    assert result is not None
    found = result.addresses()
    assert set(OFFICE_GW) <= found
    assert not set(CANARY) & found
    assert {h.reason for h in result.hosts if h.address in OFFICE_GW} <= {
        "arp-response",
        "nd-response",
    }
    assert result.interface == "inet" and set(CANARY) <= set(result.own_addresses)
    assert not set(CANARY) & {n.address for n in result.neighbours}
    xml = sink.of_type(NMAP_XML)
    assert {a.host for a in xml} == {VANTAGE}
    assert any(" -sn -PR " in a.command and a.command.endswith(" 10.98.0.0/24") for a in xml)
    assert any(" -sn -6 " in a.command and "fd98::254" in a.command for a in xml)
