"""The `audit-lab` benchmark: the baseline lab audit end to end, per phase.

Holds /tmp/auditor-lab.lock (the same lock ``flock(1)`` takes: both use flock(2)) for the
whole run; brings the baseline up when another scenario or no lab runs, and takes down only a
lab it brought up itself.
"""

from __future__ import annotations

import fcntl
import resource
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

LOCK = Path("/tmp/auditor-lab.lock")


def run_audit_lab() -> dict[str, Any]:
    from auditor.audit import run_audit
    from auditor.lab import runtime
    from auditor.observer import SilentObserver

    with LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        running = runtime.current()
        brought_up = running is None or running.scenario != "baseline"
        lab_up_seconds = None
        if brought_up:
            began = time.perf_counter()
            running = runtime.up(None)
            lab_up_seconds = round(time.perf_counter() - began, 1)
        assert running is not None
        try:
            with tempfile.TemporaryDirectory(prefix="bench-audit-") as out:
                began = time.perf_counter()
                result = run_audit(running.inventory_path, Path(out), SilentObserver())
                seconds = time.perf_counter() - began
        finally:
            if brought_up:
                runtime.down()
    return {
        "name": "audit-lab",
        "size": len(running.containers),
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "phases": result.phases,
        "findings": dict(Counter(str(f.status) for f in result.findings)),
        "problems": result.problems,
        "lab_up_seconds": lab_up_seconds,
    }
