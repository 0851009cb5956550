"""The evidence store: every raw artifact a probe collected, redacted, hashed and chained.

Layout under a run folder (see ``docs/evidence.md``)::

    DIR/evidence/objects/<sha256[:2]>/<sha256>   the stored (redacted) bytes, content-addressed
    DIR/evidence/index.sqlite                    one row per artifact: metadata and chain hash
    DIR/evidence/manifest.json                   written by close(): a summary of the index
    DIR/evidence/tmp/                            objects being written (never referenced)

The seal: at the end of an audit, once the store is closed and the reports written,
``seal_run()`` records in the index's ``run`` table the SHA-256 of every file of the run folder
that is not evidence (findings.json, facts.json, the reports, …), bound to the chain by the
count and chain head it follows; ``reseal()`` renews it after the reports are rendered again.
So the verifier checks those files too. It is not in the manifest: the OSCAL report hashes the
manifest, and a re-render would then never settle.

Links: the store writes objects through descriptors of its own folders opened without following
a symbolic link (``objects/xx`` planted as a link to another folder is refused), and creates
every file with O_EXCL | O_NOFOLLOW.

The index is the source of truth. Each row carries ``chain_n = sha256(chain_{n-1} ||
canonical_json(metadata_n))`` with the genesis derived from the run id, so an edited, removed or
reordered row breaks the chain from that row on. The manifest is derived from the index alone,
so a run killed before ``close()`` can still be verified and summarised.

Crash guarantee: an object is written to ``tmp/``, fsynced and renamed into place *before* the
index row that references it is committed; SQLite runs in WAL mode with full synchronisation.
So after a ``kill -9`` (or a power cut) every committed row has its complete object, and the
only possible debris is an object whose row was never committed. The index records such an
add as *pending* before the object is written, which lets the verifier tell an interrupted add
from an object planted afterwards.

Concurrency: the index and the chain are written by one thread at a time (a lock), but the
object files (two fsyncs each) are written outside it, by each adding thread; and the index
writes that threads queue while one commits are committed together (group commit), so one
fsync of the index serves many adds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import hashlib
import json
import os
import re
import sqlite3
import stat
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from auditor.domain.errors import AuditorError
from probes.redact import Redaction, is_redactable, redact, redact_text

FORMAT = "anon-infra-auditor-evidence/1"
EVIDENCE_DIR = "evidence"
OBJECTS_DIR = f"{EVIDENCE_DIR}/objects"
TMP_DIR = f"{EVIDENCE_DIR}/tmp"
INDEX_FILE = f"{EVIDENCE_DIR}/index.sqlite"
MANIFEST_FILE = f"{EVIDENCE_DIR}/manifest.json"
#: The key of the seal in the index's ``run`` table.
SEAL_KEY = "seal"
SEAL_FORMAT = "anon-infra-auditor-seal/1"

_GENESIS_DOMAIN = b"anon-infra-auditor evidence chain v1\n"
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_REF = re.compile(r"^sha256:([0-9a-f]{64})$")


# -- errors ---------------------------------------------------------------------------------


class EvidenceError(AuditorError):
    """The evidence store cannot do what was asked."""


class NotARunError(EvidenceError):
    """The folder holds no evidence store."""


class EvidenceWriteError(EvidenceError):
    """An artifact could not be stored (disk full, I/O error). Nothing of it is referenced."""

    def __init__(self, artifact: str, cause: BaseException) -> None:
        self.artifact = artifact
        self.cause = cause
        super().__init__(f"cannot store artifact {artifact}: {cause}")


class UnknownArtifactError(EvidenceError, KeyError):
    """No artifact with that reference is in the index."""


class EvidenceIntegrityError(EvidenceError):
    """A stored object does not hash to its name."""


# -- the record and the chain -------------------------------------------------------------


@dataclass(frozen=True)
class ArtifactRecord:
    """One index row: what was collected, where, how, and its place in the chain."""

    seq: int
    sha256: str  #: of the stored (redacted) bytes
    size: int
    host: str | None
    probe: str
    command: str
    tool_version: str | None
    exit_status: int | None
    media_type: str
    started: str  #: UTC, ISO 8601
    finished: str
    redactions: Mapping[str, int] = field(default_factory=dict)  #: kind -> count
    redaction_applied: bool = True  #: False for binary media types, stored as collected
    chain: str = ""

    @property
    def ref(self) -> str:
        return f"sha256:{self.sha256}"

    def metadata(self) -> dict[str, Any]:
        """Everything the chain hash covers: all fields except the chain itself."""
        return {
            "seq": self.seq,
            "sha256": self.sha256,
            "size": self.size,
            "host": self.host,
            "probe": self.probe,
            "command": self.command,
            "tool_version": self.tool_version,
            "exit_status": self.exit_status,
            "media_type": self.media_type,
            "started": self.started,
            "finished": self.finished,
            "redactions": dict(sorted(self.redactions.items())),
            "redaction_applied": self.redaction_applied,
        }

    def to_json(self) -> dict[str, Any]:
        return {"ref": self.ref, **self.metadata(), "chain": self.chain}


def canonical_json(value: Any) -> bytes:
    """The one byte form of a JSON value that hashes are computed over."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def genesis(run_id: str) -> str:
    """chain_0: bound to the run id, so rows cannot be moved from one run to another."""
    return hashlib.sha256(_GENESIS_DOMAIN + run_id.encode("utf-8")).hexdigest()


def next_chain(previous: str, metadata: Mapping[str, Any]) -> str:
    """chain_n = sha256(raw bytes of chain_{n-1} || canonical JSON of row n's metadata)."""
    return hashlib.sha256(bytes.fromhex(previous) + canonical_json(metadata)).hexdigest()


def object_path(sha256: str) -> str:
    """Path of an object relative to the run folder."""
    return f"{OBJECTS_DIR}/{sha256[:2]}/{sha256}"


def parse_ref(ref: str) -> str:
    """The hex digest of a ``sha256:<hex>`` reference; ValueError when malformed."""
    match = _REF.match(ref)
    if match is None:
        raise ValueError(f"not an evidence reference: {ref!r}")
    return match.group(1)


def build_manifest(
    run_id: str, records: Sequence[ArtifactRecord], auditor_version: str
) -> dict[str, Any]:
    """The manifest, derived from the index alone (so the verifier can derive it again)."""
    probes: dict[str, set[str]] = {}
    for record in records:
        versions = probes.setdefault(record.probe, set())
        if record.tool_version is not None:
            versions.add(record.tool_version)
    return {
        "format": FORMAT,
        "run_id": run_id,
        "genesis": genesis(run_id),
        "count": len(records),
        "chain_head": records[-1].chain if records else genesis(run_id),
        "tool_versions": {
            "auditor": auditor_version,
            "probes": {probe: sorted(v) for probe, v in sorted(probes.items())},
        },
        "artifacts": [record.to_json() for record in records],
    }


def parse_seal(value: str | None) -> dict[str, Any] | None:
    """The seal recorded in an index's ``run`` table, None when there is none; ValueError when
    the value is not a seal."""
    if value is None:
        return None
    try:
        document = json.loads(value)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"the seal is not JSON: {exc}") from exc
    if not isinstance(document, dict) or document.get("format") != SEAL_FORMAT:
        raise ValueError(f"the seal is not of format {SEAL_FORMAT}")
    return document


def sealable_name(name: str) -> bool:
    """A file the seal can cover: one name at the top of the run folder, not the evidence."""
    return (
        bool(name)
        and "/" not in name
        and "\\" not in name
        and name not in (".", "..", EVIDENCE_DIR)
    )


def seal_files(run_dir: Path, names: Iterable[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """Hash each named file of the run folder: (the entries of those present, the names of those
    absent). A link or special file at a name is refused (EvidenceError): a seal never vouches
    for what a link points at."""
    entries: list[dict[str, Any]] = []
    absent: list[str] = []
    for name in sorted(set(names)):
        if not sealable_name(name):
            raise ValueError(f"{name!r} is not a file at the top of a run folder")
        try:
            sha, size = file_digest(run_dir, name)
        except FileNotFoundError:
            absent.append(name)
            continue
        except OSError as exc:
            raise EvidenceError(f"cannot seal {run_dir / name}: {exc.strerror or exc}") from exc
        entries.append({"path": name, "sha256": sha, "size": size})
    return entries, absent


def _renewed_seal(
    previous: Mapping[str, Any], run_dir: Path, rewritten: Iterable[str], created: Iterable[str]
) -> dict[str, Any]:
    """The seal after a re-render: see ``reseal``."""
    listed = previous.get("files")
    if not isinstance(listed, list) or not all(
        isinstance(e, dict) and isinstance(e.get("path"), str) for e in listed
    ):
        raise EvidenceError(f"{run_dir}: the run's seal is malformed; not sealing it again")
    prior = {entry["path"]: entry for entry in listed}
    refresh = set(rewritten) | {name for name in created if name not in prior}
    fresh, missing = seal_files(run_dir, refresh)
    files = {path: entry for path, entry in prior.items() if path not in refresh}
    files.update((entry["path"], entry) for entry in fresh)
    absent = {n for n in previous.get("absent", []) if isinstance(n, str)} | set(missing)
    entries = [files[path] for path in sorted(files)]
    still_absent = sorted(absent - set(files))
    if entries == listed and still_absent == previous.get("absent"):
        return dict(previous)  # rendered the same again: the seal stands as it is
    generation = previous.get("generation")
    return {
        **previous,  # the count and chain head the audit sealed: a re-render adds no artifact
        "generation": (generation if isinstance(generation, int) else 1) + 1,
        "reason": "reports rendered again",
        "sealed": _utc_iso(datetime.now(UTC), "sealed"),
        "files": entries,
        "absent": still_absent,
    }


# -- the index ------------------------------------------------------------------------------

# STRICT tables: SQLite refuses a value of the wrong type instead of silently storing it.
_SCHEMA = """
CREATE TABLE run (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
CREATE TABLE artifacts (
    seq INTEGER PRIMARY KEY,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    host TEXT,
    probe TEXT NOT NULL,
    command TEXT NOT NULL,
    tool_version TEXT,
    exit_status INTEGER,
    media_type TEXT NOT NULL,
    started TEXT NOT NULL,
    finished TEXT NOT NULL,
    redactions TEXT NOT NULL,
    redaction_applied INTEGER NOT NULL,
    chain TEXT NOT NULL
) STRICT;
CREATE TABLE pending (
    id INTEGER PRIMARY KEY,
    sha256 TEXT NOT NULL
) STRICT;
"""

_MASTER_QUERY = "SELECT type, name, tbl_name, sql FROM sqlite_master"

_COLUMNS = (
    "seq, sha256, size, host, probe, command, tool_version, exit_status, media_type, "
    "started, finished, redactions, redaction_applied, chain"
)


def record_from_row(row: Sequence[Any]) -> ArtifactRecord:
    """An index row as a record; ValueError when a value has the wrong type or form."""
    (seq, sha, size, host, probe, command, tool_version, exit_status, media_type) = row[:9]
    started, finished, redactions_json, applied, chain = row[9:14]
    _expect(isinstance(seq, int), "seq", seq)
    _expect(isinstance(sha, str) and bool(_SHA256_HEX.match(sha)), "sha256", sha)
    _expect(isinstance(size, int) and size >= 0, "size", size)
    _expect(isinstance(chain, str) and bool(_SHA256_HEX.match(chain)), "chain", chain)
    _expect(isinstance(probe, str) and isinstance(command, str), "probe/command", probe)
    try:
        redactions = json.loads(redactions_json)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"redactions is not JSON: {redactions_json!r}") from exc
    _expect(isinstance(redactions, dict), "redactions", redactions_json)
    return ArtifactRecord(
        seq=seq,
        sha256=sha,
        size=size,
        host=host,
        probe=probe,
        command=command,
        tool_version=tool_version,
        exit_status=exit_status,
        media_type=media_type,
        started=started,
        finished=finished,
        redactions=redactions,
        redaction_applied=bool(applied),
        chain=chain,
    )


def _expect(condition: bool, column: str, value: Any) -> None:
    if not condition:
        raise ValueError(f"{column} has an invalid value {value!r}")


def read_run_info(conn: sqlite3.Connection) -> dict[str, str]:
    return {str(k): str(v) for k, v in conn.execute("SELECT key, value FROM run")}


def read_raw_rows(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    return list(conn.execute(f"SELECT {_COLUMNS} FROM artifacts ORDER BY seq"))


def read_pending(conn: sqlite3.Connection) -> set[str]:
    return {str(sha) for (sha,) in conn.execute("SELECT sha256 FROM pending")}


def connect_read_only(index: Path) -> sqlite3.Connection:
    """Open an index without any chance of changing it."""
    conn = sqlite3.connect(f"{index.resolve().as_uri()}?mode=ro", uri=True)
    harden(conn)
    return conn


def harden(conn: sqlite3.Connection) -> None:
    """No SQL function may run from the file's own schema (a view, a trigger, a default)."""
    conn.execute("PRAGMA trusted_schema=OFF")


def _schema_statements() -> list[str]:
    # Statement by statement: executescript() would commit outside the caller's transaction.
    return [statement for statement in _SCHEMA.split(";") if statement.strip()]


@functools.cache
def _expected_schema() -> dict[tuple[str, str], tuple[Any, ...]]:
    """sqlite_master of a store as create() makes it, built the same way in memory."""
    conn = sqlite3.connect(":memory:")
    try:
        for statement in _schema_statements():
            conn.execute(statement)
        return {(row[0], row[1]): tuple(row) for row in conn.execute(_MASTER_QUERY)}
    finally:
        conn.close()


def schema_problems(conn: sqlite3.Connection) -> list[str]:
    """How the index's schema differs from the store's, read from sqlite_master alone.

    To be called before any table is queried: a view or a trigger in a file someone else made
    runs that person's SQL (a recursive view never ends), so anything but the store's exact
    tables and their automatic index is refused."""
    actual = {(row[0], row[1]): tuple(row) for row in conn.execute(_MASTER_QUERY)}
    expected = _expected_schema()
    problems = []
    for key in sorted(set(actual) | set(expected), key=str):
        kind, name = key
        if key not in actual:
            problems.append(f"{kind} {name!r} is missing")
        elif key not in expected:
            problems.append(f"unexpected {kind} {name!r}")
        elif actual[key] != expected[key]:
            problems.append(f"{kind} {name!r} is defined differently")
    return problems


def _require_store_schema(conn: sqlite3.Connection, index: Path) -> None:
    problems = schema_problems(conn)
    if problems:
        raise NotARunError(f"{index} is not an evidence index: {'; '.join(problems)}")


# -- file helpers ---------------------------------------------------------------------------


def _utc_iso(moment: datetime, name: str) -> str:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {moment!r}")
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _fsync_dir(path: Path) -> None:
    # A rename is durable only once the directory holding it is synced.
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class NotRegularFileError(AuditorError, OSError):
    """A path to read is a symbolic link, a folder or a special file (FIFO, device, socket)."""


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: should a FIFO be swapped in after the check, opening it does not wait for a writer.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def file_kind(mode: int) -> str:
    """What an lstat mode is, in words."""
    kinds = (
        (stat.S_ISREG, "regular file"),
        (stat.S_ISDIR, "folder"),
        (stat.S_ISLNK, "symbolic link"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    )
    return next((name for test, name in kinds if test(mode)), "special file")


def _step(parent: int, name: str, flags: int, rel: str) -> int:
    """Open ``name`` in the folder ``parent`` (closed either way) without following a link."""
    try:
        return os.open(name, flags, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise NotRegularFileError(
                exc.errno, "a symbolic link or not a folder on the way (refused)", rel
            ) from exc
        raise
    finally:
        os.close(parent)


def _open_dir(root: Path, rel: str) -> int:
    """A descriptor of the folder ``rel`` below ``root``, no component followed as a link."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    for part in rel.split("/"):
        fd = _step(fd, part, _DIR_FLAGS, rel)
    return fd


def open_regular_file(root: Path, rel: str) -> int:
    """A read-only descriptor of the regular file ``rel`` ('/'-separated) below ``root``.

    Each component is opened relative to the one before with O_NOFOLLOW, so a link anywhere on
    the way is refused, even one swapped in after a check; the file itself is looked at (lstat)
    before it is opened, so a FIFO or a device is refused without being opened (opening some
    devices acts). Raises NotRegularFileError for those, other OSErrors as they come."""
    parts = rel.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise NotRegularFileError(errno.EINVAL, "not a plain relative path", rel)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    for part in parts[:-1]:
        fd = _step(fd, part, _DIR_FLAGS, rel)
    try:
        mode = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(errno.EINVAL, f"a {file_kind(mode)} (refused)", rel)
    except BaseException:
        os.close(fd)
        raise
    fd = _step(fd, parts[-1], _READ_FLAGS, rel)
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped between the look and the open
        os.close(fd)
        raise NotRegularFileError(errno.EINVAL, "not a regular file (refused)", rel)
    return fd


def file_digest(root: Path, rel: str) -> tuple[str, int]:
    """SHA-256 hex digest and size of the regular file ``rel`` below ``root`` (no link followed)."""
    digest = hashlib.sha256()
    size = 0
    with os.fdopen(open_regular_file(root, rel), "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _write_new_at(tmp_dir: int, folder: int, name: str, content: bytes, mode: int) -> None:
    """Write ``content`` so that ``name`` in ``folder`` is either absent or complete, even after
    a crash: a new temporary file (O_EXCL | O_NOFOLLOW: never one someone prepared) in the store's
    tmp folder, fsynced, renamed into place. Both folders are descriptors, so the rename cannot
    be redirected by a link; a link at ``name`` itself is replaced, not followed."""
    tmp = f"{name}.{uuid.uuid4().hex}.tmp"
    try:
        fd = os.open(tmp, _CREATE_FLAGS, mode, dir_fd=tmp_dir)
        try:
            view = memoryview(content)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, name, src_dir_fd=tmp_dir, dst_dir_fd=folder)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=tmp_dir)
        raise


@dataclass(frozen=True)
class _StoreDirs:
    """Descriptors of the store's folders, each opened without following a link: the store
    writes through these, so a folder swapped for a link after they were opened is not used."""

    evidence: int
    objects: int
    tmp: int

    @classmethod
    def open(cls, run_dir: Path) -> _StoreDirs:
        opened: list[int] = []
        try:
            for rel in (EVIDENCE_DIR, OBJECTS_DIR, TMP_DIR):
                opened.append(_open_dir(run_dir, rel))
        except BaseException:
            for fd in opened:
                os.close(fd)
            raise
        return cls(*opened)

    def close(self) -> None:
        for fd in (self.evidence, self.objects, self.tmp):
            with contextlib.suppress(OSError):
                os.close(fd)


def _is_regular_at(folder: int, name: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def _closed_index(run_dir: Path) -> Iterator[tuple[sqlite3.Connection, dict[str, str]] | None]:
    """The index of a closed run, opened for the seal's one write, with its run table; None
    when the folder holds no closed store (an audit still running, or none at all). Its schema
    is checked first: a trigger in a file someone else made would run on that write."""
    index = run_dir / INDEX_FILE
    if not _holds_index(run_dir):
        yield None
        return
    conn = sqlite3.connect(index, check_same_thread=False, isolation_level=None)
    try:
        harden(conn)
        _require_store_schema(conn, index)
        info = read_run_info(conn)
        yield (conn, info) if "closed" in info else None
    finally:
        conn.close()


def _write_seal(conn: sqlite3.Connection, document: Mapping[str, Any]) -> None:
    conn.execute("PRAGMA synchronous=FULL")  # the seal survives a power cut once written
    conn.execute("PRAGMA busy_timeout=10000")
    with _transaction(conn):
        conn.execute(
            "INSERT OR REPLACE INTO run (key, value) VALUES (?, ?)",
            (SEAL_KEY, canonical_json(document).decode("utf-8")),
        )


def seal_run(run_dir: Path, names: Iterable[str]) -> dict[str, Any]:
    """Seal a run at the end of its audit, once its store is closed and its findings and
    reports are written: record in the index the SHA-256 and size of each named file of the run
    folder that is there (findings.json, facts.json, the reports, …), the names of those that
    are not, and the count and chain head of the artifacts it follows. Returns the seal; raises
    EvidenceError when there is no closed store, it is sealed already, or a file cannot be
    sealed (a link, a special file) or the seal written."""
    try:
        with _closed_index(run_dir) as opened:
            if opened is None:
                raise EvidenceError(f"{run_dir} holds no closed evidence store to seal")
            conn, info = opened
            if SEAL_KEY in info:
                raise EvidenceError(f"{run_dir} is sealed already")
            files, absent = seal_files(run_dir, names)
            (count,) = conn.execute("SELECT COUNT(*) FROM artifacts").fetchone()
            last = conn.execute("SELECT chain FROM artifacts ORDER BY seq DESC LIMIT 1").fetchone()
            document = {
                "format": SEAL_FORMAT,
                "generation": 1,
                "reason": "audit",
                "sealed": _utc_iso(datetime.now(UTC), "sealed"),
                "count": count,
                "chain_head": str(last[0]) if last else genesis(info["run_id"]),
                "files": files,
                "absent": absent,
            }
            _write_seal(conn, document)
    except sqlite3.Error as exc:
        raise EvidenceError(f"cannot seal {run_dir}: {exc}") from exc
    return document


def reseal(
    run_dir: Path, rewritten: Iterable[str], created: Iterable[str] = ()
) -> dict[str, Any] | None:
    """Seal a run again after some of its files were written anew (its reports rendered again).

    Files named in ``rewritten`` are hashed again; a name in ``created`` (the inventory copy a
    re-render makes when it is missing) is hashed only when the previous seal had no hash for
    it; every other file keeps the hash the previous seal gave it, so a file changed since still
    fails to verify. The seal keeps the count and chain head the audit sealed; nothing but the
    seal is written (the manifest is not derived again from the index, which would bless an
    edited index). Only a sealed run is sealed again (an audit sealing its run renders its
    reports before; a run never sealed has no seal to renew): returns the seal now in force,
    or None when there was none to renew."""
    try:
        with _closed_index(run_dir) as opened:
            if opened is None or SEAL_KEY not in opened[1]:
                return None
            conn, info = opened
            try:
                previous = parse_seal(info[SEAL_KEY])
            except ValueError as exc:
                raise EvidenceError(f"{run_dir}: {exc}; not sealing it again") from exc
            assert previous is not None
            document = _renewed_seal(previous, run_dir, rewritten, created)
            if document != previous:
                _write_seal(conn, document)
    except sqlite3.Error as exc:
        raise EvidenceError(f"cannot seal {run_dir} again: {exc}") from exc
    return document


def _holds_index(run_dir: Path) -> bool:
    """``evidence/`` is a folder and the index a regular file, neither a link: the seal is
    written through that path, which must not lead out of the run folder."""
    try:
        folder, index = os.lstat(run_dir / EVIDENCE_DIR), os.lstat(run_dir / INDEX_FILE)
    except FileNotFoundError:
        return False
    return stat.S_ISDIR(folder.st_mode) and stat.S_ISREG(index.st_mode)


def auditor_version() -> str:
    try:
        return importlib_metadata.version("anon-infra-auditor")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


# -- the store ------------------------------------------------------------------------------


@dataclass(eq=False)
class _IndexStep:
    """One add's write to the index (its pending mark, or its row), waiting to be committed in
    one transaction with the steps other threads queued meanwhile (group commit)."""

    statements: Callable[[], Any]  #: run inside the batch's transaction; returns the result
    result: Any = None
    error: Exception | None = None
    done: bool = False

    def finish(self, result: Any = None, error: Exception | None = None) -> None:
        self.result, self.error, self.done = result, error, True

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


class EvidenceStore:
    """An append-only, hash-chained store of artifacts for one run (an ``EvidenceSink``).

    ``create`` starts a new store for writing; ``open`` opens an existing one read-only.
    ``add`` may be called from many threads at once.
    """

    def __init__(
        self,
        run_dir: Path,
        conn: sqlite3.Connection,
        run_info: Mapping[str, str],
        writable: bool,
        dirs: _StoreDirs | None = None,
    ) -> None:
        self._run_dir = run_dir
        self._conn = conn
        self._dirs = dirs  #: the folders objects are written through (a writable store)
        self._run_info = dict(run_info)
        self._writable = writable
        self._closed = False
        # Re-entrant: close() reads the records while holding it, so no add slips in between.
        self._lock = threading.RLock()
        # Adds that marked their pending row and have not finished: close() waits for them,
        # so an accepted add completes (its object is not written after the manifest).
        self._adds_in_flight = 0
        self._no_add_in_flight = threading.Condition(self._lock)
        self._closing = False
        # Group commit: steps queued while one thread commits go together in its next
        # transaction, one fsync for all instead of one each.
        self._queued: list[_IndexStep] = []
        self._queue_changed = threading.Condition(threading.Lock())
        self._committing = False
        # Shard folders (objects/xx/) whose own entry in objects/ this store has synced.
        self._durable_shards: set[str] = set()
        last = conn.execute("SELECT seq, chain FROM artifacts ORDER BY seq DESC LIMIT 1").fetchone()
        self._next_seq = 1 if last is None else int(last[0]) + 1
        self._head = genesis(self.run_id) if last is None else str(last[1])

    # -- construction --------------------------------------------------------------------
    @classmethod
    def create(cls, run_dir: Path, run_id: str) -> EvidenceStore:
        """Start the store of a new run. Refuses a folder that already holds one."""
        if not run_id:
            raise ValueError("a run id is required")
        index = run_dir / INDEX_FILE
        if os.path.lexists(index):  # a dangling link too: SQLite would create its target
            raise EvidenceError(f"{run_dir} already holds an evidence store; runs never reuse one")
        for sub in (OBJECTS_DIR, TMP_DIR):
            (run_dir / sub).mkdir(parents=True, exist_ok=True)
        # Before the index is created: a folder of the store that is a link is refused (OSError).
        dirs = _StoreDirs.open(run_dir)
        try:
            return cls._create_index(run_dir, run_id, index, dirs)
        except BaseException:
            dirs.close()
            raise

    @classmethod
    def _create_index(
        cls, run_dir: Path, run_id: str, index: Path, dirs: _StoreDirs
    ) -> EvidenceStore:
        conn = sqlite3.connect(index, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed row survives a power cut, not only a killed process.
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=10000")  # readers may briefly hold a lock
        info = {
            "format": FORMAT,
            "run_id": run_id,
            "genesis": genesis(run_id),
            "created": _utc_iso(datetime.now(UTC), "created"),
            "auditor_version": auditor_version(),
        }
        try:
            with _transaction(conn):
                for statement in _schema_statements():
                    conn.execute(statement)
                conn.executemany("INSERT INTO run (key, value) VALUES (?, ?)", info.items())
            # The run folder's own entry too: an add that returned must survive a power cut,
            # and a folder created here is not durable until its parent is synced.
            for folder in (run_dir / EVIDENCE_DIR, run_dir, run_dir.parent):
                _fsync_dir(folder)
        except BaseException:
            conn.close()
            raise
        return cls(run_dir, conn, info, writable=True, dirs=dirs)

    @classmethod
    def open(cls, run_dir: Path) -> EvidenceStore:
        """Open an existing store read-only (a closed run, or one that was interrupted)."""
        index = run_dir / INDEX_FILE
        if not index.is_file():
            raise NotARunError(f"{run_dir} is not a run folder: no {INDEX_FILE}")
        conn = connect_read_only(index)
        conn.execute("PRAGMA query_only=ON")
        try:
            _require_store_schema(conn, index)
            info = read_run_info(conn)
        except NotARunError:
            conn.close()
            raise
        except sqlite3.Error as exc:
            conn.close()
            raise NotARunError(f"{index} is not an evidence index: {exc}") from exc
        if info.get("format") != FORMAT or "run_id" not in info:
            conn.close()
            raise NotARunError(f"{index} is not an evidence index of format {FORMAT}")
        return cls(run_dir, conn, info, writable=False)

    # -- properties ----------------------------------------------------------------------
    @property
    def run_id(self) -> str:
        return self._run_info["run_id"]

    @property
    def run_dir(self) -> Path:
        return self._run_dir

    @property
    def chain_head(self) -> str:
        with self._lock:
            return self._head

    # -- writing -------------------------------------------------------------------------
    def add(
        self,
        content: bytes,
        *,
        probe: str,
        command: str,
        host: str | None,
        started: datetime,
        finished: datetime,
        tool_version: str | None = None,
        media_type: str = "text/plain",
        exit_status: int | None = None,
    ) -> str:
        """Store one artifact (secrets redacted first); return "sha256:<hex>" of the stored
        bytes. Raises EvidenceWriteError when it cannot be stored; nothing is then referenced.
        """
        described = f"{probe!r} on {host or 'this machine'}: {command!r}"
        started_iso, finished_iso = _utc_iso(started, "started"), _utc_iso(finished, "finished")
        redaction = redact(content) if is_redactable(media_type) else Redaction(content)
        # The command line itself can carry a secret (``mysql --password=...``).
        safe_command, command_counts = redact_text(command)
        counts = dict(redaction.counts)
        for kind, count in command_counts.items():
            counts[kind] = counts.get(kind, 0) + count
        stored = redaction.content
        # seq and chain are placeholders until the row is appended under the lock.
        unchained = ArtifactRecord(
            seq=0,
            sha256=hashlib.sha256(stored).hexdigest(),
            size=len(stored),
            host=host,
            probe=probe,
            command=safe_command,
            tool_version=tool_version,
            exit_status=exit_status,
            media_type=media_type,
            started=started_iso,
            finished=finished_iso,
            redactions=counts,
            redaction_applied=is_redactable(media_type),
        )
        self._begin_add()
        try:
            pending_id = self._mark_pending(unchained.sha256, described)
            created = self._store_object(unchained.sha256, stored, described)
            record = self._append(unchained, pending_id, created, described)
        finally:
            self._end_add()
        return record.ref

    def _begin_add(self) -> None:
        with self._lock:
            self._require_writable()
            if self._closing:
                raise EvidenceError("the evidence store is closed")
            self._adds_in_flight += 1

    def _end_add(self) -> None:
        with self._lock:
            self._adds_in_flight -= 1
            self._no_add_in_flight.notify_all()

    def _append(
        self, unchained: ArtifactRecord, pending_id: int, created: bool, described: str
    ) -> ArtifactRecord:
        """Give the row its place in the chain and commit it (with the pending mark's removal)."""

        def insert_row() -> ArtifactRecord:
            record = _with_chain(dataclasses.replace(unchained, seq=self._next_seq), self._head)
            self._conn.execute(
                f"INSERT INTO artifacts ({_COLUMNS}) VALUES ({', '.join('?' * 14)})",
                _row_of(record),
            )
            self._conn.execute("DELETE FROM pending WHERE id = ?", (pending_id,))
            # Advanced before the commit; a batch that fails puts them back.
            self._head, self._next_seq = record.chain, record.seq + 1
            return record

        try:
            record: ArtifactRecord = self._commit_step(_IndexStep(insert_row))
        except sqlite3.Error as exc:
            if created:
                with self._lock:
                    self._take_back_object(unchained.sha256, pending_id)
            raise EvidenceWriteError(described, exc) from exc
        return record

    def _commit_step(self, step: _IndexStep) -> Any:
        """Commit one step, batched with those other threads queue meanwhile; its result, or
        its error raised."""
        batch = self._join_or_lead(step)
        if batch:
            try:
                self._commit_batch(batch)
            finally:
                for unfinished in (s for s in batch if not s.done):
                    unfinished.finish(error=EvidenceError("the commit was interrupted"))
                self._hand_over()
        return step.outcome()

    def _join_or_lead(self, step: _IndexStep) -> list[_IndexStep]:
        """Queue the step. Return the batch to commit when this thread is to commit it, or []
        once another thread has committed it."""
        with self._queue_changed:
            self._queued.append(step)
            while self._committing and not step.done:
                self._queue_changed.wait()
            if step.done:
                return []
            self._committing = True
            batch, self._queued = self._queued, []
            return batch

    def _hand_over(self) -> None:
        with self._queue_changed:
            self._committing = False
            self._queue_changed.notify_all()

    def _commit_batch(self, batch: list[_IndexStep]) -> None:
        """All steps in one transaction; when that fails, each alone, so that one bad step
        fails its own add only. Every step ends finished, with a result or an error."""
        with self._lock:
            if len(batch) > 1 and self._commit_together(batch):
                return
            for step in batch:
                self._commit_together([step])

    def _commit_together(self, batch: list[_IndexStep]) -> bool:
        head, next_seq = self._head, self._next_seq
        try:
            with _transaction(self._conn):
                results = [step.statements() for step in batch]
        except Exception as exc:
            self._head, self._next_seq = head, next_seq
            if len(batch) == 1:
                batch[0].finish(error=exc)
            return False
        for step, result in zip(batch, results, strict=True):
            step.finish(result)
        return True

    def _take_back_object(self, sha: str, pending_id: int) -> None:
        """Remove an object whose row could not be committed, so that no object lies around
        unreferenced when the disk has room for the removal; the caller holds the lock.

        Another add of the same content may rely on the object: it commits its pending row
        before it looks for the object, so a committed row or another pending row of this
        hash keeps it. When the index cannot even be read, the object stays (debris is
        allowed; a row without its object never is)."""
        try:
            _roll_back_leftover(self._conn)  # its uncommitted row would seem to rely on it
            relied_on = self._conn.execute(
                "SELECT EXISTS (SELECT 1 FROM artifacts WHERE sha256 = ?)"
                " OR EXISTS (SELECT 1 FROM pending WHERE sha256 = ? AND id != ?)",
                (sha, sha, pending_id),
            ).fetchone()[0]
        except sqlite3.Error:
            return
        if not relied_on and self._dirs is not None:
            with contextlib.suppress(OSError):
                shard = _step(os.dup(self._dirs.objects), sha[:2], _DIR_FLAGS, sha[:2])
                try:
                    os.unlink(sha, dir_fd=shard)
                finally:
                    os.close(shard)

    def _mark_pending(self, sha: str, described: str) -> int:
        """Commit the add's pending row (before its object exists, see the crash guarantee)."""

        def insert_pending() -> int:
            cursor = self._conn.execute("INSERT INTO pending (sha256) VALUES (?)", (sha,))
            assert cursor.lastrowid is not None
            return cursor.lastrowid

        try:
            pending_id: int = self._commit_step(_IndexStep(insert_pending))
        except sqlite3.Error as exc:
            raise EvidenceWriteError(described, exc) from exc
        return pending_id

    def _store_object(self, sha: str, stored: bytes, described: str) -> bool:
        """Write the object unless an identical one is there; True when this call created it.

        Runs outside the lock: two adds of equal content may both write it, and the second
        rename replaces the file with the same bytes."""
        target = self._run_dir / object_path(sha)
        try:
            shard = self._open_shard(target.parent)
        except OSError as exc:
            raise EvidenceWriteError(described, exc) from exc
        try:
            if not _is_regular_at(shard, target.name):
                assert self._dirs is not None  # a writable store has them
                _write_new_at(self._dirs.tmp, shard, target.name, stored, 0o444)
                created = True
            else:
                # Another add may have renamed it into place and not yet synced the folder:
                # sync it here too, so that this add's row never outlives the object.
                created = False
            _fsync_dir(target.parent)
        except OSError as exc:
            raise EvidenceWriteError(described, exc) from exc
        finally:
            os.close(shard)
        return created

    def _open_shard(self, shard: Path) -> int:
        """The shard folder ``objects/xx/``, made when missing and durable (below), opened
        relative to ``objects/`` without following a link: a link planted at ``objects/xx``
        would have the store write objects into any folder it points at."""
        assert self._dirs is not None  # a writable store has them
        with contextlib.suppress(FileExistsError):
            os.mkdir(shard.name, dir_fd=self._dirs.objects)
        self._make_shard_durable(shard)
        return _step(os.dup(self._dirs.objects), shard.name, _DIR_FLAGS, shard.name)

    def _make_shard_durable(self, shard: Path) -> None:
        """Sync ``objects/`` once per shard folder ``objects/xx/``.

        Syncing the folder an object is renamed into makes the object's entry durable, but
        not the folder's own entry in ``objects/``: without this, a power cut could take a
        new folder, and the object in it, away while the row naming the object survives.
        Once per shard in this store, not only when this call's mkdir created the folder:
        an add that finds the folder just made by another add cannot know that one has
        synced ``objects/`` yet. Set operations are atomic; a race syncs it twice, harmlessly.
        """
        if shard.name in self._durable_shards:
            return
        _fsync_dir(shard.parent)
        self._durable_shards.add(shard.name)

    def _require_open(self) -> None:
        if self._closed:
            raise EvidenceError("the evidence store is closed")

    def _require_writable(self) -> None:
        self._require_open()
        if not self._writable:
            raise EvidenceError("the evidence store was opened read-only")

    # -- reading -------------------------------------------------------------------------
    def artifacts(self) -> list[ArtifactRecord]:
        """Every artifact, in the order it was added."""
        with self._lock:
            self._require_open()
            _roll_back_leftover(self._conn)
            return [record_from_row(row) for row in read_raw_rows(self._conn)]

    def read(self, ref: str) -> bytes:
        """The stored bytes of an artifact, checked against its hash."""
        sha = parse_ref(ref)
        with self._lock:
            self._require_open()
            try:
                _roll_back_leftover(self._conn)
                known = self._conn.execute(
                    "SELECT 1 FROM artifacts WHERE sha256 = ? LIMIT 1", (sha,)
                ).fetchone()
            except sqlite3.Error as exc:
                raise EvidenceError(f"{ref}: cannot read the evidence index: {exc}") from exc
        if known is None:
            raise UnknownArtifactError(ref)
        with os.fdopen(open_regular_file(self._run_dir, object_path(sha)), "rb") as handle:
            content = handle.read()
        if hashlib.sha256(content).hexdigest() != sha:
            raise EvidenceIntegrityError(f"{ref}: the stored object does not match its hash")
        return content

    def manifest(self) -> dict[str, Any]:
        """The manifest as close() writes it, derived from the index now."""
        return build_manifest(
            self.run_id, self.artifacts(), self._run_info.get("auditor_version", "unknown")
        )

    def seal_document(self) -> dict[str, Any] | None:
        """The run's seal, None before ``seal_run()``."""
        try:
            return parse_seal(self._run_info.get(SEAL_KEY))
        except ValueError as exc:
            raise EvidenceError(f"{self._run_dir}: {exc}") from exc

    # -- closing -------------------------------------------------------------------------
    def close(self) -> None:
        """Write the manifest (when writable) and release the index. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closing = True
            while self._adds_in_flight:
                self._no_add_in_flight.wait()
            if self._writable:
                self._finish(self.manifest())
            self._closed = True
            self._conn.close()
            if self._dirs is not None:
                self._dirs.close()

    def _finish(self, manifest: Mapping[str, Any]) -> None:
        # Manifest first, then the "closed" mark: a crash between the two leaves a manifest
        # that agrees with the index, never a "closed" index whose manifest is missing.
        content = json.dumps(manifest, indent=2, ensure_ascii=False).encode("utf-8") + b"\n"
        assert self._dirs is not None  # a writable store has them
        try:
            _write_new_at(self._dirs.tmp, self._dirs.evidence, "manifest.json", content, 0o444)
            _fsync_dir(self._run_dir / EVIDENCE_DIR)
            with _transaction(self._conn):
                self._conn.execute(
                    "INSERT OR REPLACE INTO run (key, value) VALUES ('closed', ?)",
                    (_utc_iso(datetime.now(UTC), "closed"),),
                )
        except (OSError, sqlite3.Error) as exc:
            raise EvidenceWriteError("manifest.json", exc) from exc
        # Fold the WAL into the database file, so a closed store is one self-contained file.
        # A reader still holding the index (a verify run meanwhile) prevents it; the WAL form
        # is just as complete, so that is no failure.
        with contextlib.suppress(sqlite3.OperationalError):
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.execute("PRAGMA journal_mode=DELETE")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _with_chain(record: ArtifactRecord, previous: str) -> ArtifactRecord:
    chain = next_chain(previous, record.metadata())
    return dataclasses.replace(record, chain=chain)


def _row_of(record: ArtifactRecord) -> tuple[Any, ...]:
    meta = record.metadata()
    return (
        *(meta[k] for k in ("seq", "sha256", "size", "host", "probe", "command")),
        *(meta[k] for k in ("tool_version", "exit_status", "media_type", "started", "finished")),
        json.dumps(meta["redactions"], sort_keys=True),
        int(record.redaction_applied),
        record.chain,
    )


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """An explicit transaction (the connection runs in autocommit mode otherwise). Whatever
    fails, the COMMIT included, leaves the connection outside any transaction when it can."""
    _roll_back_leftover(conn)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        # Inside the try: a COMMIT that fails (disk full, I/O error, busy) may leave the
        # transaction open, and the next BEGIN would then fail, or a later COMMIT carry
        # statements whose add was already reported failed.
        conn.execute("COMMIT")
    except BaseException as exc:
        _roll_back(conn, exc)
        raise


def _roll_back(conn: sqlite3.Connection, cause: BaseException) -> None:
    """Roll back after ``cause``, which stays the error raised: a failed ROLLBACK only adds a
    note, and leaves the transaction to ``_roll_back_leftover``."""
    try:
        # SQLite rolls back by itself after some errors (a COMMIT refused for a full disk, in
        # WAL mode); a ROLLBACK then would only fail with "no transaction is active".
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.Error as failure:  # in_transaction too, on a connection already closed
        cause.add_note(f"the ROLLBACK that followed failed too: {failure}")


def _roll_back_leftover(conn: sqlite3.Connection) -> None:
    """Roll back a transaction left open by a failed COMMIT whose ROLLBACK failed too.

    Every write goes through ``_transaction`` under the store's lock, so an open transaction
    here holds only statements whose adds were already reported failed (and whose chain head
    was put back): rolling it back is what those adds promised. Reads call this too, so they
    never see those rows. Raises when the ROLLBACK fails again."""
    if conn.in_transaction:
        conn.execute("ROLLBACK")


__all__ = [
    "FORMAT",
    "INDEX_FILE",
    "MANIFEST_FILE",
    "OBJECTS_DIR",
    "SEAL_FORMAT",
    "SEAL_KEY",
    "TMP_DIR",
    "ArtifactRecord",
    "EvidenceError",
    "EvidenceIntegrityError",
    "EvidenceStore",
    "EvidenceWriteError",
    "NotARunError",
    "NotRegularFileError",
    "UnknownArtifactError",
    "auditor_version",
    "build_manifest",
    "canonical_json",
    "file_digest",
    "file_kind",
    "genesis",
    "harden",
    "next_chain",
    "object_path",
    "open_regular_file",
    "parse_ref",
    "parse_seal",
    "reseal",
    "schema_problems",
    "seal_files",
    "seal_run",
    "sealable_name",
]
