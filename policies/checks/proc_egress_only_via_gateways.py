"""proc-egress-only-via-gateways (第4号ホ): the processing server reaches outside only through
the receiving and sending servers, over dedicated lines.

Packets from the processing host must reach no external or office network by any path (the
receiving and sending servers relay data, they do not route it) — judged by the model and by
egress attempts — and the networks it shares with those servers must be dedicated lines.
"""

from __future__ import annotations

from auditor.domain.findings import Finding, Status
from auditor.domain.inventory import Medium, Role
from policies.checks.recv_no_outbound import judge_outward
from policies.context import AuditContext
from policies.model import Control
from policies.support.common import Outcome, judge_each


def check(ctx: AuditContext, control: Control) -> list[Finding]:
    return judge_each(ctx, control, lambda host: _judge(ctx, host))


def _judge(ctx: AuditContext, host: str) -> Outcome:
    outcome = judge_outward(ctx, host, "管理用サーバ")
    bad_links = _links_not_dedicated(ctx, host)
    if not bad_links:
        return outcome
    listing = ", ".join(f"{peer} over {net} ({medium})" for peer, net, medium in bad_links)
    outcome.status = Status.FAIL
    outcome.en = f"{host}'s links to the gateways are not dedicated lines: {listing}"
    outcome.ja = f"管理用サーバ {host} と受信用・送信用サーバの間が専用線でない: {listing}"
    outcome.reason = None
    outcome.actual = f"{outcome.actual} | links: {listing}"
    return outcome


def _links_not_dedicated(ctx: AuditContext, host: str) -> list[tuple[str, str, str]]:
    """(gateway, network, medium) for each network shared with a gateway that isn't a line."""
    inventory = ctx.inventory
    gateways = {*inventory.hosts_with(Role.RECEIVING), *inventory.hosts_with(Role.SENDING)}
    mine = ctx.host_networks(host)
    found = []
    for gateway in sorted(gateways - {host}):
        for network in sorted(mine & ctx.host_networks(gateway)):
            definition = inventory.networks.get(network)
            if definition is not None and definition.medium is not Medium.LEASED_LINE:
                found.append((gateway, network, str(definition.medium)))
    return found
