"""Alerts to real receivers on loopback: an HTTP server and syslog UDP/TCP sockets."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from auditor.watch.alerts import (
    AlertContext,
    Delivery,
    SyslogAlerter,
    WebhookAlerter,
    parse_syslog_address,
    redact_url,
    send_alerts,
)
from auditor.watch.drift import Change, compute_changes
from tests.unit.watch.watch_helpers import (
    T0,
    Receiver,
    baseline_findings,
    document,
    opened_findings,
)

CONTEXT = AlertContext(run="run-2", previous_run="run-1", state_dir="/var/lib/x", hostname="h")


def _changes() -> list[Change]:
    return compute_changes(
        document(baseline_findings()),
        document(opened_findings()),
        run="run-2",
        previous_run="run-1",
        at=T0,
    )


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    statuses = getattr(request, "param", [])
    r = Receiver(list(statuses))
    yield r
    r.close()


def test_webhook_posts_the_changes_as_json(receiver: Receiver) -> None:
    delivery = WebhookAlerter(receiver.url, backoff=0.01).send(CONTEXT, _changes())
    assert delivery == Delivery(redact_url(receiver.url), True, 1)
    (body,) = receiver.bodies
    assert body["event"] == "verdict-change" and body["run"] == "run-2"
    assert body["previous_run"] == "run-1"
    changes = body["changes"]
    assert isinstance(changes, list)
    assert changes[0]["control"] == "recv-no-outbound"
    assert (changes[0]["from"], changes[0]["to"]) == ("pass", "fail")
    assert receiver.headers[0]["Content-Type"].startswith("application/json")


@pytest.mark.parametrize("receiver", [[503, 500]], indirect=True)
def test_webhook_retries_server_errors(receiver: Receiver) -> None:
    delivery = WebhookAlerter(receiver.url, retries=3, backoff=0.01).send(CONTEXT, _changes())
    assert delivery.delivered and delivery.attempts == 3
    assert len(receiver.bodies) == 3


@pytest.mark.parametrize("receiver", [[503, 503, 503, 503, 503]], indirect=True)
def test_webhook_retries_are_bounded(receiver: Receiver) -> None:
    delivery = WebhookAlerter(receiver.url, retries=2, backoff=0.01).send(CONTEXT, _changes())
    assert not delivery.delivered and delivery.attempts == 3
    assert delivery.error == "HTTP 503 Service Unavailable"
    assert len(receiver.bodies) == 3


@pytest.mark.parametrize("receiver", [[400]], indirect=True)
def test_webhook_client_error_is_not_retried(receiver: Receiver) -> None:
    delivery = WebhookAlerter(receiver.url, retries=3, backoff=0.01).send(CONTEXT, _changes())
    assert not delivery.delivered and delivery.attempts == 1
    assert len(receiver.bodies) == 1


@pytest.mark.parametrize("receiver", [[302]], indirect=True)
def test_webhook_redirect_is_a_failure_not_followed(receiver: Receiver) -> None:
    delivery = WebhookAlerter(receiver.url, retries=0).send(CONTEXT, _changes())
    assert not delivery.delivered and "302" in (delivery.error or "")
    assert len(receiver.bodies) == 1


def _closed_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_webhook_to_nobody_fails_after_bounded_attempts() -> None:
    url = f"http://127.0.0.1:{_closed_loopback_port()}/hook"
    delivery = WebhookAlerter(url, retries=2, backoff=0.01, timeout=2).send(CONTEXT, _changes())
    assert not delivery.delivered and delivery.attempts == 3
    assert "refused" in (delivery.error or "").lower()


def test_webhook_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="http or https"):
        WebhookAlerter("file:///etc/passwd")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:5514", (("127.0.0.1", 5514), socket.SOCK_DGRAM)),
        ("udp://127.0.0.1", (("127.0.0.1", 514), socket.SOCK_DGRAM)),
        ("tcp://[::1]:601", (("::1", 601), socket.SOCK_STREAM)),
        ("/dev/log", ("/dev/log", socket.SOCK_DGRAM)),
    ],
)
def test_syslog_addresses(text: str, expected: object) -> None:
    assert parse_syslog_address(text) == expected


def test_syslog_bad_address() -> None:
    with pytest.raises(ValueError, match="scheme"):
        parse_syslog_address("http://127.0.0.1:514")


def test_syslog_over_udp_reaches_a_loopback_socket() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        sink.settimeout(5)
        port = sink.getsockname()[1]
        back = compute_changes(
            document(opened_findings()),
            document(baseline_findings()),
            run="run-3",
            previous_run="run-2",
            at=T0,
        )
        delivery = SyslogAlerter(f"127.0.0.1:{port}", facility="local3").send(
            CONTEXT, _changes() + back
        )
        assert delivery.delivered
        first, _ = sink.recvfrom(65536)
        second, _ = sink.recvfrom(65536)
    # <PRI> = facility × 8 + severity: local3 = 19; warning = 4 (to fail), info = 6 (to pass).
    text = first.decode().rstrip("\x00")
    assert text.startswith(f"<{19 * 8 + 4}>auditor-watch: verdict changed: ")
    assert "recv-no-outbound recv-srv: pass -> fail (run run-2" in text
    assert second.decode().startswith(f"<{19 * 8 + 6}>auditor-watch: ")
    assert "fail -> pass" in second.decode()


def test_syslog_over_tcp_reaches_a_loopback_listener() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(5)
        port = listener.getsockname()[1]
        result: list[Delivery] = []
        sender = threading.Thread(
            target=lambda: result.append(
                SyslogAlerter(f"tcp://127.0.0.1:{port}").send(CONTEXT, _changes())
            )
        )
        sender.start()
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(5)
            sender.join(5)
            data = conn.recv(65536)
    assert result and result[0].delivered
    assert b"recv-no-outbound recv-srv: pass -> fail" in data
    assert data.startswith(f"<{3 * 8 + 4}>".encode())  # daemon.warning


def test_syslog_tcp_to_nobody_is_a_failed_delivery() -> None:
    delivery = SyslogAlerter(f"tcp://127.0.0.1:{_closed_loopback_port()}").send(CONTEXT, _changes())
    assert not delivery.delivered and delivery.error


def test_one_failing_target_does_not_stop_the_others(receiver: Receiver) -> None:
    dead = WebhookAlerter(f"http://127.0.0.1:{_closed_loopback_port()}/", retries=0)
    deliveries = send_alerts([dead, WebhookAlerter(receiver.url)], CONTEXT, _changes())
    assert [d.delivered for d in deliveries] == [False, True]
    assert send_alerts([WebhookAlerter(receiver.url)], CONTEXT, []) == []
    assert len(receiver.bodies) == 1
