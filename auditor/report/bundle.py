"""The certification bundle: one zip with the reports, the findings and the evidence, sealed by
a manifest of every file's SHA-256 signed with Ed25519.

Layout inside the zip (the run folder's own layout, so the reports' relative evidence links
work once it is unzipped)::

    bundle/manifest.json       format, run id, signer's fingerprint, every file's path/sha256/size
    bundle/manifest.sig        base64 Ed25519 signature of manifest.json's exact bytes
    bundle/public-key.pem      the signer's public key
    report.ja.html, report.en.html, oscal-assessment-results.json, findings.sarif,
    findings.junit.xml, findings.json, inventory.yaml, facts.json (when present),
    evidence/index.sqlite, evidence/manifest.json, evidence/objects/…

Only a run whose evidence verifies intact is bundled (sealing tampered evidence would lend it
a signature it does not deserve), and its reports are rendered again first, so that they name
the signing key's fingerprint. Zip entries carry a fixed timestamp and a fixed order; the time
of sealing is in the signed manifest. The bundle layout is defined in ``auditor/evidence/verify.py``,
the side that has to check it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditor.domain.errors import AuditorError
from auditor.evidence.signing import fingerprint, load_private_key, public_pem, sign
from auditor.evidence.store import INDEX_FILE, MANIFEST_FILE, OBJECTS_DIR
from auditor.evidence.verify import (
    BUNDLE_FORMAT,
    BUNDLE_MANIFEST,
    BUNDLE_OWN_FILES,
    BUNDLE_PUBLIC_KEY,
    BUNDLE_SIGNATURE,
    verify_run,
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


def bundle_files(run_dir: Path) -> list[str]:
    """Relative paths of the run's files that go into the bundle, sorted."""
    chosen = [rel for rel in RUN_FILES if (run_dir / rel).is_file()]
    objects = run_dir / OBJECTS_DIR
    if objects.is_dir():
        chosen += [p.relative_to(run_dir).as_posix() for p in objects.rglob("*") if p.is_file()]
    return sorted(chosen)


def file_entry(root: Path, rel: str) -> dict[str, Any]:
    with (root / rel).open("rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    return {"path": rel, "sha256": digest, "size": (root / rel).stat().st_size}


def manifest_bytes(
    root: Path, files: Sequence[str], run_id: str, signer: str | None, created: str
) -> bytes:
    manifest = {
        "format": BUNDLE_FORMAT,
        "run_id": run_id,
        "created": created,
        "signature_algorithm": "ed25519" if signer else None,
        "signer_fingerprint": signer,
        "files": [file_entry(root, rel) for rel in sorted(files)],
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
    """Hash ``files`` (relative to ``root``), sign the manifest, and write the zip atomically."""
    signer = fingerprint(key.public_key()) if key is not None else None
    manifest = manifest_bytes(root, files, run_id, signer, created)
    own: list[tuple[str, bytes]] = [(BUNDLE_MANIFEST, manifest)]
    if key is not None:
        own.append((BUNDLE_SIGNATURE, base64.b64encode(sign(key, manifest)) + b"\n"))
        own.append((BUNDLE_PUBLIC_KEY, public_pem(key.public_key())))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, content in own:
                archive.writestr(_entry(name), content)
            for rel in sorted(files):
                archive.writestr(_entry(rel), (root / rel).read_bytes())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return BundleResult(out, run_id, len(files), signer)


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16  # a regular file, readable: never a link or executable
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
    render_stored_run(run)
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
