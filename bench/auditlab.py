"""The `audit-lab` benchmark: the baseline lab audit end to end, per phase.

Holds /tmp/auditor-lab.lock (the same lock ``flock(1)`` takes: both use flock(2)) for the
whole run; uses a running baseline lab as it is, otherwise brings the baseline up (replacing
any other scenario) and takes it down afterwards, also when bringing it up failed halfway.

Timed: ``run_audit`` with the default options (every phase, network probes included, then
findings.json and the reports) into a temporary folder. The network phases overlap
(docs/network-probes.md): each phase's figure is its own wall time, and the audit's is the
benchmark's ``seconds``. The machine is shared, so the load
averages around the audit and its process time are recorded with the wall time. The findings
are compared with the scenario's expectations: a baseline audit that fails or is
inconclusive somewhere measured something other than a working audit, and says so.
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.lablock import holding_lab_lock

if TYPE_CHECKING:
    from auditor.audit.orchestrator import AuditResult
    from lab.runtime import LabState

SCENARIO = "baseline"


def run_audit_lab() -> dict[str, Any]:
    with holding_lab_lock(), _baseline_lab() as (lab, lab_up_seconds):
        entry = _timed_audit(lab)
    entry["lab_up_seconds"] = lab_up_seconds
    return entry


@contextmanager
def _baseline_lab() -> Iterator[tuple[LabState, float | None]]:
    """The running baseline lab (and None), or one brought up for the block (and the
    seconds that took), taken down after it."""
    from lab import runtime

    running = runtime.current()
    if running is not None and running.scenario == SCENARIO:
        yield running, None
        return
    began = time.perf_counter()
    try:
        lab = runtime.up(None)
        yield lab, round(time.perf_counter() - began, 1)
    finally:
        runtime.down()


def _rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _timed_audit(lab: LabState) -> dict[str, Any]:
    from auditor.audit.observer import SilentObserver
    from auditor.audit.orchestrator import run_audit
    from auditor.domain.inventory import load_inventory
    from probes.host_collector import targets_from_inventory

    inventory = load_inventory(lab.inventory_path)
    rss_before = _rss_mb()
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as out:
        load_before, cpu, began = _load(), time.process_time(), time.perf_counter()
        result = run_audit(lab.inventory_path, Path(out), SilentObserver())
        seconds = time.perf_counter() - began
        cpu_seconds, load_after = time.process_time() - cpu, _load()
    return {
        "name": "audit-lab",
        "size": len(inventory.hosts),
        "seconds": round(seconds, 2),
        # ru_maxrss is the process's peak so far: when bringing the lab up (same process)
        # had reached more than the audit, peak_rss_mb equals before_audit_peak_rss_mb.
        "peak_rss_mb": _rss_mb(),
        "before_audit_peak_rss_mb": rss_before,
        "cpu_seconds": round(cpu_seconds, 2),
        "load_average": {"before": load_before, "after": load_after},
        # Each phase's own wall time; the network phases overlap, so they add up to more
        # than the audit took (phases_seconds: first phase's start to the last one's end).
        "phases": result.phases,
        "phases_seconds": result.phases_seconds,
        "phases_sum_seconds": round(sum(result.phases.values()), 2),
        # findings.json, evidence manifest and the reports, after the last phase.
        "outside_phases_seconds": round(seconds - result.phases_seconds, 2),
        "ssh_hosts": len(targets_from_inventory(inventory)),
        "scenario": lab.scenario,
        "findings": dict(Counter(str(f.status) for f in result.findings)),
        "unexpected_findings": unexpected_findings(result, lab.expect_fail),
        "problems": result.problems,
        "artifacts": result.artifacts,
    }


def unexpected_findings(result: AuditResult, expect_fail: list[tuple[str, str]]) -> list[str]:
    """Findings other than the scenario expects: each expected pair fails, every other
    finding passes or does not apply."""
    expected = set(expect_fail)
    wrong = []
    for finding in result.findings:
        should_fail = (finding.control, finding.subject) in expected
        fine = (
            finding.status == "fail"
            if should_fail
            else finding.status in ("pass", "not-applicable")
        )
        if not fine:
            wrong.append(f"{finding.control} {finding.subject}: {finding.status}")
    return wrong
