"""`diff` between run folders made of real lab data: verdicts, finding paths, and the model's
paths and edges rebuilt from facts.json and the inventory."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditor.watch.diff import (
    RunNotFoundError,
    diff_runs,
    load_run,
    path_edges,
    resolve_run,
)
from auditor.watch.drift import Change
from auditor.watch.state import MARKER_FILE
from tests.unit.watch.recorded_runs import LAB_HOSTS, opened_recv_srv, recorded_facts, write_run
from tests.unit.watch.watch_helpers import OPEN_PATH, baseline_findings, opened_findings

BASE = {h: recorded_facts(h) for h in LAB_HOSTS}


@pytest.fixture
def runs(tmp_path: Path) -> tuple[Path, Path]:
    a = write_run(tmp_path / "runs" / "20250401T090000Z-aaaaaa", baseline_findings(), BASE)
    b = write_run(
        tmp_path / "runs" / "20250401T091000Z-bbbbbb",
        opened_findings(),
        {**BASE, "recv-srv": opened_recv_srv()},
    )
    return a, b


def _verdicts(changes: list[Change]) -> list[tuple[str, str, str | None, str | None]]:
    return [(c.control, c.subject, c.from_, c.to) for c in changes]


def test_opening_recv_srv_shows_the_verdict_the_new_path_and_edge(runs: tuple[Path, Path]) -> None:
    result = diff_runs(load_run(runs[0]), load_run(runs[1]))
    assert _verdicts(result.verdicts) == [("recv-no-outbound", "recv-srv", "pass", "fail")]
    from_finding = [p for p in result.paths if p.source == "finding"]
    assert [(p.change, p.hops) for p in from_finding] == [
        (
            "appeared",
            ("recv-srv route@carrier-in", "recv-srv output@carrier-in", "recv-srv link@carrier-in"),
        )
    ]
    model = [p for p in result.paths if p.source == "model"]
    assert model and all(p.change == "appeared" for p in model)
    assert all((p.control, p.subject) == ("recv-no-outbound", "recv-srv") for p in model)
    certain = [p for p in model if p.certain]
    # The certain path: on-link into carrier-in, allowed by the opened output policy.
    assert certain[0].hops[-1] == "recv-srv link@carrier-in"
    assert "recv-srv output: policy accept" in certain[0].rules
    assert any("10.98.10." in packets for packets in certain[0].packets)
    # Through the default route's gateway, which no inventory host owns: uncertain, and why.
    uncertain = [p for p in model if not p.certain]
    assert uncertain and any("10.98.10.1" in r for p in uncertain for r in p.reasons)
    reach_edges = [(e.change, e.edge, e.controls) for e in result.edges if e.source == "reach"]
    assert reach_edges == [
        ("appeared", ("host:recv-srv", "network:carrier-in"), ("recv-no-outbound",))
    ]
    assert [e for e in result.edges if e.source == "graph"] == []  # no cable was moved
    assert result.notes == []


def test_closing_it_again_shows_the_way_back(runs: tuple[Path, Path]) -> None:
    result = diff_runs(load_run(runs[1]), load_run(runs[0]))
    assert _verdicts(result.verdicts) == [("recv-no-outbound", "recv-srv", "fail", "pass")]
    assert {p.change for p in result.paths} == {"disappeared"}
    assert [e.change for e in result.edges] == ["disappeared"]


def test_same_facts_no_change(runs: tuple[Path, Path], tmp_path: Path) -> None:
    again = write_run(tmp_path / "again", baseline_findings(), BASE)
    result = diff_runs(load_run(runs[0]), load_run(again))
    assert (result.verdicts, result.paths, result.edges) == ([], [], [])


def test_an_extra_interface_is_a_graph_edge(runs: tuple[Path, Path], tmp_path: Path) -> None:
    proc = BASE["proc-srv"]
    assert proc.interfaces is not None
    # proc-srv's term-lan interface gone (as if unplugged): its attachment disappears.
    fewer = proc.model_copy(
        update={"interfaces": [i for i in proc.interfaces if i.name != "term-lan"]}
    )
    moved = write_run(tmp_path / "moved", baseline_findings(), {**BASE, "proc-srv": fewer})
    result = diff_runs(load_run(runs[0]), load_run(moved))
    graph = [(e.change, e.edge) for e in result.edges if e.source == "graph"]
    assert graph == [("disappeared", ("host:proc-srv", "network:term-lan"))]


def test_without_facts_only_verdicts_and_finding_paths(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", baseline_findings(), None)
    b = write_run(tmp_path / "b", opened_findings(), None)
    result = diff_runs(load_run(a), load_run(b))
    assert _verdicts(result.verdicts) == [("recv-no-outbound", "recv-srv", "pass", "fail")]
    assert [p.source for p in result.paths] == ["finding"]
    assert any("no facts.json" in n for n in result.notes)
    assert any("model comparison skipped" in n for n in result.notes)


def test_an_unfinished_run_is_named_in_the_notes(runs: tuple[Path, Path]) -> None:
    (runs[1] / MARKER_FILE).write_text(
        '{"id": "x", "state": "interrupted", "started": "2025-04-01T09:10:00Z"}'
    )
    assert any("interrupted" in n for n in load_run(runs[1]).notes)


def test_runs_are_found_by_folder_id_or_prefix(runs: tuple[Path, Path], tmp_path: Path) -> None:
    assert resolve_run(str(runs[0]), None) == runs[0]
    assert resolve_run("20250401T090000Z-aaaaaa", tmp_path) == runs[0]
    assert resolve_run("20250401T091", tmp_path) == runs[1]
    with pytest.raises(RunNotFoundError, match="ambiguous"):
        resolve_run("20250401T09", tmp_path)
    with pytest.raises(RunNotFoundError, match="no such run"):
        resolve_run("1999", tmp_path)
    with pytest.raises(RunNotFoundError, match="--state"):
        resolve_run("20250401T090000Z-aaaaaa", None)


def test_path_edges_are_directed() -> None:
    assert path_edges(OPEN_PATH) == {("host:recv-srv", "network:carrier-in")}
