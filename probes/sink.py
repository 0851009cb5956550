"""Where probes put raw artifacts. The evidence store (auditor.evidence) implements this;
probes depend only on the protocol, so they can be tested with any store."""

from __future__ import annotations

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
