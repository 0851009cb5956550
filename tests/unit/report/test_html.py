"""The HTML reports: self-contained, bilingual titles, verdicts, paths, evidence links."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from auditor.report import render_reports
from auditor.report.html import anchor_for, clause_key
from auditor.report.run import load_run
from policies.model import load_controls

LANGS = ("ja", "en")


class _Collector(HTMLParser):
    """Every start tag with its attributes, and whether the tags balance."""

    VOID = frozenset({"meta", "br", "link", "img", "input", "hr", "col", "wbr", "source"})

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.stack: list[str] = []
        self.unbalanced: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if self.stack and self.stack[-1] == tag:
            self.stack.pop()
        else:
            self.unbalanced.append(tag)


def parse(path: Path) -> _Collector:
    collector = _Collector()
    collector.feed(path.read_text(encoding="utf-8"))
    collector.close()
    return collector


def with_class(collector: _Collector, css: str) -> list[dict[str, str | None]]:
    return [a for _, a in collector.tags if css in (a.get("class") or "").split()]


@pytest.mark.parametrize("lang", LANGS)
def test_every_control_has_both_titles_and_tags_balance(baseline_run: Path, lang: str) -> None:
    page = baseline_run / f"report.{lang}.html"
    text = page.read_text(encoding="utf-8")
    for control in load_controls().values():
        assert control.title.ja in text, control.id
        assert control.title.en in text, control.id
        assert f'id="control-{control.id}"' in text
    collector = parse(page)
    assert collector.unbalanced == [] and collector.stack == []
    assert f'<html lang="{lang}">' in text


@pytest.mark.parametrize("lang", LANGS)
def test_nothing_is_loaded_from_anywhere(failing_run: Path, lang: str) -> None:
    text = (failing_run / f"report.{lang}.html").read_text(encoding="utf-8")
    collector = parse(failing_run / f"report.{lang}.html")
    assert not [t for t, _ in collector.tags if t in {"script", "link", "img", "iframe", "object"}]
    assert "@import" not in text and "url(" not in text and "@font-face" not in text
    hrefs = [a["href"] for _, a in collector.tags if a.get("href")]
    assert hrefs, "the report has links"
    # Only in-page anchors, the other language's file and evidence objects: all relative.
    assert all(
        h.startswith("#") or h in {"report.ja.html", "report.en.html"} or h.startswith("evidence/")
        for h in hrefs
        if h is not None
    ), hrefs
    assert "default-src 'none'" in text


def test_evidence_links_resolve_to_the_stored_objects(failing_run: Path) -> None:
    collector = parse(failing_run / "report.en.html")
    links = {a["href"] for a in with_class(collector, "evidence") if a.get("href")}
    run = load_run(failing_run)
    cited = {ref for f in run.findings for ref in f.evidence}
    assert len(links) >= len(run.artifacts) > 0
    for href in links:
        assert href is not None
        target = failing_run / href
        assert target.is_file(), href
    assert {f"evidence/objects/{r[7:9]}/{r[7:]}" for r in cited} <= links


def test_a_failing_path_is_drawn_and_tabled_with_its_rules(failing_run: Path) -> None:
    page = failing_run / "report.en.html"
    collector = parse(page)
    highlighted = {a.get("id") for a in with_class(collector, "path-highlight")}
    assert "path-" + anchor_for("recv-no-outbound", "recv-srv") in highlighted
    assert "path-" + anchor_for("proc-egress-only-via-gateways", "proc-srv") in highlighted
    # Only failing findings with a path are highlighted: the disagreement one has none.
    assert len(highlighted) == 2
    text = page.read_text(encoding="utf-8")
    section = text.split(f'id="{anchor_for("recv-no-outbound", "recv-srv")}"', 1)[1]
    section = section.split('<div class="finding', 1)[0]
    for rule in ("policy accept", "default via 10.98.10.1 dev eth0", "delivered on carrier-in"):
        assert rule in section
    assert "inet filter output" in section
    assert 'class="disagreement"' in text
    assert "no traffic was captured on carrier-out during the data flow" in text


def test_the_japanese_report_explains_in_japanese(failing_run: Path) -> None:
    text = (failing_run / "report.ja.html").read_text(encoding="utf-8")
    assert "recv-srv は外部ネットワーク carrier-in へ新規接続を開始できる" in text
    assert "不適合" in text and "判定不能" in text
    english = (failing_run / "report.en.html").read_text(encoding="utf-8")
    assert "recv-srv can open new connections to carrier-in (external)" in english
    assert "recv-srv は外部ネットワーク" not in english


def test_the_summary_counts_and_orders_by_clause(failing_run: Path) -> None:
    text = (failing_run / "report.en.html").read_text(encoding="utf-8")
    summary = text.split('<table class="summary">', 1)[1].split("</table>", 1)[0]
    clauses = re.findall(r'<td class="clause">([^<]+)', summary)
    assert clauses == sorted(clauses, key=clause_key)
    assert "fail: 3" in text and "inconclusive: 1" in text
    footer = summary.split("<tfoot>", 1)[1]
    assert re.findall(r'<td class="num">(\d+)</td>', footer) == ["7", "3", "1", "0"]


def test_clause_order_follows_the_regulation() -> None:
    clauses = ["第4号ホ", "第4号ニ(2)", "第3号ハ", "第4号イ", "第4号ニ(10)", "第4号ニ(3)"]
    assert sorted(clauses, key=clause_key) == [
        "第3号ハ",
        "第4号イ",
        "第4号ニ(2)",
        "第4号ニ(3)",
        "第4号ニ(10)",
        "第4号ホ",
    ]


def test_rendering_is_deterministic(failing_run: Path) -> None:
    before = {p.name: p.read_bytes() for p in failing_run.iterdir() if p.is_file()}
    render_reports(failing_run)
    after = {p.name: p.read_bytes() for p in failing_run.iterdir() if p.is_file()}
    assert before == after


def test_the_diagram_is_well_formed_svg_with_every_host(failing_run: Path) -> None:
    text = (failing_run / "report.en.html").read_text(encoding="utf-8")
    svg = text[text.index("<svg") : text.index("</svg>") + len("</svg>")]
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    hosts = {g.get("data-node") for g in root.iter(f"{ns}g") if "host" in (g.get("class") or "")}
    run = load_run(failing_run)
    assert run.inventory is not None
    assert hosts == set(run.inventory.hosts)
    on_path = {
        g.get("data-node") for g in root.iter(f"{ns}g") if "on-path" in (g.get("class") or "")
    }
    assert {"recv-srv", "carrier-in", "proc-srv", "office", "office-gw", "inet"} <= on_path


def test_collected_facts_change_the_diagram(baseline_run: Path, failing_run: Path) -> None:
    """facts.json gives proc-srv an office interface that the inventory does not declare."""

    def attached(run_dir: Path) -> bool:
        run = load_run(run_dir)
        assert run.topology is not None
        return bool(run.topology.graph.has_edge("host:proc-srv", "segment:office"))

    assert attached(failing_run) and not attached(baseline_run)


def test_a_run_without_inventory_still_renders_and_says_so(failing_run: Path) -> None:
    (failing_run / "inventory.yaml").unlink()
    render_reports(failing_run)
    text = (failing_run / "report.en.html").read_text(encoding="utf-8")
    assert "<svg" not in text
    assert "No inventory was found" in text
    assert "no inventory found" in text


def test_the_signer_fingerprint_is_shown_when_given(failing_run: Path) -> None:
    render_reports(failing_run, signer_fingerprint="SHA256:" + "ab" * 32)
    text = (failing_run / "report.ja.html").read_text(encoding="utf-8")
    assert '<meta name="signer-fingerprint" content="SHA256:' + "ab" * 32 + '">' in text
