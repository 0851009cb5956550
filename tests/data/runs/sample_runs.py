"""Sample run folders for the report and bundle tests, made with the real evidence store.

``baseline``: every control passes on the reference lab's inventory. ``failing``: the receiving
server opens connections outward and the processing server reaches the Internet through the
office (paths with the rule at each hop), the sending server's model and probe disagree, one
link is inconclusive; facts.json gives proc-srv the office interface the inventory omits.

The artifacts are real outputs recorded from the lab (tests/data/recorded). Run this file to
regenerate the committed copies: ``.venv/bin/python tests/data/runs/sample_runs.py``.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from auditor.domain.facts import HostFacts, Interface, InterfaceAddress
from auditor.domain.findings import (
    Finding,
    FindingsDocument,
    Hop,
    Judgement,
    RunInfo,
    Status,
    write_findings,
)
from auditor.evidence.store import EvidenceStore, seal_run
from policies.model import load_controls, load_framework
from policies.snapshot import OBSERVATIONS_FILE, Observations, to_json

HERE = Path(__file__).resolve().parent
DATA = HERE.parent
RECORDED = DATA / "recorded"
LAB_INVENTORY = DATA / "inventory" / "lab.yaml"
T0 = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)

#: (host, probe, command, recorded file, media type)
ARTIFACTS = [
    (
        "recv-srv",
        "ssh-host",
        "nft -j list ruleset",
        "lab-recv-srv.nft-ruleset.json",
        "application/json",
    ),
    (
        "recv-srv",
        "ssh-host",
        "ip -j -4 route show table all",
        "lab-recv-srv.ip-route-v4.json",
        "application/json",
    ),
    ("recv-srv", "ssh-host", "ip -j addr show", "lab-recv-srv.ip-addr.json", "application/json"),
    (
        "proc-srv",
        "ssh-host",
        "nft -j list ruleset",
        "lab-proc-srv.nft-ruleset.json",
        "application/json",
    ),
    (
        "proc-srv",
        "ssh-host",
        "ip -j -4 route show table all",
        "lab-proc-srv.ip-route-v4.json",
        "application/json",
    ),
    (
        "send-srv",
        "ssh-host",
        "nft -j list ruleset",
        "lab-send-srv.nft-ruleset.json",
        "application/json",
    ),
    ("send-srv", "ssh-host", "ss -tulnp", "lab-send-srv.ss-tulnp.txt", "text/plain"),
    ("send-srv", "ssh-host", "cat /etc/machine-id", "lab-send-srv.machine-id.txt", "text/plain"),
    (
        "term-1",
        "ssh-host",
        "modprobe -n -v usb-storage",
        "lab-term-1.modprobe-usb-storage.txt",
        "text/plain",
    ),
]


def _store_artifacts(store: EvidenceStore) -> dict[str, str]:
    refs: dict[str, str] = {}
    for n, (host, probe, command, name, media) in enumerate(ARTIFACTS):
        started = T0 + timedelta(seconds=2 * n)
        refs[f"{host}:{name.split('.', 1)[1]}"] = store.add(
            (RECORDED / name).read_bytes(),
            probe=probe,
            command=command,
            host=host,
            started=started,
            finished=started + timedelta(milliseconds=350),
            tool_version="nftables v1.0.6" if command.startswith("nft") else None,
            media_type=media,
            exit_status=0,
        )
    return refs


def _finding(
    control: str, subject: str, status: Status, en: str, ja: str, **extra: object
) -> Finding:
    definition = load_controls()[control]
    return Finding(
        control=control,
        subject=subject,
        status=status,
        clauses=definition.clause_refs(load_framework()),
        summary=en,
        summary_ja=ja,
        **extra,  # type: ignore[arg-type]
    )


def _passed(control: str, subject: str, evidence: list[str]) -> Finding:
    model = Judgement(status=Status.PASS, detail=f"the model finds nothing against {control}")
    probe = Judgement(status=Status.PASS, detail="the probe saw nothing")
    return _finding(
        control,
        subject,
        Status.PASS,
        f"{subject} meets {control}",
        f"{subject} は {control} を満たす",
        expected="no path",
        actual="no path",
        model=model,
        empirical=probe,
        evidence=evidence,
    )


SUBJECTS = {
    "recv-no-outbound": ["recv-srv"],
    "send-no-inbound": ["send-srv"],
    "send-separate-host": ["send-srv"],
    "proc-egress-only-via-gateways": ["proc-srv"],
    "external-links-leased-or-vpn": ["recv-srv", "send-srv"],
    "links-encrypted": ["recv-srv", "send-srv"],
    "inventory-complete": ["line-recv", "line-send", "term-lan"],
}


def _evidence_of(subject: str, refs: dict[str, str]) -> list[str]:
    return sorted(ref for key, ref in refs.items() if key.startswith(f"{subject}:"))


def baseline_findings(refs: dict[str, str]) -> list[Finding]:
    return [
        _passed(control, subject, _evidence_of(subject, refs))
        for control, subjects in SUBJECTS.items()
        for subject in subjects
    ]


def _recv_outbound(refs: dict[str, str]) -> Finding:
    nft, route = refs["recv-srv:nft-ruleset.json"], refs["recv-srv:ip-route-v4.json"]
    return _finding(
        "recv-no-outbound",
        "recv-srv",
        Status.FAIL,
        "recv-srv can open new connections to carrier-in (external)",
        "recv-srv は外部ネットワーク carrier-in へ新規接続を開始できる",
        expected="no new connection from recv-srv reaches an external network",
        actual="TCP, UDP and ICMP from recv-srv reach 10.98.10.0/24 and beyond",
        model=Judgement(status=Status.FAIL, detail="output policy accept; default route"),
        empirical=Judgement(status=Status.FAIL, detail="egress seen on carrier-in: tcp/443"),
        path=[
            Hop(
                host="recv-srv",
                network="carrier-in",
                direction="output",
                rule="policy accept",
                rule_ref="inet filter output",
                evidence=[nft],
            ),
            Hop(
                host="recv-srv",
                network="carrier-in",
                direction="route",
                rule="default via 10.98.10.1 dev eth0",
                evidence=[route],
            ),
            Hop(
                host="recv-srv",
                network="carrier-in",
                direction="link",
                rule="delivered on carrier-in",
            ),
        ],
        evidence=[nft, route],
    )


def _proc_egress(refs: dict[str, str]) -> Finding:
    nft = refs["proc-srv:nft-ruleset.json"]
    return _finding(
        "proc-egress-only-via-gateways",
        "proc-srv",
        Status.FAIL,
        "proc-srv reaches inet through office and office-gw",
        "proc-srv は office と office-gw を経由して inet に到達できる",
        expected="proc-srv reaches outside only through recv-srv and send-srv",
        actual="new connections reach inet via office-gw",
        model=Judgement(status=Status.FAIL, detail="route via office-gw; office-gw forwards"),
        empirical=Judgement(status=Status.INCONCLUSIVE, detail="no egress attempt was made"),
        path=[
            Hop(
                host="proc-srv",
                network="office",
                direction="output",
                rule="policy accept",
                rule_ref="inet filter output",
                evidence=[nft],
            ),
            Hop(
                host="proc-srv",
                network="office",
                direction="route",
                rule="default via 10.98.40.254 dev eth3",
            ),
            Hop(host="office-gw", network="office", direction="input", rule="unknown"),
            Hop(host="office-gw", network="inet", direction="forward", rule="unknown"),
            Hop(host="inet-canary", network="inet", direction="input", rule="unknown"),
        ],
        evidence=[nft],
    )


def _send_disagreement(refs: dict[str, str]) -> Finding:
    evidence = _evidence_of("send-srv", refs)
    return _finding(
        "send-no-inbound",
        "send-srv",
        Status.FAIL,
        "a scan from carrier-out found tcp/2222 open on send-srv",
        "carrier-out からの走査で send-srv の tcp/2222 が開いていた",
        expected="nothing accepted from carrier-out or wg-out",
        actual="tcp/2222 open from carrier-out",
        model=Judgement(status=Status.PASS, detail="input drops everything new from carrier-out"),
        empirical=Judgement(status=Status.FAIL, detail="nmap from inet-canary: 2222/tcp open"),
        disagreement="the model says pass but the probe says fail: the rule set on the host may "
        "not be the one in force",
        evidence=evidence,
    )


def _links_inconclusive() -> Finding:
    return _finding(
        "links-encrypted",
        "send-srv",
        Status.INCONCLUSIVE,
        "no traffic was captured on carrier-out",
        "carrier-out で通信を捕捉できなかった",
        reason="no traffic was captured on carrier-out during the data flow",
    )


def failing_findings(refs: dict[str, str]) -> list[Finding]:
    replaced: dict[tuple[str, str], Finding] = {
        ("recv-no-outbound", "recv-srv"): _recv_outbound(refs),
        ("proc-egress-only-via-gateways", "proc-srv"): _proc_egress(refs),
        ("send-no-inbound", "send-srv"): _send_disagreement(refs),
        ("links-encrypted", "send-srv"): _links_inconclusive(),
    }
    return [replaced.get((f.control, f.subject), f) for f in baseline_findings(refs)]


def _address(address: str, prefixlen: int) -> InterfaceAddress:
    return InterfaceAddress(address=address, prefixlen=prefixlen, family=6 if ":" in address else 4)


def proc_srv_facts() -> HostFacts:
    """proc-srv as collected in the dual-homed scenario: a fourth interface on office."""
    networks = {"eth0": "21", "eth1": "22", "eth2": "30", "eth3": "40"}
    interfaces = [
        Interface(
            name=name,
            kind="veth",
            up=True,
            addresses=[_address(f"10.98.{octet}.30", 24), _address(f"fd98:0:0:{octet}::30", 64)],
        )
        for name, octet in networks.items()
    ]
    return HostFacts(host="proc-srv", interfaces=interfaces)


#: What an audit seals at its end (auditor/audit/orchestrator.py): the reports, rendered by
#: the fixtures afterwards, are sealed again by render_reports, as after `auditor report`.
SEALED = ["findings.json", "facts.json", OBSERVATIONS_FILE, "inventory.yaml"]


def make_run(
    run_dir: Path,
    run_id: str,
    findings_of: Callable[[dict[str, str]], list[Finding]],
    facts: dict[str, Any] | None = None,
) -> Path:
    """A closed, sealed run folder: evidence, findings.json, the inventory copy, facts.json when
    given (no reports)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with EvidenceStore.create(run_dir, run_id) as store:
        refs = _store_artifacts(store)
        info = RunInfo(
            id=run_id,
            started=T0.isoformat(),
            finished=(T0 + timedelta(seconds=95)).isoformat(),
            inventory="inventory.yaml",
            tool_version="0.1.0",
            phases={"collect": 12.5, "scan": 40.25, "model": 3.0, "judge": 0.5},
        )
        write_findings(
            run_dir / "findings.json", FindingsDocument(run=info, findings=findings_of(refs))
        )
        shutil.copyfile(LAB_INVENTORY, run_dir / "inventory.yaml")
        if facts is not None:
            text = json.dumps(facts, indent=2) + "\n"
            (run_dir / "facts.json").write_text(text, encoding="utf-8")
        # What the audit leaves for re-judging (empty here): sealed and bundled like the rest.
        (run_dir / OBSERVATIONS_FILE).write_text(to_json(Observations()) + "\n", encoding="utf-8")
    seal_run(run_dir, SEALED)
    return run_dir


def make_baseline(run_dir: Path) -> Path:
    return make_run(run_dir, "20261126T030000Z-baseline", baseline_findings)


def make_failing(run_dir: Path) -> Path:
    facts = {"proc-srv": proc_srv_facts().model_dump(mode="json")}
    return make_run(run_dir, "20261126T030000Z-failing", failing_findings, facts)


def regenerate(target: Path = HERE) -> None:
    from auditor.report import render_reports

    for name, make in (("baseline", make_baseline), ("failing", make_failing)):
        folder = target / name
        if folder.exists():
            shutil.rmtree(folder)
        make(folder)
        render_reports(folder)


if __name__ == "__main__":
    regenerate(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
