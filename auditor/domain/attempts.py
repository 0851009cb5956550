"""What every probe returns: an attempt with a status and, on failure, a reason.

A failed attempt is not a result (sslyze's lesson): checks that need its facts turn
``inconclusive`` with the reason, they never read a default in its place.

Three states, each with its own shape:

- ``completed``: a value, no error;
- ``error``: an error, no value;
- ``partial``: an error *and* the value gathered before it (a host collection whose connection
  dropped half way). The topology and facts.json use what there is (``collected``); the checks
  do not (``succeeded`` is false), so a control that needs the host is inconclusive with the
  error, and a missing fact is never read as a clean one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, TypeVar

T = TypeVar("T")


class AttemptStatus(StrEnum):
    COMPLETED = "completed"
    ERROR = "error"
    PARTIAL = "partial"  #: failed part way; the value holds what was gathered before
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
    OVER_BUDGET = "over-budget"  #: the host sent more than its collection budget allows
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

    @classmethod
    def partial(
        cls,
        probe: str,
        target: str,
        value: T,
        reason: ErrorReason,
        message: str,
        *,
        evidence: list[str] | None = None,
    ) -> Attempt[T]:
        """Failed part way: ``value`` is what was gathered before ``message`` happened."""
        attempt: Attempt[T] = cls.failed(probe, target, reason, message, evidence)
        attempt.status, attempt.value = AttemptStatus.PARTIAL, value
        return attempt

    @property
    def succeeded(self) -> bool:
        return self.status is AttemptStatus.COMPLETED

    @property
    def collected(self) -> T | None:
        """What was gathered, complete or partial: for the topology and facts.json, never for
        a verdict (the checks read only attempts that ``succeeded``)."""
        return (
            self.value if self.status in (AttemptStatus.COMPLETED, AttemptStatus.PARTIAL) else None
        )
