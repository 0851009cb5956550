"""Reports of a stored run: HTML (ja, en), OSCAL assessment results, SARIF and JUnit.

``render_reports`` reads a run folder and writes every report into it; it never probes.

The reports are written 0600 and never through a symbolic link: a run folder may have been
handed over, or prepared by someone else, and the auditor writes there as root. A symlink at the
name of a file it writes is refused (``UnsafeReportPathError``) before anything is written.
"""

from __future__ import annotations

from pathlib import Path

from auditor.domain.files import UnsafePathError, refuse_symlink
from auditor.evidence.store import reseal
from auditor.report.html import LANGUAGES, report_filename, write_html_reports
from auditor.report.junit import JUNIT_FILE, write_junit
from auditor.report.oscal import OSCAL_FILE, write_oscal
from auditor.report.run import INVENTORY_COPY, RunReadError, StoredRun, load_run
from auditor.report.sarif import SARIF_FILE, write_sarif


class UnsafeReportPathError(RunReadError, UnsafePathError):
    """A file the reports would write in the run folder is a symbolic link. A RunReadError, so
    that ``auditor report`` says "cannot report: …" and exits 3."""


def written_names() -> list[str]:
    """Every file ``render_reports`` may write into a run folder (the inventory copy too)."""
    html = [report_filename(lang) for lang in LANGUAGES]
    return [*html, OSCAL_FILE, SARIF_FILE, JUNIT_FILE, INVENTORY_COPY]


def render_stored_run(run: StoredRun) -> list[Path]:
    """Write every report of an already loaded run, then renew the run's seal for them; the
    paths written, in a fixed order. Raises EvidenceError when the seal cannot be renewed."""
    written = [*write_html_reports(run), write_oscal(run), write_sarif(run), write_junit(run)]
    # A sealed run stays verifiable: the new reports' hashes replace the old in its seal, and
    # every other file keeps the hash the audit sealed (docs/evidence.md). An audit rendering
    # its own reports is not closed yet, so nothing happens here: it seals at its end.
    reseal(run.run_dir, rewritten=[path.name for path in written], created=[INVENTORY_COPY])
    return written


def render_reports(
    run_dir: Path, *, inventory_path: Path | None = None, signer_fingerprint: str | None = None
) -> list[Path]:
    """Render every report of the run in ``run_dir`` into that folder.

    The inventory is ``inventory_path`` when given, else the copy kept in the run folder, else
    the path recorded in findings.json; the one used is copied into the run folder. Raises
    ``RunReadError`` when the folder has no readable findings.json, ``UnsafeReportPathError``
    (a RunReadError) when a file to be written is a symbolic link.
    """
    try:
        # Checked before loading: loading copies the inventory in, with a plain copy.
        for name in written_names():
            refuse_symlink(run_dir / name)
        run = load_run(run_dir, inventory_path=inventory_path)
        run.signer_fingerprint = signer_fingerprint
        return render_stored_run(run)
    except UnsafePathError as exc:
        if isinstance(exc, UnsafeReportPathError):
            raise
        raise UnsafeReportPathError(str(exc)) from exc


__all__ = ["UnsafeReportPathError", "render_reports", "render_stored_run", "written_names"]
