"""The consoles every command prints through, and the one way host text reaches them.

Two rules, for every CLI:

- **Off a terminal, no wrapping.** Rich wraps at the console's width, which off a terminal is
  ``COLUMNS`` or 80. An error naming a file, cut in the middle of a word in a log file, cron mail
  or the journal, can neither be grepped nor copied. Off a terminal messages are printed as
  single lines (``soft_wrap``); tables are still laid out, at a fixed width of 120 columns
  (wider only when ``COLUMNS`` asks for more), so a narrow or absent terminal setting does not
  squeeze a log's tables into uselessness.
- **Untrusted text is data.** Anything that came from an audited host, a run folder or a file
  (error messages quote them) is passed as :class:`rich.text.Text`, never as markup, and its
  control characters are shown escaped: a banner ``SSH-[/]-x`` is printed, not parsed, and an
  escape sequence cannot move the cursor or retitle the auditor's terminal.
"""

from __future__ import annotations

import os
import re

from rich.console import Console
from rich.text import Text

#: The width of tables off a terminal (COLUMNS may widen it, never narrow it).
PLAIN_WIDTH = 120

# C0 controls but tab and newline, DEL, C1 controls, and the format characters that reorder or
# hide text (bidirectional overrides and isolates, zero-width joiners): each is shown as an
# escape, so what an auditor reads is what the host sent.
_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
)


def make_console(*, stderr: bool = False) -> Console:
    """A console for one command's output (stdout) or its messages (stderr)."""
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:
        console.soft_wrap = True
        console.width = max(PLAIN_WIDTH, _columns())
    return console


def _columns() -> int:
    """COLUMNS when it asks for more than the fixed width (a log read on a wide screen)."""
    try:
        return int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        return 0


def clean(text: object) -> str:
    """``text`` as a string whose control and reordering characters are written as escapes."""
    return _UNSAFE.sub(_escape, str(text))


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def untrusted(text: object, style: str = "") -> Text:
    """Host or file text for a table cell or a message: never markup, controls escaped."""
    return Text(clean(text), style=style)


def say(console: Console, label: str, message: object, style: str = "bold red") -> None:
    """``label: message`` on one line, the label styled and the message printed as data."""
    console.print(Text.assemble((f"{label}:", style), " ", untrusted(message)))
