"""A webhook URL carries its token (in the path or the query): it is taken from a file or the
environment on request, and never logged, stored in a marker or shown in an error."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from auditor.cli import watch as watch_cli
from auditor.watch.alerts import AlertContext, WebhookAlerter, redact_url, send_alerts
from auditor.watch.drift import compute_changes
from auditor.watch.state import StateDir
from tests.unit.watch.watch_helpers import (
    T0,
    Receiver,
    ScriptedAudit,
    baseline_findings,
    document,
    opened_findings,
    watch_app,
)

INVENTORY = Path(__file__).parents[2] / "data" / "inventory" / "lab.yaml"
SECRETS = ("T0SECRETPATH", "s3cr3t-query", "hunter2")
CONTEXT = AlertContext(run="run-2", previous_run="run-1", state_dir="/var/lib/x", hostname="h")
runner = CliRunner()


def _secret_url(receiver: Receiver) -> str:
    return f"{receiver.url}/T0SECRETPATH/B0?token=s3cr3t-query"


def _assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, text


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.example/services/T0/B0/xyz", "https://hooks.example/…"),
        ("https://hooks.example/hook?token=abc", "https://hooks.example/…"),
        ("https://user:hunter2@hooks.example:8443/", "https://hooks.example:8443"),
        ("https://hooks.example", "https://hooks.example"),
        ("https://hooks.example/#frag", "https://hooks.example/…"),
        ("http://[fd00::1]:9000/x", "http://[fd00::1]:9000/…"),
        ("http://h:notaport/x", "<webhook URL>"),
        ("not a url", "<webhook URL>"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_the_alerter_never_shows_its_url() -> None:
    alerter = WebhookAlerter("https://user:hunter2@hooks.example/T0SECRETPATH?token=s3cr3t-query")
    _assert_no_secret(repr(alerter))
    _assert_no_secret(str(alerter))
    assert alerter.label == "https://hooks.example/…"
    for bad in ("ftp://user:hunter2@h/T0SECRETPATH", "https://h/T0SECRETPATH x?token=hunter2"):
        with pytest.raises(ValueError) as refused:
            WebhookAlerter(bad)
        _assert_no_secret(str(refused.value))


@pytest.fixture
def failing_receiver() -> Iterator[Receiver]:
    receiver = Receiver([500, 500, 500])
    yield receiver
    receiver.close()


def test_failed_deliveries_log_and_report_the_redacted_url(
    failing_receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    changes = compute_changes(
        document(baseline_findings()), document(opened_findings()), run="b", previous_run="a", at=T0
    )
    alerter = WebhookAlerter(_secret_url(failing_receiver), retries=2, backoff=0.01)
    with caplog.at_level(logging.INFO):
        (delivery,) = send_alerts([alerter], CONTEXT, changes)
    assert not delivery.delivered and delivery.attempts == 3
    assert "retrying" in caplog.text and "not delivered" in caplog.text
    _assert_no_secret(caplog.text)
    _assert_no_secret(delivery.describe())


def test_a_library_error_quoting_the_url_is_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "https://hooks.example/T0SECRETPATH?token=s3cr3t-query"

    def explode(*args: object) -> tuple[bool, str | None]:
        raise ValueError(f"cannot open {url!r} (token s3cr3t-query, path /T0SECRETPATH)")

    monkeypatch.setattr(WebhookAlerter, "_post_once", explode)
    delivery = WebhookAlerter(url, retries=0).send(CONTEXT, [])
    assert not delivery.delivered and delivery.error
    _assert_no_secret(delivery.describe())


@pytest.mark.parametrize("source", ["env", "file"])
def test_watch_takes_the_url_from_env_or_file_and_never_stores_it(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    source: str,
) -> None:
    audit = ScriptedAudit([baseline_findings(), opened_findings()])
    monkeypatch.setattr(watch_cli, "real_audit", lambda *args, **kwargs: audit)
    receiver = Receiver([500, 200])  # one retry: its warning is logged too
    try:
        if source == "env":
            monkeypatch.setenv("AUDITOR_TEST_HOOK", _secret_url(receiver))
            option = ["--webhook-env", "AUDITOR_TEST_HOOK"]
        else:
            hook_file = tmp_path / "hook.url"
            hook_file.write_text(f"# the team channel\n\n{_secret_url(receiver)}\n")
            hook_file.chmod(0o600)
            option = ["--webhook-file", str(hook_file)]
        state = tmp_path / "state"
        base = ["watch", "--inventory", str(INVENTORY), "--state", str(state), "--once"]
        with caplog.at_level(logging.INFO):
            first = runner.invoke(watch_app(), base + option)
            second = runner.invoke(watch_app(), [*base, *option, "--webhook-retries", "1"])
    finally:
        receiver.close()
    assert first.exit_code == 0, first.output
    assert second.exit_code == 4, second.output  # a verdict changed
    assert len(receiver.bodies) == 2 and receiver.bodies[-1]["event"] == "verdict-change"
    stored = "".join(p.read_text() for p in state.rglob("*") if p.is_file())
    assert "delivered (attempt 2)" in stored
    for text in (stored, caplog.text, first.output, second.output):
        _assert_no_secret(text)
    latest = StateDir(state).latest_finished()
    assert latest is not None and latest.alert_results[0].startswith("http://127.0.0.1:")


def test_webhook_sources_that_give_nothing_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AUDITOR_TEST_HOOK", raising=False)
    empty = tmp_path / "empty.url"
    empty.write_text("# nothing yet\n")
    base = ["watch", "--inventory", str(INVENTORY), "--state", str(tmp_path / "s"), "--once"]
    cases = [
        (["--webhook-env", "AUDITOR_TEST_HOOK"], "AUDITOR_TEST_HOOK: the environment variable"),
        (["--webhook-file", str(tmp_path / "absent")], "absent: cannot read it"),
        (["--webhook-file", str(empty)], "empty.url: no URL in it"),
    ]
    for extra, message in cases:
        result = runner.invoke(watch_app(), base + extra)
        assert result.exit_code == 3, (extra, result.output)
        assert message in result.output, (extra, result.output)


def test_a_webhook_file_others_can_read_is_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hook_file = tmp_path / "hook.url"
    hook_file.write_text("https://hooks.example/T0SECRETPATH\n")
    os.chmod(hook_file, 0o644)
    assert watch_cli._webhook_urls([], [hook_file], []) == ["https://hooks.example/T0SECRETPATH"]
    warned = capsys.readouterr().err
    assert "can be read by other accounts" in warned
    _assert_no_secret(warned)
