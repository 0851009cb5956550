"""The evidence store when a COMMIT fails, and the durability of new shard folders.

A COMMIT can fail after every statement of its transaction succeeded (a full disk, an I/O
error, a busy database). SQLite sometimes rolls back by itself, and sometimes leaves the
transaction open; either way the store must end outside any transaction, with its chain head
and next sequence number as the index has them.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from auditor.evidence import store as evidence
from auditor.evidence.store import OBJECTS_DIR, EvidenceStore, EvidenceWriteError, object_path
from auditor.evidence.verify import verify_run
from tests.unit.test_evidence import add

DISK_FULL = "database or disk is full"


@pytest.fixture
def store(tmp_path: Path) -> EvidenceStore:
    return EvidenceStore.create(tmp_path / "run", "run-2026-11-26T12")


class RefusingConnection:
    """The store's real connection, except that SQLite's refusal of a COMMIT is played: the
    COMMIT of a transaction that ran a statement containing ``commit_of`` raises as SQLite
    does on a full disk, without running, so the real transaction stays open (as SQLite
    leaves it after an error it does not roll back by itself, e.g. SQLITE_BUSY). A ROLLBACK
    can be refused the same way. Everything else runs on the real connection."""

    def __init__(
        self, real: sqlite3.Connection, *, commit_of: str, commits: int = 1, rollbacks: int = 0
    ) -> None:
        self.real = real
        self.commit_of = commit_of
        self.commits_to_refuse = commits
        self.rollbacks_to_refuse = rollbacks
        self.armed = False

    @property
    def in_transaction(self) -> bool:
        return self.real.in_transaction

    def execute(self, sql: str, parameters: Any = ()) -> sqlite3.Cursor:
        if sql.startswith("BEGIN"):
            self.armed = False
        self.armed = self.armed or self.commit_of in sql
        if sql == "COMMIT" and self.armed and self.commits_to_refuse:
            self.commits_to_refuse -= 1
            raise sqlite3.OperationalError(DISK_FULL)
        if sql == "ROLLBACK" and self.rollbacks_to_refuse:
            self.rollbacks_to_refuse -= 1
            raise sqlite3.OperationalError("disk I/O error")
        return self.real.execute(sql, parameters)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def refuse(store: EvidenceStore, monkeypatch: pytest.MonkeyPatch, **how: Any) -> sqlite3.Connection:
    """Put a RefusingConnection in front of the store's connection; return the real one."""
    real = store._conn
    monkeypatch.setattr(store, "_conn", RefusingConnection(real, **how))
    return real


def assert_verifies(store: EvidenceStore) -> None:
    store.close()
    report = verify_run(store.run_dir)
    assert report.intact, report.problems


# -- a failed COMMIT --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "commit_of", ["INSERT INTO pending", "INSERT INTO artifacts"], ids=["pending-mark", "row"]
)
def test_a_commit_that_fails_is_rolled_back_and_the_store_carries_on(
    store: EvidenceStore, monkeypatch: pytest.MonkeyPatch, commit_of: str
) -> None:
    add(store, b"first\n")
    add(store, b"second\n")
    before, head = store.artifacts(), store.chain_head
    real = refuse(store, monkeypatch, commit_of=commit_of)

    with pytest.raises(EvidenceWriteError) as caught:
        add(store, b"refused at commit\n", command="journalctl -o export")

    assert isinstance(caught.value.cause, sqlite3.OperationalError)
    assert DISK_FULL in str(caught.value) and "journalctl -o export" in str(caught.value)
    assert not real.in_transaction
    assert store.chain_head == head and store._next_seq == 3
    assert store.artifacts() == before
    refused = hashlib.sha256(b"refused at commit\n").hexdigest()
    assert not (store.run_dir / object_path(refused)).exists()
    # The next add takes the next place in the chain, and nothing committed before is lost.
    ref = add(store, b"after\n")
    assert [r.seq for r in store.artifacts()] == [1, 2, 3]
    assert store.read(ref) == b"after\n"
    assert [store.read(r.ref) for r in before] == [b"first\n", b"second\n"]
    assert_verifies(store)


def test_a_batch_whose_commit_fails_commits_again_step_by_step(
    store: EvidenceStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = refuse(store, monkeypatch, commit_of="INSERT INTO pending")

    def pending(sha: str) -> evidence._IndexStep:
        def insert() -> int | None:
            sql = "INSERT INTO pending (sha256) VALUES (?)"
            return store._conn.execute(sql, (sha,)).lastrowid

        return evidence._IndexStep(insert)

    batch = [pending(c * 64) for c in "abc"]
    store._commit_batch(batch)

    # The batch's COMMIT was refused; each step alone then committed.
    assert [step.error for step in batch] == [None, None, None]
    assert not real.in_transaction
    rows = real.execute("SELECT id, sha256 FROM pending ORDER BY id").fetchall()
    assert rows == [(step.result, c * 64) for step, c in zip(batch, "abc", strict=True)]


@pytest.mark.parametrize("then", ["add", "close"])
def test_a_failed_rollback_does_not_hide_the_commit_error_and_is_made_up_for(
    store: EvidenceStore, monkeypatch: pytest.MonkeyPatch, then: str
) -> None:
    add(store, b"kept\n")
    head = store.chain_head
    # Refused twice: after the COMMIT, and again when the failed add looks whether another
    # add relies on its object (that object then stays, as debris of an interrupted add).
    real = refuse(store, monkeypatch, commit_of="INSERT INTO artifacts", rollbacks=2)

    with pytest.raises(EvidenceWriteError) as caught:
        add(store, b"refused, and not rolled back\n")

    # The COMMIT's error is the one reported; the ROLLBACK's is a note on it.
    assert DISK_FULL in str(caught.value.cause)
    assert any("ROLLBACK" in note for note in getattr(caught.value.cause, "__notes__", []))
    assert real.in_transaction  # left over: the next use of the store rolls it back
    assert store.chain_head == head
    # The store's next use rolls the leftover transaction back first: its uncommitted row is
    # neither built upon nor read, nor written into the manifest by close().
    if then == "add":
        add(store, b"after\n")
        assert not real.in_transaction
        assert [(r.seq, store.read(r.ref)) for r in store.artifacts()] == [
            (1, b"kept\n"),
            (2, b"after\n"),
        ]
    assert_verifies(store)
    assert verify_run(store.run_dir).artifact_count == (2 if then == "add" else 1)


# -- a real full disk at COMMIT ----------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (as tests/faults' disk-full test uses), when this machine lets us mount."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace')}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(path: Path) -> None:
    """Write to ``path`` until the filesystem has no byte left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for chunk in (65536, 4096, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    finally:
        os.close(fd)


def test_a_commit_refused_by_a_full_disk_leaves_the_store_usable(
    small_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite 3.40 in WAL mode rolls such a transaction back by itself: this guards the real
    # path end to end (head, sequence, take-back), the refusing connection above the rest.
    store = EvidenceStore.create(small_disk / "run", "run-small-disk")
    add(store, b"before the disk filled\n")
    head, filler = store.chain_head, small_disk / "filler"
    original = store._store_object

    def then_the_disk_fills(sha: str, stored: bytes, described: str) -> bool:
        created = original(sha, stored, described)
        fill(filler)  # the object is in place; the row's COMMIT finds no room for the WAL
        return created

    monkeypatch.setattr(store, "_store_object", then_the_disk_fills)
    with pytest.raises(EvidenceWriteError) as caught:
        add(store, b"its row finds the disk full\n")
    monkeypatch.undo()

    assert DISK_FULL in str(caught.value)
    assert not store._conn.in_transaction
    assert store.chain_head == head and store._next_seq == 2
    filler.unlink()
    ref = add(store, b"after room was made\n")
    assert [r.seq for r in store.artifacts()] == [1, 2]
    assert store.read(ref) == b"after room was made\n"
    assert_verifies(store)


# -- shard folders ------------------------------------------------------------------------------


def content_in_shard(shard: str, avoid: bytes = b"") -> bytes:
    """Some content whose object goes into ``objects/<shard>/``."""
    for n in range(100_000):
        content = f"content {n}\n".encode()
        if content != avoid and hashlib.sha256(content).hexdigest()[:2] == shard:
            return content
    raise AssertionError(f"no content found for shard {shard}")


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The folders fsynced, in order (a power cut cannot be simulated; the syncs can be seen)."""
    calls: list[Path] = []
    original = evidence._fsync_dir

    def recorded(path: Path) -> None:
        calls.append(path)
        original(path)

    monkeypatch.setattr(evidence, "_fsync_dir", recorded)
    return calls


def test_a_new_shard_folder_is_synced_in_objects_once(
    store: EvidenceStore, synced: list[Path]
) -> None:
    objects = store.run_dir / OBJECTS_DIR
    first = b"first in its shard\n"
    shard = hashlib.sha256(first).hexdigest()[:2]
    other_shard = "00" if shard != "00" else "01"

    add(store, first)
    # objects/ before the object's own folder, so both entries are durable before the row.
    assert synced == [objects, objects / shard]

    synced.clear()
    add(store, content_in_shard(shard, avoid=first))
    add(store, first, host="proc-srv")  # the object exists already: its folder is synced
    assert synced == [objects / shard, objects / shard]

    synced.clear()
    add(store, content_in_shard(other_shard))
    assert synced == [objects, objects / other_shard]
    assert_verifies(store)


def test_a_shard_folder_another_add_just_made_is_synced_too(
    store: EvidenceStore, synced: list[Path]
) -> None:
    # Another add may have made the folder and not yet synced objects/: an add finding the
    # folder there cannot tell, so it syncs objects/ itself, once.
    content = b"a folder made by another add\n"
    shard = hashlib.sha256(content).hexdigest()[:2]
    (store.run_dir / OBJECTS_DIR / shard).mkdir()

    add(store, content)
    assert synced[0] == store.run_dir / OBJECTS_DIR


def test_a_failed_sync_of_objects_fails_the_add_and_is_tried_again(
    store: EvidenceStore, monkeypatch: pytest.MonkeyPatch, synced: list[Path]
) -> None:
    objects = store.run_dir / OBJECTS_DIR
    content = b"its folder cannot be synced\n"
    recorded = evidence._fsync_dir

    def failing_for_objects(path: Path) -> None:
        if path == objects:
            raise OSError(errno.EIO, "Input/output error")
        recorded(path)

    monkeypatch.setattr(evidence, "_fsync_dir", failing_for_objects)
    with pytest.raises(EvidenceWriteError, match="Input/output error"):
        add(store, content)
    assert store.artifacts() == []
    assert not (store.run_dir / object_path(hashlib.sha256(content).hexdigest())).exists()

    monkeypatch.setattr(evidence, "_fsync_dir", recorded)
    synced.clear()
    add(store, content)
    assert synced[0] == objects
    assert_verifies(store)


def test_a_new_run_folder_is_synced_in_its_parent(tmp_path: Path, synced: list[Path]) -> None:
    run_dir = tmp_path / "runs" / "r1"
    with EvidenceStore.create(run_dir, "r1"):
        # The index's folder, then the run folder, then the run folder's entry in its parent.
        assert synced == [run_dir / "evidence", run_dir, run_dir.parent]
