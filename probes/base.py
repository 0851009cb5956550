"""What every probe returns: an attempt with a status and, on failure, a reason.

A failed attempt is not a result (sslyze's lesson): checks that need its facts turn
``inconclusive`` with the reason, they never read a default in its place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, TypeVar

T = TypeVar("T")


class AttemptStatus(StrEnum):
    COMPLETED = "completed"
    ERROR = "error"
    SKIPPED = "skipped"


class ErrorReason(StrEnum):
    UNREACHABLE = "unreachable"  #: no TCP connection / no route
    AUTH_FAILED = "auth-failed"  #: login refused
    HOST_KEY_MISMATCH = "host-key-mismatch"  #: the host key is not the known one
    HOST_KEY_UNKNOWN = "host-key-unknown"  #: no known key for the host
    TIMEOUT = "timeout"  #: a connection or a command took too long
    COMMAND_FAILED = "command-failed"  #: non-zero exit
    PARSE_ERROR = "parse-error"  #: output not in the expected form
    TOOL_MISSING = "tool-missing"  #: nmap, tcpdump, nft, ... absent
    OUT_OF_SCOPE = "out-of-scope"  #: refused by the scope guard
    NOT_PERMITTED = "not-permitted"  #: command not in the probe's allow-list
    INTERNAL = "internal-error"


@dataclass(frozen=True)
class ProbeError:
    reason: ErrorReason
    message: str


@dataclass
class Attempt(Generic[T]):
    """The outcome of one probe step: a value, or an error with its reason."""

    probe: str
    target: str
    status: AttemptStatus
    value: T | None = None
    error: ProbeError | None = None
    evidence: list[str] = field(default_factory=list)  #: "sha256:..." of artifacts stored

    @classmethod
    def ok(cls, probe: str, target: str, value: T, evidence: list[str]) -> Attempt[T]:
        return cls(probe, target, AttemptStatus.COMPLETED, value=value, evidence=evidence)

    @classmethod
    def failed(
        cls,
        probe: str,
        target: str,
        reason: ErrorReason,
        message: str,
        evidence: list[str] | None = None,
    ) -> Attempt[T]:
        return cls(
            probe,
            target,
            AttemptStatus.ERROR,
            error=ProbeError(reason, message),
            evidence=list(evidence or []),
        )

    @property
    def succeeded(self) -> bool:
        return self.status is AttemptStatus.COMPLETED
