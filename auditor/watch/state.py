"""The state folder of ``auditor watch``: runs, their markers, the overlap lock, retention.

Layout::

    DIR/watch.lock                 held (flock) by the process running an audit, and only then
    DIR/drift.jsonl                one line per verdict change (auditor.watch.drift)
    DIR/metrics.prom               the Prometheus textfile (unless --metrics says elsewhere)
    DIR/runs/<id>/watch-run.json   the run's marker: running, finished, failed or interrupted
    DIR/runs/<id>/watch-inventory.yaml   the inventory as it was, to rebuild the topology later
    DIR/runs/<id>/findings.json, evidence/, facts.json    written by the audit itself

A run's marker says ``running`` from before the audit starts until it is replaced, atomically,
by ``finished`` (or ``failed``). A process killed mid-run leaves ``running`` behind; since the
lock dies with its holder, whoever next holds the lock knows that such a run is dead and marks it
``interrupted``. Only finished runs are ever compared, so an interrupted run never counts as a
change.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from auditor.domain.errors import AuditorError
from auditor.domain.files import write_text_atomically

MARKER_FILE = "watch-run.json"
INVENTORY_COPY = "watch-inventory.yaml"
FINDINGS_FILE = "findings.json"
FACTS_FILE = "facts.json"


class RunState(StrEnum):
    RUNNING = "running"
    FINISHED = "finished"  #: findings.json written; the only state that is ever compared
    FAILED = "failed"  #: the audit could not run (bad inventory, nothing in scope, no output)
    INTERRUPTED = "interrupted"  #: killed or stopped before it finished


class RunRecord(BaseModel):
    """The marker of one run (``watch-run.json``)."""

    id: str
    state: RunState
    started: datetime
    finished: datetime | None = None
    duration_seconds: float | None = None
    pid: int | None = None
    host: str | None = None
    inventory: str | None = None
    findings_run: str | None = None  #: the run id the audit wrote into findings.json
    counts: dict[str, int] = Field(default_factory=dict)  #: status -> number of findings
    error: str | None = None  #: why it failed or was interrupted
    previous_run: str | None = None  #: the finished run it was compared with
    changes: int | None = None  #: verdict changes against previous_run
    drift_recorded: bool = False  #: its changes are in drift.jsonl
    alerted: bool = False  #: alerts for its changes were attempted
    alert_results: list[str] = Field(default_factory=list)


class LockHeldError(AuditorError):
    """Another process is running an audit in this state folder."""

    def __init__(self, holder: str) -> None:
        super().__init__(f"another run is in progress ({holder})")
        self.holder = holder


@dataclass
class StateDir:
    root: Path

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def drift_file(self) -> Path:
        return self.root / "drift.jsonl"

    @property
    def lock_file(self) -> Path:
        return self.root / "watch.lock"

    @property
    def default_metrics_file(self) -> Path:
        return self.root / "metrics.prom"

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def ensure(self) -> None:
        self.runs_dir.mkdir(parents=True, exist_ok=True)

    # -- markers ---------------------------------------------------------------------------

    def write_record(self, record: RunRecord) -> None:
        write_text_atomically(
            self.run_dir(record.id) / MARKER_FILE, record.model_dump_json(indent=2) + "\n"
        )

    def read_record(self, run_id: str) -> RunRecord | None:
        path = self.run_dir(run_id) / MARKER_FILE
        try:
            return RunRecord.model_validate_json(path.read_text(encoding="utf-8"))
        except (OSError, ValidationError):
            return None

    def records(self) -> list[RunRecord]:
        """Every marked run, oldest first. Folders without a readable marker are not runs of
        ours (or their marker was never written: nothing was started there)."""
        if not self.runs_dir.is_dir():
            return []
        found = [self.read_record(p.name) for p in self.runs_dir.iterdir() if p.is_dir()]
        return sorted((r for r in found if r is not None), key=lambda r: (r.started, r.id))

    def finished_before(self, record: RunRecord) -> RunRecord | None:
        """The last finished run that started before ``record``: what it is compared with."""
        earlier = [
            r
            for r in self.records()
            if r.state is RunState.FINISHED and (r.started, r.id) < (record.started, record.id)
        ]
        return earlier[-1] if earlier else None

    def latest_finished(self) -> RunRecord | None:
        finished = [r for r in self.records() if r.state is RunState.FINISHED]
        return finished[-1] if finished else None

    def mark_stale_as_interrupted(self, now: datetime) -> list[RunRecord]:
        """Call only while holding the lock: a run still marked running then has no live
        process (the lock dies with its holder), so it was killed mid-way."""
        stale = [r for r in self.records() if r.state is RunState.RUNNING]
        for record in stale:
            record.state = RunState.INTERRUPTED
            record.error = record.error or "the process running it ended before it finished"
            record.finished = None
            record.duration_seconds = None
            self.write_record(record)
        return stale

    def effective_state(self, record: RunRecord) -> RunState:
        """What a reader without the lock should show: a ``running`` run whose lock is free
        is dead (interrupted), even before the next run marks it so."""
        if record.state is RunState.RUNNING and not self.lock_is_held():
            return RunState.INTERRUPTED
        return record.state

    # -- the overlap lock ------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run lock, or raise LockHeldError at once (a tick never waits for, nor starts
        beside, a run in progress). flock is released by the kernel if the holder dies."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                raise LockHeldError(_read_holder(fd)) from exc
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} since {datetime.now(UTC).isoformat()}\n".encode(), 0)
            yield
        finally:
            os.close(fd)

    def lock_is_held(self) -> bool:
        if not self.lock_file.exists():
            return False
        fd = os.open(self.lock_file, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)  # closing drops the probe lock if we got it
        return False

    # -- retention -------------------------------------------------------------------------

    def prune(self, policy: Retention, now: datetime) -> list[str]:
        """Delete runs the policy no longer keeps; return their ids."""
        doomed = policy.select(self.records(), now)
        for run_id in doomed:
            shutil.rmtree(self.run_dir(run_id), ignore_errors=True)
        return doomed


def _read_holder(fd: int) -> str:
    try:
        return os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown holder"
    except OSError:
        return "unknown holder"


@dataclass(frozen=True)
class Retention:
    """Keep at most ``keep`` runs and none older than ``max_age`` (None: no such limit).

    Never deleted: a run in progress, and the newest finished run, which the next run is
    compared with (deleting it would turn the next comparison into a false "no change")."""

    keep: int | None = None
    max_age: timedelta | None = None

    def __post_init__(self) -> None:
        if self.keep is not None and self.keep < 1:
            raise ValueError("retention must keep at least one run")

    def select(self, records: list[RunRecord], now: datetime) -> list[str]:
        protected = {r.id for r in records if r.state is RunState.RUNNING}
        finished = [r for r in records if r.state is RunState.FINISHED]
        if finished:
            protected.add(finished[-1].id)
        doomed: list[str] = []
        if self.max_age is not None:
            doomed += [r.id for r in records if now - r.started > self.max_age]
        if self.keep is not None and len(records) > self.keep:
            doomed += [r.id for r in records[: len(records) - self.keep]]
        ordered = dict.fromkeys(d for d in doomed if d not in protected)
        return list(ordered)
