"""Real findings documents for the watch tests, made with auditor.domain.findings' own models."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import typer

from auditor.cli import watch as watch_cli
from auditor.domain.findings import Finding, FindingsDocument, Hop, RunInfo, Status, write_findings

T0 = datetime(2025, 4, 1, 9, 0, tzinfo=UTC)

CLAUSES = {
    "recv-no-outbound": ["施行規則第6条第4号ニ(2) (2018)"],
    "send-no-inbound": ["施行規則第6条第4号ニ(3) (2018)"],
    "inventory-complete": ["施行規則第6条第4号ホ (2018)"],
}

OPEN_PATH = [
    Hop(host="recv-srv", network="carrier-in", direction="route", rule="default via 10.98.10.1"),
    Hop(
        host="recv-srv",
        network="carrier-in",
        direction="output",
        rule="policy accept",
        rule_ref="inet filter output",
    ),
    Hop(host="recv-srv", network="carrier-in", direction="link", rule="delivered on carrier-in"),
]


def finding(control: str, subject: str, status: Status, path: list[Hop] | None = None) -> Finding:
    return Finding(
        control=control,
        subject=subject,
        status=status,
        clauses=CLAUSES.get(control, ["施行規則第6条 (2018)"]),
        summary=f"{subject}: {control} is {status.value}",
        summary_ja=f"{subject}: {control} は {status.value}",
        path=path or [],
        evidence=["sha256:" + "ab" * 32],
    )


def baseline_findings() -> list[Finding]:
    return [
        finding("recv-no-outbound", "recv-srv", Status.PASS),
        finding("send-no-inbound", "send-srv", Status.PASS),
        finding("inventory-complete", "line-recv", Status.PASS),
    ]


def opened_findings() -> list[Finding]:
    """recv-srv can send outward (its firewall was opened by hand)."""
    return [
        finding("recv-no-outbound", "recv-srv", Status.FAIL, OPEN_PATH),
        finding("send-no-inbound", "send-srv", Status.PASS),
        finding("inventory-complete", "line-recv", Status.PASS),
    ]


def document(
    findings: list[Finding], started: datetime = T0, run_id: str = "r"
) -> FindingsDocument:
    return FindingsDocument(
        run=RunInfo(
            id=run_id,
            started=started.isoformat(),
            finished=(started + timedelta(seconds=30)).isoformat(),
        ),
        findings=findings,
    )


class ScriptedAudit:
    """An audit runner that writes the next of a list of real findings documents, as
    run_audit does (findings.json in the run folder). Used where the real audit, which needs
    the lab, cannot run; the lab test runs the real one."""

    def __init__(self, script: list[list[Finding]]) -> None:
        self.script = list(script)
        self.calls: list[Path] = []

    def __call__(self, inventory: Path, out_dir: Path) -> None:
        self.calls.append(out_dir)
        findings = self.script.pop(0)
        write_findings(
            out_dir / "findings.json", document(findings, datetime.now(UTC), out_dir.name)
        )


class Receiver:
    """A loopback HTTP receiver answering each POST with the next scripted status."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.bodies: list[dict[str, object]] = []
        self.headers: list[dict[str, str]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                receiver.bodies.append(json.loads(self.rfile.read(length)))
                receiver.headers.append(dict(self.headers))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                if status in (301, 302, 307):
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def watch_app() -> typer.Typer:
    """The watch, history and diff commands under a group, as auditor's own app has them."""
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """A group, as auditor's own app is."""

    watch_cli.register(app)
    return app
