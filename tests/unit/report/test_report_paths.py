"""Reports are written into the run folder as root: never through a symlink planted at one of
their names (refused, naming the file, before anything is written), and 0600."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from auditor.cli.main import app
from auditor.report import UnsafeReportPathError, render_reports, written_names
from auditor.report.run import RunReadError
from tests.data.runs import sample_runs

REPORTS = [
    "report.ja.html",
    "report.en.html",
    "oscal-assessment-results.json",
    "findings.sarif",
    "findings.junit.xml",
]


@pytest.fixture
def fresh_run(tmp_path: Path) -> Path:
    """A run folder without reports yet."""
    return sample_runs.make_baseline(tmp_path / "run")


def _target(tmp_path: Path) -> Path:
    target = tmp_path / "etc-something"
    target.write_text("precious\n")
    return target


def test_every_written_name_is_checked() -> None:
    assert set(REPORTS) < set(written_names())
    assert "inventory.yaml" in written_names()  # load_run copies the inventory in


@pytest.mark.parametrize("name", [*REPORTS, "inventory.yaml"])
def test_a_symlink_at_a_report_name_is_refused(fresh_run: Path, tmp_path: Path, name: str) -> None:
    target = _target(tmp_path)
    (fresh_run / name).unlink(missing_ok=True)  # the sample run keeps an inventory copy
    (fresh_run / name).symlink_to(target)
    with pytest.raises(UnsafeReportPathError, match=f"{re.escape(name)} is a symbolic link"):
        render_reports(fresh_run)
    assert target.read_text() == "precious\n"
    # Refused before anything was written: no report is half-renewed.
    assert [n for n in REPORTS if (fresh_run / n).exists() and n != name] == []


@pytest.mark.parametrize("name", ["report.en.html", "inventory.yaml"])
def test_a_dangling_symlink_is_refused_too(fresh_run: Path, tmp_path: Path, name: str) -> None:
    # A dangling link "does not exist": the inventory copy used to be made through it.
    (fresh_run / name).unlink(missing_ok=True)
    (fresh_run / name).symlink_to(tmp_path / "would-be-created")
    with pytest.raises(UnsafeReportPathError):
        render_reports(fresh_run, inventory_path=sample_runs.LAB_INVENTORY)
    assert not (tmp_path / "would-be-created").exists()


def test_the_writers_refuse_a_symlink_on_their_own(fresh_run: Path, tmp_path: Path) -> None:
    # For callers that skip render_reports (render_stored_run on a loaded run).
    from auditor.domain.files import UnsafePathError
    from auditor.report import render_stored_run
    from auditor.report.run import load_run

    run = load_run(fresh_run)
    target = _target(tmp_path)
    (fresh_run / "findings.sarif").symlink_to(target)
    with pytest.raises(UnsafePathError, match=r"findings\.sarif is a symbolic link"):
        render_stored_run(run)
    assert target.read_text() == "precious\n"


def test_auditor_report_says_which_file_and_exits_3(fresh_run: Path, tmp_path: Path) -> None:
    target = _target(tmp_path)
    (fresh_run / "report.en.html").symlink_to(target)
    result = CliRunner().invoke(app, ["report", str(fresh_run)])
    assert result.exit_code == 3, result.output
    assert "cannot report" in result.output
    assert str(fresh_run / "report.en.html") in result.output
    assert target.read_text() == "precious\n"
    assert issubclass(UnsafeReportPathError, RunReadError)


def test_reports_are_private(fresh_run: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        written = render_reports(fresh_run)
    finally:
        os.umask(old_umask)
    assert sorted(p.name for p in written) == sorted(REPORTS)
    for path in written:
        assert os.stat(path).st_mode & 0o777 == 0o600, path
    assert [p.name for p in fresh_run.iterdir() if p.name.startswith(".")] == []


def test_rendering_again_replaces_the_reports(fresh_run: Path) -> None:
    first = {p.name: p.read_bytes() for p in render_reports(fresh_run)}
    second = {p.name: p.read_bytes() for p in render_reports(fresh_run)}
    assert first.keys() == second.keys()
    assert second["findings.junit.xml"].startswith(b"<?xml version='1.0' encoding='utf-8'?>")
