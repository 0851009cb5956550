"""The state folder: the overlap lock across processes, stale runs, retention."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from auditor.watch.state import LockHeldError, Retention, RunRecord, RunState, StateDir
from tests.unit.watch.watch_helpers import T0

HOLD_LOCK = """
import sys, time
from pathlib import Path
from auditor.watch.state import StateDir
with StateDir(Path(sys.argv[1])).lock():
    print("locked", flush=True)
    time.sleep(60)
"""


def _hold_lock_in_child(root: Path) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(root)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "locked"
    return child


def test_a_second_process_cannot_take_the_lock_and_learns_who_holds_it(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    child = _hold_lock_in_child(tmp_path)
    try:
        assert state.lock_is_held()
        with pytest.raises(LockHeldError, match=f"pid {child.pid}"), state.lock():
            pytest.fail("the lock was granted twice")
    finally:
        child.kill()
        child.wait()
    # The kernel released it with the dead holder: no stale lock file to clean up by hand.
    assert not state.lock_is_held()
    with state.lock():
        assert state.lock_is_held()


def rid(name: str) -> str:
    """A run id of the form new_run_id makes (the state folder accepts no other), its suffix
    spelling ``name`` in hex so that the tests stay readable."""
    return "20250401T090000Z-" + name.encode().hex().ljust(6, "0")[:6]


def _record(run_id: str, minutes: int, run_state: RunState) -> RunRecord:
    return RunRecord(id=rid(run_id), state=run_state, started=T0 + timedelta(minutes=minutes))


def test_stale_running_marker_becomes_interrupted(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    state.ensure()
    for record in (
        _record("a", 0, RunState.FINISHED),
        _record("b", 10, RunState.RUNNING),
    ):
        (state.run_dir(record.id)).mkdir()
        state.write_record(record)
    # A reader without the lock already shows it as dead: nobody holds the lock.
    stale = state.read_record(rid("b"))
    assert stale is not None and state.effective_state(stale) is RunState.INTERRUPTED
    with state.lock():
        marked = state.mark_stale_as_interrupted(T0)
    assert [r.id for r in marked] == [rid("b")]
    reread = state.read_record(rid("b"))
    assert reread is not None and reread.state is RunState.INTERRUPTED and reread.error
    assert state.latest_finished() is not None and state.latest_finished().id == rid("a")  # type: ignore[union-attr]


def test_a_running_run_shows_as_running_while_its_lock_is_held(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    state.ensure()
    state.run_dir(rid("r")).mkdir()
    state.write_record(_record("r", 0, RunState.RUNNING))
    child = _hold_lock_in_child(tmp_path)
    try:
        record = state.read_record(rid("r"))
        assert record is not None and state.effective_state(record) is RunState.RUNNING
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()


def test_marker_is_never_half_written(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    state.ensure()
    state.run_dir(rid("r")).mkdir()
    state.write_record(_record("r", 0, RunState.RUNNING))
    leftovers = [p.name for p in state.run_dir(rid("r")).iterdir() if p.name.startswith(".")]
    assert leftovers == []
    # 0600: a marker names the inventory, the host and the run's errors.
    assert oct(os.stat(state.run_dir(rid("r")) / "watch-run.json").st_mode & 0o777) == "0o600"


RECORDS = [
    _record("r1", 0, RunState.FINISHED),
    _record("r2", 60, RunState.INTERRUPTED),
    _record("r3", 120, RunState.FINISHED),
    _record("r4", 180, RunState.FAILED),
    _record("r5", 240, RunState.FINISHED),
    _record("r6", 300, RunState.RUNNING),
]


def test_retention_keeps_the_newest_runs() -> None:
    assert Retention(keep=3).select(RECORDS, T0) == [rid("r1"), rid("r2"), rid("r3")]
    assert Retention(keep=10).select(RECORDS, T0) == []
    assert Retention().select(RECORDS, T0 + timedelta(days=999)) == []


def test_retention_by_age() -> None:
    now = T0 + timedelta(minutes=300)
    assert Retention(max_age=timedelta(minutes=200)).select(RECORDS, now) == [rid("r1"), rid("r2")]


def test_retention_never_removes_the_newest_finished_nor_a_running_run() -> None:
    now = T0 + timedelta(days=30)
    assert Retention(keep=1, max_age=timedelta(hours=1)).select(RECORDS, now) == [
        rid("r1"),
        rid("r2"),
        rid("r3"),
        rid("r4"),
    ]
    with pytest.raises(ValueError, match="at least one"):
        Retention(keep=0)


def test_prune_removes_the_folders(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    state.ensure()
    for record in RECORDS[:3]:
        state.run_dir(record.id).mkdir()
        (state.run_dir(record.id) / "findings.json").write_text("{}")
        state.write_record(record)
    removed = state.prune(Retention(keep=1), T0)
    assert removed == [rid("r1"), rid("r2")]
    assert sorted(p.name for p in state.runs_dir.iterdir()) == [rid("r3")]


def test_records_ignore_folders_without_a_marker(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    state.ensure()
    (state.runs_dir / "not-a-run").mkdir()
    (state.runs_dir / "broken").mkdir()
    (state.runs_dir / "broken" / "watch-run.json").write_text("{not json")
    time.sleep(0)
    assert state.records() == []
