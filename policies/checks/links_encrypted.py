"""links-encrypted (第4号ニ(4)): data exchanged with outside parties is encrypted.

Model: every service the host exposes to an external network it shares with an outside party
(admitted by its input path and really listening) speaks an encrypted protocol or is the
endpoint of an encrypted tunnel. Probe: a capture on each such network while the data flows
shows only tunnel or encrypted-protocol traffic between the host and the parties; cleartext
application payload fails; no traffic captured is inconclusive.
"""

from __future__ import annotations

from netaddr import IPAddress, IPSet

from auditor.domain.facts import HostFacts, Listener
from auditor.domain.findings import Finding, Judgement, Status
from policies.context import AuditContext
from policies.empirical import Flow
from policies.model import Control
from policies.support.common import Outcome, judge_each
from policies.support.paths import (
    Side,
    Wording,
    fact_evidence,
    missing_routing_facts,
    two_sided_outcome,
)
from topology.reach import Reachability, listener_exposure

ENCRYPTED_KINDS = frozenset({"wireguard", "ipsec", "openvpn", "ssh", "tls"})
TUNNEL_DAEMONS = {
    "wireguard-go": "WireGuard",
    "charon": "IPsec",
    "pluto": "IPsec",
    "openvpn": "OpenVPN",
}
ENCRYPTED_DAEMONS = {"sshd": "SSH", "sshd-session": "SSH"}
#: Ports whose convention is TLS; the capture confirms the protocol and its version.
TLS_PORTS = frozenset({443, 8443, 990, 993, 995, 6514})
OLD_TLS_MARKERS = ("SSLv", "TLS 1.0", "TLS 1.1", "TLSv1.0", "TLSv1.1")


def check(ctx: AuditContext, control: Control) -> list[Finding]:
    return judge_each(ctx, control, lambda host: _judge(ctx, host))


def _judge(ctx: AuditContext, host: str) -> Outcome:
    networks = _shared_external_networks(ctx, host)
    wording = Wording(
        fail=(
            f"{host} exchanges data with outside parties without encryption",
            f"{host} と外部の相手方との送受信が暗号化されていない",
        ),
        passed=(
            f"{host}'s exchanges with outside parties are encrypted",
            f"{host} と外部の相手方との送受信は暗号化されている",
        ),
        undecided=(
            f"cannot decide whether {host}'s links are encrypted: {{reason}}",
            f"{host} の送受信の暗号化を判定できない: {{reason}}",
        ),
        expected="only tunnel or encrypted-protocol traffic with outside parties",
    )
    return two_sided_outcome(_model(ctx, host, networks), _probe(ctx, host, networks), wording)


def _shared_external_networks(ctx: AuditContext, host: str) -> list[str]:
    networks = {n for shared in ctx.outside_parties(host).values() for n in shared}
    return sorted(n for n in networks if n in ctx.inventory.networks)


def _model(ctx: AuditContext, host: str, networks: list[str]) -> Side:
    problem = missing_routing_facts(ctx, host)
    facts = ctx.facts(host)
    if problem is None and (facts is None or facts.listeners is None):
        problem = f"{host}: listening sockets not collected"
    if problem is not None or ctx.topology is None or facts is None:
        why = problem or f"the topology could not be built: {ctx.topology_error}"
        return Side(Judgement(status=Status.INCONCLUSIVE, detail=why))
    evidence = fact_evidence(facts, ("interfaces", "nftables", "listeners", "wireguard"))
    exposures = listener_exposure(ctx.topology, host) or []
    exposed = [
        e for e in exposures if e.segment in networks and e.result.reachable is not Reachability.NO
    ]
    services = sorted(
        {(e.listener.proto, e.listener.port, _protocol(e.listener, facts)) for e in exposed}
    )
    cleartext = [f"{proto}/{port}" for proto, port, kind in services if kind is None]
    if cleartext:
        detail = (
            f"services open to outside parties without known encryption: {', '.join(cleartext)}"
        )
        return Side(Judgement(status=Status.FAIL, detail=detail), [], evidence)
    listing = ", ".join(f"{p}/{n} ({k})" for p, n, k in services) or "none"
    detail = f"services open to outside parties on {', '.join(networks)}: {listing}"
    return Side(Judgement(status=Status.PASS, detail=detail), [], evidence)


def _protocol(listener: Listener, facts: HostFacts) -> str | None:
    """The encrypted protocol a listening socket speaks, or None when not known to be one."""
    process = listener.process or ""
    if process in TUNNEL_DAEMONS:
        return TUNNEL_DAEMONS[process]
    if process in ENCRYPTED_DAEMONS:
        return ENCRYPTED_DAEMONS[process]
    wg_ports = {w.listen_port for w in facts.wireguard or [] if w.listen_port}
    if listener.proto == "udp" and listener.port in wg_ports:
        return "WireGuard"
    if listener.proto == "tcp" and listener.port in TLS_PORTS:
        return "TLS (by port; the capture confirms)"
    return None


def _probe(ctx: AuditContext, host: str, networks: list[str]) -> Side:
    mine = _addresses(ctx, [host])
    parties = _addresses(ctx, list(ctx.outside_parties(host)))
    flows: list[Flow] = []
    evidence: list[str] = []
    missing: list[str] = []
    for network in networks:
        attempt = ctx.links.get(network)
        if attempt is None or not attempt.succeeded or attempt.value is None:
            missing.append(
                f"{network}: {attempt.error.message if attempt and attempt.error else 'no capture'}"
            )
            continue
        evidence += list(attempt.value.evidence) + list(attempt.evidence)
        flows += [f for f in attempt.value.flows if _between(f, mine, parties)]
    if missing:
        return Side(Judgement(status=Status.INCONCLUSIVE, detail="; ".join(missing)), [], evidence)
    bad = [f for f in flows if f.kind == "cleartext" or _old_tls(f)]
    if bad:
        listing = "; ".join(
            f"{f.kind} {f.proto} {f.src}→{f.dst}:{f.dport} {f.detail}".strip() for f in bad[:5]
        )
        return Side(Judgement(status=Status.FAIL, detail=f"captured: {listing}"), [], evidence)
    protected = [f for f in flows if f.kind in ENCRYPTED_KINDS]
    if not protected:
        detail = (
            f"no traffic between {host} and outside parties was captured on {', '.join(networks)}"
        )
        return Side(Judgement(status=Status.INCONCLUSIVE, detail=detail), [], evidence)
    kinds = ", ".join(sorted({f.kind for f in protected}))
    detail = f"{len(protected)} flows captured, all encrypted ({kinds})"
    return Side(Judgement(status=Status.PASS, detail=detail), [], evidence)


def _addresses(ctx: AuditContext, hosts: list[str]) -> IPSet:
    found = IPSet()
    for host in hosts:
        found.update(ctx.inventory.hosts[host].all_addresses())
        facts = ctx.facts(host)
        for interface in (facts.interfaces or []) if facts else []:
            found.update(IPAddress(a.address) for a in interface.addresses if a.scope == "global")
    return found


def _between(flow: Flow, mine: IPSet, parties: IPSet) -> bool:
    try:
        src, dst = IPAddress(flow.src), IPAddress(flow.dst)
    except ValueError:
        return False
    return (src in mine and dst in parties) or (src in parties and dst in mine)


def _old_tls(flow: Flow) -> bool:
    return flow.kind == "tls" and any(marker in flow.detail for marker in OLD_TLS_MARKERS)
