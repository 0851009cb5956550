"""``auditor watch``, ``auditor history`` and ``auditor diff``: argument parsing and exit codes
only; the work is in ``auditor.watch``. The main CLI calls ``register(app)``."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from auditor.cli.exitcodes import ExitCode
from auditor.cli.progress import ConsoleObserver
from auditor.cli.terminal import make_console, say, untrusted
from auditor.domain.findings import Status
from auditor.watch.alerts import Alerter, SyslogAlerter, WebhookAlerter
from auditor.watch.diff import RunDiff, RunNotFoundError, diff_runs, load_run, resolve_run
from auditor.watch.drift import read_changes
from auditor.watch.schedule import (
    IntervalSchedule,
    Schedule,
    ScheduleError,
    parse_cron,
    parse_duration,
)
from auditor.watch.state import Retention, RunRecord, StateDir
from auditor.watch.watcher import StopRequested, Watcher, real_audit

_STATUS_COLUMNS = [Status.PASS, Status.FAIL, Status.INCONCLUSIVE, Status.NOT_APPLICABLE]


def _fail(message: str) -> typer.Exit:
    say(make_console(stderr=True), "error", message)
    return typer.Exit(ExitCode.CANNOT_RUN)


def _schedule(every: str | None, cron: str | None, once: bool) -> Schedule | None:
    chosen = [name for name, value in (("--every", every), ("--cron", cron)) if value]
    if once:
        chosen.append("--once")
    if len(chosen) != 1:
        raise _fail("give exactly one of --every DURATION, --cron EXPR or --once")
    try:
        if every:
            return IntervalSchedule(parse_duration(every), anchor=datetime.now(UTC))
        if cron:
            return parse_cron(cron)
    except ScheduleError as exc:
        raise _fail(str(exc)) from exc
    return None


def _webhooks_from_file(path: Path) -> list[str]:
    """The URLs in ``path``: one a line; blank lines and lines starting with # are skipped. A
    file others can read is used, with a warning: the URL is meant to stay secret."""
    try:
        text = path.read_text(encoding="utf-8")
        if os.stat(path).st_mode & 0o077:
            say(
                make_console(stderr=True),
                "warning",
                f"{path} can be read by other accounts; the webhook URL in it is a secret "
                "(chmod 600)",
                style="bold yellow",
            )
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise _fail(f"--webhook-file {path}: cannot read it: {reason}") from exc
    urls = [line.strip() for line in text.splitlines()]
    urls = [u for u in urls if u and not u.startswith("#")]
    if not urls:
        raise _fail(f"--webhook-file {path}: no URL in it")
    return urls


def _webhook_from_env(name: str) -> str:
    url = os.environ.get(name, "").strip()
    if not url:
        raise _fail(f"--webhook-env {name}: the environment variable is not set or empty")
    return url


def _webhook_urls(urls: list[str], files: list[Path], envs: list[str]) -> list[str]:
    """Every webhook URL, from the command line, files and environment variables. The file and
    the variable keep the URL (and its token) out of the process list and shell history."""
    found = list(urls)
    for path in files:
        found += _webhooks_from_file(path)
    found += [_webhook_from_env(name) for name in envs]
    return found


def _alerters(
    webhooks: list[str], retries: int, timeout: float, syslog: str | None, facility: str
) -> list[Alerter]:
    alerters: list[Alerter] = []
    try:
        alerters += [WebhookAlerter(u, retries=retries, timeout=timeout) for u in webhooks]
        if syslog:
            alerters.append(SyslogAlerter(syslog, facility=facility))
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    return alerters


def _retention(keep: int | None, max_age: str | None) -> Retention:
    try:
        return Retention(keep=keep, max_age=parse_duration(max_age) if max_age else None)
    except (ScheduleError, ValueError) as exc:
        raise _fail(str(exc)) from exc


def _install_stop_handlers(watcher: Watcher, stop: threading.Event) -> None:
    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()
        # Abandon an audit in progress at once (it is marked interrupted); between runs the
        # loop simply sees the event.
        if watcher.auditing:
            raise StopRequested(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def watch_command(
    *,
    inventory: Annotated[Path, typer.Option("--inventory", "-i", help="The inventory (YAML).")],
    state: Annotated[
        Path, typer.Option("--state", help="The state folder: runs, drift.jsonl, lock.")
    ],
    every: Annotated[
        str | None, typer.Option(help="Run at this interval: 90s, 15m, 1h, 1h30m, 1d.")
    ] = None,
    cron: Annotated[
        str | None, typer.Option(help="Run on this cron expression (five fields, local time).")
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="One run, then exit: 4 if a verdict changed.")
    ] = False,
    keep: Annotated[int | None, typer.Option(help="Keep at most this many runs.")] = None,
    max_age: Annotated[
        str | None, typer.Option(help="Delete runs older than this (e.g. 90d).")
    ] = None,
    webhook: Annotated[
        list[str] | None, typer.Option(help="POST verdict changes as JSON here (repeatable).")
    ] = None,
    webhook_file: Annotated[
        list[Path] | None,
        typer.Option(
            help="Read webhook URLs from this file, one a line (repeatable); keeps a token in "
            "the URL out of the process list."
        ),
    ] = None,
    webhook_env: Annotated[
        list[str] | None,
        typer.Option(help="Take a webhook URL from this environment variable (repeatable)."),
    ] = None,
    webhook_retries: Annotated[int, typer.Option(help="Retries per webhook alert.")] = 3,
    webhook_timeout: Annotated[float, typer.Option(help="Seconds per webhook attempt.")] = 10.0,
    syslog: Annotated[
        str | None,
        typer.Option(help="Send verdict changes to syslog: /dev/log, host:port, tcp://host:port."),
    ] = None,
    syslog_facility: Annotated[str, typer.Option(help="Syslog facility.")] = "daemon",
    metrics: Annotated[
        Path | None,
        typer.Option(help="Prometheus textfile to write (default STATE/metrics.prom)."),
    ] = None,
    capture_seconds: Annotated[
        float, typer.Option(help="Seconds of capture on each external network.")
    ] = 8.0,
    max_runs: Annotated[
        int | None, typer.Option(help="Stop after this many runs (tests, trials).")
    ] = None,
    waivers: Annotated[
        Path | None,
        typer.Option(
            "--waivers",
            "-w",
            help="Accepted fails (YAML, docs/waivers.md), read again and applied at each run.",
        ),
    ] = None,
) -> None:
    """Run the audit on a schedule; record every verdict change and alert on it."""
    schedule = _schedule(every, cron, once)
    if not inventory.is_file():
        raise _fail(f"{inventory}: no such inventory file")
    _check_waivers(waivers)
    logging.getLogger("auditor.watch").setLevel(logging.INFO)
    watcher = Watcher(
        inventory=inventory,
        state=StateDir(state),
        audit=real_audit(
            capture_seconds, ConsoleObserver(make_console(stderr=True)), waivers=waivers
        ),
        alerters=_alerters(
            _webhook_urls(webhook or [], webhook_file or [], webhook_env or []),
            webhook_retries,
            webhook_timeout,
            syslog,
            syslog_facility,
        ),
        retention=_retention(keep, max_age),
        metrics_file=metrics,
    )
    stop = threading.Event()
    _install_stop_handlers(watcher, stop)
    try:
        if schedule is None:
            raise typer.Exit(_once_exit(watcher))
        watcher.serve(schedule, stop, max_runs=max_runs)
    except StopRequested as exc:
        signum = signal.Signals[str(exc)]
        raise typer.Exit(128 + signum) from exc


def _check_waivers(waivers: Path | None) -> None:
    """Refuse a malformed waivers file at the start, not at the first run: each run reads it
    again, so an edit takes effect at the next run (and a broken edit fails that run)."""
    from auditor.domain.waivers import load_waivers
    from auditor.domain.yamlsource import SourceError

    if waivers is None:
        return
    try:
        load_waivers(waivers)
    except SourceError as exc:
        raise _fail(f"invalid waivers:\n{exc}") from exc


def _once_exit(watcher: Watcher) -> ExitCode:
    outcome = watcher.run_once()
    if outcome.skipped is not None:
        return ExitCode.BUSY
    if outcome.record is None or outcome.record.state.value != "finished":
        return ExitCode.CANNOT_RUN
    for change in outcome.changes:
        make_console().print(untrusted(f"changed: {change.describe()}"))
    return ExitCode.CHANGED if outcome.changes else ExitCode.OK


# -- history ----------------------------------------------------------------------------------


def _history_rows(state: StateDir) -> list[dict[str, object]]:
    changes: dict[str, int] = {}
    for change in read_changes(state.drift_file):
        changes[change.run] = changes.get(change.run, 0) + 1
    return [_history_row(state, r, changes.get(r.id, 0)) for r in state.records()]


def _history_row(state: StateDir, record: RunRecord, changes: int) -> dict[str, object]:
    return {
        "id": record.id,
        "state": state.effective_state(record).value,
        "started": record.started.isoformat(),
        "finished": record.finished.isoformat() if record.finished else None,
        "duration_seconds": record.duration_seconds,
        "counts": {s.value: record.counts.get(s.value, 0) for s in _STATUS_COLUMNS},
        "changes": changes,
        "previous_run": record.previous_run,
        "error": record.error,
    }


def history_command(
    state: Annotated[Path, typer.Option("--state", help="The state folder of `auditor watch`.")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
) -> None:
    """The watched runs, oldest first, with their verdict counts and changes."""
    if not (state / "runs").is_dir():
        raise _fail(f"{state}: not a watch state folder (no runs/)")
    rows = _history_rows(StateDir(state))
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    table = Table(title=f"Runs in {state}")
    table.add_column("run", no_wrap=True)  # an id must stay copyable
    table.add_column("state")
    table.add_column("started", no_wrap=True)
    for column in ("seconds", *_STATUS_COLUMNS, "changes"):
        table.add_column(str(column), justify="right")
    for row in rows:
        counts = row["counts"]
        assert isinstance(counts, dict)
        duration = row["duration_seconds"]
        table.add_row(
            str(row["id"]),
            str(row["state"]),
            str(row["started"])[:19],
            f"{duration:.0f}" if isinstance(duration, float) else "-",
            *(str(counts[s.value]) for s in _STATUS_COLUMNS),
            str(row["changes"]),
        )
    make_console().print(table)


# -- diff -------------------------------------------------------------------------------------


def diff_command(
    run_a: Annotated[str, typer.Argument(help="The earlier run: a folder, or an id with --state.")],
    run_b: Annotated[str, typer.Argument(help="The later run: a folder, or an id with --state.")],
    state: Annotated[
        Path | None, typer.Option("--state", help="Look runs up by id in this state folder.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of text.")] = False,
) -> None:
    """Verdicts that changed between two runs, and the reachability paths and topology edges
    that appeared or disappeared."""
    try:
        a = load_run(resolve_run(run_a, state))
        b = load_run(resolve_run(run_b, state))
    except RunNotFoundError as exc:
        raise _fail(str(exc)) from exc
    result = diff_runs(a, b)
    if as_json:
        typer.echo(json.dumps(result.to_json(), ensure_ascii=False, indent=2))
    else:
        print_diff(make_console(), result)


def print_diff(console: Console, result: RunDiff) -> None:
    console.print(
        Text.assemble(untrusted(result.run_a, "bold"), " → ", untrusted(result.run_b, "bold"))
    )
    if result.verdicts:
        table = Table(title="Verdicts that changed")
        for column in ("control", "subject", "from", "to"):
            table.add_column(column)
        for change in result.verdicts:
            table.add_row(
                untrusted(change.control),
                untrusted(change.subject),
                str(change.from_ or "absent"),
                str(change.to or "absent"),
            )
        console.print(table)
    else:
        console.print("No verdict changed.")
    for path in result.paths:
        sign = "+" if path.change == "appeared" else "-"
        certainty = "" if path.certain else " (uncertain)"
        console.print(
            untrusted(
                f"{sign} path {path.change} [{path.source}] {path.control} {path.subject}"
                f"{certainty}: {' → '.join(path.hops)}"
            )
        )
        for packets in path.packets[:3]:
            console.print(untrusted(f"    packets: {packets}"))
        for rule in path.rules[:6]:
            console.print(untrusted(f"    {rule}"))
        for reason in path.reasons:
            console.print(untrusted(f"    uncertain because: {reason}"))
    for edge in result.edges:
        sign = "+" if edge.change == "appeared" else "-"
        used = f" (paths of {', '.join(edge.controls)})" if edge.controls else ""
        console.print(
            untrusted(
                f"{sign} edge {edge.change} [{edge.source}] {edge.edge[0]} → {edge.edge[1]}{used}"
            )
        )
    for note in result.notes:
        console.print(untrusted(f"note: {note}"))


def register(app: typer.Typer) -> None:
    app.command("watch")(watch_command)
    app.command("history")(history_command)
    app.command("diff")(diff_command)


def main() -> None:
    """``python -m auditor.cli.watch``: the three commands on their own, as `auditor` runs them."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    register(app)
    app()


if __name__ == "__main__":
    main()
