"""The reports in a real browser (Debian's chromium, headless): they load with no console
message, every control's Japanese and English title is in the DOM, the diagram is drawn with
every host, a failing path is highlighted. Screenshots and PDFs are kept in tests/artifacts/.

Chromium only ever loads file:// URLs here; background networking is off and every host name
resolves to nothing, so nothing can leave the machine even if a page tried.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from auditor.report import render_reports
from auditor.report.html import anchor_for
from policies.model import load_controls
from tests.data.runs import sample_runs

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
SAFE_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
)
#: Chromium logs every console message (and CSP violation) as "...:INFO:CONSOLE(...)] ...".
CONSOLE = re.compile(r":CONSOLE[:(]\d*\)?\] (.*)")


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("chromium is not installed (Debian: apt-get install chromium fonts-noto-cjk)")
    return found


def run_chromium(page: Path, profile: Path, *action: str) -> subprocess.CompletedProcess[str]:
    assert page.is_file()
    return subprocess.run(
        [chromium(), *SAFE_FLAGS, f"--user-data-dir={profile}", *action, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def console_messages(stderr: str) -> list[str]:
    return [m.group(1) for line in stderr.splitlines() if (m := CONSOLE.search(line))]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("runs")
    made = {
        "baseline": sample_runs.make_baseline(base / "baseline"),
        "failing": sample_runs.make_failing(base / "failing"),
    }
    for run_dir in made.values():
        render_reports(run_dir, signer_fingerprint="SHA256:" + "5a" * 32)
    return made


def test_the_console_capture_does_catch_errors(tmp_path: Path) -> None:
    """Without this, 'no console message' could mean the capture is blind."""
    page = tmp_path / "bad.html"
    page.write_text(
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'"></head>'
        '<body><img src="missing.png"><p>x</p></body></html>',
        encoding="utf-8",
    )
    result = run_chromium(page, tmp_path / "profile", "--dump-dom")
    messages = console_messages(result.stderr)
    assert any("Content Security Policy" in m for m in messages), result.stderr[-2000:]


@pytest.mark.parametrize("lang", ["ja", "en"])
@pytest.mark.parametrize("which", ["baseline", "failing"])
def test_the_report_renders_in_chromium(
    runs: dict[str, Path], which: str, lang: str, tmp_path: Path
) -> None:
    run_dir = runs[which]
    page = run_dir / f"report.{lang}.html"
    result = run_chromium(page, tmp_path / "profile", "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    assert console_messages(result.stderr) == []
    dom = result.stdout
    assert "</html>" in dom
    for control in load_controls().values():
        assert control.title.ja in dom, control.id
        assert control.title.en in dom, control.id
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="topology"' in dom
    for host in ("recv-srv", "proc-srv", "send-srv", "term-1", "hospital", "office-gw"):
        assert f'id="node-host-{host}"' in dom, host
    highlighted = re.findall(r'class="path-highlight" id="([^"]+)"', dom)
    if which == "failing":
        assert f"path-{anchor_for('recv-no-outbound', 'recv-srv')}" in highlighted
        assert f"path-{anchor_for('proc-egress-only-via-gateways', 'proc-srv')}" in highlighted
    else:
        assert highlighted == []
    keep_screenshot_and_pdf(page, f"report-{which}-{lang}", tmp_path / "profile2")


def keep_screenshot_and_pdf(page: Path, name: str, profile: Path) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    png, pdf = ARTIFACTS / f"{name}.png", ARTIFACTS / f"{name}.pdf"
    for stale in (png, pdf):
        stale.unlink(missing_ok=True)
    shot = run_chromium(page, profile, "--window-size=1300,2600", f"--screenshot={png}")
    assert shot.returncode == 0 and png.stat().st_size > 50_000, shot.stderr[-2000:]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = run_chromium(page, profile, "--no-pdf-header-footer", f"--print-to-pdf={pdf}")
    assert printed.returncode == 0, printed.stderr[-2000:]
    content = pdf.read_bytes()
    assert content.startswith(b"%PDF")
    assert len(re.findall(rb"/Type\s*/Page[^s]", content)) >= 3, "the print layout has pages"
