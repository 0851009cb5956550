"""`auditor watch` against the running baseline lab (issue 6's proof).

One real watch process audits the lab at a short interval while recv-srv's firewall is opened by
hand and closed again: the drift log records pass → fail and back, an alert reaches a webhook
receiver and a syslog socket on loopback, `diff` shows the new path out of recv-srv, and killing
the watch mid-run then starting it again loses nothing and records no false change.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from auditor.domain.findings import read_findings
from auditor.watch.drift import Change, read_changes
from auditor.watch.state import RunRecord, RunState, StateDir
from lab.runtime import LabState
from tests.lab.labtools import run_in

pytestmark = pytest.mark.lab

KEY = ("recv-no-outbound", "recv-srv")
OPEN_RECV_SRV = (
    "nft add rule inet filter output accept"
    " && ip -4 route add default via 10.98.10.1 && ip -6 route add default via fd98:0:0:10::1"
)
CLOSE_RECV_SRV = (
    "nft -f /etc/nftables.conf; ip -4 route del default 2>/dev/null;"
    " ip -6 route del default 2>/dev/null; true"
)


@dataclass
class Loopback:
    """A webhook receiver and a syslog UDP socket, both on 127.0.0.1."""

    posts: list[dict[str, Any]] = field(default_factory=list)
    syslog: list[str] = field(default_factory=list)
    url: str = ""
    syslog_address: str = ""


@pytest.fixture
def loopback() -> Iterator[Loopback]:
    sink = Loopback()

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            sink.posts.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    sink.url = f"http://127.0.0.1:{server.server_address[1]}/alerts"
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(0.5)
    sink.syslog_address = f"127.0.0.1:{udp.getsockname()[1]}"
    done = threading.Event()

    def read_syslog() -> None:
        while not done.is_set():
            try:
                sink.syslog.append(udp.recv(65536).decode(errors="replace"))
            except TimeoutError:
                continue

    threads = [
        threading.Thread(target=server.serve_forever, daemon=True),
        threading.Thread(target=read_syslog, daemon=True),
    ]
    for thread in threads:
        thread.start()
    yield sink
    done.set()
    server.shutdown()
    server.server_close()
    threads[1].join(2)
    udp.close()


def _watch_cli(*args: str) -> list[str]:
    # The watch commands' own entry point; `auditor watch` is the same once registered.
    return [sys.executable, "-m", "auditor.cli.watch", *args]


def _start_watch(
    inventory: Path, state: Path, every: int, sink: Loopback, log: Path
) -> subprocess.Popen[bytes]:
    command = _watch_cli(
        "watch",
        "--inventory",
        str(inventory),
        "--state",
        str(state),
        "--every",
        f"{every}s",
        "--webhook",
        sink.url,
        "--webhook-retries",
        "2",
        "--syslog",
        sink.syslog_address,
    )
    with log.open("ab") as out:
        # Its own session, so that the kill below reaches whatever the audit started locally.
        return subprocess.Popen(command, stdout=out, stderr=out, start_new_session=True)


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(30)


def _wait(what: str, condition: Callable[[], bool], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(1)
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n--- watch log ---\n{tail}")


def _finished(state: StateDir) -> list[RunRecord]:
    return [r for r in state.records() if r.state is RunState.FINISHED]


def _status(state: StateDir, record: RunRecord) -> str:
    document = read_findings(state.run_dir(record.id) / "findings.json")
    return next(f.status.value for f in document.findings if (f.control, f.subject) == KEY)


def _change_of(state: StateDir, from_: str, to: str) -> Change | None:
    for change in read_changes(state.drift_file):
        if (change.control, change.subject, change.from_, change.to) == (*KEY, from_, to):
            return change
    return None


def _baseline_once(lab: LabState, state: StateDir, log: Path) -> float:
    """A first one-shot run: the baseline, and how long an audit takes here."""
    began = time.monotonic()
    command = _watch_cli(
        "watch", "--inventory", str(lab.inventory_path), "--state", str(state.root), "--once"
    )
    with log.open("ab") as out:
        once = subprocess.run(command, stdout=out, stderr=out, timeout=900, check=False)
    assert once.returncode == 0, log.read_text(errors="replace")[-3000:]
    (baseline,) = _finished(state)
    assert _status(state, baseline) == "pass"
    return time.monotonic() - began


def _open_until_fail_is_seen(state: StateDir, sink: Loopback, every: int, log: Path) -> Change:
    opened = run_in("recv-srv", OPEN_RECV_SRV)
    assert opened.returncode == 0, opened.stderr
    opened_at = time.monotonic()
    try:
        _wait(
            "pass -> fail in drift.jsonl",
            lambda: _change_of(state, "pass", "fail") is not None,
            2 * every,
            log,
        )
        assert time.monotonic() - opened_at <= 2 * every
        went_bad = _change_of(state, "pass", "fail")
        assert went_bad is not None
        _wait(
            "the webhook alert", lambda: any(p["run"] == went_bad.run for p in sink.posts), 30, log
        )
    finally:
        closed = run_in("recv-srv", CLOSE_RECV_SRV)
    assert closed.returncode == 0, closed.stderr
    post = next(p for p in sink.posts if p["run"] == went_bad.run)
    expected = {"control": KEY[0], "subject": KEY[1], "from": "pass", "to": "fail"}
    assert expected.items() <= post["changes"][0].items()
    assert any("recv-no-outbound recv-srv: pass -> fail" in m for m in sink.syslog), sink.syslog
    return went_bad


def _assert_diff_shows_the_new_path(state: StateDir, went_bad: Change) -> None:
    command = _watch_cli(
        "diff", went_bad.previous_run, went_bad.run, "--state", str(state.root), "--json"
    )
    diff = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert diff.returncode == 0, diff.stderr
    result = json.loads(diff.stdout)
    verdicts = [
        (v["control"], v["subject"], v["from"], v["to"])
        for v in result["verdicts"]
        if (v["control"], v["subject"]) == KEY
    ]
    assert verdicts == [(*KEY, "pass", "fail")]
    appeared = [
        p
        for p in result["paths"]
        if p["change"] == "appeared" and (p["control"], p["subject"]) == KEY
    ]
    assert any(
        h.startswith("recv-srv ") and "@carrier-in" in h for p in appeared for h in p["hops"]
    ), result


def _kill_mid_run(
    state: StateDir, watch: subprocess.Popen[bytes], every: int, audit_seconds: float, log: Path
) -> RunRecord:
    _wait(
        "a run in progress",
        lambda: any(r.state is RunState.RUNNING for r in state.records()),
        2 * every,
        log,
    )
    time.sleep(min(10, audit_seconds / 2))
    (running,) = [r for r in state.records() if r.state is RunState.RUNNING]
    _kill(watch)
    return running


def test_watch_sees_recv_srv_opened_and_closed_and_survives_a_kill(
    lab: LabState, loopback: Loopback, tmp_path: Path
) -> None:
    state = StateDir(tmp_path / "state")
    log = tmp_path / "watch.log"
    audit_seconds = _baseline_once(lab, state, log)
    # Room for one audit plus slack between ticks, so the firewall is changed between runs.
    every = max(30, math.ceil(audit_seconds * 1.5) + 10)

    watch = _start_watch(lab.inventory_path, state.root, every, loopback, log)
    try:
        _wait("a first watched run", lambda: len(_finished(state)) >= 2, 2 * every + 60, log)
        assert _status(state, _finished(state)[-1]) == "pass"
        assert read_changes(state.drift_file) == []
        went_bad = _open_until_fail_is_seen(state, loopback, every, log)
        _wait(
            "fail -> pass in drift.jsonl",
            lambda: _change_of(state, "fail", "pass") is not None,
            2 * every,
            log,
        )
        _assert_diff_shows_the_new_path(state, went_bad)
        drift_before = read_changes(state.drift_file)
        runs_before = {r.id for r in _finished(state)}
        killed = _kill_mid_run(state, watch, every, audit_seconds, log)
    finally:
        _kill(watch)
        run_in("recv-srv", CLOSE_RECV_SRV)

    watch = _start_watch(lab.inventory_path, state.root, every, loopback, log)
    try:
        _wait(
            "a run finished after the restart",
            lambda: any(r.started > killed.started for r in _finished(state)),
            2 * every + 60,
            log,
        )
    finally:
        _kill(watch)
    records = {r.id: r for r in state.records()}
    assert records[killed.id].state is RunState.INTERRUPTED
    assert runs_before <= {r.id for r in _finished(state)}  # nothing lost
    after = [r for r in _finished(state) if r.started > killed.started]
    assert after[0].previous_run == max(runs_before, key=lambda i: records[i].started)
    assert read_changes(state.drift_file) == drift_before  # no false change
    history = subprocess.run(
        _watch_cli("history", "--state", str(state.root), "--json"),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    states = {row["id"]: row["state"] for row in json.loads(history.stdout)}
    assert states[killed.id] == "interrupted"
