"""external-links-leased-or-vpn (第4号ニ(1)): links to outside parties are leased lines or IP-VPN.

The medium is the inventory's declaration (no probe can tell a carrier's closed network from a
LAN). The evidence is that declaration, the host's interfaces and its routes: the route the
host takes to each outside party's address must leave by an interface on a leased-line or
IP-VPN network (or a tunnel over one), never over an Internet network.
"""

from __future__ import annotations

from netaddr import IPSet

from auditor.domain.findings import Finding, Hop, Judgement, Status
from auditor.domain.inventory import Medium
from policies.context import AuditContext
from policies.model import Control
from policies.support.common import Outcome, inconclusive, judge_each
from policies.support.paths import fact_evidence, missing_routing_facts

ACCEPTED = (Medium.LEASED_LINE, Medium.IP_VPN)


def check(ctx: AuditContext, control: Control) -> list[Finding]:
    return judge_each(ctx, control, lambda host: _judge(ctx, host))


def _judge(ctx: AuditContext, host: str) -> Outcome:
    parties = ctx.outside_parties(host)
    declared = _declared_media(ctx, parties)
    wrong_media = [
        f"{net} is {medium}" for net, medium in declared.items() if medium not in ACCEPTED
    ]
    routes_problem = missing_routing_facts(ctx, host)
    if routes_problem is not None or ctx.topology is None:
        why = routes_problem or f"the topology could not be built: {ctx.topology_error}"
        if wrong_media:
            return _fail(host, wrong_media, [], [])
        return inconclusive(
            f"cannot check the routes of {host} toward outside parties: {why}",
            f"{host} から外部の相手方への経路を確認できない: {why}",
        )
    bad_routes, hops = _routes_over_wrong_media(ctx, host, parties)
    evidence = fact_evidence(ctx.facts(host), ("interfaces", "routes"))
    if wrong_media or bad_routes:
        return _fail(host, wrong_media, bad_routes, hops, evidence)
    media = ", ".join(f"{net}: {medium}" for net, medium in sorted(declared.items()))
    return Outcome(
        Status.PASS,
        f"{host} exchanges with {', '.join(sorted(parties))} over {media}, and routes to them "
        "leave by those links",
        f"{host} は {', '.join(sorted(parties))} と {media} で接続し、経路もそれらの回線を経由する",
        expected="leased-line or ip-vpn, and routes to the outside parties over them",
        actual=media,
        model=Judgement(status=Status.PASS, detail=f"media {media}; routes over them"),
        evidence=evidence,
    )


def _declared_media(ctx: AuditContext, parties: dict[str, set[str]]) -> dict[str, Medium]:
    """The medium of each network shared with an outside party (a tunnel: its underlay's)."""
    inventory = ctx.inventory
    media: dict[str, Medium] = {}
    for shared in parties.values():
        for name in shared:
            network = inventory.tunnels[name].over if name in inventory.tunnels else name
            media[network] = inventory.networks[network].medium
    return media


def _routes_over_wrong_media(
    ctx: AuditContext, host: str, parties: dict[str, set[str]]
) -> tuple[list[str], list[Hop]]:
    assert ctx.topology is not None
    model = ctx.topology.hosts[host]
    assert model.routes is not None
    problems: list[str] = []
    hops: list[Hop] = []
    for party in sorted(parties):
        for address in ctx.inventory.hosts[party].all_addresses():
            entry_parts = model.routes.lookup(address.version, IPSet([address]))
            for _, entry in entry_parts:
                segment = _segment_of_device(ctx, host, entry.device if entry else None)
                medium = _medium_of(ctx, segment)
                if medium is not None and medium not in ACCEPTED:
                    route = entry.describe() if entry else "no route"
                    problems.append(f"to {party} {address}: {route} ({segment}, {medium})")
                    hops.append(Hop(host=host, network=segment, direction="route", rule=route))
    return problems, hops


def _segment_of_device(ctx: AuditContext, host: str, device: str | None) -> str | None:
    assert ctx.topology is not None
    if device is None:
        return None
    attachment = ctx.topology.hosts[host].attachment_of_interface(device)
    return attachment.segment if attachment else None


def _medium_of(ctx: AuditContext, segment: str | None) -> Medium | None:
    inventory = ctx.inventory
    if segment in inventory.tunnels:
        segment = inventory.tunnels[segment].over
    definition = inventory.networks.get(segment) if segment else None
    return definition.medium if definition else None


def _fail(
    host: str,
    wrong_media: list[str],
    bad_routes: list[str],
    hops: list[Hop],
    evidence: list[str] | None = None,
) -> Outcome:
    listing = "; ".join(wrong_media + bad_routes)
    return Outcome(
        Status.FAIL,
        f"{host}'s links to outside parties are not leased lines or IP-VPN: {listing}",
        f"{host} と外部の相手方との接続が専用線又はIP-VPNではない: {listing}",
        expected="leased-line or ip-vpn, and routes to the outside parties over them",
        actual=listing,
        model=Judgement(status=Status.FAIL, detail=listing),
        path=hops,
        evidence=evidence or [],
    )
