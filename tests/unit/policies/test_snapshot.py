"""observations.json: an AuditContext's observations to JSON and back, exactly, and the audit
writing it so that a stored run can be judged again without probing."""

from __future__ import annotations

import json
import stat
from dataclasses import replace
from pathlib import Path

import pytest
from pydantic import ValidationError

from auditor.audit import orchestrator as audit
from auditor.audit.observer import SilentObserver
from auditor.audit.options import AuditOptions
from auditor.audit.orchestrator import run_audit
from auditor.domain.attempts import Attempt, ErrorReason
from auditor.domain.facts import HostFacts, Interface, InterfaceAddress, Listener
from auditor.domain.inventory import load_inventory
from policies.context import AuditContext
from policies.empirical import (
    DiscoveryObservation,
    EgressAttempt,
    EgressObservation,
    Flow,
    LinkObservation,
    OpenPort,
    ScanObservation,
)
from policies.registry import evaluate_all
from policies.snapshot import (
    OBSERVATIONS_FILE,
    Observations,
    from_json,
    observations_of,
    read_observations,
    restore_context,
    to_json,
)
from tests.lab_scenarios import (
    INVENTORY_FILE,
    RECORDING_FILE,
    RECORDINGS,
    recording,
    recording_text,
)
from topology.graph import Topology

BASELINE_INVENTORY = RECORDINGS / "baseline" / INVENTORY_FILE
RECORDED = sorted(p.parent.name for p in RECORDINGS.glob(f"*/{RECORDING_FILE}"))


def every_kind() -> Observations:
    """One of each observation, successful and failed, with the awkward values: None, empty
    tuples, non-ASCII text, a float, a MAC-less neighbour, an UDP port open|filtered."""
    facts = HostFacts(
        host="recv-srv",
        interfaces=[
            Interface(
                name="line-recv",
                kind="veth",
                up=True,
                mac="02:00:00:00:00:01",
                addresses=[InterfaceAddress(address="fd98:0:0:21::20", prefixlen=64, family=6)],
            )
        ],
        listeners=[Listener(proto="tcp", address="*", port=22, process=None)],
        nftables={"nftables": [{"metainfo": {"json_schema_version": 1}}]},
        files={"/etc/motd": "受信用サーバ\n"},
        errors={"wireguard": "wg: command not found"},
        evidence={"interfaces": "sha256:" + "a" * 64},
    )
    egress = EgressObservation(
        host="recv-srv",
        captured_networks=("carrier-in", "inet"),
        attempts=(
            EgressAttempt("tcp", "10.98.0.100", 443, True, "connected", ("inet",)),
            EgressAttempt("icmp", "fd98::100", None, False, "not run"),
        ),
        evidence=("sha256:" + "b" * 64,),
    )
    scan = ScanObservation(
        network="carrier-out",
        vantage="local 10.98.11.1",
        targets=("10.98.11.20",),
        open_ports=(OpenPort("10.98.11.20", "udp", 51820, "open|filtered"),),
    )
    link = LinkObservation(
        network="carrier-in",
        seconds=7.5,
        flows=(Flow("10.98.10.10", "10.98.10.20", "udp", 51820, 51820, "wireguard", packets=3),),
    )
    return Observations(
        collection={
            "recv-srv": Attempt.ok("ssh-host", "recv-srv", facts, ["sha256:" + "c" * 64]),
            "term-2": Attempt.failed("ssh-host", "term-2", ErrorReason.TIMEOUT, "no answer in 5 s"),
        },
        egress={
            "recv-srv": Attempt.ok("egress", "recv-srv", egress, []),
            "proc-srv": Attempt.failed("egress", "proc-srv", ErrorReason.AUTH_FAILED, "denied"),
        },
        scans={"carrier-out": Attempt.ok("nmap-scan", "carrier-out", scan, [])},
        links={
            "carrier-in": Attempt.ok("capture", "carrier-in", link, []),
            "carrier-out": Attempt.failed(
                "capture", "carrier-out", ErrorReason.TOOL_MISSING, "tcpdump", ["sha256:d"]
            ),
        },
        discovery={
            "line-recv": Attempt.ok(
                "discovery",
                "line-recv",
                DiscoveryObservation("line-recv", {"10.98.21.20": "02:00:00:00:00:01"}),
                [],
            ),
            "term-lan": Attempt.ok(
                "discovery", "term-lan", DiscoveryObservation("term-lan", {"10.98.30.9": None}), []
            ),
        },
    )


def test_every_kind_of_observation_comes_back_equal() -> None:
    original = every_kind()
    restored = from_json(to_json(original))
    assert restored == original
    # Equal as values and as types: tuples stay tuples, enums stay enums, facts stay models.
    assert isinstance(restored.collection["recv-srv"].value, HostFacts)
    assert restored.collection["term-2"].error == original.collection["term-2"].error
    assert isinstance(restored.egress["recv-srv"].value, EgressObservation)
    assert restored.egress["recv-srv"].value.attempts == original.egress["recv-srv"].value.attempts  # type: ignore[union-attr]


def test_the_json_is_compact_and_says_its_format() -> None:
    text = to_json(every_kind())
    document = json.loads(text)
    assert text == json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    assert document["format"] == "anon-infra-auditor-observations/1"


def test_another_format_is_refused_not_misread() -> None:
    document = json.loads(to_json(every_kind()))
    document["format"] = "anon-infra-auditor-observations/2"
    with pytest.raises(ValidationError):
        from_json(json.dumps(document))
    with pytest.raises(ValidationError):
        from_json(json.dumps({"collection": {"x": {"probe": "ssh"}}}))


@pytest.mark.parametrize("scenario", RECORDED)
def test_a_recorded_lab_run_comes_back_equal_and_reserialises_byte_for_byte(
    scenario: str,
) -> None:
    text = recording_text(scenario).decode("utf-8")
    restored = from_json(text)
    assert from_json(to_json(restored)) == restored
    assert to_json(restored) == text.rstrip("\n")


def test_the_snapshot_does_not_follow_later_changes_to_the_context() -> None:
    observations = every_kind()
    ctx = restore_context(load_inventory(BASELINE_INVENTORY), observations)
    taken = observations_of(ctx)
    ctx.egress.clear()
    assert taken.egress == observations.egress


def test_a_model_that_cannot_be_built_is_recorded_as_the_audit_records_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*_: object) -> Topology:
        raise ValueError("a route loops")

    monkeypatch.setattr(Topology, "build", broken)
    inventory = load_inventory(BASELINE_INVENTORY)
    ctx = restore_context(inventory, every_kind())
    assert ctx.topology is None
    assert ctx.topology_error == "ValueError: a route loops"


def test_the_audit_writes_observations_that_judge_again_to_its_own_findings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A whole run_audit, offline: the collection is the baseline's recorded one (no SSH), the
    network probes are off. observations.json is private, and re-judging it, with the
    topology rebuilt, gives exactly the findings the audit wrote."""
    inventory, recorded = recording("baseline")
    monkeypatch.setattr(audit, "collect_inventory", lambda *_: dict(recorded.collection))
    monkeypatch.setattr(audit, "collect_windows_inventory", lambda *_: {})
    options = AuditOptions(network_probes=False)
    result = run_audit(BASELINE_INVENTORY, tmp_path / "run", SilentObserver(), options)

    path = tmp_path / "run" / OBSERVATIONS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    written = read_observations(path)
    assert written == replace(Observations(), collection=recorded.collection)
    again = evaluate_all(restore_context(inventory, written))
    assert [f.model_dump() for f in again] == [f.model_dump() for f in result.findings]


def test_restore_context_hands_the_checks_what_the_audit_had() -> None:
    observations = every_kind()
    ctx = restore_context(load_inventory(BASELINE_INVENTORY), observations)
    assert isinstance(ctx, AuditContext)
    assert observations_of(ctx) == observations
    assert ctx.facts("term-2") is None and "timeout" in ctx.collection_problem("term-2")
