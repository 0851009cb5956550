"""Drift between two real findings documents, and the drift log."""

from __future__ import annotations

import json
from pathlib import Path

from auditor.domain.findings import Status
from auditor.watch.drift import (
    already_recorded,
    append_changes,
    compute_changes,
    read_changes,
)
from tests.unit.watch.watch_helpers import T0, baseline_findings, document, finding, opened_findings


def test_a_flip_is_one_change_with_every_field() -> None:
    changes = compute_changes(
        document(baseline_findings()),
        document(opened_findings()),
        run="run-2",
        previous_run="run-1",
        at=T0,
    )
    assert len(changes) == 1
    line = json.loads(changes[0].line())
    assert line["control"] == "recv-no-outbound"
    assert line["subject"] == "recv-srv"
    assert line["from"] == "pass" and line["to"] == "fail"
    assert line["run"] == "run-2" and line["previous_run"] == "run-1"
    assert line["at"] == T0.isoformat().replace("+00:00", "Z")
    assert line["clauses"] == ["施行規則第6条第4号ニ(2) (2018)"]
    assert "from_" not in line


def test_same_verdicts_are_no_change_even_when_texts_differ() -> None:
    a = baseline_findings()
    b = [f.model_copy(update={"summary": "reworded", "evidence": []}) for f in a]
    assert compute_changes(document(a), document(b), run="2", previous_run="1", at=T0) == []


def test_appearing_and_disappearing_pairs_are_changes() -> None:
    a = [*baseline_findings(), finding("recv-no-outbound", "recv-old", Status.PASS)]
    b = [*baseline_findings(), finding("recv-no-outbound", "recv-new", Status.INCONCLUSIVE)]
    changes = compute_changes(document(a), document(b), run="2", previous_run="1", at=T0)
    assert [(c.subject, c.from_, c.to) for c in changes] == [
        ("recv-new", None, Status.INCONCLUSIVE),
        ("recv-old", Status.PASS, None),
    ]
    assert json.loads(changes[0].line())["from"] is None


def test_log_round_trip_skips_a_torn_line(tmp_path: Path) -> None:
    log = tmp_path / "drift.jsonl"
    first = compute_changes(
        document(baseline_findings()), document(opened_findings()), run="2", previous_run="1", at=T0
    )
    back = compute_changes(
        document(opened_findings()), document(baseline_findings()), run="3", previous_run="2", at=T0
    )
    append_changes(log, first)
    append_changes(log, [])
    append_changes(log, back)
    with log.open("a") as handle:
        handle.write('{"control": "recv-no-out')  # a crash in the middle of a line
    assert read_changes(log) == first + back
    assert already_recorded(log, "3") and not already_recorded(log, "4")
    assert read_changes(tmp_path / "absent.jsonl") == []
