"""The console observer while phases report from several threads at once: every line whole,
every phase on the spinner while it runs, nothing lost, nothing raised."""

from __future__ import annotations

import io
import re
import threading

from rich.console import Console

from auditor.audit.observer import SilentObserver
from auditor.cli.progress import ConsoleObserver

PHASES = [f"phase{i}" for i in range(8)]
STEPS = 150


class OverlapDetectingFile(io.StringIO):
    """A console file that notices two writes in progress at once (which is how two lines
    get spliced into garbage) by holding each write open a moment."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = 0
        self.overlaps = 0
        self._guard = threading.Lock()

    def write(self, text: str) -> int:
        with self._guard:
            self.inside += 1
            if self.inside > 1:
                self.overlaps += 1
        try:
            threading.Event().wait(0.0002)  # widen the window a concurrent write would hit
            return super().write(text)
        finally:
            with self._guard:
                self.inside -= 1


def _report_concurrently(observer: ConsoleObserver | SilentObserver) -> None:
    start = threading.Barrier(len(PHASES))

    def phase(name: str) -> None:
        start.wait()
        observer.phase_started(name, f"{name} begins")
        for step in range(STEPS):
            observer.step(name, f"{name} step {step}")
        observer.problem(name, f"{name} saw [red]markup[/red]")
        observer.phase_finished(name, 1.0)

    threads = [threading.Thread(target=phase, args=(n,)) for n in PHASES]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_plain_lines_from_many_threads_stay_whole_and_complete() -> None:
    out = OverlapDetectingFile()
    console = Console(file=out, force_terminal=False, width=200, color_system=None)
    _report_concurrently(ConsoleObserver(console))

    assert out.overlaps == 0
    lines = out.getvalue().splitlines()
    pattern = re.compile(
        r"^\[(phase\d)\] (phase\d) (begins|step \d+)$"
        r"|^! (phase\d): (phase\d) saw \[red\]markup\[/red\]$"
        r"|^✓ (phase\d) \(1\.0 s\)$"
    )
    for line in lines:
        match = pattern.match(line)
        assert match is not None, f"a spliced or garbled line: {line!r}"
        names = {g for g in match.groups() if g and g.startswith("phase")}
        assert len(names) == 1, f"two phases in one line: {line!r}"
    per_phase = len(lines) // len(PHASES)
    assert per_phase == 1 + STEPS + 2 and len(lines) == per_phase * len(PHASES)
    for name in PHASES:
        assert f"[{name}] {name} step {STEPS - 1}" in lines
        assert f"✓ {name} (1.0 s)" in lines


def test_the_spinner_survives_phases_starting_and_ending_in_many_threads() -> None:
    out = OverlapDetectingFile()
    console = Console(file=out, force_terminal=True, width=200, color_system=None)
    observer = ConsoleObserver(console)
    _report_concurrently(observer)  # raises here if the phases' table changed mid-render

    text = out.getvalue()
    for name in PHASES:
        assert text.count(f"✓ {name} (1.0 s)") == 1
    assert observer._running == {}
    assert out.overlaps == 0


def test_the_spinner_shows_every_running_phase_with_its_latest_step() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=120, color_system=None)
    observer = ConsoleObserver(console)
    observer.phase_started("links", "8 s captures")
    observer.phase_started("scan", "port scans")
    observer.step("scan", "scanning 2 IPv4 addresses on carrier-in")
    observer.step("links", "capturing on carrier-out for 8 s")

    shown = Console(file=io.StringIO(), width=120, color_system=None)
    with shown.capture() as capture:
        shown.print(observer._progress())
    assert capture.get().splitlines() == [
        "links: capturing on carrier-out for 8 s",
        "scan: scanning 2 IPv4 addresses on carrier-in",
    ]
    observer.phase_finished("links", 8.0)
    with shown.capture() as capture:
        shown.print(observer._progress())
    assert capture.get().splitlines() == ["scan: scanning 2 IPv4 addresses on carrier-in"]
    observer.phase_finished("scan", 13.0)


def test_the_silent_observer_keeps_every_problem_reported_at_once() -> None:
    observer = SilentObserver()
    _report_concurrently(observer)
    assert sorted(observer.problems) == sorted(f"{n}: {n} saw [red]markup[/red]" for n in PHASES)
