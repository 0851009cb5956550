"""Offline verification of a run's evidence: is everything there, unchanged, and in order?

Each check is a function over the index records and a ``RunFiles`` view of the run, and
returns the problems it found, each naming the artifact or file and what is wrong. Only
``DirectoryRun`` exists today; a signed bundle (a zip whose manifest carries an Ed25519
signature) needs another ``RunFiles`` implementation plus a signature check, and reuses every
check here unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from auditor.evidence import (
    EVIDENCE_DIR,
    FORMAT,
    INDEX_FILE,
    MANIFEST_FILE,
    OBJECTS_DIR,
    TMP_DIR,
    ArtifactRecord,
    NotARunError,
    build_manifest,
    connect_read_only,
    genesis,
    next_chain,
    object_path,
    read_pending,
    read_raw_rows,
    read_run_info,
    record_from_row,
)

FINDINGS_FILE = "findings.json"

# SQLite's own companions of the index: present while a run is live or after a crash.
_INDEX_COMPANIONS = frozenset(f"{INDEX_FILE}{suffix}" for suffix in ("-wal", "-shm", "-journal"))


# -- what a run looks like to the checks --------------------------------------------------


class RunFiles(Protocol):
    """Read-only access to a run's files by '/'-separated path relative to the run folder."""

    @property
    def location(self) -> str: ...

    def exists(self, rel: str) -> bool: ...

    def read_bytes(self, rel: str) -> bytes: ...

    def digest(self, rel: str) -> tuple[str, int]:
        """SHA-256 hex digest and size of a file, without holding it all in memory."""
        ...

    def list_files(self, under: str) -> list[str]:
        """Every regular file below ``under`` (recursively), as relative paths."""
        ...

    def index_file(self) -> AbstractContextManager[Path]:
        """A local path of the SQLite index (a bundle extracts it to a temporary file)."""
        ...


class DirectoryRun:
    """A run folder on disk, as ``auditor audit --out DIR`` leaves it."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def location(self) -> str:
        return str(self.root)

    def exists(self, rel: str) -> bool:
        return (self.root / rel).is_file()

    def read_bytes(self, rel: str) -> bytes:
        return (self.root / rel).read_bytes()

    def digest(self, rel: str) -> tuple[str, int]:
        with (self.root / rel).open("rb") as handle:
            digest = hashlib.file_digest(handle, "sha256")
        return digest.hexdigest(), (self.root / rel).stat().st_size

    def list_files(self, under: str) -> list[str]:
        base = self.root / under
        if not base.is_dir():
            return []
        return sorted(
            path.relative_to(self.root).as_posix() for path in base.rglob("*") if not path.is_dir()
        )

    @contextlib.contextmanager
    def index_file(self) -> Iterator[Path]:
        yield self.root / INDEX_FILE


# -- the report -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the evidence: which check saw it, about what, and what."""

    check: str  #: "index", "sequence", "chain", "object", "manifest", "findings", "layout"
    subject: str  #: "artifact #3 sha256:…", a file path, or "run"
    message: str

    def __str__(self) -> str:
        return f"[{self.check}] {self.subject}: {self.message}"


@dataclass
class VerificationReport:
    location: str
    run_id: str | None = None
    artifact_count: int = 0
    chain_head: str | None = None
    closed: bool = False  #: the store was closed normally (not interrupted)
    manifest_present: bool = False
    findings_present: bool = False
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  #: not problems, worth knowing

    @property
    def intact(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class IndexContents:
    run_info: Mapping[str, str]
    records: list[ArtifactRecord]
    pending: set[str]


# -- entry points ---------------------------------------------------------------------------


def is_run(path: Path) -> bool:
    return path.is_dir() and (path / INDEX_FILE).is_file()


def verify_run(path: Path) -> VerificationReport:
    """Verify the run folder at ``path``. Raises NotARunError when it holds no evidence."""
    if not is_run(path):
        raise NotARunError(f"{path} is not a run folder: no {INDEX_FILE}")
    return verify_files(DirectoryRun(path))


def verify_files(files: RunFiles) -> VerificationReport:
    """Run every check over a run, however its files are reached."""
    report = VerificationReport(location=files.location)
    contents = _load_index(files, report)
    if contents is None:
        return report
    run_id = contents.run_info["run_id"]
    records = contents.records
    report.run_id = run_id
    report.artifact_count = len(records)
    report.chain_head = records[-1].chain if records else genesis(run_id)
    report.closed = "closed" in contents.run_info
    report.manifest_present = files.exists(MANIFEST_FILE)
    report.findings_present = files.exists(FINDINGS_FILE)
    report.problems += check_run_info(contents.run_info)
    report.problems += check_sequence(records)
    report.problems += check_chain(run_id, records)
    object_problems, object_notes = check_objects(files, records, contents.pending)
    report.problems += object_problems
    report.notes += object_notes
    manifest_problems, manifest_notes = check_manifest(files, contents)
    report.problems += manifest_problems
    report.notes += manifest_notes
    report.problems += check_findings(files, run_id, records)
    return report


def _load_index(files: RunFiles, report: VerificationReport) -> IndexContents | None:
    """Read the index; a damaged index is a problem, reported, and ends the verification."""
    try:
        with files.index_file() as index:
            conn = connect_read_only(index)
            try:
                info = read_run_info(conn)
                raw_rows = read_raw_rows(conn)
                pending = read_pending(conn)
            finally:
                conn.close()
    except sqlite3.Error as exc:
        report.problems.append(Problem("index", INDEX_FILE, f"cannot be read: {exc}"))
        return None
    if not info.get("run_id"):
        report.problems.append(Problem("index", INDEX_FILE, "the run id is missing"))
        return None
    records: list[ArtifactRecord] = []
    for row in raw_rows:
        try:
            records.append(record_from_row(row))
        except (ValueError, TypeError) as exc:
            report.problems.append(Problem("index", f"row with seq {row[0]!r}", str(exc)))
    return IndexContents(run_info=info, records=records, pending=pending)


# -- the checks -----------------------------------------------------------------------------


def _subject(record: ArtifactRecord) -> str:
    return f"artifact #{record.seq} {record.ref}"


def check_run_info(info: Mapping[str, str]) -> list[Problem]:
    problems = []
    if info.get("format") != FORMAT:
        problems.append(Problem("index", "run", f"format is {info.get('format')!r}, not {FORMAT}"))
    if info.get("genesis") != genesis(info["run_id"]):
        problems.append(
            Problem("chain", "run", "the recorded genesis does not derive from the run id")
        )
    return problems


def check_sequence(records: Sequence[ArtifactRecord]) -> list[Problem]:
    """Sequence numbers run 1, 2, 3, … without a gap: a removed row leaves one."""
    problems = []
    expected = 1
    for record in records:
        if record.seq > expected:
            missing = (
                f"#{expected}" if record.seq == expected + 1 else f"#{expected}–#{record.seq - 1}"
            )
            problems.append(
                Problem("sequence", f"artifact {missing}", "missing from the index (row removed)")
            )
        elif record.seq < expected:
            problems.append(Problem("sequence", _subject(record), "sequence number out of order"))
        expected = record.seq + 1
    return problems


def check_chain(run_id: str, records: Sequence[ArtifactRecord]) -> list[Problem]:
    """Each row's chain hash recomputes from the previous row's and its own metadata.

    Comparing against the *stored* previous hash pins a problem to the row where it is: an
    edited row breaks its own link, a removed row breaks the link of the one after it, and a
    moved row breaks its own link (its sequence number is hashed) and that of its successor.
    """
    problems = []
    previous = genesis(run_id)
    for record in records:
        if next_chain(previous, record.metadata()) != record.chain:
            problems.append(
                Problem(
                    "chain",
                    _subject(record),
                    "chain hash does not follow from the previous row and this row's metadata "
                    "(row edited, removed before it, or moved)",
                )
            )
        previous = record.chain
    return problems


def check_objects(
    files: RunFiles, records: Sequence[ArtifactRecord], pending: set[str]
) -> tuple[list[Problem], list[str]]:
    """Every referenced object is present and unchanged; nothing else lies in the store."""
    problems: list[Problem] = []
    notes: list[str] = []
    by_sha: dict[str, list[ArtifactRecord]] = {}
    for record in records:
        by_sha.setdefault(record.sha256, []).append(record)
    for sha, referencing in by_sha.items():
        problems += _check_referenced_object(files, sha, referencing)
    for rel in files.list_files(OBJECTS_DIR):
        problem, note = _check_stored_file(files, rel, by_sha, pending)
        problems += problem
        notes += note
    problems += _check_layout(files)
    leftovers = files.list_files(TMP_DIR)
    if leftovers:
        notes.append(
            f"{len(leftovers)} temporary file(s) left by an interrupted write in {TMP_DIR}"
        )
    return problems, notes


def _check_referenced_object(
    files: RunFiles, sha: str, referencing: Sequence[ArtifactRecord]
) -> list[Problem]:
    rel = object_path(sha)
    if not files.exists(rel):
        return [
            Problem("object", _subject(r), f"object file {rel} is missing") for r in referencing
        ]
    actual, size = files.digest(rel)
    problems = []
    for record in referencing:
        if actual != sha:
            problems.append(
                Problem(
                    "object", _subject(record), f"object content changed: it hashes to {actual}"
                )
            )
        elif size != record.size:
            problems.append(
                Problem("object", _subject(record), f"size {size} differs from index {record.size}")
            )
    return problems


def _check_stored_file(
    files: RunFiles, rel: str, by_sha: Mapping[str, Any], pending: set[str]
) -> tuple[list[Problem], list[str]]:
    name = rel.rsplit("/", 1)[-1]
    if rel != object_path(name) or len(name) != 64:
        return [Problem("object", rel, "unexpected file in the object store")], []
    if name in by_sha:
        return [], []
    if name in pending:
        return [], [f"{rel}: written by an add that was interrupted before its index row"]
    actual, _ = files.digest(rel)
    detail = "" if actual == name else f" (and its content hashes to {actual})"
    return [Problem("object", rel, f"object not referenced by the index (added file){detail}")], []


def _check_layout(files: RunFiles) -> list[Problem]:
    expected = {INDEX_FILE, MANIFEST_FILE, *_INDEX_COMPANIONS}
    return [
        Problem("layout", rel, "unexpected file in the evidence folder")
        for rel in files.list_files(EVIDENCE_DIR)
        if rel not in expected and not rel.startswith((f"{OBJECTS_DIR}/", f"{TMP_DIR}/"))
    ]


def check_manifest(files: RunFiles, contents: IndexContents) -> tuple[list[Problem], list[str]]:
    """The manifest, when present, says exactly what the index says."""
    if not files.exists(MANIFEST_FILE):
        if "closed" in contents.run_info:
            return [
                Problem("manifest", MANIFEST_FILE, "missing, although the store was closed")
            ], []
        return [], ["no manifest: the run was interrupted before close; verified from the index"]
    try:
        manifest = json.loads(files.read_bytes(MANIFEST_FILE))
    except (ValueError, UnicodeDecodeError) as exc:
        return [Problem("manifest", MANIFEST_FILE, f"not valid JSON: {exc}")], []
    if not isinstance(manifest, dict):
        return [Problem("manifest", MANIFEST_FILE, "not a JSON object")], []
    derived = build_manifest(
        contents.run_info["run_id"],
        contents.records,
        contents.run_info.get("auditor_version", "unknown"),
    )
    return _compare_manifest(manifest, derived), []


def _compare_manifest(manifest: Mapping[str, Any], derived: Mapping[str, Any]) -> list[Problem]:
    problems = [
        Problem("manifest", key, f"manifest says {manifest.get(key)!r}, the index {value!r}")
        for key, value in derived.items()
        if key != "artifacts" and manifest.get(key) != value
    ]
    problems += [
        Problem("manifest", key, "not a manifest field") for key in manifest if key not in derived
    ]
    listed = manifest.get("artifacts")
    if not isinstance(listed, list):
        return [*problems, Problem("manifest", "artifacts", "missing or not a list")]
    indexed: list[dict[str, Any]] = derived["artifacts"]
    for position, (in_manifest, in_index) in enumerate(zip(listed, indexed, strict=False)):
        if in_manifest != in_index:
            problems.append(_artifact_difference(position, in_manifest, in_index))
    for extra in listed[len(indexed) :]:
        ref = extra.get("ref") if isinstance(extra, dict) else extra
        problems.append(Problem("manifest", f"{ref}", "listed in the manifest, not in the index"))
    for missing in indexed[len(listed) :]:
        subject = f"artifact #{missing['seq']} {missing['ref']}"
        problems.append(Problem("manifest", subject, "in the index, not in the manifest"))
    return problems


def _artifact_difference(position: int, in_manifest: Any, in_index: dict[str, Any]) -> Problem:
    subject = f"artifact #{in_index['seq']} {in_index['ref']}"
    if not isinstance(in_manifest, dict):
        return Problem("manifest", subject, f"manifest entry {position} is not an object")
    fields = sorted(
        key for key in set(in_manifest) | set(in_index) if in_manifest.get(key) != in_index.get(key)
    )
    return Problem("manifest", subject, f"manifest differs from the index in: {', '.join(fields)}")


def check_findings(
    files: RunFiles, run_id: str, records: Sequence[ArtifactRecord]
) -> list[Problem]:
    """Every artifact a finding cites is in the evidence, and the findings are of this run."""
    if not files.exists(FINDINGS_FILE):
        return []
    try:
        document = json.loads(files.read_bytes(FINDINGS_FILE))
    except (ValueError, UnicodeDecodeError) as exc:
        return [Problem("findings", FINDINGS_FILE, f"not valid JSON: {exc}")]
    findings = document.get("findings") if isinstance(document, dict) else None
    if not isinstance(findings, list):
        return [Problem("findings", FINDINGS_FILE, "has no list of findings")]
    problems = []
    run = document.get("run")
    findings_run = run.get("id") if isinstance(run, dict) else None
    if findings_run != run_id:
        problems.append(
            Problem("findings", FINDINGS_FILE, f"run id {findings_run!r} is not {run_id!r}")
        )
    present = {record.ref for record in records}
    for number, finding in enumerate(findings):
        subject = _finding_subject(number, finding)
        problems += [
            Problem("findings", subject, f"cites {ref!r}, which is not in the evidence")
            for ref in _cited_refs(finding)
            if ref not in present
        ]
    return problems


def _finding_subject(number: int, finding: Any) -> str:
    if isinstance(finding, dict):
        return f"finding {number} ({finding.get('control')} / {finding.get('subject')})"
    return f"finding {number}"


def _cited_refs(value: Any) -> list[Any]:
    """Every entry of every ``evidence`` list anywhere in a finding (hops carry them too)."""
    if isinstance(value, list):
        return [ref for item in value for ref in _cited_refs(item)]
    if not isinstance(value, dict):
        return []
    cited: list[Any] = []
    for key, item in value.items():
        if key == "evidence" and isinstance(item, list):
            cited += item
        else:
            cited += _cited_refs(item)
    return cited


__all__ = [
    "DirectoryRun",
    "Problem",
    "RunFiles",
    "VerificationReport",
    "check_chain",
    "check_findings",
    "check_manifest",
    "check_objects",
    "check_sequence",
    "is_run",
    "verify_files",
    "verify_run",
]
