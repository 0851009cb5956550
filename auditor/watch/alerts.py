"""Alerts on a verdict change: a webhook (JSON POST) and syslog.

Each target gets the changes of one run and returns a ``Delivery`` (delivered or not, after how
many attempts, and why not): an alert that cannot be delivered is logged and recorded in the
run's marker, and never stops the watch. The third alert, a non-zero exit for one-shot use, is
the CLI's (``auditor watch --once``).

A webhook URL is a secret (chat services put the token in the path or the query): it is only
ever shown as ``redact_url`` makes it, scheme, host and port, in logs, in the marker's
``alert_results``, in error messages and in the alerter's repr.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Protocol

from auditor.watch.drift import Change

log = logging.getLogger(__name__)

USER_AGENT = "anon-infra-auditor-watch"


@dataclass(frozen=True)
class Delivery:
    target: str
    delivered: bool
    attempts: int
    error: str | None = None

    def describe(self) -> str:
        if self.delivered:
            return f"{self.target}: delivered (attempt {self.attempts})"
        return f"{self.target}: not delivered after {self.attempts} attempts: {self.error}"


@dataclass(frozen=True)
class AlertContext:
    """What every alert says besides the changes: which run, compared with which, where."""

    run: str
    previous_run: str
    state_dir: str
    hostname: str


class Alerter(Protocol):
    def send(self, context: AlertContext, changes: list[Change]) -> Delivery: ...


def alert_payload(context: AlertContext, changes: list[Change]) -> dict[str, object]:
    return {
        "source": "anon-infra-auditor",
        "event": "verdict-change",
        "run": context.run,
        "previous_run": context.previous_run,
        "state_dir": context.state_dir,
        "hostname": context.hostname,
        "changes": [c.model_dump(mode="json", by_alias=True) for c in changes],
    }


# -- webhook ----------------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """``url`` without what may be a secret: user and password, path, query and fragment.
    ``https://user:pw@hooks.example:8443/T0/B0/xyz?token=1`` -> ``https://hooks.example:8443/…``.
    Whatever cannot be parsed becomes ``<webhook URL>``."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<webhook URL>"
    if not host or any(c.isspace() or not c.isprintable() for c in host):
        return "<webhook URL>"
    shown = f"[{host}]" if ":" in host else host
    if port is not None:
        shown += f":{port}"
    hidden = parts.path not in ("", "/") or parts.query or parts.fragment
    return f"{parts.scheme}://{shown}/…" if hidden else f"{parts.scheme}://{shown}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect would turn the POST into a GET elsewhere: treat it as a failure instead."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def _is_loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class WebhookAlerter:
    """POST the changes as JSON; retry on network errors, 5xx, 408 and 429, a bounded number of
    times with doubling waits. Environment proxies apply, except to a loopback receiver.

    ``url`` is never shown: ``label`` (the redacted URL) stands for it everywhere."""

    url: str = field(repr=False)
    retries: int = 3
    timeout: float = 10.0
    backoff: float = 1.0  #: seconds before the first retry; doubled each time
    max_backoff: float = 30.0

    def __post_init__(self) -> None:
        scheme = urllib.parse.urlsplit(self.url).scheme
        if scheme not in ("http", "https"):
            raise ValueError(f"webhook URL must be http or https, not {self.label!r}")
        if any(c.isspace() or not c.isprintable() for c in self.url):
            # Refused here: urllib's own error for it would quote the whole URL.
            raise ValueError(f"webhook URL {self.label} holds spaces or control characters")
        if self.retries < 0:
            raise ValueError("retries must not be negative")

    @property
    def label(self) -> str:
        return redact_url(self.url)

    def __repr__(self) -> str:
        # send_alerts names a target that raised by its repr.
        return f"WebhookAlerter({self.label})"

    def _scrub(self, text: str) -> str:
        """An error message, with the URL and its secret parts (should a library have quoted
        them) redacted."""
        text = text.replace(self.url, self.label)
        parts = urllib.parse.urlsplit(self.url)
        pieces = [parts.path, parts.query, parts.fragment, parts.username, parts.password]
        # A token may also be quoted alone: a query value or one segment of the path.
        pieces += [v for _, v in urllib.parse.parse_qsl(parts.query)]
        pieces += parts.path.split("/")
        for piece in sorted((p for p in pieces if p and len(p) >= 4), key=len, reverse=True):
            text = text.replace(piece, "…")
        return text

    def _opener(self) -> urllib.request.OpenerDirector:
        handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
        if _is_loopback(self.url):
            handlers.append(urllib.request.ProxyHandler({}))
        return urllib.request.build_opener(*handlers)

    def send(self, context: AlertContext, changes: list[Change]) -> Delivery:
        body = json.dumps(alert_payload(context, changes), ensure_ascii=False).encode("utf-8")
        opener = self._opener()
        wait = self.backoff
        attempt = 0
        while True:
            attempt += 1
            try:
                retry, error = self._post_once(opener, body)
            except Exception as exc:  # caught here, not in send_alerts: its text may hold the URL
                retry, error = False, f"{type(exc).__name__}: {exc}"
            if error is None:
                return Delivery(self.label, True, attempt)
            error = self._scrub(error)
            if not retry or attempt > self.retries:
                return Delivery(self.label, False, attempt, error)
            log.warning("webhook %s: attempt %d failed (%s); retrying", self.label, attempt, error)
            time.sleep(wait)
            wait = min(wait * 2, self.max_backoff)

    def _post_once(
        self, opener: urllib.request.OpenerDirector, body: bytes
    ) -> tuple[bool, str | None]:
        """(worth retrying, error or None)."""
        request = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT},
        )
        try:
            with opener.open(request, timeout=self.timeout) as response:
                response.read(65536)
                return False, None
        except urllib.error.HTTPError as exc:
            retry = exc.code >= 500 or exc.code in (408, 429)
            return retry, f"HTTP {exc.code} {exc.reason}"
        except (urllib.error.URLError, OSError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            return True, f"{type(reason).__name__}: {reason}"


# -- syslog -----------------------------------------------------------------------------------

_FACILITIES = logging.handlers.SysLogHandler.facility_names


def parse_syslog_address(text: str) -> tuple[str | tuple[str, int], socket.SocketKind]:
    """``/dev/log`` (a Unix socket), ``host:port`` or ``udp://host:port`` (UDP),
    ``tcp://host:port`` (TCP); IPv6 as ``[::1]:514``. The port defaults to 514."""
    if text.startswith("/"):
        return text, socket.SOCK_DGRAM
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "udp", text
    if scheme not in ("udp", "tcp"):
        raise ValueError(f"syslog address {text!r}: scheme must be udp or tcp")
    parts = urllib.parse.urlsplit(f"//{rest}")
    if not parts.hostname:
        raise ValueError(f"syslog address {text!r}: no host")
    try:
        port = parts.port or 514
    except ValueError as exc:
        raise ValueError(f"syslog address {text!r}: {exc}") from exc
    kind = socket.SOCK_STREAM if scheme == "tcp" else socket.SOCK_DGRAM
    return (parts.hostname, port), kind


def syslog_message(context: AlertContext, change: Change) -> str:
    return (
        f"verdict changed: {change.describe()} (run {context.run}, was {context.previous_run}"
        f", state {context.state_dir}): {change.summary}"
    )


@dataclass(frozen=True)
class SyslogAlerter:
    """One syslog message per change, at warning when the new verdict is not a pass."""

    address: str
    facility: str = "daemon"
    ident: str = "auditor-watch"

    def __post_init__(self) -> None:
        parse_syslog_address(self.address)
        if self.facility not in _FACILITIES:
            raise ValueError(f"unknown syslog facility {self.facility!r}")

    def send(self, context: AlertContext, changes: list[Change]) -> Delivery:
        address, kind = parse_syslog_address(self.address)
        try:
            handler = logging.handlers.SysLogHandler(
                address=address, facility=_FACILITIES[self.facility], socktype=kind
            )
        except OSError as exc:
            return Delivery(f"syslog {self.address}", False, 1, f"{type(exc).__name__}: {exc}")
        handler.ident = f"{self.ident}: "
        failures: list[str] = []

        def note_failure(record: logging.LogRecord) -> None:
            # SysLogHandler reports a failed send by calling handleError inside its except
            # block; keep the reason instead of printing a traceback to stderr.
            failures.append(f"{record.msg[:40]}...: {sys.exc_info()[1]}")

        handler.handleError = note_failure  # type: ignore[method-assign]
        try:
            for change in changes:
                level = (
                    logging.INFO
                    if change.to is not None and change.to == "pass"
                    else logging.WARNING
                )
                record = logging.LogRecord(
                    "auditor.watch", level, __file__, 0, syslog_message(context, change), None, None
                )
                handler.handle(record)
        finally:
            handler.close()
        if failures:
            return Delivery(f"syslog {self.address}", False, 1, "; ".join(failures[:3]))
        return Delivery(f"syslog {self.address}", True, 1)


def send_alerts(
    alerters: list[Alerter], context: AlertContext, changes: list[Change]
) -> list[Delivery]:
    """Every target gets the run's changes; one failing never keeps the others from theirs."""
    if not changes:
        return []
    deliveries = []
    for alerter in alerters:
        try:
            delivery = alerter.send(context, changes)
        except Exception as exc:  # an alert target must never stop the watch
            delivery = Delivery(repr(alerter), False, 1, f"{type(exc).__name__}: {exc}")
        if not delivery.delivered:
            log.warning("alert %s", delivery.describe())
        deliveries.append(delivery)
    return deliveries
