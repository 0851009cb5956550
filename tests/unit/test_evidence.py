"""The evidence store: what add() records, the chain, the manifest, failures and threads."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from auditor.domain.protocols import EvidenceSink
from auditor.evidence import store as evidence
from auditor.evidence.store import (
    INDEX_FILE,
    MANIFEST_FILE,
    TMP_DIR,
    EvidenceError,
    EvidenceIntegrityError,
    EvidenceStore,
    EvidenceWriteError,
    NotARunError,
    UnknownArtifactError,
    genesis,
    next_chain,
    object_path,
)
from auditor.evidence.verify import verify_run

T0 = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
T1 = T0 + timedelta(seconds=2)

PLANTED_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "QyNTUxOQAAACBQbGFudGVkUGxhbnRlZFBsYW50ZWRQbGFudGVkAAAAAAAAAAAAAAAAAAAA\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)
PLANTED_PASSWORD = "Zq8-planted-Pa55word"
PLANTED_WG = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="


def add(store: EvidenceSink, content: bytes, **overrides: Any) -> str:
    """Add through the EvidenceSink protocol, as a probe would."""
    arguments: dict[str, Any] = {
        "probe": "ssh-collector",
        "command": "nft -j list ruleset",
        "host": "recv-srv",
        "started": T0,
        "finished": T1,
        "tool_version": "nftables v1.0.6",
        "exit_status": 0,
    }
    arguments.update(overrides)
    return store.add(content, **arguments)


@pytest.fixture
def store(tmp_path: Path) -> EvidenceStore:
    return EvidenceStore.create(tmp_path / "run", "run-2026-11-26T12")


def test_add_stores_the_bytes_under_their_hash_and_records_the_metadata(
    store: EvidenceStore,
) -> None:
    jst = timezone(timedelta(hours=9))
    ref = add(store, b"table inet filter {}\n", started=T0.astimezone(jst), media_type="text/x-nft")

    sha = hashlib.sha256(b"table inet filter {}\n").hexdigest()
    assert ref == f"sha256:{sha}"
    assert (store.run_dir / object_path(sha)).read_bytes() == b"table inet filter {}\n"
    [record] = store.artifacts()
    assert record.metadata() == {
        "seq": 1,
        "sha256": sha,
        "size": 21,
        "host": "recv-srv",
        "probe": "ssh-collector",
        "command": "nft -j list ruleset",
        "tool_version": "nftables v1.0.6",
        "exit_status": 0,
        "media_type": "text/x-nft",
        "started": "2026-11-26T12:00:00.000000Z",  # converted from +09:00 to UTC
        "finished": "2026-11-26T12:00:02.000000Z",
        "redactions": {},
        "redaction_applied": True,
    }
    assert store.read(ref) == b"table inet filter {}\n"


def test_rows_are_chained_from_a_genesis_bound_to_the_run_id(store: EvidenceStore) -> None:
    for n in range(3):
        add(store, f"output {n}\n".encode())
    records = store.artifacts()
    assert [r.seq for r in records] == [1, 2, 3]
    previous = genesis("run-2026-11-26T12")
    for record in records:
        assert record.chain == next_chain(previous, record.metadata())
        previous = record.chain
    assert store.chain_head == records[-1].chain
    assert genesis("run-2026-11-26T12") != genesis("another-run")


def test_identical_content_is_stored_once_but_indexed_twice(store: EvidenceStore) -> None:
    first = add(store, b"same\n", host="term-1")
    second = add(store, b"same\n", host="term-2")
    assert first == second
    assert [r.host for r in store.artifacts()] == ["term-1", "term-2"]
    objects = list((store.run_dir / "evidence" / "objects").rglob("*"))
    assert len([p for p in objects if p.is_file()]) == 1


def test_naive_timestamps_are_refused(store: EvidenceStore) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        add(store, b"x", started=datetime(2026, 1, 1))  # naive: no tzinfo
    assert store.artifacts() == []


def test_a_run_folder_is_never_reused(store: EvidenceStore) -> None:
    with pytest.raises(EvidenceError, match="already holds"):
        EvidenceStore.create(store.run_dir, "run-again")


def test_open_is_read_only_and_sees_what_was_added(store: EvidenceStore) -> None:
    ref = add(store, b"ip -j addr\n")
    reader = EvidenceStore.open(store.run_dir)
    assert [r.ref for r in reader.artifacts()] == [ref]
    assert reader.read(ref) == b"ip -j addr\n"
    with pytest.raises(EvidenceError, match="read-only"):
        add(reader, b"more")
    reader.close()


def test_open_refuses_a_folder_without_a_store(tmp_path: Path) -> None:
    with pytest.raises(NotARunError):
        EvidenceStore.open(tmp_path)


def test_read_refuses_unknown_malformed_and_tampered_references(store: EvidenceStore) -> None:
    ref = add(store, b"ss -tlnp\n")
    with pytest.raises(UnknownArtifactError):
        store.read("sha256:" + "0" * 64)
    with pytest.raises(ValueError, match="not an evidence reference"):
        store.read("md5:abc")
    path = store.run_dir / object_path(ref.removeprefix("sha256:"))
    path.chmod(0o644)
    path.write_bytes(b"ss -tlnp # changed\n")
    with pytest.raises(EvidenceIntegrityError):
        store.read(ref)


def test_close_writes_the_manifest_derived_from_the_index(store: EvidenceStore) -> None:
    add(store, b"a\n", probe="ssh-collector", tool_version="iproute2-6.1.0")
    add(store, b"b\n", probe="nmap-scan", tool_version="nmap 7.93", host=None)
    add(store, b"c\n", probe="nmap-scan", tool_version="nmap 7.93")
    expected = store.manifest()
    store.close()
    store.close()  # idempotent

    manifest = json.loads((store.run_dir / MANIFEST_FILE).read_text())
    assert manifest == expected
    assert manifest["count"] == 3
    assert manifest["run_id"] == "run-2026-11-26T12"
    assert manifest["chain_head"] == manifest["artifacts"][-1]["chain"]
    assert manifest["tool_versions"]["probes"] == {
        "nmap-scan": ["nmap 7.93"],
        "ssh-collector": ["iproute2-6.1.0"],
    }
    assert [a["seq"] for a in manifest["artifacts"]] == [1, 2, 3]
    # Closed: the WAL is folded into the database, so the index is one self-contained file.
    assert not (store.run_dir / f"{INDEX_FILE}-wal").exists()
    with pytest.raises(EvidenceError, match="closed"):
        add(store, b"late")


def test_context_manager_closes_the_store(tmp_path: Path) -> None:
    with EvidenceStore.create(tmp_path, "r1") as store:
        add(store, b"x\n")
    assert (tmp_path / MANIFEST_FILE).is_file()


def test_a_planted_secret_reaches_neither_object_nor_index_nor_manifest(tmp_path: Path) -> None:
    store = EvidenceStore.create(tmp_path, "secret-run")
    content = (
        f"$ cat /etc/wireguard/wg0.conf\n[Interface]\nPrivateKey = {PLANTED_WG}\n"
        f"$ cat /root/.ssh/id_ed25519\n{PLANTED_KEY}"
        f"db:\n  password: {PLANTED_PASSWORD}\n"
    ).encode()
    ref = add(store, content, command=f"mysql --password={PLANTED_PASSWORD} -e 'select 1'")
    [record] = store.artifacts()
    store.close()

    assert dict(record.redactions) == {
        "password": 2,
        "private-key": 1,
        "wireguard-private-key": 1,
    }
    assert record.command == "mysql --password=[REDACTED:password] -e 'select 1'"
    assert b"[REDACTED:private-key]" in EvidenceStore.open(tmp_path).read(ref)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for secret in (PLANTED_PASSWORD, PLANTED_WG, "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUA"):
                assert secret.encode() not in data, f"{secret} leaked into {path}"


def test_binary_captures_are_stored_as_collected(store: EvidenceStore) -> None:
    pcap = b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00password=inside-a-packet"
    ref = add(store, pcap, media_type="application/vnd.tcpdump.pcap", probe="capture")
    [record] = store.artifacts()
    assert store.read(ref) == pcap
    assert record.redaction_applied is False
    assert dict(record.redactions) == {}


def test_a_full_disk_raises_a_typed_error_and_leaves_nothing_referenced(
    store: EvidenceStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    add(store, b"before\n")

    def no_space(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", no_space)
    with pytest.raises(EvidenceWriteError) as caught:
        add(store, b"lost\n", command="journalctl -o export")
    monkeypatch.undo()

    assert "journalctl -o export" in str(caught.value)
    assert "No space left" in str(caught.value)
    assert caught.value.artifact.startswith("'ssh-collector' on recv-srv")
    sha = hashlib.sha256(b"lost\n").hexdigest()
    assert not (store.run_dir / object_path(sha)).exists()
    assert list((store.run_dir / TMP_DIR).iterdir()) == []
    # The store carries on: the next artifact takes the next sequence number.
    add(store, b"after\n")
    assert [r.seq for r in store.artifacts()] == [1, 2]
    store.close()
    assert verify_run(store.run_dir).intact


def test_an_index_write_failure_takes_back_the_new_object(
    store: EvidenceStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = evidence._row_of

    def wrong_type(record: evidence.ArtifactRecord) -> tuple[Any, ...]:
        row = list(original(record))
        row[2] = "not a size"  # the STRICT table refuses it at insert time
        return tuple(row)

    monkeypatch.setattr(evidence, "_row_of", wrong_type)
    with pytest.raises(EvidenceWriteError) as caught:
        add(store, b"orphan?\n")
    monkeypatch.undo()

    assert isinstance(caught.value.cause, sqlite3.Error)
    assert store.artifacts() == []
    assert not (store.run_dir / object_path(hashlib.sha256(b"orphan?\n").hexdigest())).exists()
    store.close()
    report = verify_run(store.run_dir)
    assert report.intact, report.problems


def test_a_failed_add_keeps_an_object_another_add_of_equal_content_relies_on(
    store: EvidenceStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Objects are written outside the lock: while this add fails, another add of the same
    # bytes may have marked itself pending and found the object in place, so it must stay.
    content = b"same bytes, two hosts\n"
    sha = hashlib.sha256(content).hexdigest()
    original_store, original_row = store._store_object, evidence._row_of

    def another_add_arrives(sha: str, stored: bytes, described: str) -> bool:
        created = original_store(sha, stored, described)
        store._mark_pending(sha, "the other add")
        return created

    def wrong_type(record: evidence.ArtifactRecord) -> tuple[Any, ...]:
        row = list(original_row(record))
        row[2] = "not a size"
        return tuple(row)

    monkeypatch.setattr(store, "_store_object", another_add_arrives)
    monkeypatch.setattr(evidence, "_row_of", wrong_type)
    with pytest.raises(EvidenceWriteError) as caught:
        add(store, content)
    monkeypatch.undo()

    assert isinstance(caught.value.cause, sqlite3.Error)

    assert (store.run_dir / object_path(sha)).exists()
    ref = add(store, content, host="other-host")
    assert store.read(ref) == content
    store.close()
    report = verify_run(store.run_dir)
    assert report.intact, report.problems


def test_a_bad_step_in_a_group_commit_fails_its_own_add_only(store: EvidenceStore) -> None:
    def pending(sha: str | None) -> evidence._IndexStep:
        def insert() -> int | None:
            sql = "INSERT INTO pending (sha256) VALUES (?)"
            return store._conn.execute(sql, (sha,)).lastrowid

        return evidence._IndexStep(insert)

    batch = [pending("a" * 64), pending(None), pending("b" * 64)]  # NULL: NOT NULL refuses it
    store._commit_batch(batch)

    assert all(step.done for step in batch)
    assert isinstance(batch[1].error, sqlite3.IntegrityError)
    assert batch[0].error is None and batch[2].error is None
    rows = store._conn.execute("SELECT id, sha256 FROM pending ORDER BY id").fetchall()
    assert rows == [(batch[0].result, "a" * 64), (batch[2].result, "b" * 64)]


def test_concurrent_adds_share_index_commits(
    store: EvidenceStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    commits: list[int] = []
    original = store._commit_together

    def counted(batch: list[evidence._IndexStep]) -> bool:
        commits.append(len(batch))
        time.sleep(0.2)  # a slow disk: the other threads queue meanwhile
        return original(batch)

    monkeypatch.setattr(store, "_commit_together", counted)
    # Every thread waits at the object write until all have marked their add pending, so the
    # row steps queue up while one of them commits.
    all_pending = threading.Barrier(6)
    original_store = store._store_object

    def in_step(sha: str, stored: bytes, described: str) -> bool:
        all_pending.wait(5)
        return original_store(sha, stored, described)

    monkeypatch.setattr(store, "_store_object", in_step)
    threads = [threading.Thread(target=add, args=(store, f"host {n}\n".encode())) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(commits) == 12  # a pending mark and a row for each add
    assert len(commits) < 12
    assert [r.seq for r in store.artifacts()] == list(range(1, 7))
    store.close()
    assert verify_run(store.run_dir).intact


def test_close_waits_for_an_add_writing_its_object(
    store: EvidenceStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    writing, may_finish = threading.Event(), threading.Event()
    original = store._store_object

    def slow_store_object(sha: str, stored: bytes, described: str) -> bool:
        writing.set()
        may_finish.wait(5)
        return original(sha, stored, described)

    monkeypatch.setattr(store, "_store_object", slow_store_object)
    refs: list[str] = []
    adder = threading.Thread(target=lambda: refs.append(add(store, b"in flight\n")))
    adder.start()
    assert writing.wait(5)
    closer = threading.Thread(target=store.close)
    closer.start()
    closer.join(0.2)
    assert closer.is_alive()  # the accepted add is not cut off by the manifest
    with pytest.raises(EvidenceError, match="closed"):
        add(store, b"too late\n")
    may_finish.set()
    adder.join(5)
    closer.join(5)

    assert not closer.is_alive()
    manifest = json.loads((store.run_dir / MANIFEST_FILE).read_text())
    assert [a["ref"] for a in manifest["artifacts"]] == refs
    report = verify_run(store.run_dir)
    assert report.intact, report.problems


def test_concurrent_adds_get_distinct_contiguous_sequence_numbers(store: EvidenceStore) -> None:
    refs: list[str] = []
    lock = threading.Lock()

    def collect(worker: int) -> None:
        for n in range(15):
            ref = add(store, f"worker {worker} item {n}\n".encode(), host=f"host-{worker}")
            with lock:
                refs.append(ref)

    threads = [threading.Thread(target=collect, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    records = store.artifacts()
    assert [r.seq for r in records] == list(range(1, 121))
    assert sorted(r.ref for r in records) == sorted(refs)
    store.close()
    assert verify_run(store.run_dir).intact


def test_the_store_satisfies_the_probe_sink_protocol(store: EvidenceStore) -> None:
    sink: EvidenceSink = store  # mypy checks the structural match
    assert add(sink, b"ok").startswith("sha256:")


def test_object_files_are_read_only(store: EvidenceStore) -> None:
    ref = add(store, b"x\n")
    mode = (store.run_dir / object_path(ref.removeprefix("sha256:"))).stat().st_mode
    assert mode & 0o222 == 0
    assert os.access(store.run_dir / INDEX_FILE, os.R_OK)


def test_close_while_threads_add_leaves_a_manifest_that_agrees(tmp_path: Path) -> None:
    store = EvidenceStore.create(tmp_path, "closing-run")
    stop = threading.Event()

    def keep_adding() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                add(store, f"{threading.get_ident()} {n}\n".encode())
            except EvidenceError:
                return  # closed under us: the add was refused, not half-done

    threads = [threading.Thread(target=keep_adding) for _ in range(4)]
    for thread in threads:
        thread.start()
    reader = EvidenceStore.open(tmp_path)  # a reader open meanwhile must not stop close()
    while len(reader.artifacts()) < 20:
        pass
    store.close()
    reader.close()
    stop.set()
    for thread in threads:
        thread.join()
    report = verify_run(tmp_path)
    assert report.intact, report.problems
    assert report.closed and report.manifest_present


def test_reading_a_closed_store_is_refused(store: EvidenceStore) -> None:
    add(store, b"x\n")
    store.close()
    with pytest.raises(EvidenceError, match="closed"):
        store.artifacts()


# -- links: the store never writes through one ------------------------------------------------


def test_an_object_is_never_written_through_a_linked_shard_folder(
    store: EvidenceStore, tmp_path: Path
) -> None:
    content = b"meant for the evidence\n"
    sha = hashlib.sha256(content).hexdigest()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (store.run_dir / object_path(sha)).parent.symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(EvidenceWriteError, match="symbolic link"):
        add(store, content)
    assert list(elsewhere.iterdir()) == []
    assert store.artifacts() == []
    assert list((store.run_dir / TMP_DIR).iterdir()) == []


def test_a_store_folder_or_index_that_is_a_link_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run_dir = tmp_path / "run"
    (run_dir / "evidence").mkdir(parents=True)
    (run_dir / "evidence" / "objects").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(OSError, match="symbolic link"):
        EvidenceStore.create(run_dir, "r1")
    assert not (run_dir / INDEX_FILE).exists()
    other = tmp_path / "other"
    (other / "evidence").mkdir(parents=True)
    (other / INDEX_FILE).symlink_to(elsewhere / "planted.sqlite")  # dangling
    with pytest.raises(EvidenceError, match="already holds"):
        EvidenceStore.create(other, "r2")
    assert list(elsewhere.iterdir()) == []


def test_open_refuses_an_index_with_a_view_or_trigger(store: EvidenceStore) -> None:
    add(store, b"x\n")
    store.close()
    conn = sqlite3.connect(store.run_dir / INDEX_FILE)
    with conn:
        conn.execute("CREATE VIEW v AS SELECT 1")
    conn.close()
    with pytest.raises(NotARunError, match="unexpected view 'v'"):
        EvidenceStore.open(store.run_dir)


# -- the seal -----------------------------------------------------------------------------------


@pytest.fixture
def sealed(tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    with EvidenceStore.create(run_dir, "sealed-run") as store:
        add(store, b"a\n")
        add(store, b"b\n")
    (run_dir / "findings.json").write_text('{"findings": []}\n')
    (run_dir / "report.en.html").write_text("<html>1</html>\n")
    evidence.seal_run(run_dir, ["findings.json", "report.en.html", "facts.json"])
    return run_dir


def seal_of(run_dir: Path) -> dict[str, Any]:
    with EvidenceStore.open(run_dir) as store:
        document = store.seal_document()
        assert document is not None
        head = store.chain_head
    assert document["chain_head"] == head
    return document


def test_the_seal_records_each_file_the_absent_ones_and_the_chain_position(sealed: Path) -> None:
    document = seal_of(sealed)
    digest = hashlib.sha256(b"<html>1</html>\n").hexdigest()
    assert document["generation"] == 1 and document["count"] == 2
    assert [e["path"] for e in document["files"]] == ["findings.json", "report.en.html"]
    assert {"path": "report.en.html", "sha256": digest, "size": 15} in document["files"]
    assert document["absent"] == ["facts.json"]
    manifest = json.loads((sealed / MANIFEST_FILE).read_text())
    assert "seal" not in manifest  # the OSCAL report hashes the manifest: it never changes
    with pytest.raises(EvidenceError, match="sealed already"):
        evidence.seal_run(sealed, ["findings.json"])


def test_only_a_closed_store_is_sealed_and_never_a_link(store: EvidenceStore) -> None:
    with pytest.raises(EvidenceError, match="no closed evidence store"):
        evidence.seal_run(store.run_dir, ["findings.json"])
    store.close()
    secret = store.run_dir.parent / "secret"
    secret.write_text("a private key")
    (store.run_dir / "findings.json").symlink_to(secret)
    with pytest.raises(EvidenceError, match="symbolic link"):
        evidence.seal_run(store.run_dir, ["findings.json"])
    assert evidence.reseal(store.run_dir, ["findings.json"]) is None  # nothing to renew


def test_reseal_renews_only_the_rewritten_files(sealed: Path) -> None:
    manifest = (sealed / MANIFEST_FILE).read_bytes()
    first = seal_of(sealed)
    (sealed / "findings.json").write_text('{"findings": ["forged"]}\n')
    (sealed / "report.en.html").write_text("<html>2</html>\n")
    (sealed / "facts.json").write_text("{}\n")
    (sealed / "inventory.yaml").write_text("hosts: {}\n")
    renewed = evidence.reseal(sealed, ["report.en.html"], created=["inventory.yaml", "facts.json"])
    assert renewed == seal_of(sealed) and renewed is not None
    assert renewed["generation"] == 2
    entries = {e["path"]: e for e in renewed["files"]}
    assert entries["findings.json"] == first["files"][0]  # kept: the forgery still shows
    assert entries["report.en.html"]["sha256"] == hashlib.sha256(b"<html>2</html>\n").hexdigest()
    # Made by the re-render where the seal had no hash for it: sealed as it is.
    assert "inventory.yaml" in entries and "facts.json" in entries
    assert renewed["absent"] == []
    assert (renewed["count"], renewed["chain_head"]) == (first["count"], first["chain_head"])
    assert (sealed / MANIFEST_FILE).read_bytes() == manifest
    assert evidence.reseal(sealed, ["report.en.html"]) == renewed  # the same again: no change
