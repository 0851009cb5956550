"""Record the host facts of the lab's organisation hosts, per scenario, with the real collector.

Run as root, holding the lab lock:
    flock /tmp/auditor-lab.lock .venv/bin/python tests/data/hostcontrols/record.py [SCENARIO...]
Writes tests/data/hostcontrols/<scenario>/<host>.json (HostFacts as collected: the raw texts of
files and commands verbatim, the other facts parsed by the collector's parsers) and
<scenario>/inventory.yaml (the lab's inventory, keys and known_hosts paths left as they were).
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from datetime import datetime
from pathlib import Path

from auditor.audit.scope import ScopeGuard
from auditor.domain.inventory import load_inventory
from lab import runtime
from probes.host_collector import collect_inventory

HERE = Path(__file__).parent
DEFAULT_SCENARIOS = ["baseline", "terminal-usb", "remote-control", "logging-off", "send-inbound"]


class DigestSink:
    """Keeps nothing but the reference each artifact would have in the evidence store."""

    def add(self, content: bytes, *, probe: str, command: str, host: str | None,
            started: datetime, finished: datetime, tool_version: str | None = None,
            media_type: str = "text/plain", exit_status: int | None = None) -> str:  # fmt: skip
        return "sha256:" + hashlib.sha256(content).hexdigest()


def record(scenario: str) -> None:
    state = runtime.up(scenario)
    inventory = load_inventory(state.inventory_path)
    guard = ScopeGuard.from_inventory(inventory)
    attempts = collect_inventory(inventory, DigestSink(), guard.check)
    out = HERE / scenario
    out.mkdir(exist_ok=True)
    shutil.copyfile(state.inventory_path, out / "inventory.yaml")
    for host, attempt in attempts.items():
        assert attempt.value is not None, f"{scenario}/{host}: {attempt.error}"
        (out / f"{host}.json").write_text(
            attempt.value.model_dump_json(indent=1) + "\n", encoding="utf-8"
        )
        print(scenario, host, attempt.status, sorted(attempt.value.errors))


if __name__ == "__main__":
    for name in sys.argv[1:] or DEFAULT_SCENARIOS:
        record(name)
    runtime.down()
