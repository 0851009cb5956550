"""Progress reporting, kept apart from the audit itself (sslyze's observer idea).

The orchestrator reports to an ``AuditObserver``; the console shows a rich progress display on
a terminal and plain log lines elsewhere; tests use the silent one.
"""

from __future__ import annotations

from typing import Protocol

from rich.console import Console


class AuditObserver(Protocol):
    def phase_started(self, phase: str, description: str) -> None: ...

    def step(self, phase: str, message: str) -> None: ...

    def problem(self, phase: str, message: str) -> None: ...

    def phase_finished(self, phase: str, seconds: float) -> None: ...


class SilentObserver:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def phase_started(self, phase: str, description: str) -> None:
        pass

    def step(self, phase: str, message: str) -> None:
        pass

    def problem(self, phase: str, message: str) -> None:
        self.problems.append(f"{phase}: {message}")

    def phase_finished(self, phase: str, seconds: float) -> None:
        pass


class ConsoleObserver:
    """Progress on stderr: a spinner per phase on a terminal, plain lines otherwise."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._status = None if not self.console.is_terminal else self.console.status("")

    def phase_started(self, phase: str, description: str) -> None:
        if self._status is not None:
            self._status.update(f"[bold]{phase}[/]: {description}")
            self._status.start()
        else:
            self.console.print(f"[{phase}] {description}", highlight=False)

    def step(self, phase: str, message: str) -> None:
        if self._status is not None:
            self._status.update(f"[bold]{phase}[/]: {message}")
        else:
            self.console.print(f"[{phase}] {message}", highlight=False)

    def problem(self, phase: str, message: str) -> None:
        self.console.print(f"[yellow]! {phase}: {message}[/]", highlight=False)

    def phase_finished(self, phase: str, seconds: float) -> None:
        if self._status is not None:
            self._status.stop()
        self.console.print(f"[green]✓[/] {phase} ({seconds:.1f} s)", highlight=False)
