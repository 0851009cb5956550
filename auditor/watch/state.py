"""The state folder of ``auditor watch``: runs, their markers, the overlap lock, retention.

Layout::

    DIR/watch.lock                 held (flock) by the process running an audit, and only then
    DIR/drift.jsonl                one line per verdict change (auditor.watch.drift)
    DIR/metrics.prom               the Prometheus textfile (unless --metrics says elsewhere)
    DIR/runs/<id>/watch-run.json   the run's marker: running, finished, failed or interrupted
    DIR/runs/<id>/watch-inventory.yaml   the inventory as it was, to rebuild the topology later
    DIR/runs/<id>/findings.json, evidence/, facts.json    written by the audit itself

Nothing in the folder is trusted as a path. A run folder counts only if it is a real directory
(not a symlink) directly under ``runs/``, its name has the form of the ids ``new_run_id`` makes
(``RUN_ID``), and its marker's ``id`` is that same name; anything else is skipped with a warning.
Only such folders are ever written to or deleted (``prune``). The state folder and its run
folders are 0700, the files holding host data 0600, and none is opened through a symlink.

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
import logging
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, Field

from auditor.domain.errors import AuditorError
from auditor.domain.files import (
    PRIVATE,
    PRIVATE_DIR,
    UnsafePathError,
    is_real_dir,
    read_text_nofollow,
    write_text_atomically,
)

log = logging.getLogger(__name__)

MARKER_FILE = "watch-run.json"
INVENTORY_COPY = "watch-inventory.yaml"
FINDINGS_FILE = "findings.json"
FACTS_FILE = "facts.json"

#: The ids ``auditor.audit.orchestrator.new_run_id`` makes: UTC start, six hex digits. Being
#: one path component without dots or slashes, such an id can never name a folder outside runs/.
RUN_ID = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}")


def is_run_id(text: str) -> bool:
    return RUN_ID.fullmatch(text) is not None


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
        """The folder of run ``run_id``; ValueError for anything but a run id, so that no
        other text (a marker's, say) can ever become a path here."""
        if not is_run_id(run_id):
            raise ValueError(f"not a run id: {run_id!r}")
        return self.runs_dir / run_id

    def ensure(self) -> None:
        """Create the folder and runs/, both 0700: the runs hold the hosts' configuration.
        runs/ is tightened if an older version made it wider; a symlink there is refused."""
        self.root.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        if self.runs_dir.is_symlink():
            raise UnsafePathError(f"{self.runs_dir} is a symbolic link; refusing to use it")
        self.runs_dir.mkdir(mode=PRIVATE_DIR, exist_ok=True)
        if os.stat(self.runs_dir).st_mode & 0o077:
            os.chmod(self.runs_dir, PRIVATE_DIR)

    def make_run_dir(self, run_id: str) -> Path:
        """Create a new run's folder (0700); it must not exist yet."""
        path = self.run_dir(run_id)
        path.mkdir(mode=PRIVATE_DIR)
        return path

    # -- markers ---------------------------------------------------------------------------

    def write_record(self, record: RunRecord) -> None:
        # Replaced by rename: a symlink planted at the marker's name is replaced, not followed.
        write_text_atomically(
            self.run_dir(record.id) / MARKER_FILE,
            record.model_dump_json(indent=2) + "\n",
            mode=PRIVATE,
        )

    def read_record(self, run_id: str) -> RunRecord | None:
        """The marker of run ``run_id``, if that is a run folder of ours (see the module
        docstring); None otherwise, with a warning when something is there but is not one."""
        if not is_run_id(run_id):
            return None
        folder = self.run_dir(run_id)
        if folder.is_symlink():
            log.warning("runs/%s is a symbolic link, not a run folder; skipped", run_id)
            return None
        if not is_real_dir(folder):
            return None
        return self._read_marker(folder)

    def _read_marker(self, folder: Path) -> RunRecord | None:
        try:
            record = RunRecord.model_validate_json(read_text_nofollow(folder / MARKER_FILE))
        except FileNotFoundError:
            return None  # a folder without a marker: nothing was started there
        except (OSError, ValueError, UnsafePathError) as exc:
            log.warning("runs/%s: unreadable marker, skipped: %s", folder.name, exc)
            return None
        if record.id != folder.name:
            # Never used as a path: it could be "/etc" or "../..", and prune deletes by id.
            log.warning(
                "runs/%s: its marker names another run (%r); skipped", folder.name, record.id
            )
            return None
        return record

    def records(self) -> list[RunRecord]:
        """Every marked run, oldest first. Entries of runs/ that are not run folders of ours
        (see the module docstring) are skipped."""
        if not is_real_dir(self.runs_dir):
            return []
        found = []
        for entry in sorted(self.runs_dir.iterdir()):
            if not is_run_id(entry.name):
                if (entry / MARKER_FILE).exists():
                    # %r: the name is anyone's text, and could hold a newline (a forged log line).
                    log.warning("runs/%r: not a run id, skipped", entry.name)
                continue
            found.append(self.read_record(entry.name))
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
        self.root.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        # O_NOFOLLOW: the lock file is truncated below, and a symlink there could name any file.
        fd = self._open_lock(os.O_RDWR | os.O_CREAT)
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
        if not os.path.lexists(self.lock_file):
            return False
        fd = self._open_lock(os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)  # closing drops the probe lock if we got it
        return False

    def _open_lock(self, flags: int) -> int:
        try:
            return os.open(self.lock_file, flags | os.O_NOFOLLOW | os.O_CLOEXEC, PRIVATE)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafePathError(
                    f"{self.lock_file} is a symbolic link; refusing to use it as the lock"
                ) from exc
            raise

    # -- retention -------------------------------------------------------------------------

    def prune(self, policy: Retention, now: datetime) -> list[str]:
        """Delete runs the policy no longer keeps; return the ids of those deleted. Only run
        folders that ``records`` validated are candidates, and each is checked again just
        before: a real directory directly under runs/, never a symlink."""
        removed = []
        for run_id in policy.select(self.records(), now):
            if self._remove_run(run_id):
                removed.append(run_id)
        return removed

    def _remove_run(self, run_id: str) -> bool:
        folder = self.run_dir(run_id)
        if not is_real_dir(folder):
            log.warning("runs/%s is not a real folder any more; not removed", run_id)
            return False
        try:
            # On Linux rmtree works on file descriptors and refuses a symlink at the top (also
            # one swapped in after the check above); it never follows one inside.
            shutil.rmtree(folder)
        except OSError as exc:
            log.error("runs/%s could not be removed: %s", run_id, exc)
            return False
        return True


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
