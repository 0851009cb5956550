"""The state folder trusts none of its own content as a path.

Everything in it could have been planted by whoever can write there: a marker whose id leads out
of runs/, a run folder that is a symlink, a symlink at the name of the drift log or the lock.
As root, following any of them would delete, append to or truncate a file anywhere."""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from auditor.audit.orchestrator import new_run_id
from auditor.domain.files import UnsafePathError
from auditor.watch.drift import append_changes, compute_changes, read_changes
from auditor.watch.metrics import WatchSnapshot, write_metrics
from auditor.watch.state import MARKER_FILE, Retention, RunRecord, RunState, StateDir, is_run_id
from auditor.watch.watcher import Watcher
from tests.unit.watch.watch_helpers import (
    T0,
    ScriptedAudit,
    baseline_findings,
    document,
    opened_findings,
)

INVENTORY = Path(__file__).parents[2] / "data" / "inventory" / "lab.yaml"
OLD = "20250401T090000Z-aaaaaa"
NEW = "20250401T100000Z-bbbbbb"


def _mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o777


def _victim(tmp_path: Path, name: str = "victim") -> Path:
    """A folder outside the state folder, as /etc would be."""
    victim = tmp_path / name
    victim.mkdir()
    (victim / "precious").write_text("keep me")
    return victim


def _marker(state: StateDir, folder: str, record_id: str, minutes: int, run: RunState) -> None:
    """A marker written by hand, as an attacker would: any id, in any folder."""
    path = state.runs_dir / folder
    path.mkdir(parents=True, exist_ok=True)
    record = {"id": record_id, "state": run.value, "started": (T0 + timedelta(minutes=minutes))}
    (path / MARKER_FILE).write_text(json.dumps(record, default=str))


def test_run_ids_are_what_new_run_id_makes() -> None:
    assert is_run_id(new_run_id(T0))
    for bad in ("", "r1", "/x", "../../x", "..", f"{OLD}/..", f"{OLD}\n", f"../{OLD}"):
        assert not is_run_id(bad), bad
    with pytest.raises(ValueError, match="not a run id"):
        StateDir(Path("/s")).run_dir("../../x")


@pytest.mark.parametrize("evil", ["../../victim", "ABSOLUTE"])
def test_prune_never_follows_a_marker_id_out_of_runs(
    tmp_path: Path, evil: str, caplog: pytest.LogCaptureFixture
) -> None:
    victim = _victim(tmp_path)
    evil = str(victim) if evil == "ABSOLUTE" else evil
    state = StateDir(tmp_path / "state")
    state.ensure()
    # state/runs/../../victim is tmp_path/victim.
    _marker(state, OLD, evil, 0, RunState.FAILED)
    _marker(state, NEW, NEW, 60, RunState.FINISHED)
    with caplog.at_level(logging.WARNING):
        state.prune(Retention(keep=1), T0 + timedelta(days=1))
        assert (victim / "precious").read_text() == "keep me"
        assert [r.id for r in state.records()] == [NEW]
    assert f"runs/{OLD}: its marker names another run" in caplog.text
    assert (state.runs_dir / OLD).is_dir()  # not ours to judge: left for a human


def test_a_marker_in_a_folder_not_named_like_a_run_is_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = StateDir(tmp_path / "state")
    state.ensure()
    _marker(state, "not-a-run", "not-a-run", 0, RunState.FAILED)
    _marker(state, NEW, NEW, 60, RunState.FINISHED)
    with caplog.at_level(logging.WARNING):
        assert [r.id for r in state.records()] == [NEW]
    assert "runs/'not-a-run': not a run id" in caplog.text


def test_a_run_folder_that_is_a_symlink_is_no_run_and_never_pruned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    victim = _victim(tmp_path)
    state = StateDir(tmp_path / "state")
    state.ensure()
    # A marker with the right id inside the target: only the link itself gives it away.
    (victim / MARKER_FILE).write_text(
        RunRecord(id=OLD, state=RunState.FAILED, started=T0).model_dump_json()
    )
    (state.runs_dir / OLD).symlink_to(victim)
    _marker(state, NEW, NEW, 60, RunState.FINISHED)
    with caplog.at_level(logging.WARNING):
        assert [r.id for r in state.records()] == [NEW]
        assert state.read_record(OLD) is None
        assert state.prune(Retention(keep=1), T0 + timedelta(days=1)) == []
    assert (victim / "precious").read_text() == "keep me"
    assert (state.runs_dir / OLD).is_symlink()
    assert f"runs/{OLD} is a symbolic link" in caplog.text


def test_prune_refuses_a_folder_swapped_for_a_symlink_after_validation(tmp_path: Path) -> None:
    victim = _victim(tmp_path)
    state = StateDir(tmp_path / "state")
    state.ensure()
    _marker(state, OLD, OLD, 0, RunState.FAILED)
    _marker(state, NEW, NEW, 60, RunState.FINISHED)
    records = state.records()

    class Swapping(Retention):
        def select(self, found: list[RunRecord], now: datetime) -> list[str]:
            doomed = Retention(keep=1).select(found, now)
            for run_id in doomed:  # the race: a link where the validated folder was
                folder = state.run_dir(run_id)
                (folder / MARKER_FILE).unlink()
                folder.rmdir()
                folder.symlink_to(victim)
            return doomed

    assert len(records) == 2
    assert state.prune(Swapping(), T0) == []
    assert (victim / "precious").read_text() == "keep me"


def test_prune_still_removes_real_run_folders(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    state.ensure()
    _marker(state, OLD, OLD, 0, RunState.FAILED)
    (state.runs_dir / OLD / "evidence").mkdir()
    (state.runs_dir / OLD / "evidence" / "link").symlink_to(tmp_path)  # never followed
    _marker(state, NEW, NEW, 60, RunState.FINISHED)
    assert state.prune(Retention(keep=1), T0) == [OLD]
    assert sorted(p.name for p in state.runs_dir.iterdir()) == [NEW]
    assert tmp_path.is_dir()


def test_the_drift_log_is_never_appended_through_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "passwd"
    target.write_text("root:x:0:0::/root:/bin/bash\n")
    log = tmp_path / "drift.jsonl"
    log.symlink_to(target)
    changes = compute_changes(
        document(baseline_findings()), document(opened_findings()), run=NEW, previous_run=OLD, at=T0
    )
    with pytest.raises(UnsafePathError, match=r"drift\.jsonl is a symbolic link"):
        append_changes(log, changes)
    with pytest.raises(UnsafePathError, match=r"drift\.jsonl is a symbolic link"):
        read_changes(log)
    assert target.read_text() == "root:x:0:0::/root:/bin/bash\n"


def test_the_drift_log_is_private(tmp_path: Path) -> None:
    changes = compute_changes(
        document(baseline_findings()), document(opened_findings()), run=NEW, previous_run=OLD, at=T0
    )
    append_changes(tmp_path / "drift.jsonl", changes)
    assert _mode(tmp_path / "drift.jsonl") == 0o600
    assert read_changes(tmp_path / "drift.jsonl") == changes


def test_the_lock_file_is_never_opened_through_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "shadow"
    target.write_text("precious\n")
    state = StateDir(tmp_path / "state")
    state.ensure()
    state.lock_file.symlink_to(target)
    with pytest.raises(UnsafePathError, match=r"watch\.lock is a symbolic link"), state.lock():
        pytest.fail("the lock was taken through a symlink")
    with pytest.raises(UnsafePathError):
        state.lock_is_held()
    assert target.read_text() == "precious\n"  # not truncated


def test_a_marker_symlink_is_replaced_not_written_through(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_text("precious")
    state = StateDir(tmp_path / "state")
    state.ensure()
    state.make_run_dir(NEW)
    (state.run_dir(NEW) / MARKER_FILE).symlink_to(target)
    state.write_record(RunRecord(id=NEW, state=RunState.RUNNING, started=T0))
    assert target.read_text() == "precious"
    marker = state.run_dir(NEW) / MARKER_FILE
    assert not marker.is_symlink() and _mode(marker) == 0o600
    assert state.read_record(NEW) is not None


def test_metrics_replace_a_symlink_and_stay_world_readable(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_text("precious")
    metrics = tmp_path / "auditor.prom"
    metrics.symlink_to(target)
    write_metrics(metrics, WatchSnapshot(None, None, None, 0, 0))
    assert target.read_text() == "precious"
    assert not metrics.is_symlink()
    assert _mode(metrics) == 0o644  # node_exporter reads it under its own account


def test_a_watched_run_leaves_private_folders_and_files(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)  # a usual umask: the modes must not come from it
    try:
        watcher = Watcher(
            inventory=INVENTORY,
            state=StateDir(tmp_path / "state"),
            audit=ScriptedAudit([baseline_findings(), opened_findings()]),
        )
        watcher.run_once()
        outcome = watcher.run_once()
    finally:
        os.umask(old_umask)
    assert outcome.record is not None and outcome.changes
    state = watcher.state
    run_dir = state.run_dir(outcome.record.id)
    assert _mode(state.root) == 0o700
    assert _mode(state.runs_dir) == 0o700
    assert _mode(run_dir) == 0o700
    assert _mode(run_dir / MARKER_FILE) == 0o600
    assert _mode(run_dir / "watch-inventory.yaml") == 0o600
    assert _mode(run_dir / "findings.json") == 0o600
    assert _mode(state.drift_file) == 0o600
    assert _mode(state.lock_file) == 0o600
    assert _mode(state.default_metrics_file) == 0o644


def test_an_older_wide_runs_folder_is_tightened(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    state.runs_dir.mkdir(parents=True)
    os.chmod(state.runs_dir, 0o755)
    state.ensure()
    assert _mode(state.runs_dir) == 0o700


def test_a_runs_folder_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    victim = _victim(tmp_path)
    state = StateDir(tmp_path / "state")
    state.root.mkdir()
    state.runs_dir.symlink_to(victim)
    with pytest.raises(UnsafePathError, match="runs is a symbolic link"):
        state.ensure()
    assert state.records() == []
