"""One watched run, start to end, and the loop that runs them on a schedule.

A run, under the state folder's lock:

1. runs a previous process left marked ``running`` are marked ``interrupted``; finished runs
   whose drift or alerts were not recorded (a crash between two steps) are completed now;
2. the run's folder and its ``running`` marker are written, and the inventory copied beside;
3. the audit runs (``auditor.audit.orchestrator.run_audit``) and writes findings.json and the evidence;
4. the marker becomes ``finished`` (or ``failed``), atomically;
5. its verdicts are compared with the last finished run's, changes appended to drift.jsonl;
6. alerts are sent for the changes; metrics written; old runs pruned.

Each step is recorded in the marker once done, so a run killed anywhere loses nothing: the
next run completes what is missing and never compares against an unfinished run.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from auditor.audit.observer import AuditObserver
from auditor.audit.orchestrator import new_run_id
from auditor.domain.errors import AuditorError
from auditor.domain.files import PRIVATE, write_bytes_atomically
from auditor.domain.findings import FindingsDocument, read_findings
from auditor.watch.alerts import AlertContext, Alerter, Delivery, send_alerts
from auditor.watch.drift import (
    Change,
    already_recorded,
    append_changes,
    compute_changes,
    read_changes,
)
from auditor.watch.metrics import WatchSnapshot, write_metrics
from auditor.watch.schedule import Schedule
from auditor.watch.state import (
    FINDINGS_FILE,
    INVENTORY_COPY,
    LockHeldError,
    Retention,
    RunRecord,
    RunState,
    StateDir,
)

log = logging.getLogger(__name__)

#: Longest single sleep while waiting for a tick, so that a changed wall clock (a suspended
#: laptop, an NTP step) is noticed within this many seconds.
_MAX_NAP = 30.0


class AuditCannotRunError(AuditorError):
    """The audit refused to start (bad inventory, nothing in scope, unwritable folder)."""


class StopRequested(BaseException):
    """Raised in the main thread by a signal handler to abandon a run in progress.

    A BaseException, like KeyboardInterrupt, so that the audit's per-phase ``except Exception``
    lets it through instead of recording it as one more phase problem."""


class AuditRunner(Protocol):
    def __call__(self, inventory: Path, out_dir: Path) -> None: ...


@dataclass
class RunOutcome:
    record: RunRecord | None
    changes: list[Change] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    skipped: str | None = None  #: why no run was started (another one holds the lock)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Watcher:
    inventory: Path
    state: StateDir
    audit: AuditRunner
    alerters: list[Alerter] = field(default_factory=list)
    retention: Retention = field(default_factory=Retention)
    metrics_file: Path | None = None
    clock: Callable[[], datetime] = _now
    #: True only while the audit itself runs: the window in which a stop may abandon the run
    auditing: bool = False

    @property
    def metrics_path(self) -> Path:
        return self.metrics_file or self.state.default_metrics_file

    # -- one run -----------------------------------------------------------------------------

    def run_once(self) -> RunOutcome:
        self.state.ensure()
        try:
            with self.state.lock():
                return self._locked_run()
        except LockHeldError as exc:
            log.warning("tick skipped: %s", exc)
            return RunOutcome(None, skipped=str(exc))

    def _locked_run(self) -> RunOutcome:
        self._recover()
        record = self._start_record()
        began = time.monotonic()
        try:
            document = self._audit(record)
        except StopRequested as exc:
            self._close_record(record, RunState.INTERRUPTED, began, f"stopped: {exc}")
            self._write_metrics()
            raise
        except Exception as exc:
            self._close_record(record, RunState.FAILED, began, f"{type(exc).__name__}: {exc}")
            log.error("run %s failed: %s", record.id, record.error)
            self._write_metrics()
            return RunOutcome(record)
        self._finish_record(record, document, began)
        changes = self._record_drift(record, document)
        deliveries = self._alert(record, changes)
        self._write_metrics()
        self._prune()
        return RunOutcome(record, changes, deliveries)

    def _start_record(self) -> RunRecord:
        now = self.clock()
        record = RunRecord(
            id=new_run_id(now),
            state=RunState.RUNNING,
            started=now,
            pid=os.getpid(),
            host=socket.gethostname(),
            inventory=str(self.inventory.resolve()),
        )
        self.state.make_run_dir(record.id)
        self.state.write_record(record)
        log.info("run %s started", record.id)
        return record

    def _audit(self, record: RunRecord) -> FindingsDocument:
        run_dir = self.state.run_dir(record.id)
        # Kept so that `auditor diff` can rebuild this run's topology even after the inventory
        # file changed or vanished. 0600: it lists the hosts, their addresses and accounts.
        write_bytes_atomically(run_dir / INVENTORY_COPY, self.inventory.read_bytes(), PRIVATE)
        self.auditing = True
        try:
            self.audit(self.inventory, run_dir)
        finally:
            self.auditing = False
        return read_findings(run_dir / FINDINGS_FILE)

    def _close_record(self, record: RunRecord, state: RunState, began: float, error: str) -> None:
        record.state = state
        record.error = error
        record.finished = self.clock()
        record.duration_seconds = round(time.monotonic() - began, 3)
        self.state.write_record(record)

    def _finish_record(self, record: RunRecord, document: FindingsDocument, began: float) -> None:
        record.state = RunState.FINISHED
        record.finished = self.clock()
        record.duration_seconds = round(time.monotonic() - began, 3)
        record.findings_run = document.run.id
        counts: dict[str, int] = {}
        for finding in document.findings:
            counts[finding.status.value] = counts.get(finding.status.value, 0) + 1
        record.counts = dict(sorted(counts.items()))
        self.state.write_record(record)
        log.info("run %s finished in %.1f s: %s", record.id, record.duration_seconds, counts)

    # -- drift and alerts --------------------------------------------------------------------

    def _record_drift(self, record: RunRecord, document: FindingsDocument) -> list[Change]:
        previous = self.state.finished_before(record)
        changes: list[Change] = []
        if previous is not None:
            before = self._findings_of(previous)
            if before is not None:
                at = record.finished or self.clock()
                changes = compute_changes(
                    before, document, run=record.id, previous_run=previous.id, at=at
                )
                record.previous_run = previous.id
        # The log may already hold them when a crash came between the append and the marker.
        if not already_recorded(self.state.drift_file, record.id):
            append_changes(self.state.drift_file, changes)
        record.changes = len(changes)
        record.drift_recorded = True
        self.state.write_record(record)
        for change in changes:
            log.warning("verdict changed: %s (run %s)", change.describe(), record.id)
        return changes

    def _findings_of(self, record: RunRecord) -> FindingsDocument | None:
        try:
            return read_findings(self.state.run_dir(record.id) / FINDINGS_FILE)
        except (OSError, ValueError) as exc:
            log.error("cannot read the findings of run %s: %s", record.id, exc)
            return None

    def _alert(self, record: RunRecord, changes: list[Change]) -> list[Delivery]:
        deliveries: list[Delivery] = []
        if changes and self.alerters:
            context = AlertContext(
                run=record.id,
                previous_run=record.previous_run or "",
                state_dir=str(self.state.root.resolve()),
                hostname=socket.gethostname(),
            )
            deliveries = send_alerts(self.alerters, context, changes)
        record.alerted = True
        record.alert_results = [d.describe() for d in deliveries]
        self.state.write_record(record)
        return deliveries

    def _recover(self) -> None:
        """Complete what an earlier process left undone (called under the lock)."""
        for stale in self.state.mark_stale_as_interrupted(self.clock()):
            log.warning("run %s was interrupted (its process ended mid-run)", stale.id)
        for record in self.state.records():
            if record.state is not RunState.FINISHED:
                continue
            if not record.drift_recorded:
                document = self._findings_of(record)
                if document is not None:
                    self._record_drift(record, document)
            if record.drift_recorded and not record.alerted:
                logged = [c for c in read_changes(self.state.drift_file) if c.run == record.id]
                self._alert(record, logged)

    # -- metrics and retention ---------------------------------------------------------------

    def _write_metrics(self) -> None:
        records = self.state.records()
        finished = [r for r in records if r.state is RunState.FINISHED]
        last_finished = finished[-1] if finished else None
        snapshot = WatchSnapshot(
            last_run=records[-1] if records else None,
            last_finished=last_finished,
            findings=self._findings_of(last_finished) if last_finished else None,
            drift_lines=len(read_changes(self.state.drift_file)),
            interrupted_runs=sum(1 for r in records if r.state is RunState.INTERRUPTED),
        )
        try:
            write_metrics(self.metrics_path, snapshot)
        except OSError as exc:
            log.error("cannot write metrics to %s: %s", self.metrics_path, exc)

    def _prune(self) -> None:
        for run_id in self.state.prune(self.retention, self.clock()):
            log.info("run %s removed (retention)", run_id)

    # -- the loop ----------------------------------------------------------------------------

    def serve(self, schedule: Schedule, stop: threading.Event, max_runs: int | None = None) -> int:
        """Run on the schedule until ``stop`` is set (or ``max_runs`` ran); return the number of
        runs started. Ticks that pass while a run is going are skipped, not queued."""
        log.info(
            "watching %s %s; state in %s", self.inventory, schedule.describe(), self.state.root
        )
        tick = self.clock() if schedule.immediate else schedule.next_after(self.clock())
        runs = 0
        while not self._sleep_until(tick, stop):
            self.run_once()
            runs += 1
            if max_runs is not None and runs >= max_runs:
                break
            after = self.clock()
            missed = _ticks_between(schedule, tick, after)
            if missed:
                log.warning("the run overran %d tick(s); they were skipped", missed)
            tick = schedule.next_after(after)
            log.info("next run at %s", tick.isoformat(timespec="seconds"))
        return runs

    def _sleep_until(self, moment: datetime, stop: threading.Event) -> bool:
        """Wait until ``moment`` by the wall clock; True if stopped first."""
        while not stop.is_set():
            remaining = (moment - self.clock()).total_seconds()
            if remaining <= 0:
                return False
            stop.wait(min(remaining, _MAX_NAP))
        return True


def _ticks_between(schedule: Schedule, tick: datetime, after: datetime) -> int:
    missed = 0
    following = schedule.next_after(tick)
    while following <= after and missed < 10_000:
        missed += 1
        following = schedule.next_after(following)
    return missed


def real_audit(
    capture_seconds: float,
    observer: AuditObserver,
    network_probes: bool = True,
    waivers: Path | None = None,
) -> AuditRunner:
    """The real audit (``auditor.audit.orchestrator.run_audit``), reporting to ``observer``
    (the command line's shows progress on stderr), applying ``waivers`` (read at each run)."""

    def run(inventory: Path, out_dir: Path) -> None:
        from auditor.audit.options import AuditOptions
        from auditor.audit.orchestrator import AuditError, run_audit
        from auditor.domain.yamlsource import SourceError

        options = AuditOptions(link_capture_seconds=capture_seconds, network_probes=network_probes)
        try:
            run_audit(inventory, out_dir, observer, options, waivers=waivers)
        except (AuditError, SourceError) as exc:
            raise AuditCannotRunError(str(exc)) from exc

    return run
