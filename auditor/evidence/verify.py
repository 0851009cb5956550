"""Offline verification of a run: is everything there, unchanged, in order, and who sealed it?

Each check is a function over the index records and a ``RunFiles`` view of the run, and returns
the problems it found, each naming the artifact or file and what is wrong. A run is a folder
(``DirectoryRun``) or a certification bundle, a zip (``ZipRun``) whose ``bundle/manifest.json``
lists every file's SHA-256 and carries an Ed25519 signature: the same evidence checks run over
both, plus the bundle checks (every file listed and unchanged, nothing added, the signature
valid, by the trusted key when one is given).

Two verdicts (docs/evidence.md): *intact*, no check found a problem, so every file is what the
run's own hashes say (the chain, the evidence manifest, the seal of the run's files, a bundle's
manifest); and *authenticated*, intact and a bundle signed by the key the verifier trusts. A run
folder is never signed, and a signature by any other key proves nothing: whoever can write the
files can rewrite every file, hash and seal so that they agree.

The verifier reads files that an attacker may have made, so it cannot be exhausted:

- a bundle's container is checked before anything in it is read (exactly the entries, their
  central directory and its end record: nothing prepended, appended, between or overlapping),
  then its signature and manifest, then its content;
- every read is bounded (``Limits``): a zip member's declared size is checked before it is read,
  and no read goes past it;
- the SQLite index must have exactly the store's schema (no view, no trigger), read from
  sqlite_master before any table is queried, and is opened read-only under a time bound;
- links and special files (FIFO, device, socket) are refused everywhere, reported as problems,
  never followed nor opened.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import re
import sqlite3
import stat
import struct
import tempfile
import time
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any, Protocol

from auditor.domain.errors import AuditorError
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
    file_kind,
    genesis,
    harden,
    next_chain,
    object_path,
    open_regular_file,
    parse_seal,
    read_pending,
    read_raw_rows,
    read_run_info,
    record_from_row,
    schema_problems,
    sealable_name,
)

FINDINGS_FILE = "findings.json"

# The certification bundle's own files (written by auditor/report/bundle.py, defined here, where
# they are checked).
BUNDLE_FORMAT = "anon-infra-auditor-bundle/1"
BUNDLE_DIR = "bundle"
BUNDLE_MANIFEST = f"{BUNDLE_DIR}/manifest.json"
BUNDLE_SIGNATURE = f"{BUNDLE_DIR}/manifest.sig"
BUNDLE_PUBLIC_KEY = f"{BUNDLE_DIR}/public-key.pem"
BUNDLE_OWN_FILES = frozenset({BUNDLE_MANIFEST, BUNDLE_SIGNATURE, BUNDLE_PUBLIC_KEY})
_REPORT_FINGERPRINT = re.compile(rb'<meta name="signer-fingerprint" content="([^"]*)">')

# SQLite's own companions of the index: present while a run is live or after a crash.
_INDEX_COMPANIONS = frozenset(f"{INDEX_FILE}{suffix}" for suffix in ("-wal", "-shm", "-journal"))

#: A public key or a signature is a few hundred bytes: anything larger is not read.
_SMALL = 64 << 10
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Limits:
    """Bounds on what one verification reads; past them a file is refused, not read. The
    defaults hold a large real audit many times over."""

    member: int = 1 << 30  #: bytes of any one file (a packet capture)
    total: int = 8 << 30  #: bytes of all a bundle's files together, as declared
    document: int = 64 << 20  #: bytes of a file that is parsed (JSON, HTML, a manifest)
    index: int = 256 << 20  #: bytes of the SQLite index
    entries: int = 500_000  #: files (and folders) of a bundle or a run folder
    central_directory: int = 128 << 20  #: bytes of a zip's central directory
    index_seconds: float = 60.0  #: time for all the queries of the index


DEFAULT_LIMITS = Limits()


class RefusedFileError(AuditorError):
    """A file that is not read: larger than a limit, not a regular file, or unreadable."""


def _too_large(size: int, limit: int) -> str:
    return f"{size} bytes, more than the {limit} a verification reads"


def _shown(text: str) -> str:
    """A file name as text that can be printed (a name that is not UTF-8 keeps its escapes)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


# -- what a run looks like to the checks --------------------------------------------------


class RunFiles(Protocol):
    """Read-only, bounded access to a run's files by '/'-separated path relative to the run."""

    #: what the listing refused (links, special files, unsafe entries), as problems
    entry_problems: list[Problem]

    @property
    def location(self) -> str: ...

    def exists(self, rel: str) -> bool:
        """A regular file the listing admitted (a link or a special file never is)."""
        ...

    def read_bytes(self, rel: str, limit: int) -> bytes:
        """The whole file; RefusedFileError when larger than ``limit`` or unreadable."""
        ...

    def digest(self, rel: str) -> tuple[str, int]:
        """SHA-256 hex digest and size, read in chunks; RefusedFileError past ``Limits.member``."""
        ...

    def list_files(self, under: str) -> list[str]:
        """Every admitted file below ``under`` (recursively; "" for all), sorted."""
        ...

    def index_file(self) -> AbstractContextManager[tuple[Path, bool]]:
        """A local path of the SQLite index, and whether it can be opened immutable (a copy
        nobody writes to); RefusedFileError when it is not a regular file within the limit."""
        ...


def walk_folder(root: Path, max_entries: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Every regular file below ``root`` (relative path -> size), and every entry refused
    (relative path, why): a link or a special file is listed, never followed nor opened."""
    files: dict[str, int] = {}
    refused: list[tuple[str, str]] = []
    folders = [""]
    seen = 0
    while folders:
        folder = folders.pop()
        try:
            with os.scandir(root / folder if folder else root) as entries:
                for entry in entries:
                    seen += 1
                    if seen > max_entries:
                        refused.append((folder or ".", f"more than {max_entries} entries"))
                        return files, refused
                    rel = f"{folder}/{entry.name}" if folder else entry.name
                    status = entry.stat(follow_symlinks=False)
                    if stat.S_ISDIR(status.st_mode):
                        folders.append(rel)
                    elif stat.S_ISREG(status.st_mode):
                        files[rel] = status.st_size
                    else:
                        kind = file_kind(status.st_mode)
                        refused.append((rel, f"a {kind}: refused, never followed nor opened"))
        except OSError as exc:
            refused.append((folder or ".", f"cannot be listed: {exc.strerror or exc}"))
    return files, refused


def _hash_stream(handle: IO[bytes], limit: int) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    while chunk := handle.read(1 << 20):
        size += len(chunk)
        if size > limit:
            raise RefusedFileError(f"more than the {limit} bytes a verification reads")
        digest.update(chunk)
    return digest.hexdigest(), size


class DirectoryRun:
    """A run folder on disk (``auditor audit --out DIR``), or an unzipped bundle. It is listed
    once, without following links; a file is then read only when the listing admitted it, and
    opened with no link followed on its way."""

    def __init__(self, root: Path, limits: Limits = DEFAULT_LIMITS) -> None:
        self.root = root
        self.limits = limits
        self._files, refused = walk_folder(root, limits.entries)
        self.entry_problems = [Problem("layout", rel, why) for rel, why in refused]
        self._digests: dict[str, tuple[str, int]] = {}

    @property
    def location(self) -> str:
        return str(self.root)

    def exists(self, rel: str) -> bool:
        return rel in self._files

    def _open(self, rel: str) -> IO[bytes]:
        if rel not in self._files:
            raise RefusedFileError("not a regular file of the run")
        try:
            return os.fdopen(open_regular_file(self.root, rel), "rb")
        except OSError as exc:
            raise RefusedFileError(f"cannot be opened: {exc.strerror or exc}") from exc

    def read_bytes(self, rel: str, limit: int) -> bytes:
        with self._open(rel) as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > limit:
                raise RefusedFileError(_too_large(size, limit))
            content = handle.read(limit + 1)
        if len(content) > limit:
            raise RefusedFileError(f"grew past {limit} bytes while read")
        return content

    def digest(self, rel: str) -> tuple[str, int]:
        if rel not in self._digests:
            with self._open(rel) as handle:
                size = os.fstat(handle.fileno()).st_size
                if size > self.limits.member:
                    raise RefusedFileError(_too_large(size, self.limits.member))
                self._digests[rel] = _hash_stream(handle, self.limits.member)
        return self._digests[rel]

    def list_files(self, under: str) -> list[str]:
        prefix = f"{under.rstrip('/')}/" if under else ""
        return sorted(rel for rel in self._files if rel.startswith(prefix))

    @contextlib.contextmanager
    def index_file(self) -> Iterator[tuple[Path, bool]]:
        # SQLite opens the index and its companions by name: each must be a regular file (or,
        # for a companion, absent), or SQLite would follow a link or wait on a FIFO.
        for rel in (INDEX_FILE, *sorted(_INDEX_COMPANIONS)):
            if rel not in self._files and (rel == INDEX_FILE or os.path.lexists(self.root / rel)):
                raise RefusedFileError(f"{rel} is not a regular file")
            if self._files.get(rel, 0) > self.limits.index:
                raise RefusedFileError(f"{rel}: {_too_large(self._files[rel], self.limits.index)}")
        yield self.root / INDEX_FILE, False


# -- the zip container ----------------------------------------------------------------------

_END = struct.Struct("<4s4H2LH")  # the end of central directory record, without a comment
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_END = struct.Struct("<4sQ2H2L4Q")
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")
_ENCRYPTED, _DATA_DESCRIPTOR = 0x01, 0x08


class _BadContainerError(AuditorError):
    """The zip is not exactly entries, their central directory and its end record."""


@dataclass(frozen=True)
class _Directory:
    entries: int
    offset: int
    size: int


def _read_end(handle: IO[bytes], size: int) -> _Directory:
    """Where the central directory is, from the end record, which must be the file's last
    bytes (no comment, nothing appended); and the directory must end where that record (or the
    zip64 one) begins, which no prepended or inserted byte allows."""
    if size < _END.size:
        raise _BadContainerError("too short to be a zip")
    handle.seek(size - _END.size)
    signature, disk, first_disk, on_disk, entries, length, offset, comment = _END.unpack(
        handle.read(_END.size)
    )
    if signature != b"PK\x05\x06" or comment:
        raise _BadContainerError("the file does not end with the zip's end record (bytes appended)")
    if disk or first_disk or on_disk != entries:
        raise _BadContainerError("a zip split over several parts")
    end = size - _END.size
    if entries == 0xFFFF or 0xFFFFFFFF in (length, offset):  # saturated: zip64 holds them
        zip64 = _read_zip64_end(handle, end)
        if zip64 is not None:
            end, (entries, offset, length) = zip64[0], zip64[1:]
    if offset + length != end:
        raise _BadContainerError(
            "the central directory does not end where the end record begins "
            "(bytes prepended, appended or inserted)"
        )
    return _Directory(entries, offset, length)


def _read_zip64_end(handle: IO[bytes], end: int) -> tuple[int, int, int, int] | None:
    """(where the zip64 end record starts, entries, directory offset, size), or None when the
    zip has no zip64 end (a count of exactly 65535 entries)."""
    locator_at = end - _ZIP64_LOCATOR.size
    if locator_at < 0:
        return None
    handle.seek(locator_at)
    signature, disk, record_at, disks = _ZIP64_LOCATOR.unpack(handle.read(_ZIP64_LOCATOR.size))
    if signature != b"PK\x06\x07":
        return None
    if disk or disks != 1:
        raise _BadContainerError("a zip split over several parts")
    if record_at + _ZIP64_END.size != locator_at:
        raise _BadContainerError("bytes between the zip64 end records")
    handle.seek(record_at)
    fields = _ZIP64_END.unpack(handle.read(_ZIP64_END.size))
    signature, record_size, _made, _needed, disk, first_disk, on_disk, entries = fields[:8]
    length, offset = fields[8:]
    if signature != b"PK\x06\x06" or record_size != _ZIP64_END.size - 12:
        raise _BadContainerError("a malformed zip64 end record")
    if disk or first_disk or on_disk != entries:
        raise _BadContainerError("a zip split over several parts")
    return record_at, entries, offset, length


def _check_tiling(handle: IO[bytes], infos: Sequence[zipfile.ZipInfo], start: int) -> None:
    """The entries follow one another from byte 0 to the central directory, nothing before,
    between or overlapping: every byte of the zip but its directory belongs to one entry."""
    position = 0
    for info in sorted(infos, key=lambda i: i.header_offset):
        if info.header_offset != position:
            where = "overlap" if info.header_offset < position else "unlisted bytes"
            raise _BadContainerError(
                f"{where} at offset {position}, before entry {info.filename!r}"
            )
        handle.seek(position)
        header = handle.read(_LOCAL_HEADER.size)
        if len(header) != _LOCAL_HEADER.size:
            raise _BadContainerError(f"entry {info.filename!r} is cut short")
        signature, _version, flags, *_, name_length, extra_length = _LOCAL_HEADER.unpack(header)
        if signature != b"PK\x03\x04":
            raise _BadContainerError(f"no local header where entry {info.filename!r} begins")
        if flags & _DATA_DESCRIPTOR:
            raise _BadContainerError(f"entry {info.filename!r} has a data descriptor")
        position += _LOCAL_HEADER.size + name_length + extra_length + info.compress_size
    if position != start:
        raise _BadContainerError(
            f"unlisted bytes at offset {position}, before the central directory"
        )


class ZipRun:
    """A certification bundle, read in place: nothing is extracted but the index, which SQLite
    needs as a file. The container is checked first (``structure_problems``: when any, nothing
    in it is read); entries that are not plain files with safe names are refused."""

    def __init__(self, path: Path, limits: Limits = DEFAULT_LIMITS) -> None:
        self.path = path
        self.limits = limits
        self.entry_problems: list[Problem] = []
        self.structure_problems: list[Problem] = []
        self._files: dict[str, zipfile.ZipInfo] = {}
        self._oversize: dict[str, str] = {}
        self._digests: dict[str, tuple[str, int]] = {}
        self._zip: zipfile.ZipFile | None = None
        try:
            self._handle: IO[bytes] = path.open("rb")
        except OSError as exc:
            raise NotARunError(f"{path} is not readable: {exc.strerror or exc}") from exc
        try:
            self._open_container()
        except _BadContainerError as exc:
            self.structure_problems.append(Problem("bundle", path.name, f"{exc} (refused)"))
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            self.structure_problems.append(
                Problem("bundle", path.name, f"not a readable zip: {exc}")
            )

    def _open_container(self) -> None:
        size = os.fstat(self._handle.fileno()).st_size
        directory = _read_end(self._handle, size)
        if directory.entries > self.limits.entries:
            raise _BadContainerError(
                f"{directory.entries} entries, more than {self.limits.entries}"
            )
        limit = self.limits.central_directory
        if directory.size > limit:
            raise _BadContainerError(f"a central directory of {_too_large(directory.size, limit)}")
        self._zip = zipfile.ZipFile(self._handle)
        infos = self._zip.infolist()
        if len(infos) != directory.entries:
            raise _BadContainerError(
                f"{len(infos)} entries listed, the end record says {directory.entries}"
            )
        _check_tiling(self._handle, infos, directory.offset)
        for info in infos:
            self._admit(info)
        declared = sum(info.file_size for info in self._files.values())
        if declared > self.limits.total:
            raise _BadContainerError(f"its files declare {_too_large(declared, self.limits.total)}")

    def _admit(self, info: zipfile.ZipInfo) -> None:
        name = info.filename
        refusal = _entry_refusal(info)
        if refusal is None and name in self._files:
            refusal = "entry appears twice in the zip"
        if refusal is not None:
            self.entry_problems.append(Problem("bundle", name, refusal))
            return
        self._files[name] = info
        if info.file_size > self.limits.member:
            self._oversize[name] = f"declares {_too_large(info.file_size, self.limits.member)}"

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
        self._handle.close()

    @property
    def location(self) -> str:
        return str(self.path)

    def exists(self, rel: str) -> bool:
        return rel in self._files

    def _member(self, rel: str, limit: int) -> zipfile.ZipInfo:
        """The entry to read, its declared size checked before anything of it is read."""
        info = self._files.get(rel)
        if info is None or self._zip is None:
            raise RefusedFileError("not a file of the bundle")
        if rel in self._oversize:
            raise RefusedFileError(self._oversize[rel])
        if info.file_size > limit:
            raise RefusedFileError(f"declares {_too_large(info.file_size, limit)}")
        return info

    @contextlib.contextmanager
    def _reading(self, info: zipfile.ZipInfo) -> Iterator[IO[bytes]]:
        assert self._zip is not None
        try:
            with self._zip.open(info) as member:
                yield member
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError) as exc:
            # A CRC that does not match, a deflate stream that ends early or runs on.
            raise RefusedFileError(f"unreadable: {exc}") from exc

    def read_bytes(self, rel: str, limit: int) -> bytes:
        info = self._member(rel, limit)
        with self._reading(info) as member:
            content = member.read(info.file_size + 1)
        if len(content) != info.file_size:
            raise RefusedFileError(
                f"inflates to {len(content)} bytes, not the {info.file_size} declared"
            )
        return content

    def digest(self, rel: str) -> tuple[str, int]:
        if rel not in self._digests:
            info = self._member(rel, self.limits.member)
            with self._reading(info) as member:
                result = _hash_stream(member, info.file_size)
            if result[1] != info.file_size:
                raise RefusedFileError(
                    f"inflates to {result[1]} bytes, not the {info.file_size} declared"
                )
            self._digests[rel] = result
        return self._digests[rel]

    def list_files(self, under: str) -> list[str]:
        prefix = f"{under.rstrip('/')}/" if under else ""
        return sorted(name for name in self._files if name.startswith(prefix))

    @contextlib.contextmanager
    def index_file(self) -> Iterator[tuple[Path, bool]]:
        info = self._member(INDEX_FILE, self.limits.index)
        with tempfile.TemporaryDirectory(prefix="auditor-verify-") as tmp:
            target = Path(tmp) / "index.sqlite"
            with target.open("xb") as out, self._reading(info) as member:
                copied = 0
                while chunk := member.read(min(1 << 20, info.file_size + 1 - copied)):
                    copied += len(chunk)
                    out.write(chunk)
            if copied != info.file_size:
                raise RefusedFileError(
                    f"inflates to {copied} bytes, not the {info.file_size} declared"
                )
            yield target, True


def _entry_refusal(info: zipfile.ZipInfo) -> str | None:
    """Why a zip entry is not admitted as a file of the bundle; None when it is."""
    name = info.filename
    pure = PurePosixPath(name)
    if not name or pure.is_absolute() or ".." in pure.parts or "\\" in name:
        return "unsafe entry name (refused)"
    kind = stat.S_IFMT(info.external_attr >> 16) if info.create_system == 3 else 0
    if info.is_dir() or kind == stat.S_IFDIR:
        return "a folder entry (refused: a bundle holds files only)"
    if kind not in (0, stat.S_IFREG):
        link = kind == stat.S_IFLNK
        return "symbolic link entry (refused)" if link else f"a {file_kind(kind)} entry (refused)"
    if info.flag_bits & _ENCRYPTED:
        return "an encrypted entry (refused)"
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        return f"compression method {info.compress_type} (refused: stored or deflated only)"
    return None


# -- the report -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the evidence: which check saw it, about what, and what."""

    check: str  #: "index", "sequence", "chain", "object", "manifest", "seal", "findings", …
    subject: str  #: "artifact #3 sha256:…", a file path, or "run"
    message: str

    def __post_init__(self) -> None:
        # A file name that is not UTF-8 could not even be printed: keep it as escapes.
        object.__setattr__(self, "subject", _shown(self.subject))

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
    sealed_files: int = 0  #: files of the run the seal covers
    seal_generation: int | None = None  #: 1: sealed by the audit; more: after re-renders
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  #: not problems, worth knowing
    bundle: bool = False  #: a certification bundle (zip, or an unzipped one) was checked
    bundle_files: int = 0  #: files listed in the bundle manifest
    signed: bool = False  #: a signature verifies with the bundle's public key
    signer_fingerprint: str | None = None
    #: True when the signer is the trusted key given; None when no trusted key was given
    trusted: bool | None = None

    @property
    def intact(self) -> bool:
        """No check found a problem: the files agree with the run's own hashes."""
        return not self.problems

    @property
    def authenticated(self) -> bool:
        """Intact, and a bundle signed by the trusted key: the only proof of who sealed it."""
        return self.intact and self.bundle and self.signed and self.trusted is True

    def unauthenticated_reason(self) -> str | None:
        """Why an intact run is not authenticated; None when it is, or when it is not intact."""
        if not self.intact or self.authenticated:
            return None
        if not self.bundle:
            return (
                "a run folder is never signed: its hashes show that its files agree with one "
                "another, not who made them, and whoever can write the folder can rewrite every "
                "file, hash and seal. Verify the signed bundle (auditor bundle) with --trusted-key."
            )
        if not self.signed:
            return "the bundle is not signed: anyone can make a bundle whose hashes agree."
        return (
            f"the bundle is signed by {self.signer_fingerprint}, but no trusted key was given: "
            "anyone can sign a bundle with a key of their own. Compare this fingerprint with the "
            "auditor's, learnt by another channel, and give it as --trusted-fingerprint (or the "
            "auditor's public key as --trusted-key)."
        )


@dataclass(frozen=True)
class IndexContents:
    run_info: Mapping[str, str]
    records: list[ArtifactRecord]
    pending: set[str]
    seal: dict[str, Any] | None = None
    seal_error: str | None = None  #: the index holds a seal that is not one


# -- entry points ---------------------------------------------------------------------------


def is_run(path: Path) -> bool:
    # lexists: an index that is a link or a FIFO is a run to refuse, not "no run".
    return path.is_dir() and os.path.lexists(path / INDEX_FILE)


def verify_run(path: Path, limits: Limits = DEFAULT_LIMITS) -> VerificationReport:
    """Verify the run folder at ``path``. Raises NotARunError when it holds no evidence."""
    if not is_run(path):
        raise NotARunError(f"{path} is not a run folder: no {INDEX_FILE}")
    return verify_files(DirectoryRun(path, limits), limits)


def is_bundle(path: Path) -> bool:
    return path.is_file() and zipfile.is_zipfile(path)


def verify_path(
    path: Path, *, trusted_fingerprint: str | None = None, limits: Limits = DEFAULT_LIMITS
) -> VerificationReport:
    """Verify a run folder, an unzipped bundle or a bundle zip.

    ``trusted_fingerprint`` ("SHA256:<hex>") is the key the verifier expects the bundle to be
    signed with, learnt from the auditor by another channel: without it a valid signature only
    shows that the bundle is as its signer sealed it, not who that was (the report is then
    intact at best, never authenticated). Raises NotARunError when ``path`` is neither.
    """
    if is_bundle(path):
        zipped = ZipRun(path, limits)
        try:
            return _verify_bundle(zipped, zipped.structure_problems, trusted_fingerprint, limits)
        finally:
            zipped.close()
    if not is_run(path):
        raise NotARunError(f"{path} is neither a run folder (no {INDEX_FILE}) nor a bundle")
    directory = DirectoryRun(path, limits)
    if os.path.lexists(path / BUNDLE_DIR):
        return _verify_bundle(directory, [], trusted_fingerprint, limits)
    report = verify_files(directory, limits)
    if trusted_fingerprint is not None:
        report.trusted = False  # a run folder is never signed: see unauthenticated_reason
    return report


def verify_files(files: RunFiles, limits: Limits = DEFAULT_LIMITS) -> VerificationReport:
    """Run every evidence check over a run, however its files are reached."""
    report = VerificationReport(location=files.location)
    report.problems += files.entry_problems
    _check_evidence(files, report, limits)
    return report


def _verify_bundle(
    files: RunFiles,
    structure: list[Problem],
    trusted_fingerprint: str | None,
    limits: Limits,
) -> VerificationReport:
    """The container, then the signature over the manifest's bytes, then the manifest and each
    file's hash, and only then the content (the index, the findings, the reports)."""
    report = VerificationReport(location=files.location, bundle=True)
    if trusted_fingerprint is not None:
        report.trusted = False  # until a signature by that key verifies
    if structure:
        report.problems += structure
        return report
    report.problems += files.entry_problems
    manifest = _check_bundle_seal(files, report, trusted_fingerprint, limits)
    _check_evidence(files, report, limits)
    if manifest is not None and report.run_id not in (None, manifest.get("run_id")):
        report.problems.append(
            Problem(
                "bundle",
                BUNDLE_MANIFEST,
                f"run id {manifest.get('run_id')!r} is not the evidence's {report.run_id!r}",
            )
        )
    report.problems += check_report_fingerprints(files, report.signer_fingerprint, limits)
    return report


def _check_bundle_seal(
    files: RunFiles, report: VerificationReport, trusted: str | None, limits: Limits
) -> dict[str, Any] | None:
    """The bundle manifest's signature (on its bytes, before they are parsed), then the
    manifest and every file's hash and size against it. The manifest, when readable."""
    if not files.exists(BUNDLE_MANIFEST):
        report.problems.append(Problem("bundle", BUNDLE_MANIFEST, "missing: this is no bundle"))
        return None
    try:
        raw = files.read_bytes(BUNDLE_MANIFEST, limits.document)
    except RefusedFileError as exc:
        report.problems.append(Problem("bundle", BUNDLE_MANIFEST, f"not read: {exc}"))
        return None
    report.problems += check_signature(files, raw, report, trusted)
    manifest = _parse_bundle_manifest(raw, report)
    if manifest is None:
        return None
    named = manifest.get("signer_fingerprint")
    if report.signer_fingerprint is not None and named != report.signer_fingerprint:
        report.problems.append(
            Problem(
                "signature",
                BUNDLE_PUBLIC_KEY,
                f"the manifest names the signer {named!r}, the bundle's key is "
                f"{report.signer_fingerprint}",
            )
        )
    report.problems += check_bundle_files(files, manifest)
    return manifest


def _check_evidence(files: RunFiles, report: VerificationReport, limits: Limits) -> None:
    contents = _load_index(files, report, limits)
    if contents is None:
        return
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
    for problems, notes in (
        check_objects(files, records, contents.pending),
        check_manifest(files, contents, limits),
        check_seal(files, contents, report),
    ):
        report.problems += problems
        report.notes += notes
    report.problems += check_findings(files, run_id, records, limits)


def _open_index(path: Path, immutable: bool, seconds: float) -> sqlite3.Connection:
    """The index read-only (immutable: a private copy, so no lock or journal is looked for),
    every statement interrupted once ``seconds`` have passed since it was opened."""
    options = "mode=ro&immutable=1" if immutable else "mode=ro"
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?{options}", uri=True)
    deadline = time.monotonic() + seconds
    # Called every 10,000 steps of SQLite's virtual machine: True interrupts the statement.
    conn.set_progress_handler(lambda: time.monotonic() > deadline, 10_000)
    harden(conn)
    conn.execute("PRAGMA query_only=ON")
    conn.execute("PRAGMA cell_size_check=ON")  # a malformed page is an error, not a loop
    return conn


def _load_index(
    files: RunFiles, report: VerificationReport, limits: Limits
) -> IndexContents | None:
    """Read the index; a damaged or foreign index is a problem, reported, and ends the
    verification of the evidence."""
    try:
        with files.index_file() as (index, immutable):
            conn = _open_index(index, immutable, limits.index_seconds)
            try:
                wrong = schema_problems(conn)  # before any table is queried
                if wrong:
                    report.problems += [
                        Problem("index", INDEX_FILE, f"not the evidence schema: {w} (not read)")
                        for w in wrong
                    ]
                    return None
                info = read_run_info(conn)
                raw_rows = read_raw_rows(conn)
                pending = read_pending(conn)
            finally:
                conn.close()
    except RefusedFileError as exc:
        report.problems.append(Problem("index", INDEX_FILE, f"not read: {exc}"))
        return None
    except sqlite3.Error as exc:
        detail = "interrupted: it took too long" if "interrupt" in str(exc) else str(exc)
        report.problems.append(Problem("index", INDEX_FILE, f"cannot be read: {detail}"))
        return None
    if not info.get("run_id"):
        report.problems.append(Problem("index", INDEX_FILE, "the run id is missing"))
        return None
    return _contents(info, raw_rows, pending, report)


def _contents(
    info: dict[str, str],
    raw_rows: list[tuple[Any, ...]],
    pending: set[str],
    report: VerificationReport,
) -> IndexContents:
    records: list[ArtifactRecord] = []
    for row in raw_rows:
        try:
            records.append(record_from_row(row))
        except (ValueError, TypeError) as exc:
            report.problems.append(Problem("index", f"row with seq {row[0]!r}", str(exc)))
    try:
        seal, seal_error = parse_seal(info.get("seal")), None
    except ValueError as exc:
        seal, seal_error = None, str(exc)
    return IndexContents(info, records, pending, seal, seal_error)


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
    Whoever rewrites the index can compute every hash again: the chain catches a partial edit,
    and the manifest, the seal and a bundle's signature have to be rewritten along with it.
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
    try:
        actual, size = files.digest(rel)
    except RefusedFileError as exc:
        return [Problem("object", _subject(r), f"object not read: {exc}") for r in referencing]
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
    if rel != object_path(name) or not _SHA256_HEX.match(name):
        return [Problem("object", rel, "unexpected file in the object store")], []
    if name in by_sha:
        return [], []
    if name in pending:
        return [], [f"{rel}: written by an add that was interrupted before its index row"]
    try:
        actual, _ = files.digest(rel)
    except RefusedFileError as exc:
        return [Problem("object", rel, f"object not referenced by the index, and {exc}")], []
    detail = "" if actual == name else f" (and its content hashes to {actual})"
    return [Problem("object", rel, f"object not referenced by the index (added file){detail}")], []


def _check_layout(files: RunFiles) -> list[Problem]:
    expected = {INDEX_FILE, MANIFEST_FILE, *_INDEX_COMPANIONS}
    return [
        Problem("layout", rel, "unexpected file in the evidence folder")
        for rel in files.list_files(EVIDENCE_DIR)
        if rel not in expected and not rel.startswith((f"{OBJECTS_DIR}/", f"{TMP_DIR}/"))
    ]


def _parse_json(files: RunFiles, rel: str, limit: int, check: str) -> tuple[Any, list[Problem]]:
    """A file's JSON, read within ``limit``; or the problem that it cannot be."""
    try:
        return json.loads(files.read_bytes(rel, limit)), []
    except RefusedFileError as exc:
        return None, [Problem(check, rel, f"not read: {exc}")]
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        return None, [Problem(check, rel, f"not valid JSON: {exc}")]


def check_manifest(
    files: RunFiles, contents: IndexContents, limits: Limits = DEFAULT_LIMITS
) -> tuple[list[Problem], list[str]]:
    """The manifest, when present, says exactly what the index says."""
    if not files.exists(MANIFEST_FILE):
        if "closed" in contents.run_info:
            return [
                Problem("manifest", MANIFEST_FILE, "missing, although the store was closed")
            ], []
        return [], ["no manifest: the run was interrupted before close; verified from the index"]
    manifest, problems = _parse_json(files, MANIFEST_FILE, limits.document, "manifest")
    if problems:
        return problems, []
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
        _field_difference(key, manifest.get(key), value)
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


def _field_difference(key: str, in_manifest: Any, in_index: Any) -> Problem:
    if isinstance(in_manifest, dict) or isinstance(in_index, dict):
        # A whole seal or version table would bury the line: say which side has what.
        return Problem("manifest", key, "the manifest's differs from the index's")
    return Problem("manifest", key, f"manifest says {in_manifest!r}, the index {in_index!r}")


def _artifact_difference(position: int, in_manifest: Any, in_index: dict[str, Any]) -> Problem:
    subject = f"artifact #{in_index['seq']} {in_index['ref']}"
    if not isinstance(in_manifest, dict):
        return Problem("manifest", subject, f"manifest entry {position} is not an object")
    fields = sorted(
        key for key in set(in_manifest) | set(in_index) if in_manifest.get(key) != in_index.get(key)
    )
    return Problem("manifest", subject, f"manifest differs from the index in: {', '.join(fields)}")


# -- the seal of the run's files ------------------------------------------------------------


def check_seal(
    files: RunFiles, contents: IndexContents, report: VerificationReport
) -> tuple[list[Problem], list[str]]:
    """The run's own files (findings.json, facts.json, the reports, …) are as the seal says,
    none is missing, none the seal saw absent has appeared, and no artifact follows it."""
    if contents.seal_error is not None:
        return [Problem("seal", INDEX_FILE, contents.seal_error)], []
    seal = contents.seal
    if seal is None:
        why = (
            "the audit stopped before sealing them, or the run is older than seals"
            if "closed" in contents.run_info
            else "the audit was interrupted before its end"
        )
        return [], [
            f"the run's files are not sealed: {why}; findings.json and the reports are not verified"
        ]
    problems = _check_seal_position(seal, contents.records, contents.run_info["run_id"])
    entries, malformed = _seal_entries(seal)
    problems += malformed
    for entry in entries:
        problems += _check_sealed_file(files, entry)
    for name in _sealed_absent(seal):
        if files.exists(name):
            problems.append(Problem("seal", name, "added after the run was sealed without it"))
    report.sealed_files = len(entries)
    generation = seal.get("generation")
    report.seal_generation = generation if isinstance(generation, int) else None
    notes = []
    if isinstance(generation, int) and generation > 1:
        notes.append(
            f"the reports were rendered again after the audit and sealed again (seal "
            f"{generation}, {seal.get('sealed')}); the audit's other files keep its hashes"
        )
    return problems, notes


def _check_seal_position(
    seal: Mapping[str, Any], records: Sequence[ArtifactRecord], run_id: str
) -> list[Problem]:
    head = records[-1].chain if records else genesis(run_id)
    if seal.get("count") == len(records) and seal.get("chain_head") == head:
        return []
    return [
        Problem(
            "seal",
            "run",
            f"the seal follows {seal.get('count')!r} artifact(s) ending in chain head "
            f"{seal.get('chain_head')!r}; the index holds {len(records)} ending in {head} "
            "(artifacts added or removed after the seal)",
        )
    ]


def _seal_entries(seal: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[Problem]]:
    listed = seal.get("files")
    if not isinstance(listed, list):
        return [], [Problem("seal", "run", "the seal has no list of files")]
    entries, problems = [], []
    for entry in listed:
        if (
            isinstance(entry, dict)
            and isinstance(entry.get("path"), str)
            and sealable_name(entry["path"])
            and isinstance(entry.get("sha256"), str)
            and isinstance(entry.get("size"), int)
        ):
            entries.append(entry)
        else:
            problems.append(Problem("seal", "run", f"malformed seal entry {entry!r:.200}"))
    return entries, problems


def _sealed_absent(seal: Mapping[str, Any]) -> list[str]:
    absent = seal.get("absent")
    if not isinstance(absent, list):
        return []
    return [name for name in absent if isinstance(name, str) and sealable_name(name)]


def _check_sealed_file(files: RunFiles, entry: Mapping[str, Any]) -> list[Problem]:
    rel = entry["path"]
    if not files.exists(rel):
        return [Problem("seal", rel, "sealed, but missing (or not a regular file)")]
    try:
        actual, size = files.digest(rel)
    except RefusedFileError as exc:
        return [Problem("seal", rel, f"not read: {exc}")]
    if actual != entry["sha256"]:
        return [
            Problem(
                "seal",
                rel,
                f"changed since the run was sealed: it hashes to {actual}, the seal says "
                f"{entry['sha256']}",
            )
        ]
    if size != entry["size"]:
        return [Problem("seal", rel, f"size {size} differs from the seal's {entry['size']}")]
    return []


# -- findings -------------------------------------------------------------------------------


def check_findings(
    files: RunFiles,
    run_id: str,
    records: Sequence[ArtifactRecord],
    limits: Limits = DEFAULT_LIMITS,
) -> list[Problem]:
    """Every artifact a finding cites is in the evidence, and the findings are of this run."""
    if not files.exists(FINDINGS_FILE):
        return []
    document, problems = _parse_json(files, FINDINGS_FILE, limits.document, "findings")
    if problems:
        return problems
    findings = document.get("findings") if isinstance(document, dict) else None
    if not isinstance(findings, list):
        return [Problem("findings", FINDINGS_FILE, "has no list of findings")]
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
    """Every entry of every ``evidence`` list anywhere in a finding (hops carry them too).
    With a stack, not recursion: the nesting is as deep as the file's author made it."""
    cited: list[Any] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, dict):
            for key, inner in reversed(list(item.items())):
                if key == "evidence" and isinstance(inner, list):
                    cited += inner
                else:
                    stack.append(inner)
    return cited


# -- the bundle checks ----------------------------------------------------------------------


def _parse_bundle_manifest(raw: bytes, report: VerificationReport) -> dict[str, Any] | None:
    try:
        manifest = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
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
                f"format {manifest.get('format')!r:.100} is not {BUNDLE_FORMAT}",
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
            problems.append(
                Problem("bundle", BUNDLE_MANIFEST, f"malformed file entry {entry!r:.200}")
            )
            continue
        listed[entry["path"]] = entry
    for rel, entry in sorted(listed.items()):
        problems += _check_bundled_file(files, rel, entry)
    for rel in files.list_files(""):
        if rel not in listed and rel not in BUNDLE_OWN_FILES:
            problems.append(Problem("bundle", rel, "not listed in the bundle manifest (added)"))
    return problems


def _check_bundled_file(files: RunFiles, rel: str, entry: Mapping[str, Any]) -> list[Problem]:
    if not files.exists(rel):
        return [Problem("bundle", rel, "listed in the bundle manifest, but missing")]
    try:
        actual, size = files.digest(rel)
    except RefusedFileError as exc:
        return [Problem("bundle", rel, f"not read: {exc}")]
    if actual != entry.get("sha256"):
        return [
            Problem(
                "bundle",
                rel,
                f"changed: it hashes to {actual}, the manifest says {entry.get('sha256')!r:.80}",
            )
        ]
    if size != entry.get("size"):
        return [
            Problem("bundle", rel, f"size {size} differs from the manifest's {entry.get('size')!r}")
        ]
    return []


def check_signature(
    files: RunFiles,
    manifest_bytes: bytes,
    report: VerificationReport,
    trusted_fingerprint: str | None,
) -> list[Problem]:
    """The signature over the manifest's exact bytes verifies with the bundle's key, and that
    key is the trusted one when one is given (another key is a problem; no signature at all
    is no problem, but the bundle is then not authenticated)."""
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
        return []
    if not files.exists(BUNDLE_PUBLIC_KEY):
        return [Problem("signature", BUNDLE_PUBLIC_KEY, "missing: the signature cannot be checked")]
    try:
        key = load_public_key(files.read_bytes(BUNDLE_PUBLIC_KEY, _SMALL), BUNDLE_PUBLIC_KEY)
        encoded = files.read_bytes(BUNDLE_SIGNATURE, _SMALL)
        signature = base64.b64decode(encoded.strip(), validate=True)
    except (RefusedFileError, SigningKeyError, binascii.Error, ValueError) as exc:
        return [Problem("signature", BUNDLE_SIGNATURE, f"unreadable: {exc}")]
    report.signer_fingerprint = fingerprint(key)
    problems = []
    report.signed = signature_valid(key, signature, manifest_bytes)
    if not report.signed:
        problems.append(
            Problem(
                "signature",
                BUNDLE_MANIFEST,
                "the signature does not verify with the bundle's public key (the manifest was "
                "changed after signing, or signed by another key)",
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


def check_report_fingerprints(
    files: RunFiles, signer: str | None, limits: Limits = DEFAULT_LIMITS
) -> list[Problem]:
    """The HTML reports name the key the bundle is signed with."""
    problems = []
    for rel in files.list_files(""):
        if "/" in rel or not (rel.startswith("report.") and rel.endswith(".html")):
            continue
        try:
            match = _REPORT_FINGERPRINT.search(files.read_bytes(rel, limits.document))
        except RefusedFileError as exc:
            problems.append(Problem("signature", rel, f"not read: {exc}"))
            continue
        named = match.group(1).decode("utf-8", "replace") if match else None
        if named != signer:
            problems.append(
                Problem(
                    "signature",
                    rel,
                    f"the report names the signer {named!r:.100}, the bundle is signed by "
                    f"{signer!r}",
                )
            )
    return problems


__all__ = [
    "BUNDLE_DIR",
    "BUNDLE_FORMAT",
    "BUNDLE_MANIFEST",
    "BUNDLE_OWN_FILES",
    "BUNDLE_PUBLIC_KEY",
    "BUNDLE_SIGNATURE",
    "DEFAULT_LIMITS",
    "DirectoryRun",
    "Limits",
    "Problem",
    "RefusedFileError",
    "RunFiles",
    "VerificationReport",
    "ZipRun",
    "check_bundle_files",
    "check_chain",
    "check_findings",
    "check_manifest",
    "check_objects",
    "check_report_fingerprints",
    "check_seal",
    "check_sequence",
    "check_signature",
    "is_bundle",
    "is_run",
    "verify_files",
    "verify_path",
    "verify_run",
    "walk_folder",
]
