"""Offline verification of a run's evidence: is everything there, unchanged, and in order?

Each check is a function over the index records and a ``RunFiles`` view of the run, and
returns the problems it found, each naming the artifact or file and what is wrong. A run is a
folder (``DirectoryRun``) or a certification bundle, a zip (``ZipRun``) whose
``bundle/manifest.json`` lists every file's SHA-256 and carries an Ed25519 signature: the same
evidence checks run over both, plus the bundle checks (every file listed and unchanged, nothing
added, the signature valid, by the trusted key when one is given).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import re
import sqlite3
import tempfile
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from auditor.evidence.store import (
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

# The certification bundle's own files (written by auditor/report/bundle.py, defined here, where they
# are checked).
BUNDLE_FORMAT = "anon-infra-auditor-bundle/1"
BUNDLE_DIR = "bundle"
BUNDLE_MANIFEST = f"{BUNDLE_DIR}/manifest.json"
BUNDLE_SIGNATURE = f"{BUNDLE_DIR}/manifest.sig"
BUNDLE_PUBLIC_KEY = f"{BUNDLE_DIR}/public-key.pem"
BUNDLE_OWN_FILES = frozenset({BUNDLE_MANIFEST, BUNDLE_SIGNATURE, BUNDLE_PUBLIC_KEY})
_REPORT_FINGERPRINT = re.compile(rb'<meta name="signer-fingerprint" content="([^"]*)">')

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


class ZipRun:
    """A certification bundle, read in place: nothing is extracted but the index, which SQLite
    needs as a file. Entries that could escape a folder on extraction are refused."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise NotARunError(f"{path} is not a readable zip: {exc}") from exc
        self.entry_problems: list[Problem] = []
        self._files: dict[str, zipfile.ZipInfo] = {}
        for info in self._zip.infolist():
            self._admit(info)

    def _admit(self, info: zipfile.ZipInfo) -> None:
        name = info.filename
        if info.is_dir():
            return
        pure = PurePosixPath(name)
        if pure.is_absolute() or ".." in pure.parts or "\\" in name or not name:
            self.entry_problems.append(Problem("bundle", name, "unsafe entry name (refused)"))
        elif (info.external_attr >> 16) & 0o170000 == 0o120000:
            self.entry_problems.append(Problem("bundle", name, "symbolic link entry (refused)"))
        elif name in self._files:
            self.entry_problems.append(Problem("bundle", name, "entry appears twice in the zip"))
        else:
            self._files[name] = info

    def close(self) -> None:
        self._zip.close()

    @property
    def location(self) -> str:
        return str(self.path)

    def exists(self, rel: str) -> bool:
        return rel in self._files

    def read_bytes(self, rel: str) -> bytes:
        return self._zip.read(self._files[rel])

    def digest(self, rel: str) -> tuple[str, int]:
        digest = hashlib.sha256()
        with self._zip.open(self._files[rel]) as handle:
            # Chunked: an object (a packet capture) may be large.
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        return digest.hexdigest(), self._files[rel].file_size

    def list_files(self, under: str) -> list[str]:
        prefix = f"{under.rstrip('/')}/" if under else ""
        return sorted(name for name in self._files if name.startswith(prefix))

    @contextlib.contextmanager
    def index_file(self) -> Iterator[Path]:
        with tempfile.TemporaryDirectory(prefix="auditor-verify-") as tmp:
            target = Path(tmp) / "index.sqlite"
            target.write_bytes(self.read_bytes(INDEX_FILE) if self.exists(INDEX_FILE) else b"")
            yield target


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
    bundle: bool = False  #: a certification bundle (zip, or an unzipped one) was checked
    bundle_files: int = 0  #: files listed in the bundle manifest
    signed: bool = False
    signer_fingerprint: str | None = None
    #: True when the signer is the trusted key given; None when no trusted key was given
    trusted: bool | None = None

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


def is_bundle(path: Path) -> bool:
    return path.is_file() and zipfile.is_zipfile(path)


def verify_path(path: Path, *, trusted_fingerprint: str | None = None) -> VerificationReport:
    """Verify a run folder, an unzipped bundle or a bundle zip.

    ``trusted_fingerprint`` ("SHA256:<hex>") is the key the verifier expects the bundle to be
    signed with, learnt from the auditor by another channel: without it a valid signature only
    shows that the bundle is as its signer sealed it, not who that was. Raises NotARunError
    when ``path`` is neither.
    """
    if is_bundle(path):
        zipped = ZipRun(path)
        try:
            return _verify_bundle(zipped, zipped.entry_problems, trusted_fingerprint)
        finally:
            zipped.close()
    if not is_run(path):
        raise NotARunError(f"{path} is neither a run folder (no {INDEX_FILE}) nor a bundle")
    directory = DirectoryRun(path)
    if directory.exists(BUNDLE_MANIFEST):
        return _verify_bundle(directory, [], trusted_fingerprint)
    report = verify_files(directory)
    if trusted_fingerprint is not None:
        report.trusted = False
        report.problems.append(
            Problem("signature", "run", "a trusted key was given but this is no signed bundle")
        )
    return report


def _verify_bundle(
    files: RunFiles, entry_problems: list[Problem], trusted_fingerprint: str | None
) -> VerificationReport:
    report = verify_files(files)
    report.bundle = True
    report.problems[:0] = entry_problems
    manifest = _read_bundle_manifest(files, report)
    if manifest is not None:
        report.problems += check_bundle_files(files, manifest)
        report.problems += check_signature(files, manifest, report, trusted_fingerprint)
        report.problems += check_report_fingerprints(files, report.signer_fingerprint)
    elif trusted_fingerprint is not None:
        report.trusted = False
    return report


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


# -- the bundle checks ----------------------------------------------------------------------


def _read_bundle_manifest(files: RunFiles, report: VerificationReport) -> dict[str, Any] | None:
    if not files.exists(BUNDLE_MANIFEST):
        report.problems.append(Problem("bundle", BUNDLE_MANIFEST, "missing: this is no bundle"))
        return None
    try:
        manifest = json.loads(files.read_bytes(BUNDLE_MANIFEST))
    except (ValueError, UnicodeDecodeError) as exc:
        report.problems.append(Problem("bundle", BUNDLE_MANIFEST, f"not valid JSON: {exc}"))
        return None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list):
        report.problems.append(Problem("bundle", BUNDLE_MANIFEST, "has no list of files"))
        return None
    if manifest.get("format") != BUNDLE_FORMAT:
        report.problems.append(
            Problem(
                "bundle",
                BUNDLE_MANIFEST,
                f"format {manifest.get('format')!r} is not {BUNDLE_FORMAT}",
            )
        )
    if report.run_id is not None and manifest.get("run_id") != report.run_id:
        report.problems.append(
            Problem(
                "bundle",
                BUNDLE_MANIFEST,
                f"run id {manifest.get('run_id')!r} is not the evidence's {report.run_id!r}",
            )
        )
    report.bundle_files = len(manifest["files"])
    return manifest


def check_bundle_files(files: RunFiles, manifest: Mapping[str, Any]) -> list[Problem]:
    """Every listed file is there with its hash and size; every file there is listed."""
    problems: list[Problem] = []
    listed: dict[str, Mapping[str, Any]] = {}
    for entry in manifest["files"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            problems.append(Problem("bundle", BUNDLE_MANIFEST, f"malformed file entry {entry!r}"))
            continue
        listed[entry["path"]] = entry
    for rel, entry in sorted(listed.items()):
        if not files.exists(rel):
            problems.append(Problem("bundle", rel, "listed in the bundle manifest, but missing"))
            continue
        actual, size = files.digest(rel)
        if actual != entry.get("sha256"):
            problems.append(
                Problem(
                    "bundle",
                    rel,
                    f"changed: it hashes to {actual}, the manifest says {entry.get('sha256')}",
                )
            )
        elif size != entry.get("size"):
            problems.append(
                Problem(
                    "bundle", rel, f"size {size} differs from the manifest's {entry.get('size')}"
                )
            )
    for rel in files.list_files(""):
        if rel not in listed and rel not in BUNDLE_OWN_FILES:
            problems.append(Problem("bundle", rel, "not listed in the bundle manifest (added)"))
    return problems


def check_signature(
    files: RunFiles,
    manifest: Mapping[str, Any],
    report: VerificationReport,
    trusted_fingerprint: str | None,
) -> list[Problem]:
    """The manifest's signature verifies with the bundle's key, and that key is the trusted one."""
    # Imported here: verifying a plain run folder needs no cryptography.
    from auditor.evidence.signing import (
        SigningKeyError,
        fingerprint,
        load_public_key,
        signature_valid,
    )

    if not files.exists(BUNDLE_SIGNATURE):
        report.notes.append(
            "the bundle is not signed: its hashes show that it is consistent, not who sealed it"
        )
        if trusted_fingerprint is not None:
            report.trusted = False
            return [Problem("signature", BUNDLE_SIGNATURE, "missing, but a trusted key was given")]
        return []
    if not files.exists(BUNDLE_PUBLIC_KEY):
        return [Problem("signature", BUNDLE_PUBLIC_KEY, "missing: the signature cannot be checked")]
    try:
        key = load_public_key(files.read_bytes(BUNDLE_PUBLIC_KEY), BUNDLE_PUBLIC_KEY)
        signature = base64.b64decode(files.read_bytes(BUNDLE_SIGNATURE).strip(), validate=True)
    except (SigningKeyError, binascii.Error, ValueError) as exc:
        return [Problem("signature", BUNDLE_SIGNATURE, f"unreadable: {exc}")]
    report.signer_fingerprint = fingerprint(key)
    problems = []
    if signature_valid(key, signature, files.read_bytes(BUNDLE_MANIFEST)):
        report.signed = True
    else:
        problems.append(
            Problem(
                "signature",
                BUNDLE_MANIFEST,
                "the signature does not verify with the bundle's public key (the manifest was "
                "changed after signing, or signed by another key)",
            )
        )
    if manifest.get("signer_fingerprint") != report.signer_fingerprint:
        problems.append(
            Problem(
                "signature",
                BUNDLE_PUBLIC_KEY,
                f"the manifest names the signer {manifest.get('signer_fingerprint')!r}, the "
                f"bundle's key is {report.signer_fingerprint}",
            )
        )
    if trusted_fingerprint is not None:
        report.trusted = report.signed and report.signer_fingerprint == trusted_fingerprint
        if report.signer_fingerprint != trusted_fingerprint:
            problems.append(
                Problem(
                    "signature",
                    BUNDLE_PUBLIC_KEY,
                    f"signed by {report.signer_fingerprint}, not by the trusted key "
                    f"{trusted_fingerprint}",
                )
            )
    return problems


def check_report_fingerprints(files: RunFiles, signer: str | None) -> list[Problem]:
    """The HTML reports name the key the bundle is signed with."""
    problems = []
    for rel in files.list_files(""):
        if "/" in rel or not (rel.startswith("report.") and rel.endswith(".html")):
            continue
        match = _REPORT_FINGERPRINT.search(files.read_bytes(rel))
        named = match.group(1).decode("utf-8", "replace") if match else None
        if named != signer:
            problems.append(
                Problem(
                    "signature",
                    rel,
                    f"the report names the signer {named!r}, the bundle is signed by {signer!r}",
                )
            )
    return problems


__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_MANIFEST",
    "BUNDLE_OWN_FILES",
    "BUNDLE_PUBLIC_KEY",
    "BUNDLE_SIGNATURE",
    "DirectoryRun",
    "Problem",
    "RunFiles",
    "VerificationReport",
    "ZipRun",
    "check_bundle_files",
    "check_chain",
    "check_findings",
    "check_manifest",
    "check_objects",
    "check_report_fingerprints",
    "check_sequence",
    "check_signature",
    "is_bundle",
    "is_run",
    "verify_files",
    "verify_path",
    "verify_run",
]
