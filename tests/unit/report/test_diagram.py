"""The diagram's layout: deterministic, depth from the outside, zones as bands, paths."""

from __future__ import annotations

from pathlib import Path

from auditor.domain.findings import Hop
from auditor.domain.inventory import load_inventory
from auditor.report.diagram import (
    PathOverlay,
    assign_columns,
    compute_layout,
    diagram_facts,
    path_nodes,
    render_svg,
)
from topology.graph import Topology

LAB = Path(__file__).resolve().parents[2] / "data" / "inventory" / "lab.yaml"


def lab_topology() -> Topology:
    return Topology.build(load_inventory(LAB), {})


def test_columns_are_the_distance_from_the_outside() -> None:
    columns = assign_columns(lab_topology().graph)
    assert {columns[f"host:{h}"] for h in ("hospital", "recipient", "inet-canary")} == {0}
    assert {columns[f"segment:{s}"] for s in ("carrier-in", "carrier-out", "inet", "wg-in")} == {1}
    assert columns["host:recv-srv"] == columns["host:send-srv"] == 2
    assert columns["segment:line-recv"] == 3
    assert columns["host:proc-srv"] == 4
    assert columns["segment:term-lan"] == 5
    assert columns["host:term-1"] == 6


def test_zones_are_bands_and_chains_stay_on_one_line() -> None:
    layout = compute_layout(lab_topology().graph)
    band = {n: p.band for n, p in layout.placements.items()}
    assert band["host:recv-srv"] == band["segment:line-recv"] == "protected"
    assert band["host:office-gw"] == band["segment:office"] == "office"
    assert band["host:hospital"] == band["segment:carrier-in"] == "external"
    rows = {n: p.row for n, p in layout.placements.items()}
    assert rows["host:recv-srv"] == rows["segment:line-recv"]
    assert rows["host:send-srv"] == rows["segment:line-send"]
    top = layout.band_top
    assert top["external"] < top["protected"] < top["office"]
    ys = sorted((p.y, n) for n, p in layout.placements.items() if p.band == "protected")
    assert ys[-1][0] < top["office"], "no protected node spills into the office band"


def test_the_layout_does_not_depend_on_insertion_order() -> None:
    first = diagram_facts(compute_layout(lab_topology().graph))
    graph = lab_topology().graph
    shuffled = graph.__class__()
    shuffled.add_nodes_from(reversed(list(graph.nodes(data=True))))
    shuffled.add_edges_from(reversed(list(graph.edges(data=True))))
    assert diagram_facts(compute_layout(shuffled)) == first


def test_path_nodes_enter_on_input_and_leave_otherwise() -> None:
    hops = [
        Hop(host="proc-srv", network="office", direction="output", rule="policy accept"),
        Hop(host="proc-srv", network="office", direction="route", rule="default"),
        Hop(host="office-gw", network="office", direction="input", rule="unknown"),
        Hop(host="office-gw", network="inet", direction="forward", rule="unknown"),
        Hop(host="inet-canary", network="inet", direction="input", rule="unknown"),
    ]
    assert path_nodes(hops) == [
        "host:proc-srv",
        "segment:office",
        "host:office-gw",
        "segment:inet",
        "host:inet-canary",
    ]


def test_the_svg_escapes_names_and_marks_paths() -> None:
    overlay = PathOverlay(
        "finding-x", "a<b / c", (Hop(host="recv-srv", network="carrier-in", direction="output"),)
    )
    svg = render_svg(lab_topology(), [overlay], "ja")
    assert "a&lt;b / c" in svg and "a<b" not in svg
    assert 'id="path-finding-x"' in svg
    assert "保護区画" in svg
    assert svg == render_svg(lab_topology(), [overlay], "ja")
