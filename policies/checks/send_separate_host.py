"""send-separate-host (第4号ニ(3)): the sending server is a machine of its own.

Two inventory hosts are the same machine when they share a machine-id, an SSH host key or an
address. A pass needs the identities of every receiving, processing and sending host.
"""

from __future__ import annotations

from auditor.domain.facts import HostFacts
from auditor.domain.findings import Finding, Status
from auditor.domain.inventory import Role
from policies.context import AuditContext
from policies.model import Control
from policies.support.common import Outcome, inconclusive, judge_each
from policies.support.paths import fact_error, fact_evidence


def check(ctx: AuditContext, control: Control) -> list[Finding]:
    identities = _Identities(ctx)
    return judge_each(ctx, control, lambda host: _judge(ctx, host, identities))


class _Identities:
    """Each host's identity and its evidence, read once per check: every sending host is
    compared with every receiving and processing host, which made reading them again for
    each pair quadratic in the organisation's size."""

    def __init__(self, ctx: AuditContext) -> None:
        self._ctx = ctx
        self._identity: dict[str, Identity] = {}
        self._evidence: dict[str, list[str]] = {}

    def of(self, host: str) -> Identity:
        found = self._identity.get(host)
        if found is None:
            found = self._identity[host] = _identity(self._ctx.facts(host))
        return found

    def evidence(self, host: str) -> list[str]:
        found = self._evidence.get(host)
        if found is None:
            found = self._evidence[host] = _identity_evidence(self._ctx.facts(host))
        return found


def _judge(ctx: AuditContext, sender: str, identities: _Identities) -> Outcome:
    others = sorted(
        {*ctx.inventory.hosts_with(Role.RECEIVING), *ctx.inventory.hosts_with(Role.PROCESSING)}
        - {sender}
    )
    hosts = [sender, *others]
    missing = [h for h in hosts if not _identity_complete(ctx.facts(h))]
    if missing:
        reasons = "; ".join(_why_incomplete(ctx, h) for h in missing)
        return inconclusive(
            f"the identities of {', '.join(missing)} could not be collected: {reasons}",
            f"{', '.join(missing)} の識別情報(machine-id・ホスト鍵・アドレス)を収集できなかった: {reasons}",
        )
    mine = identities.of(sender)
    evidence = [ref for h in hosts for ref in identities.evidence(h)]
    shared = {o: _shared(mine, identities.of(o)) for o in others}
    clashes = {o: s for o, s in shared.items() if s}
    expected = f"no machine-id, host key or address shared with {', '.join(others) or 'nobody'}"
    if clashes:
        detail = "; ".join(f"{o}: {', '.join(s)}" for o, s in clashes.items())
        return Outcome(
            Status.FAIL,
            f"{sender} is the same machine as {', '.join(clashes)} ({detail})",
            f"{sender} は {', '.join(clashes)} と同一の機器である({detail})",
            expected=expected,
            actual=detail,
            evidence=evidence,
        )
    return Outcome(
        Status.PASS,
        f"{sender} is a machine of its own: its machine-id, host keys and addresses differ from "
        f"those of {', '.join(others)}",
        f"{sender} は独立した機器である(machine-id・ホスト鍵・アドレスが {', '.join(others)} と異なる)",
        expected=expected,
        actual="all distinct",
        evidence=evidence,
    )


Identity = dict[str, set[str]]


def _identity_complete(facts: HostFacts | None) -> bool:
    return (
        facts is not None
        and bool(facts.machine_id)
        and bool(facts.host_keys)
        and facts.interfaces is not None
    )


def _why_incomplete(ctx: AuditContext, host: str) -> str:
    facts = ctx.facts(host)
    if facts is None:
        return ctx.collection_problem(host)
    lacking = [
        f"{name} ({fact_error(facts, name)})"
        for name, value in (
            ("machine_id", facts.machine_id),
            ("host_keys", facts.host_keys),
            ("interfaces", facts.interfaces),
        )
        if not value
    ]
    return f"{host}: " + ", ".join(lacking)


def _identity(facts: HostFacts | None) -> Identity:
    assert facts is not None and facts.interfaces is not None and facts.host_keys is not None
    addresses = {
        a.address
        for i in facts.interfaces
        if i.kind != "loopback" and i.name != "lo"
        for a in i.addresses
        if a.scope == "global"
    }
    return {
        "machine-id": {facts.machine_id or ""},
        "host key": {k.fingerprint for k in facts.host_keys},
        "address": addresses,
    }


def _shared(mine: Identity, theirs: Identity) -> list[str]:
    return [
        f"{kind} {', '.join(sorted(mine[kind] & theirs[kind]))}"
        for kind in mine
        if mine[kind] & theirs[kind]
    ]


def _identity_evidence(facts: HostFacts | None) -> list[str]:
    return fact_evidence(facts, ("machine_id", "host_keys", "interfaces"))
