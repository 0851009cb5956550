"""Reports of a stored run: HTML (ja, en), OSCAL assessment results, SARIF and JUnit.

``render_reports`` reads a run folder and writes every report into it; it never probes.

The reports are written 0600 and never through a symbolic link: a run folder may have been
handed over, or prepared by someone else, and the auditor writes there as root. A symlink at the
name of a file it writes is refused (``UnsafeReportPathError``) before anything is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path

from auditor.domain.files import UnsafePathError, refuse_symlink, write_bytes_atomically
from auditor.domain.findings import write_findings
from auditor.domain.waivers import WAIVERS_COPY, LoadedWaivers, apply_waivers
from auditor.evidence.store import INDEX_FILE, EvidenceStore, file_digest, reseal
from auditor.report.html import LANGUAGES, report_filename, write_html_reports
from auditor.report.junit import JUNIT_FILE, write_junit
from auditor.report.oscal import OSCAL_FILE, write_oscal
from auditor.report.run import FINDINGS_FILE, INVENTORY_COPY, RunReadError, StoredRun, load_run
from auditor.report.sarif import SARIF_FILE, write_sarif


class UnsafeReportPathError(RunReadError, UnsafePathError):
    """A file the reports would write in the run folder is a symbolic link. A RunReadError, so
    that ``auditor report`` says "cannot report: …" and exits 3."""


def written_names() -> list[str]:
    """Every file ``render_reports`` may write into a run folder (the inventory copy too)."""
    html = [report_filename(lang) for lang in LANGUAGES]
    return [*html, OSCAL_FILE, SARIF_FILE, JUNIT_FILE, INVENTORY_COPY]


def render_stored_run(run: StoredRun, also_rewritten: Sequence[Path] = ()) -> list[Path]:
    """Write every report of an already loaded run, then renew the run's seal for them (and
    for ``also_rewritten``, files of the run written anew before); the paths written, in a
    fixed order. Raises EvidenceError when the seal cannot be renewed."""
    written = [*write_html_reports(run), write_oscal(run), write_sarif(run), write_junit(run)]
    # A sealed run stays verifiable: the new reports' hashes replace the old in its seal, and
    # every other file keeps the hash the audit sealed (docs/evidence.md). An audit rendering
    # its own reports is not closed yet, so nothing happens here: it seals at its end.
    rewritten = [path.name for path in [*also_rewritten, *written]]
    reseal(run.run_dir, rewritten=rewritten, created=[INVENTORY_COPY])
    return written


def waive_stored_run(run: StoredRun, waivers: LoadedWaivers, today: date) -> list[Path]:
    """Apply a waivers file to a stored run again (replacing the waivers its findings carried),
    rewrite its findings.json and keep the file applied as its waivers.yaml; the two paths.
    Raises RunReadError when findings.json is not the one the run's seal vouches for."""
    _refuse_findings_the_seal_does_not_hold(run.run_dir)
    outcome = apply_waivers(run.findings, waivers.waivers, today=today, controls=list(run.controls))
    run.document.findings = outcome.findings
    run.document.waiver_warnings = outcome.warnings
    findings, copy = run.run_dir / FINDINGS_FILE, run.run_dir / WAIVERS_COPY
    write_findings(findings, run.document)
    write_bytes_atomically(copy, waivers.content, refuse_link=True)
    return [findings, copy]


def _refuse_findings_the_seal_does_not_hold(run_dir: Path) -> None:
    # The rewritten findings.json is sealed anew: a findings.json edited since the audit must
    # not be blessed that way (auditor verify keeps reporting it instead).
    if not (run_dir / INDEX_FILE).exists():
        return  # no evidence, no seal to renew
    with EvidenceStore.open(run_dir) as store:
        seal = store.seal_document()
    if seal is None:
        return  # not sealed: reseal leaves it so
    sealed = {e.get("path"): e.get("sha256") for e in seal.get("files", []) if isinstance(e, dict)}
    try:
        current = file_digest(run_dir, FINDINGS_FILE)[0]
    except OSError as exc:
        raise RunReadError(f"cannot read {run_dir / FINDINGS_FILE}: {exc}") from exc
    if sealed.get(FINDINGS_FILE) != current:
        raise RunReadError(
            f"{run_dir / FINDINGS_FILE} is not the findings the run's seal vouches for "
            "(see auditor verify): waivers are applied only to the sealed findings"
        )


def render_reports(
    run_dir: Path,
    *,
    inventory_path: Path | None = None,
    signer_fingerprint: str | None = None,
    waivers: LoadedWaivers | None = None,
    today: date | None = None,
) -> list[Path]:
    """Render every report of the run in ``run_dir`` into that folder.

    The inventory is ``inventory_path`` when given, else the copy kept in the run folder, else
    the path recorded in findings.json; the one used is copied into the run folder. With
    ``waivers``, they are applied again on ``today`` (default: the local date) first, and
    findings.json and waivers.yaml rewritten and sealed with the reports (docs/waivers.md).
    Raises ``RunReadError`` when the folder has no readable findings.json,
    ``UnsafeReportPathError`` (a RunReadError) when a file to be written is a symbolic link.
    """
    try:
        # Checked before loading: loading copies the inventory in, with a plain copy.
        for name in [*written_names(), *([FINDINGS_FILE, WAIVERS_COPY] if waivers else [])]:
            refuse_symlink(run_dir / name)
        run = load_run(run_dir, inventory_path=inventory_path)
        run.signer_fingerprint = signer_fingerprint
        waived = waive_stored_run(run, waivers, today or date.today()) if waivers else []
        return [*waived, *render_stored_run(run, also_rewritten=waived)]
    except UnsafePathError as exc:
        if isinstance(exc, UnsafeReportPathError):
            raise
        raise UnsafeReportPathError(str(exc)) from exc


__all__ = [
    "UnsafeReportPathError",
    "render_reports",
    "render_stored_run",
    "waive_stored_run",
    "written_names",
]
