"""A host's collection budget: past it the collection stops for that host, with the reason, and
nothing it sent beyond the budget is kept (against a real OpenSSH server on loopback)."""

from __future__ import annotations

from auditor.domain.attempts import AttemptStatus, ErrorReason
from probes.host_collector import FactRule, HostPlan, collect_host, raw
from tests.unit.probes.ssh_fixtures import TEST_USER, MemorySink, Sshd, allow_all, sshd

__all__ = ["sshd"]  # the fixture, imported for pytest

#: 300 KiB of output, then a small one that must not run once the budget is spent.
BIG = raw("commands:big", "head -c 307200 /dev/zero")
SMALL = raw("commands:small", "echo small")


def _plan(*rules: FactRule) -> HostPlan:
    return HostPlan(rules=rules)


def test_past_its_budget_a_host_is_partial_with_the_reason(sshd: Sshd) -> None:
    sink = MemorySink()
    access = sshd.access(TEST_USER, host_budget_mib=0.1)  # 100 KiB
    attempt = collect_host("loop", "127.0.0.1", access, sink, allow_all, plan=_plan(BIG, SMALL))
    assert attempt.status is AttemptStatus.PARTIAL
    assert attempt.error is not None and attempt.error.reason is ErrorReason.OVER_BUDGET
    assert "collection budget" in attempt.error.message
    facts = attempt.value
    assert facts is not None
    assert facts.errors["commands:small"].startswith("over-budget: not run: ")
    # The big output was cut at the budget (the session's truncation note aside): the rest of
    # the 300 KiB never reached the evidence.
    stored = max(len(artifact.content) for artifact in sink.received)
    assert access.host_budget_bytes <= stored <= access.host_budget_bytes + 200


def test_within_its_budget_a_host_completes(sshd: Sshd) -> None:
    access = sshd.access(TEST_USER, host_budget_mib=1.0)
    plan = _plan(BIG, SMALL)
    attempt = collect_host("loop", "127.0.0.1", access, MemorySink(), allow_all, plan=plan)
    assert attempt.status is AttemptStatus.COMPLETED, attempt.error
    assert attempt.value is not None and attempt.value.errors == {}
