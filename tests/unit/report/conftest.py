"""Run folders for the report and bundle tests: made fresh per test with the real evidence
store (tests/data/runs/sample_runs.py), then rendered."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditor.report import render_reports
from tests.data.runs import sample_runs


@pytest.fixture
def baseline_run(tmp_path: Path) -> Path:
    run_dir = sample_runs.make_baseline(tmp_path / "baseline")
    render_reports(run_dir)
    return run_dir


@pytest.fixture
def failing_run(tmp_path: Path) -> Path:
    run_dir = sample_runs.make_failing(tmp_path / "failing")
    render_reports(run_dir)
    return run_dir
