"""An audit's network phases when the auditor's machine is plugged into no network at all:
every network is out of reach, and each probe's missing evidence says why, without a packet
(nothing is reachable, so nothing is started: the phases run for real, offline)."""

from __future__ import annotations

from pathlib import Path

import yaml

from auditor.audit.network import NetworkProbes
from auditor.audit.observer import SilentObserver
from auditor.audit.scope import ScopeGuard
from auditor.domain.attempts import ErrorReason
from auditor.domain.inventory import Inventory, Zone, load_inventory
from policies.context import AuditContext
from policies.registry import evaluate_all
from probes.scanner import ScanProfile

BASELINE = Path(__file__).parents[1] / "data" / "contexts" / "baseline" / "inventory.yaml"


def _unplugged(tmp_path: Path) -> Inventory:
    """The recorded baseline inventory without a single ``auditor:`` address."""
    document = yaml.safe_load(BASELINE.read_text(encoding="utf-8"))
    for network in document["networks"].values():
        network.pop("auditor", None)
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return load_inventory(path)


def _probes(inventory: Inventory) -> NetworkProbes:
    return NetworkProbes(
        AuditContext(inventory=inventory),
        None,  # type: ignore[arg-type]  # nothing runs, so nothing is stored
        ScopeGuard.from_inventory(inventory),
        SilentObserver(),
        ScanProfile(),
    )


def test_every_network_out_of_reach_is_missing_evidence_that_names_its_cause(
    tmp_path: Path,
) -> None:
    probes = _probes(_unplugged(tmp_path))
    probes.links(8.0)
    probes.scans()
    probes.discovery()
    ctx = probes.ctx
    # carrier-in and carrier-out: where recv-srv and send-srv meet hospital and recipient
    assert set(ctx.links) == {"carrier-in", "carrier-out"}
    # inet-canary is a vantage host on inet, but no organisation host is there to scan
    assert set(ctx.scans) == {
        "carrier-in", "carrier-out", "line-recv", "line-send", "term-lan"
    }  # fmt: skip
    assert set(ctx.discovery) == set(probes.inventory.networks_in(Zone.PROTECTED))
    probe = {"links": "capture", "scans": "scan", "discovery": "sweep"}
    for phase, name in probe.items():
        for network, attempt in getattr(ctx, phase).items():
            assert attempt.error is not None, (phase, network)
            assert attempt.error.reason is ErrorReason.UNREACHABLE
            assert attempt.error.message == (
                f"no {name}: this machine has no address on {network} (the inventory names "
                "none), and no vantage host (role vantage, with an ssh address) is on it either"
            )


def test_the_network_controls_are_inconclusive_never_passed_without_their_probes(
    tmp_path: Path,
) -> None:
    """Without the collection the model cannot decide either: every control that needs the
    network is inconclusive, and none passes."""
    probes = _probes(_unplugged(tmp_path))
    probes.links(8.0)
    probes.scans()
    probes.discovery()
    findings = evaluate_all(probes.ctx)
    network_controls = {
        "inventory-complete",
        "links-encrypted",
        "send-no-inbound",
        "unauthorized-access-prevention",
    }
    judged = [f for f in findings if f.control in network_controls]
    assert judged
    assert {f.status.value for f in judged} == {"inconclusive"}
