"""The watch, history and diff commands as registered on a Typer app."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from auditor.watch.state import RunState, StateDir
from auditor.watch.watcher import Watcher
from tests.unit.watch.recorded_runs import LAB_HOSTS, opened_recv_srv, recorded_facts, write_run
from tests.unit.watch.watch_helpers import (
    ScriptedAudit,
    baseline_findings,
    opened_findings,
    watch_app,
)

INVENTORY = Path(__file__).parents[2] / "data" / "inventory" / "lab.yaml"
runner = CliRunner()


def test_watch_needs_exactly_one_schedule(tmp_path: Path) -> None:
    base = ["watch", "--inventory", str(INVENTORY), "--state", str(tmp_path)]
    for extra in ([], ["--every", "1m", "--once"], ["--every", "1m", "--cron", "* * * * *"]):
        result = runner.invoke(watch_app(), base + extra)
        assert result.exit_code == 3, result.output
        assert "exactly one of" in result.output


def test_watch_refuses_bad_values(tmp_path: Path) -> None:
    base = ["watch", "--inventory", str(INVENTORY), "--state", str(tmp_path)]
    cases = [
        (["--cron", "0 0 31 2 *"], "never matches"),
        (["--every", "soon"], "invalid duration"),
        (["--once", "--webhook", "ftp://x"], "http or https"),
        (["--once", "--syslog", "http://x"], "scheme"),
        (["--once", "--keep", "0"], "at least one"),
    ]
    for extra, message in cases:
        result = runner.invoke(watch_app(), base + extra)
        assert result.exit_code == 3, (extra, result.output)
        assert message in result.output, (extra, result.output)
    missing = runner.invoke(
        watch_app(),
        ["watch", "--inventory", str(tmp_path / "nope.yaml"), "--state", str(tmp_path), "--once"],
    )
    assert missing.exit_code == 3 and "no such inventory" in missing.output


def _three_runs(state: Path) -> list[str]:
    watcher = Watcher(
        INVENTORY,
        StateDir(state),
        ScriptedAudit([baseline_findings(), opened_findings(), baseline_findings()]),
    )
    return [o.record.id for o in (watcher.run_once() for _ in range(3)) if o.record]


def test_history_json_and_table(tmp_path: Path) -> None:
    ids = _three_runs(tmp_path)
    result = runner.invoke(watch_app(), ["history", "--state", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["id"] for r in rows] == ids
    assert [r["changes"] for r in rows] == [0, 1, 1]
    assert rows[1]["counts"] == {"pass": 2, "fail": 1, "inconclusive": 0, "not-applicable": 0}
    assert all(r["state"] == "finished" for r in rows)
    table = runner.invoke(watch_app(), ["history", "--state", str(tmp_path)])
    assert table.exit_code == 0
    assert all(i in table.output for i in ids), table.output
    assert runner.invoke(watch_app(), ["history", "--state", str(tmp_path / "x")]).exit_code == 3


def test_diff_text_and_json(tmp_path: Path) -> None:
    base = {h: recorded_facts(h) for h in LAB_HOSTS}
    write_run(tmp_path / "runs" / "r1", baseline_findings(), base)
    write_run(tmp_path / "runs" / "r2", opened_findings(), {**base, "recv-srv": opened_recv_srv()})
    text = runner.invoke(watch_app(), ["diff", "r1", "r2", "--state", str(tmp_path)])
    assert text.exit_code == 0, text.output
    assert "recv-no-outbound" in text.output
    assert "+ path appeared [model] recv-no-outbound recv-srv:" in text.output
    assert "+ edge appeared [reach] host:recv-srv → network:carrier-in" in text.output
    as_json = runner.invoke(watch_app(), ["diff", "r1", "r2", "--state", str(tmp_path), "--json"])
    document = json.loads(as_json.output)
    assert document["verdicts"][0]["from"] == "pass" and document["verdicts"][0]["to"] == "fail"
    assert {p["source"] for p in document["paths"]} == {"finding", "model"}
    missing = runner.invoke(watch_app(), ["diff", "r1", "zz", "--state", str(tmp_path)])
    assert missing.exit_code == 3 and "no such run" in missing.output


STOPPED_BY_SIGTERM = """
import sys, threading, time
from pathlib import Path
import typer
from auditor.cli import watch as watch_cli
from auditor.watch.state import StateDir
from auditor.watch.watcher import StopRequested, Watcher

def audit(inventory: Path, out_dir: Path) -> None:
    print("auditing", flush=True)
    time.sleep(60)

watcher = Watcher(Path(sys.argv[1]), StateDir(Path(sys.argv[2])), audit)
stop = threading.Event()
watch_cli._install_stop_handlers(watcher, stop)
try:
    watcher.run_once()
except StopRequested as exc:
    print("stopped", exc, flush=True)
    sys.exit(143)
"""


def test_sigterm_mid_run_marks_it_interrupted_and_exits_143(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", STOPPED_BY_SIGTERM, str(INVENTORY), str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "auditing"
    child.send_signal(signal.SIGTERM)
    out, _ = child.communicate(timeout=10)
    assert child.returncode == 143
    assert out.strip() == "stopped SIGTERM"
    (record,) = StateDir(tmp_path).records()
    assert record.state is RunState.INTERRUPTED and record.error == "stopped: SIGTERM"
