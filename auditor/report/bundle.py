"""The certification bundle: one zip with the reports, the findings and the evidence, sealed by
a manifest of every file's SHA-256 signed with Ed25519.

Layout inside the zip (the run folder's own layout, so the reports' relative evidence links
work once it is unzipped)::

    bundle/manifest.json       format, run id, signer's fingerprint, every file's path/sha256/size
    bundle/manifest.sig        base64 Ed25519 signature of manifest.json's exact bytes
    bundle/public-key.pem      the signer's public key
    report.ja.html, report.en.html, oscal-assessment-results.json, findings.sarif,
    findings.junit.xml, findings.json, inventory.yaml, facts.json, observations.json and
    waivers.yaml (each when present), evidence/index.sqlite, evidence/manifest.json,
    evidence/objects/…

Only a run whose evidence verifies intact is bundled (sealing tampered evidence would lend it
a signature it does not deserve), and its reports are rendered again first, so that they name
the signing key's fingerprint (and the run's seal is renewed for them). Zip entries carry a
fixed timestamp and a fixed order, the run's files first, then ``bundle/``; the time of sealing
is in the signed manifest. The bundle layout is defined in ``auditor/evidence/verify.py``, the
side that has to check it.

Each file is read once, through a descriptor opened without following a link, and hashed as it
is packed, so what is signed is what is in the zip. A symbolic link or a special file among the
run's files is refused: the bundle would carry what it points at (a private key, say). The zip
is created 0600, with O_EXCL | O_NOFOLLOW, and renamed into place.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import uuid
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditor.domain.errors import AuditorError
from auditor.domain.waivers import WAIVERS_COPY
from auditor.evidence.signing import fingerprint, load_private_key, public_pem, sign
from auditor.evidence.store import (
    EVIDENCE_DIR,
    INDEX_FILE,
    MANIFEST_FILE,
    OBJECTS_DIR,
    file_kind,
    open_regular_file,
)
from auditor.evidence.verify import (
    BUNDLE_FORMAT,
    BUNDLE_MANIFEST,
    BUNDLE_OWN_FILES,
    BUNDLE_PUBLIC_KEY,
    BUNDLE_SIGNATURE,
    DEFAULT_LIMITS,
    verify_run,
    walk_folder,
)
from auditor.report import render_stored_run
from auditor.report.html import LANGUAGES, report_filename
from auditor.report.junit import JUNIT_FILE
from auditor.report.oscal import OSCAL_FILE
from auditor.report.run import FACTS_FILE, FINDINGS_FILE, INVENTORY_COPY, load_run
from auditor.report.sarif import SARIF_FILE
from policies.snapshot import OBSERVATIONS_FILE

#: Zip entries carry this time, not the packing time, so that packing is reproducible.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
#: A member this large needs zip64 fields from its local header on (it cannot be added later).
_ZIP64_FROM = 1 << 31
_CREATE_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

#: The files of a run that go into a bundle, beside the evidence objects (when present).
RUN_FILES = (
    *(report_filename(lang) for lang in LANGUAGES),
    OSCAL_FILE,
    SARIF_FILE,
    JUNIT_FILE,
    FINDINGS_FILE,
    INVENTORY_COPY,
    FACTS_FILE,
    OBSERVATIONS_FILE,
    # The waivers applied (when the run was audited or reported with --waivers): sealed with
    # the findings they changed, so a bundle without it would not verify.
    WAIVERS_COPY,
    INDEX_FILE,
    MANIFEST_FILE,
)


class BundleError(AuditorError):
    """The bundle cannot be made; the message says why."""


@dataclass(frozen=True)
class BundleResult:
    path: Path
    run_id: str
    files: int
    signer_fingerprint: str | None


def _kind(path: Path) -> str | None:
    """What is at ``path`` itself (a link is not followed), None when nothing is."""
    try:
        return file_kind(os.lstat(path).st_mode)
    except FileNotFoundError:
        return None


def bundle_files(run_dir: Path) -> list[str]:
    """Relative paths of the run's files that go into the bundle, sorted. Raises BundleError
    when one of them, or a folder on their way, is a symbolic link or a special file."""
    refused = [
        f"{rel} (a {kind})"
        for rel in (EVIDENCE_DIR, OBJECTS_DIR)
        if (kind := _kind(run_dir / rel)) not in (None, "folder")
    ]
    if refused:
        raise BundleError(f"{run_dir}: refusing to bundle: {', '.join(refused)}")
    chosen: list[str] = []
    for rel in RUN_FILES:
        kind = _kind(run_dir / rel)
        if kind == "regular file":
            chosen.append(rel)
        elif kind is not None:
            refused.append(f"{rel} (a {kind})")
    if _kind(run_dir / OBJECTS_DIR) == "folder":
        objects, skipped = walk_folder(run_dir / OBJECTS_DIR, DEFAULT_LIMITS.entries)
        chosen += [f"{OBJECTS_DIR}/{rel}" for rel in objects]
        refused += [f"{OBJECTS_DIR}/{rel} ({why})" for rel, why in skipped]
    if refused:
        raise BundleError(f"{run_dir}: refusing to bundle: {', '.join(refused)}")
    return sorted(chosen)


def manifest_bytes(
    entries: Sequence[dict[str, Any]], run_id: str, signer: str | None, created: str
) -> bytes:
    """The bundle manifest: every packed file's path, SHA-256 and size, and who signs."""
    manifest = {
        "format": BUNDLE_FORMAT,
        "run_id": run_id,
        "created": created,
        "signature_algorithm": "ed25519" if signer else None,
        "signer_fingerprint": signer,
        "files": sorted(entries, key=lambda entry: str(entry["path"])),
    }
    return json.dumps(manifest, indent=2, ensure_ascii=False, sort_keys=True).encode() + b"\n"


def write_bundle(
    root: Path,
    files: Sequence[str],
    out: Path,
    *,
    run_id: str,
    key: Ed25519PrivateKey | None,
    created: str,
) -> BundleResult:
    """Pack ``files`` (relative to ``root``), hashing each as it is packed, then sign the
    manifest of those hashes and add it; write the zip (0600) atomically."""
    signer = fingerprint(key.public_key()) if key is not None else None
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex}.tmp")
    # Created 0600 (the bundle holds host data), new: never a file or link someone prepared.
    handle = os.fdopen(os.open(tmp, _CREATE_NEW, 0o600), "wb")
    try:
        with handle, zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            entries = [_pack(archive, root, rel) for rel in sorted(files)]
            manifest = manifest_bytes(entries, run_id, signer, created)
            for name, content in _own_files(manifest, key):
                archive.writestr(_entry(name), content)
            archive.close()
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return BundleResult(out, run_id, len(files), signer)


def _own_files(manifest: bytes, key: Ed25519PrivateKey | None) -> list[tuple[str, bytes]]:
    own = [(BUNDLE_MANIFEST, manifest)]
    if key is not None:
        own.append((BUNDLE_SIGNATURE, base64.b64encode(sign(key, manifest)) + b"\n"))
        own.append((BUNDLE_PUBLIC_KEY, public_pem(key.public_key())))
    return own


def _pack(archive: zipfile.ZipFile, root: Path, rel: str) -> dict[str, Any]:
    """Copy one file into the zip, hashing the very bytes copied; its manifest entry."""
    try:
        source = os.fdopen(open_regular_file(root, rel), "rb")
    except OSError as exc:
        raise BundleError(f"{root / rel}: {exc.strerror or exc}; refusing to bundle it") from exc
    digest = hashlib.sha256()
    size = 0
    with source:
        large = os.fstat(source.fileno()).st_size >= _ZIP64_FROM
        with archive.open(_entry(rel), "w", force_zip64=large) as target:
            while chunk := source.read(1 << 20):
                digest.update(chunk)
                target.write(chunk)
                size += len(chunk)
    return {"path": rel, "sha256": digest.hexdigest(), "size": size}


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    # A regular file, readable: never a link or executable.
    info.external_attr = (stat.S_IFREG | 0o644) << 16
    return info


def create_bundle(run_dir: Path, out: Path, key_path: Path | None = None) -> BundleResult:
    """Verify the run, render its reports (naming the signer), and pack and sign the bundle."""
    key = load_private_key(key_path) if key_path is not None else None
    report = verify_run(run_dir)
    if not report.intact:
        listed = "\n".join(f"  {problem}" for problem in report.problems)
        raise BundleError(f"{run_dir}: the evidence does not verify; not bundling:\n{listed}")
    if (run_dir / f"{INDEX_FILE}-wal").exists():
        raise BundleError(f"{run_dir}: the evidence index is still open (a -wal file is present)")
    run = load_run(run_dir)
    run.signer_fingerprint = fingerprint(key.public_key()) if key is not None else None
    render_stored_run(run)  # renews the run's seal for the reports it writes
    created = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return write_bundle(
        run_dir, bundle_files(run_dir), out, run_id=run.run_id, key=key, created=created
    )


__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_MANIFEST",
    "BUNDLE_OWN_FILES",
    "BUNDLE_PUBLIC_KEY",
    "BUNDLE_SIGNATURE",
    "BundleError",
    "BundleResult",
    "bundle_files",
    "create_bundle",
    "write_bundle",
]
