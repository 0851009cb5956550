"""Metrics in the Prometheus text exposition format, as a textfile for node_exporter.

node_exporter's textfile collector reads every ``*.prom`` file in its folder on each scrape, so
the file is replaced atomically (a scrape never sees half of it) and made world-readable.
Verdict counts come from the newest finished run; every status is written for every control,
zeros included, so that a series does not vanish when its count drops to zero.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from auditor.domain.files import write_text_atomically
from auditor.domain.findings import FindingsDocument, Status
from auditor.watch.state import RunRecord, RunState

PREFIX = "auditor_watch"


def escape_label(value: str) -> str:
    """Label values escape backslash, double quote and newline (exposition format)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: dict[str, str]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{escape_label(v)}"' for k, v in pairs.items()) + "}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass
class _Family:
    name: str
    kind: str  #: gauge or counter
    help: str
    samples: list[tuple[dict[str, str], float]]

    def render(self) -> list[str]:
        full = f"{PREFIX}_{self.name}"
        lines = [f"# HELP {full} {self.help}", f"# TYPE {full} {self.kind}"]
        lines += [f"{full}{_labels(labels)} {_number(v)}" for labels, v in self.samples]
        return lines


def _timestamp(moment: datetime | None) -> float | None:
    return None if moment is None else round(moment.timestamp(), 3)


@dataclass(frozen=True)
class WatchSnapshot:
    """What the metrics are made of: the last run, the last finished run and its findings."""

    last_run: RunRecord | None
    last_finished: RunRecord | None
    findings: FindingsDocument | None
    drift_lines: int
    interrupted_runs: int


def render_metrics(snapshot: WatchSnapshot) -> str:
    # Run ids appear only in the info metric: as a label on every gauge they would start a new
    # series at each run and grow the time-series database without bound.
    families: list[_Family] = []
    last = snapshot.last_run
    if last is not None:
        families += [
            _Family(
                "last_run_info",
                "gauge",
                "The newest run: its id and state (always 1).",
                [({"run": last.id, "state": last.state.value}, 1)],
            ),
            _Family(
                "last_run_start_timestamp_seconds",
                "gauge",
                "Unix time at which the newest run started.",
                [({}, _timestamp(last.started) or 0)],
            ),
            _Family(
                "last_run_success",
                "gauge",
                "1 if the newest run finished and wrote its findings, else 0.",
                [({}, 1 if last.state is RunState.FINISHED else 0)],
            ),
        ]
    done = snapshot.last_finished
    if done is not None:
        families += [
            _Family(
                "last_finished_timestamp_seconds",
                "gauge",
                "Unix time at which the newest finished run ended.",
                [({}, _timestamp(done.finished) or 0)],
            ),
            _Family(
                "last_run_duration_seconds",
                "gauge",
                "Duration in seconds of the newest finished run.",
                [({}, done.duration_seconds or 0)],
            ),
        ]
    if snapshot.findings is not None:
        families += [_verdict_family(snapshot.findings), _waived_family(snapshot.findings)]
    families.append(
        _Family(
            "verdict_changes_total",
            "counter",
            "Verdict changes recorded in drift.jsonl.",
            [({}, snapshot.drift_lines)],
        )
    )
    families.append(
        _Family(
            "interrupted_runs",
            "gauge",
            "Runs kept in the state folder that were interrupted before finishing.",
            [({}, snapshot.interrupted_runs)],
        )
    )
    lines = [line for family in families for line in family.render()]
    return "\n".join(lines) + "\n"


def _verdict_family(document: FindingsDocument) -> _Family:
    counts = Counter((f.control, f.status) for f in document.findings)
    controls = sorted({f.control for f in document.findings})
    samples: list[tuple[dict[str, str], float]] = [
        ({"control": control, "status": status.value}, counts.get((control, status), 0))
        for control in controls
        for status in Status
    ]
    return _Family(
        "findings", "gauge", "Findings of the newest finished run, per control and status.", samples
    )


def _waived_family(document: FindingsDocument) -> _Family:
    """Fails a waiver in force accepts, per control: still counted as fails above (a waived
    fail stays a fail); an alert on fails can subtract these to see the ones nobody accepted."""
    waived = Counter(
        f.control
        for f in document.findings
        if f.status is Status.FAIL and f.waiver is not None and f.waiver.in_force
    )
    controls = sorted({f.control for f in document.findings})
    samples: list[tuple[dict[str, str], float]] = [
        ({"control": control}, waived.get(control, 0)) for control in controls
    ]
    return _Family(
        "findings_waived",
        "gauge",
        "Fails of the newest finished run accepted by a waiver in force, per control.",
        samples,
    )


def write_metrics(path: Path, snapshot: WatchSnapshot) -> None:
    # 0644, unlike every other file the watch writes: node_exporter reads it under its own
    # account. It holds counts and run ids only, no host data. The rename replaces a symlink
    # at ``path`` rather than writing through it.
    write_text_atomically(path, render_metrics(snapshot), mode=0o644)
