"""Reports of a stored run: HTML (ja, en), OSCAL assessment results, SARIF and JUnit.

``render_reports`` reads a run folder and writes every report into it; it never probes.
"""

from __future__ import annotations

from pathlib import Path

from auditor.report.html import write_html_reports
from auditor.report.junit import write_junit
from auditor.report.oscal import write_oscal
from auditor.report.run import StoredRun, load_run
from auditor.report.sarif import write_sarif


def render_stored_run(run: StoredRun) -> list[Path]:
    """Write every report of an already loaded run; the paths written, in a fixed order."""
    return [*write_html_reports(run), write_oscal(run), write_sarif(run), write_junit(run)]


def render_reports(
    run_dir: Path, *, inventory_path: Path | None = None, signer_fingerprint: str | None = None
) -> list[Path]:
    """Render every report of the run in ``run_dir`` into that folder.

    The inventory is ``inventory_path`` when given, else the copy kept in the run folder, else
    the path recorded in findings.json; the one used is copied into the run folder. Raises
    ``RunReadError`` when the folder has no readable findings.json.
    """
    run = load_run(run_dir, inventory_path=inventory_path)
    run.signer_fingerprint = signer_fingerprint
    return render_stored_run(run)


__all__ = ["render_reports", "render_stored_run"]
