"""The root of every error the auditor raises on purpose.

Bad input (an inventory, a scenario, a run folder, a key), a refused target, an unusable
evidence store, a host that answered nonsense: each is an ``AuditorError`` with a message that
names the problem. The command line catches the root and exits 3 with that message; anything
else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class AuditorError(Exception):
    """An error the auditor raises on purpose, with a message meant for its user."""
