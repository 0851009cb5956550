"""Waivers in the HTML reports (ja, en): a waived fail is shown as a fail carrying its waiver,
an expired one says so, the summary counts waived fails apart, the waivers file's warnings are
listed, and every text of the file is escaped (it is written by a user, docs/waivers.md).

The run is the sample failing run (tests/data/runs/sample_runs.py), made with the real evidence
store, with the waivers of tests/unit/test_waivers_outputs.py applied by ``auditor report``'s
own path: recv-no-outbound on recv-srv waived, send-no-inbound on send-srv's waiver expired,
links-encrypted on send-srv (inconclusive) named and not waived.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from auditor.domain.waivers import load_waivers
from auditor.report import render_reports
from tests.data.runs import sample_runs
from tests.unit.report.test_html import parse, with_class
from tests.unit.test_waivers_outputs import SAMPLE_WAIVERS, TODAY, write_waivers

LANGS = ("ja", "en")

#: Markup in every text of a waivers file, and in the names of an unknown control and subject
#: (which the warnings quote).
HOSTILE_WAIVERS = """
waivers:
  - control: recv-no-outbound
    subject: recv-srv
    justification: '<script>alert("j")</script> & more'
    approved_by: '<b onmouseover="x()">Sato</b>'
    expires: 2026-12-31
  - control: '<img src=x onerror=alert(1)>'
    subject: recv-srv
    justification: j
    approved_by: a
    expires: 2026-12-31
  - control: send-no-inbound
    subject: '<iframe src="//evil">'
    justification: j
    approved_by: a
    expires: 2026-12-31
"""


@pytest.fixture
def waived_run(tmp_path: Path) -> Path:
    run_dir = sample_runs.make_failing(tmp_path / "failing")
    accepted = load_waivers(write_waivers(tmp_path, SAMPLE_WAIVERS))
    render_reports(run_dir, waivers=accepted, today=TODAY)
    return run_dir


def page(run_dir: Path, lang: str) -> str:
    return (run_dir / f"report.{lang}.html").read_text(encoding="utf-8")


def finding_block(text: str, control: str, subject: str) -> str:
    """The HTML of one finding, from its div to the next finding's."""
    start = text.index(f'id="finding-{control}--{subject}"')
    end = text.find('<div class="finding', start)
    return text[start : end if end != -1 else len(text)]


def section(text: str, section_id: str) -> str:
    start = text.index(f'<section id="{section_id}">')
    return text[start : text.index("</section>", start)]


# -- a waived fail, an expired waiver -------------------------------------------------------------


@pytest.mark.parametrize(
    ("lang", "fail", "waived", "terms"),
    [
        ("en", "fail", "waived", ("Justification", "Approved by", "Last day in force")),
        ("ja", "不適合", "例外承認済み", ("理由", "承認者", "有効期限")),
    ],
)
def test_a_waived_fail_is_shown_as_a_fail_carrying_its_waiver(
    waived_run: Path, lang: str, fail: str, waived: str, terms: tuple[str, ...]
) -> None:
    text = page(waived_run, lang)
    collector = parse(waived_run / f"report.{lang}.html")
    assert collector.unbalanced == [] and collector.stack == []
    [div] = [a for t, a in collector.tags if a.get("id") == "finding-recv-no-outbound--recv-srv"]
    assert (div["data-status"], div["data-waiver"]) == ("fail", "in-force")
    block = finding_block(text, "recv-no-outbound", "recv-srv")
    assert f'<span class="badge status-fail">{fail}</span>' in block
    assert f'<span class="badge waiver-in-force">{waived}</span>' in block
    for term in terms:
        assert f"<dt>{term}" in block, term
    assert "carrier maintenance window, ticket OPS-12" in block
    assert "CISO Sato" in block and '<time datetime="2026-12-31">' in block
    # the finding text the waiver accepts, which its entry names
    assert (
        '<dd class="waiver-finding">recv-srv can open new connections to carrier-in (external)'
        in block
    )
    assert "waiver-expired" not in block


@pytest.mark.parametrize(
    ("lang", "expired"), [("en", "waiver expired"), ("ja", "例外承認の期限切れ")]
)
def test_an_expired_waiver_is_shown_and_says_clearly_that_it_no_longer_waives(
    waived_run: Path, lang: str, expired: str
) -> None:
    text = page(waived_run, lang)
    [div] = with_class(parse(waived_run / f"report.{lang}.html"), "waiver-expired")[:1]
    assert (div["data-subject"], div["data-waiver"]) == ("send-srv", "expired")
    block = finding_block(text, "send-no-inbound", "send-srv")
    assert f'<span class="badge waiver-expired">⚠ {expired}</span>' in block
    assert f'<p class="waiver-expired"><strong>⚠ {expired}</strong>' in block
    assert "migration of the sending server" in block
    assert '<time datetime="2026-11-25">' in block
    assert "waiver-in-force" not in block
    assert "waiver-finding" not in block  # its entry names no finding text


def test_findings_without_a_waiver_show_none(waived_run: Path) -> None:
    text = page(waived_run, "en")
    for control, subject in (
        ("proc-egress-only-via-gateways", "proc-srv"),  # a fail no waiver names
        ("links-encrypted", "send-srv"),  # inconclusive: a waiver never applies
    ):
        block = finding_block(text, control, subject)
        assert "waiver" not in block, (control, subject)


# -- the counts ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lang", "fail", "waived"),
    [("en", "fail", "waived fail"), ("ja", "不適合", "例外承認済みの不適合")],
)
def test_the_summary_counts_waived_fails_apart_from_the_fails_that_count(
    waived_run: Path, lang: str, fail: str, waived: str
) -> None:
    text = page(waived_run, lang)
    totals = text.split('<p class="totals">', 1)[1].split("</p>", 1)[0]
    # Three fails: one waived, one whose waiver expired (it counts), one without a waiver.
    assert f"{fail}: 2<" in totals and f"{waived}: 1<" in totals
    summary = text.split('<table class="summary">', 1)[1].split("</table>", 1)[0]
    assert f'<th class="num waived-fails">{waived}</th>' in summary
    footer = summary.split("<tfoot>", 1)[1]
    # pass, fail, waived fail, inconclusive, not applicable
    assert re.findall(r'<td class="num[^"]*">(\d+)</td>', footer) == ["7", "2", "1", "1", "0"]
    row = summary.split('href="#control-recv-no-outbound"', 1)[1].split("</tr>", 1)[0]
    assert re.findall(r'<td class="num[^"]*">(\d+)</td>', row) == ["0", "0", "1", "0", "0"]
    assert f'<small class="waived-fails">{waived}: 1</small>' in row


def test_a_run_without_waivers_has_no_waiver_column_or_section(tmp_path: Path) -> None:
    run_dir = sample_runs.make_failing(tmp_path / "failing")
    render_reports(run_dir)
    for lang in LANGS:
        collector = parse(run_dir / f"report.{lang}.html")
        assert with_class(collector, "waived-fails") == []
        assert not [a for _, a in collector.tags if a.get("id") == "waiver-warnings"]
        assert not [a for _, a in collector.tags if "data-waiver" in a]
        assert with_class(collector, "waiver") == []


# -- the warnings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lang", "heading", "expired", "unmatched"),
    [
        ("en", "Waiver warnings", "expired", "accepts nothing"),
        ("ja", "例外承認の警告", "期限切れ", "該当する不適合なし"),
    ],
)
def test_the_waivers_files_warnings_are_listed(
    waived_run: Path, lang: str, heading: str, expired: str, unmatched: str
) -> None:
    listed = section(page(waived_run, lang), "waiver-warnings")
    assert f"<h2>{heading}</h2>" in listed
    items = re.findall(r'<li class="waiver-warning">(.*?)</li>', listed, re.S)
    assert len(items) == 2
    assert f"⚠ {expired}</span>" in items[0]
    assert 'href="#finding-send-no-inbound--send-srv"' in items[0]
    assert "expired on 2026-11-25 (approved by CISO Sato)" in items[0]
    assert f"⚠ {unmatched}</span>" in items[1]
    assert (
        "links-encrypted on send-srv is inconclusive: a waiver applies only to a fail" in (items[1])
    )


def test_a_waivers_file_without_warnings_says_so(tmp_path: Path) -> None:
    run_dir = sample_runs.make_failing(tmp_path / "failing")
    only_good = SAMPLE_WAIVERS.split("  - control: send-no-inbound")[0]
    render_reports(run_dir, waivers=load_waivers(write_waivers(tmp_path, only_good)), today=TODAY)
    listed = section(page(run_dir, "en"), "waiver-warnings")
    assert '<p class="waiver-warnings-none">The waivers file raised no warning.</p>' in listed
    assert "<li" not in listed


# -- untrusted text --------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
def test_every_text_of_the_waivers_file_is_escaped(tmp_path: Path, lang: str) -> None:
    run_dir = sample_runs.make_failing(tmp_path / "failing")
    hostile = write_waivers(tmp_path, textwrap.dedent(HOSTILE_WAIVERS))
    render_reports(run_dir, waivers=load_waivers(hostile), today=TODAY)
    text = page(run_dir, lang)
    collector = parse(run_dir / f"report.{lang}.html")
    assert collector.unbalanced == [] and collector.stack == []
    assert not [t for t, _ in collector.tags if t in {"script", "img", "iframe", "b"}]
    assert not [a for _, a in collector.tags if "onmouseover" in a or "onerror" in a]
    block = finding_block(text, "recv-no-outbound", "recv-srv")
    assert "&lt;script&gt;alert(&#34;j&#34;)&lt;/script&gt; &amp; more" in block
    assert "&lt;b onmouseover=&#34;x()&#34;&gt;Sato&lt;/b&gt;" in block
    listed = section(text, "waiver-warnings")
    assert "&lt;img src=x onerror=alert(1)&gt;" in listed  # an unknown control, quoted
    assert "&lt;iframe src=&#34;//evil&#34;&gt;" in listed  # an unknown subject, quoted
