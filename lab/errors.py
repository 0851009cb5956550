"""The one error the lab raises for conditions an operator can fix (exit code 3 in the CLI)."""

from __future__ import annotations

from auditor.domain.errors import AuditorError


class LabError(AuditorError, RuntimeError):
    """The lab cannot be built, started or inspected; ``str()`` is a one-line explanation."""
