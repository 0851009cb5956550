"""The Prometheus textfile, read back with the official client's parser."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from auditor.domain.findings import AppliedWaiver, Status
from auditor.watch.metrics import WatchSnapshot, escape_label, render_metrics, write_metrics
from auditor.watch.state import RunRecord, RunState
from tests.unit.watch.watch_helpers import T0, document, finding, opened_findings


def _snapshot() -> WatchSnapshot:
    finished = RunRecord(
        id="r1",
        state=RunState.FINISHED,
        started=T0,
        finished=T0 + timedelta(seconds=42.5),
        duration_seconds=42.5,
    )
    running = RunRecord(id="r2", state=RunState.INTERRUPTED, started=T0 + timedelta(minutes=5))
    findings = [*opened_findings(), finding("inventory-complete", "line-send", Status.FAIL)]
    return WatchSnapshot(running, finished, document(findings), drift_lines=7, interrupted_runs=1)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_parse_and_carry_times_duration_and_counts() -> None:
    text = render_metrics(_snapshot())
    samples = _samples(text)
    assert samples[("auditor_watch_last_run_duration_seconds", ())] == 42.5
    finished_at = (T0 + timedelta(seconds=42.5)).timestamp()
    assert samples[("auditor_watch_last_finished_timestamp_seconds", ())] == finished_at
    assert (
        samples[("auditor_watch_last_run_start_timestamp_seconds", ())]
        == (T0 + timedelta(minutes=5)).timestamp()
    )
    assert samples[("auditor_watch_last_run_success", ())] == 0
    info = ("auditor_watch_last_run_info", (("run", "r2"), ("state", "interrupted")))
    assert samples[info] == 1
    counts = {
        (dict(k[1])["control"], dict(k[1])["status"]): v
        for k, v in samples.items()
        if k[0] == "auditor_watch_findings"
    }
    assert counts[("recv-no-outbound", "fail")] == 1
    assert counts[("recv-no-outbound", "pass")] == 0  # zeros written, so series never vanish
    assert counts[("inventory-complete", "pass")] == 1
    assert counts[("inventory-complete", "fail")] == 1
    assert len(counts) == 3 * 4
    assert samples[("auditor_watch_verdict_changes_total", ())] == 7
    assert "# TYPE auditor_watch_findings gauge" in text
    assert text.endswith("\n")


def test_metrics_before_any_run_still_parse() -> None:
    text = render_metrics(WatchSnapshot(None, None, None, 0, 0))
    assert _samples(text)[("auditor_watch_verdict_changes_total", ())] == 0


def test_label_values_are_escaped() -> None:
    assert escape_label('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    doc = document([finding('odd"control\\', "s", Status.PASS)])
    text = render_metrics(WatchSnapshot(None, None, doc, 0, 0))
    controls = {
        s.labels["control"]
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if "control" in s.labels
    }
    assert controls == {'odd"control\\'}


def test_textfile_is_replaced_atomically_and_readable_by_others(tmp_path: Path) -> None:
    path = tmp_path / "textfile" / "auditor.prom"
    write_metrics(path, _snapshot())
    first_inode = path.stat().st_ino
    write_metrics(path, _snapshot())
    assert path.stat().st_ino != first_inode  # a new file renamed over the old one
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"
    assert [p.name for p in path.parent.iterdir()] == ["auditor.prom"]


def test_waived_fails_are_counted_apart_and_still_as_fails() -> None:
    waiver = AppliedWaiver(
        justification="replacement ordered", approved_by="CISO", expires=date(2099, 1, 1),
        in_force=True,
    )  # fmt: skip
    expired = waiver.model_copy(update={"in_force": False})
    waived = finding("inventory-complete", "line-send", Status.FAIL).model_copy(
        update={"waiver": waiver}
    )
    lapsed = finding("inventory-complete", "line-recv", Status.FAIL).model_copy(
        update={"waiver": expired}
    )
    snapshot = _snapshot()
    findings = [*opened_findings(), waived, lapsed]
    samples = _samples(render_metrics(replace(snapshot, findings=document(findings))))
    fails = ("auditor_watch_findings", (("control", "inventory-complete"), ("status", "fail")))
    assert samples[fails] == 2
    assert samples[("auditor_watch_findings_waived", (("control", "inventory-complete"),))] == 1
    assert samples[("auditor_watch_findings_waived", (("control", "recv-no-outbound"),))] == 0
