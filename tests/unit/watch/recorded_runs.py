"""Run folders made of real data: the lab's inventory and the facts of the lab's hosts parsed
from outputs recorded on the lab (tests/data/recorded), as the watcher and the audit leave
them (findings.json, facts.json, watch-inventory.yaml)."""

from __future__ import annotations

import json
from pathlib import Path

from auditor.domain.facts import HostFacts, Route
from auditor.domain.findings import Finding, write_findings
from probes.parsers.iproute import parse_ip_addr, parse_ip_route, parse_ip_rule
from probes.parsers.keyvalue import parse_flag
from probes.parsers.nft import parse_nft_ruleset
from tests.unit.watch.watch_helpers import document

DATA = Path(__file__).parents[2] / "data"
RECORDED = DATA / "recorded"
INVENTORY = DATA / "inventory" / "lab.yaml"
LAB_HOSTS = {"recv-srv": "lab-recv-srv", "proc-srv": "lab-proc-srv", "send-srv": "lab-send-srv"}


def _text(name: str) -> str:
    return (RECORDED / name).read_text(encoding="utf-8")


def recorded_facts(host: str) -> HostFacts:
    prefix = LAB_HOSTS[host]
    return HostFacts(
        host=host,
        interfaces=parse_ip_addr(_text(f"{prefix}.ip-addr.json")),
        routes=parse_ip_route(_text(f"{prefix}.ip-route-v4.json"), 4)
        + parse_ip_route(_text(f"{prefix}.ip-route-v6.json"), 6),
        policy_rules=parse_ip_rule(_text(f"{prefix}.ip-rule-v4.json"), 4)
        + parse_ip_rule(_text(f"{prefix}.ip-rule-v6.json"), 6),
        forwarding_v4=parse_flag(_text(f"{prefix}.ip_forward.txt"), "sysctl"),
        forwarding_v6=parse_flag(_text(f"{prefix}.ipv6-forwarding.txt"), "sysctl"),
        nftables=parse_nft_ruleset(_text(f"{prefix}.nft-ruleset.json")),
    )


def opened_recv_srv() -> HostFacts:
    """recv-srv after the drift test's manual change: an output chain that accepts everything
    (the rule set recorded with the real nft) and default routes into carrier-in."""
    base = recorded_facts("recv-srv")
    opened = json.loads((DATA / "nft" / "recv-srv-open.json").read_text(encoding="utf-8"))
    defaults = [
        Route(family=4, destination="default", gateway="10.98.10.1", device="carrier-in"),
        Route(family=6, destination="default", gateway="fd98:0:0:10::1", device="carrier-in"),
    ]
    return base.model_copy(update={"nftables": opened, "routes": [*(base.routes or []), *defaults]})


def write_run(folder: Path, findings: list[Finding], facts: dict[str, HostFacts] | None) -> Path:
    folder.mkdir(parents=True)
    write_findings(folder / "findings.json", document(findings, run_id=folder.name))
    (folder / "watch-inventory.yaml").write_bytes(INVENTORY.read_bytes())
    if facts is not None:
        dump = {h: f.model_dump(mode="json") for h, f in facts.items()}
        (folder / "facts.json").write_text(json.dumps(dump), encoding="utf-8")
    return folder
