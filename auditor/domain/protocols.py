"""What probes are handed by whoever runs them: where raw artifacts go, and the scope guard.

The evidence store (auditor.evidence.store) implements ``EvidenceSink`` and the audit's scope
guard (auditor.audit.scope) is a ``ScopeCheck``; probes depend only on these, so they can be
tested with any store and any guard.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol


class EvidenceSink(Protocol):
    def add(
        self,
        content: bytes,
        *,
        probe: str,
        command: str,
        host: str | None,
        started: datetime,
        finished: datetime,
        tool_version: str | None = None,
        media_type: str = "text/plain",
        exit_status: int | None = None,
    ) -> str:
        """Store one artifact (secrets redacted first); return its reference "sha256:<hex>"
        of the stored bytes."""
        ...


#: Called with every address before a packet is sent to it; raises when it is out of scope.
ScopeCheck = Callable[[str], None]
