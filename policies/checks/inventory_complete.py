"""inventory-complete (第4号ホ, supporting): no unregistered device on a protected network.

Every address that answered the ARP / neighbour sweep must belong to an inventory host or to
the auditor's own interface there. An IPv6 link-local answer is matched by its MAC address to
a known device, since the inventory lists global addresses only.
"""

from __future__ import annotations

from netaddr import IPAddress

from auditor.domain.findings import Finding, Judgement, Status
from policies.context import AuditContext
from policies.empirical import DiscoveryObservation
from policies.model import Control
from policies.support.common import Outcome, inconclusive, judge_each


def check(ctx: AuditContext, control: Control) -> list[Finding]:
    return judge_each(ctx, control, lambda network: _judge(ctx, network))


def _judge(ctx: AuditContext, network: str) -> Outcome:
    attempt = ctx.discovery.get(network)
    if attempt is None or not attempt.succeeded or attempt.value is None:
        why = attempt.error.message if attempt and attempt.error else "no sweep was made"
        return inconclusive(
            f"no live-host sweep of {network}: {why}",
            f"{network} の生存確認ができなかった: {why}",
            evidence=attempt.evidence if attempt else (),
        )
    observation = attempt.value
    known = _known_addresses(ctx, network)
    strangers = _unregistered(observation, known)
    evidence = list(observation.evidence) + list(attempt.evidence)
    expected = "only inventory hosts and the auditor answer"
    answered = ", ".join(sorted(observation.live)) or "nothing"
    if strangers:
        listing = ", ".join(f"{a} ({observation.live[a] or 'no MAC'})" for a in strangers)
        return Outcome(
            Status.FAIL,
            f"unregistered device(s) on {network}: {listing}",
            f"{network} に未登録の機器がある: {listing}",
            expected=expected,
            actual=f"answered: {answered}",
            empirical=Judgement(status=Status.FAIL, detail=f"unregistered: {listing}"),
            evidence=evidence,
        )
    if not observation.live:
        return inconclusive(
            f"nothing answered the sweep of {network}, not even the inventory's hosts",
            f"{network} の生存確認に登録済みホストを含め何も応答しなかった",
            evidence=evidence,
        )
    return Outcome(
        Status.PASS,
        f"every device answering on {network} is in the inventory ({answered})",
        f"{network} で応答した機器はすべてインベントリに登録されている({answered})",
        expected=expected,
        actual=f"answered: {answered}",
        empirical=Judgement(status=Status.PASS, detail=f"{len(observation.live)} known devices"),
        evidence=evidence,
    )


def _known_addresses(ctx: AuditContext, network: str) -> set[IPAddress]:
    inventory = ctx.inventory
    definition = inventory.networks[network]
    known = {a for host in inventory.hosts.values() for a in host.addresses.get(network, [])}
    if definition.auditor is not None:
        known.update(a for a in (definition.auditor.ipv4, definition.auditor.ipv6) if a)
    # Addresses a collected host really holds on this network count as registered too.
    for host in inventory.hosts:
        facts = ctx.facts(host)
        for interface in (facts.interfaces or []) if facts else []:
            for addr in interface.addresses:
                ip = IPAddress(addr.address)
                if any(ip in prefix for prefix in definition.prefixes):
                    known.add(ip)
    return known


def _unregistered(observation: DiscoveryObservation, known: set[IPAddress]) -> list[str]:
    known_macs = {
        (mac or "").lower()
        for address, mac in observation.live.items()
        if IPAddress(address) in known and mac
    }
    return sorted(
        address
        for address, mac in observation.live.items()
        if IPAddress(address) not in known
        and not (IPAddress(address).is_link_local() and mac and mac.lower() in known_macs)
    )
