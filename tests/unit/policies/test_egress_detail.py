"""The egress side's pass detail names only the protocols that really ran."""

from __future__ import annotations

from policies.empirical import EgressAttempt, EgressObservation
from policies.support.paths import attempts_by_protocol


def attempt(proto: str, executed: bool, outcome: str) -> EgressAttempt:
    port = None if proto == "icmp" else 443
    return EgressAttempt(proto, "10.98.10.1", port, executed, outcome)  # type: ignore[arg-type]


def test_a_protocol_whose_command_never_ran_is_named_as_such() -> None:
    observation = EgressObservation(
        "recv-srv",
        ("carrier-in",),
        (
            attempt("tcp", True, "timeout"),
            attempt("tcp", True, "refused"),
            attempt("udp", True, "no-error"),
            attempt("icmp", False, "not-executed"),
        ),
    )
    assert attempts_by_protocol(observation) == "TCP 2, UDP 1, ICMP not executed"


def test_every_protocol_counted_when_all_ran() -> None:
    observation = EgressObservation(
        "recv-srv",
        ("carrier-in",),
        (attempt("tcp", True, "timeout"), attempt("icmp", True, "timeout")),
    )
    assert attempts_by_protocol(observation) == "TCP 1, ICMP 1"
