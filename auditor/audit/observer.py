"""Progress reporting, kept apart from the audit itself (sslyze's observer idea).

The orchestrator reports to an ``AuditObserver``; the command line's observer
(``auditor.cli.progress``) shows it on the console; tests use the silent one.

Network phases run side by side, each in a thread of its own: an observer's methods are
called from several threads at once and must be thread-safe.
"""

from __future__ import annotations

import threading
from typing import Protocol


class AuditObserver(Protocol):
    def phase_started(self, phase: str, description: str) -> None: ...

    def step(self, phase: str, message: str) -> None: ...

    def problem(self, phase: str, message: str) -> None: ...

    def phase_finished(self, phase: str, seconds: float) -> None: ...


class SilentObserver:
    def __init__(self) -> None:
        self.problems: list[str] = []
        self._lock = threading.Lock()

    def phase_started(self, phase: str, description: str) -> None:
        pass

    def step(self, phase: str, message: str) -> None:
        pass

    def problem(self, phase: str, message: str) -> None:
        with self._lock:
            self.problems.append(f"{phase}: {message}")

    def phase_finished(self, phase: str, seconds: float) -> None:
        pass
