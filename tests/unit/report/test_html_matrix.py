"""The zone matrix and the defence depth in the HTML reports (ja and en): what is shown, that
host-derived text stays text, and that a large organisation still renders."""

from __future__ import annotations

import gzip
import re
import shutil
from html import unescape
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path

import pytest

from auditor.domain.findings import Defence, Finding, FindingsDocument, Protection, RunInfo, Status
from auditor.report.html import _environment, anchor_for, render_html
from auditor.report.run import StoredRun, load_run
from bench.synthetic import generate
from policies.model import load_controls, load_framework
from policies.snapshot import OBSERVATIONS_FILE
from tests.data.runs import sample_runs
from topology.graph import Topology

CONTEXTS = Path(__file__).resolve().parents[2] / "data" / "contexts"
LANGS = ("ja", "en")
HOSTILE_RULE = 'ip saddr 10.98.30.0/24 drop comment "<script>alert(1)</script>"'


class _Cells(HTMLParser):
    """The matrix cells (by their from/to attributes) with their text, and marked elements."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[tuple[str, str], dict[str, str]] = {}
        self._open: tuple[str, str] | None = None
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        if tag == "td" and "data-from" in found:
            key = (found["data-from"], found["data-to"])
            self.cells[key] = {"model": found["data-model"], "probe": found["data-probe"]}
            self.cells[key]["class"] = found.get("class", "")
            self.cells[key]["text"] = ""
            self._open, self._depth = key, 0
        elif self._open is not None and tag == "td":
            self._depth += 1

    def handle_endtag(self, tag: str) -> None:
        if self._open is not None and tag == "td":
            if self._depth == 0:
                self._open = None
            else:
                self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self.cells[self._open]["text"] += data


def cells_of(html: str) -> dict[tuple[str, str], dict[str, str]]:
    parser = _Cells()
    parser.feed(html)
    parser.close()
    return parser.cells


def text(fragment: str) -> str:
    return re.sub(r"\s+", " ", unescape(fragment)).strip()


def section(html: str, name: str) -> str:
    start = html.index(f'<section id="{name}">')
    return html[start : html.index("</section>", start)]


@pytest.fixture
def recv_egress_run(tmp_path: Path) -> StoredRun:
    """A run folder with the recorded recv-egress scenario's inventory and observations."""
    run_dir = sample_runs.make_baseline(tmp_path / "run")
    shutil.copyfile(CONTEXTS / "recv-egress" / "inventory.yaml", run_dir / "inventory.yaml")
    packed = (CONTEXTS / "recv-egress" / (OBSERVATIONS_FILE + ".gz")).read_bytes()
    (run_dir / OBSERVATIONS_FILE).write_bytes(gzip.decompress(packed))
    return load_run(run_dir)


# -- the matrix --------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
def test_the_matrix_shows_model_and_probe_for_every_pair(
    recv_egress_run: StoredRun, lang: str
) -> None:
    html = render_html(recv_egress_run, lang)  # type: ignore[arg-type]
    cells = cells_of(html)
    names = list(recv_egress_run.inventory.networks) + list(recv_egress_run.inventory.tunnels)  # type: ignore[union-attr]
    assert set(cells) == {(a, b) for a in names for b in names}
    escaped = cells[("line-recv", "inet")]
    assert (escaped["model"], escaped["probe"]) == ("no", "through")
    assert "probe-through" in escaped["class"].split()
    assert "recv-srv" in escaped["text"] and "tcp/443" in escaped["text"]
    assert cells[("office", "inet")]["model"] == "unknown"
    assert "tcp/any" in cells[("office", "inet")]["text"]
    assert cells[("inet", "term-lan")] | {"text": ""} == {
        "model": "no",
        "probe": "none",
        "class": "cell model-no",
        "text": "",
    }
    diagonal = cells[("line-send", "line-send")]
    assert diagonal["model"] == "same"
    # An open port within one network is the declared service, not an alarm.
    assert "probe-through" not in diagonal["class"].split()
    assert "send-srv" in diagonal["text"]


def test_the_matrix_speaks_each_language(recv_egress_run: StoredRun) -> None:
    ja = text(section(render_html(recv_egress_run, "ja"), "zone-matrix"))
    en = text(section(render_html(recv_egress_run, "en"), "zone-matrix"))
    assert "ゾーンマトリクス" in ja and "到達不可" in ja and "外向き通信を観測" in ja
    assert "凡例" in ja and "各ホスト自身の通信は含まない" in ja
    assert "zone matrix" in en and "egress seen" in en
    assert "Hosts' own connections are not shown here" in en
    assert "到達不可" not in en


def test_the_matrix_prints_on_a_landscape_page() -> None:
    css = (resources.files("auditor.report") / "templates" / "style.css.j2").read_text("utf-8")
    printing = css[css.index("@media print") :]
    assert re.search(r"@page matrix \{ size: A4 landscape;", printing)
    assert re.search(r"#zone-matrix \{ page: matrix; break-before: page; \}", printing)
    assert "table.zone-matrix thead { display: table-header-group; }" in printing


def test_a_run_without_observations_says_so_in_the_report(tmp_path: Path) -> None:
    run_dir = sample_runs.make_baseline(tmp_path / "run")
    (run_dir / OBSERVATIONS_FILE).unlink()
    html = render_html(load_run(run_dir), "en")
    assert "no observations.json: the zone matrix shows no probe results" in html
    assert all(cell["probe"] == "none" for cell in cells_of(html).values())


def test_the_two_thousand_host_organisation_renders_grouped_by_zone(tmp_path: Path) -> None:
    org = generate(2000)
    inventory = org.inventory()
    run = StoredRun(
        run_dir=tmp_path,
        document=FindingsDocument(
            run=RunInfo(id="synthetic", started="2026-12-01T00:00:00Z"), findings=[]
        ),
        framework=load_framework(),
        controls=load_controls(),
        inventory=inventory,
        topology=Topology.build(inventory, org.facts),
    )
    html = render_html(run, "en")
    cells = cells_of(html)
    zones = ["external", "office", "protected", "tunnel"]
    assert set(cells) == {(a, b) for a in zones for b in zones}
    assert cells[("office", "external")]["model"] == "yes"
    assert "s000-office → inet" in cells[("office", "external")]["text"]
    assert cells[("external", "protected")]["model"] == "no"
    assert "grouped by zone" in section(html, "zone-matrix")


# -- defence depth -----------------------------------------------------------------------------


def passing(subject: str, defence: Defence | None, status: Status = Status.PASS) -> Finding:
    return Finding(
        control="recv-no-inbound",
        subject=subject,
        status=status,
        clauses=["第4号ロ"],
        summary="no new connection reaches it from outside",
        summary_ja="外部から新規接続は届かない",
        defence=defence,
    )


SINGLE = Defence(
    depth="single",
    single_points=[
        Protection(
            host="recv-srv",
            rule=HOSTILE_RULE,
            rule_ref="inet filter/input handle 7",
            opens="IPv4 tcp dport 22 from 10.98.10.0/24",
        )
    ],
    examined=12,
)
LAYERED = Defence(depth="layered", examined=9)
UNKNOWN = Defence(depth="unknown", note="the rules of office-gw were not collected")


@pytest.fixture
def defended_run(tmp_path: Path) -> StoredRun:
    run = load_run(sample_runs.make_baseline(tmp_path / "run"))
    run.document.findings = [
        passing("host-a", SINGLE),
        passing("host-b", LAYERED),
        passing("host-c", UNKNOWN),
        # A fail is not "a pass held by one rule", whatever its defence says.
        passing("host-d", SINGLE, Status.FAIL),
        passing("host-e", None),
    ]
    return run


def finding_block(html: str, subject: str) -> str:
    start = html.index(f'id="{anchor_for("recv-no-inbound", subject)}"')
    return html[start : html.index('<div class="evidence-list">', start)]


@pytest.mark.parametrize("lang", LANGS)
def test_a_pass_held_by_a_single_rule_is_a_warning_with_its_rule(
    defended_run: StoredRun, lang: str
) -> None:
    html = render_html(defended_run, lang)  # type: ignore[arg-type]
    block = finding_block(html, "host-a")
    assert 'class="defence defence-single"' in block
    assert "single-held" in block
    assert "inet filter/input handle 7" in block
    assert "IPv4 tcp dport 22 from 10.98.10.0/24" in block
    # The rule text comes from the host: shown as text, never as markup.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in block
    assert "<script>" not in html
    warning = "単一の規則にのみ依存" if lang == "ja" else "held by a single rule"
    assert warning in block


@pytest.mark.parametrize("lang", LANGS)
def test_the_summary_counts_the_passes_held_by_a_single_rule(
    defended_run: StoredRun, lang: str
) -> None:
    summary = section(render_html(defended_run, lang), "summary")  # type: ignore[arg-type]
    listed = re.findall(r'<li><a href="#([^"]+)">', summary[summary.index("single-passes") :])
    assert listed == [anchor_for("recv-no-inbound", "host-a")]
    label = "単一の規則にのみ依存する適合" if lang == "ja" else "Passes held by a single rule"
    assert f"{label}: 1</strong>" in summary


def test_layered_and_unknown_depths_have_their_notes(defended_run: StoredRun) -> None:
    en = render_html(defended_run, "en")
    ja = render_html(defended_run, "ja")
    assert "Layered: no single rule&#39;s removal opens a path." in finding_block(en, "host-b")
    assert "多層" in finding_block(ja, "host-b")
    unknown = finding_block(en, "host-c")
    assert "The depth could not be decided." in unknown
    assert "the rules of office-gw were not collected" in unknown
    assert "defence" not in finding_block(en, "host-e")


def test_no_single_held_pass_says_so(tmp_path: Path) -> None:
    run = load_run(sample_runs.make_baseline(tmp_path / "run"))
    run.document.findings = [passing("host-b", LAYERED)]
    assert "No pass is held by a single rule." in section(render_html(run, "en"), "summary")


# -- escaping ----------------------------------------------------------------------------------


def test_autoescape_is_on_and_no_template_marks_text_safe() -> None:
    assert _environment().autoescape is True
    templates = resources.files("auditor.report") / "templates"
    for template in templates.iterdir():
        assert not re.search(r"\|\s*safe\b", template.read_text("utf-8")), template.name
