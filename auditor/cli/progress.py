"""An audit's progress on the console: a spinner with a line per running phase on a
terminal, plain lines elsewhere (a log, the journal).

Network phases overlap and report from threads of their own. One lock serialises every
call, so a line is always printed whole and the spinner always shows every running phase
with its latest step, never a half-updated mix.
"""

from __future__ import annotations

import threading

from rich.console import Console, Group
from rich.status import Status
from rich.text import Text

from auditor.cli.terminal import make_console, untrusted


class ConsoleObserver:
    """Progress on stderr: a spinner per running phase on a terminal, plain lines otherwise."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or make_console(stderr=True)
        self._status: Status | None = self.console.status("") if self.console.is_terminal else None
        self._running: dict[str, str] = {}  #: phase → its latest step, in start order
        self._lock = threading.RLock()

    def phase_started(self, phase: str, description: str) -> None:
        with self._lock:
            self._running[phase] = description
            if self._status is None:
                self._print_line(phase, description)
            elif len(self._running) == 1:
                self._status.update(self._progress())
                self._status.start()
            else:
                self._status.update(self._progress())

    def step(self, phase: str, message: str) -> None:
        with self._lock:
            if phase in self._running:
                self._running[phase] = message
            if self._status is None:
                self._print_line(phase, message)
            else:
                self._status.update(self._progress())

    def problem(self, phase: str, message: str) -> None:
        # Problems quote what hosts answered (banners, errors): data, never markup.
        with self._lock:
            self.console.print(untrusted(f"! {phase}: {message}", style="yellow"))

    def phase_finished(self, phase: str, seconds: float) -> None:
        with self._lock:
            self._running.pop(phase, None)
            if self._status is not None:
                if self._running:
                    self._status.update(self._progress())
                else:
                    self._status.stop()
            self.console.print(f"[green]✓[/] {phase} ({seconds:.1f} s)", highlight=False)

    def _print_line(self, phase: str, message: str) -> None:
        self.console.print(Text.assemble(f"[{phase}] ", untrusted(message)))

    def _progress(self) -> Group:
        return Group(*(_progress(phase, step) for phase, step in self._running.items()))


def _progress(phase: str, message: str) -> Text:
    return Text.assemble((phase, "bold"), ": ", untrusted(message))
