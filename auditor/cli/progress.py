"""An audit's progress on the console: a spinner per phase on a terminal, plain lines
elsewhere (a log, the journal)."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from auditor.cli.terminal import make_console, untrusted


class ConsoleObserver:
    """Progress on stderr: a spinner per phase on a terminal, plain lines otherwise."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or make_console(stderr=True)
        self._status = None if not self.console.is_terminal else self.console.status("")

    def phase_started(self, phase: str, description: str) -> None:
        if self._status is not None:
            self._status.update(_progress(phase, description))
            self._status.start()
        else:
            self.console.print(Text.assemble(f"[{phase}] ", untrusted(description)))

    def step(self, phase: str, message: str) -> None:
        if self._status is not None:
            self._status.update(_progress(phase, message))
        else:
            self.console.print(Text.assemble(f"[{phase}] ", untrusted(message)))

    def problem(self, phase: str, message: str) -> None:
        # Problems quote what hosts answered (banners, errors): data, never markup.
        self.console.print(untrusted(f"! {phase}: {message}", style="yellow"))

    def phase_finished(self, phase: str, seconds: float) -> None:
        if self._status is not None:
            self._status.stop()
        self.console.print(f"[green]✓[/] {phase} ({seconds:.1f} s)", highlight=False)


def _progress(phase: str, message: str) -> Text:
    return Text.assemble((phase, "bold"), ": ", untrusted(message))
