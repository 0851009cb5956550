"""unauthorized-access-prevention (第4号イ): default-deny input, no unexpected listening service.

Model, from the compiled firewall and the topology:
- *default-deny*, per address family: a new connection (any protocol) arriving on any interface
  but loopback that no rule explicitly accepts is dropped. Concretely, no part of that packet
  space is accepted by falling through to a base chain's ``policy accept`` (or by the absence
  of any input base chain). A base chain with ``policy drop``, or a final catch-all drop rule,
  both satisfy it; explicit accept rules are judged by the second point.
- every listening socket not bound to loopback is reachable (``listener_exposure``) only from
  networks and tunnels the inventory declares for that port (``services[].from``).
Probe: the scans of each network the host is on (from the auditor's own address there, and
from outside vantage points) find no open port the inventory does not declare for that network.
A pass needs both.
"""

from __future__ import annotations

from functools import cache

from auditor.domain.findings import Finding, Hop, Judgement, Status
from auditor.domain.inventory import HostDef
from policies.context import AuditContext
from policies.model import Control
from policies.support.common import Outcome, judge_each
from policies.support.paths import (
    NoPath,
    Side,
    Wording,
    fact_error,
    fact_evidence,
    hops_of,
    two_sided_outcome,
)
from topology.defence import Question
from topology.fields import NameSet
from topology.firewall import Firewall, Hook, Verdict
from topology.firewall import Outcome as FirewallOutcome
from topology.graph import Topology
from topology.reach import ListenerExposure, Reachability, ReachResult, inbound, listener_exposure
from topology.space import PacketSpace

#: The facts the model side rests on.
MODEL_FACTS = ("interfaces", "routes", "nftables", "listeners")


def check(ctx: AuditContext, control: Control) -> list[Finding]:
    return judge_each(ctx, control, lambda host: _judge(ctx, host))


def _judge(ctx: AuditContext, host: str) -> Outcome:
    model = model_side(ctx, host)
    probe = scan_side(ctx, host)
    details = _failing_details(model, probe)
    wording = Wording(
        fail=(
            f"{host} admits access it should not: {details}",
            f"{host} は想定外のアクセスを受け付ける: {details}",
        ),
        passed=(
            f"{host} filters input by default-deny and exposes only declared services",
            f"{host} の入力は既定拒否であり、宣言されたサービスのみが到達可能である",
        ),
        undecided=(
            f"cannot decide whether {host} prevents unauthorised access: {{reason}}",
            f"{host} の不正アクセス防止を判定できない: {{reason}}",
        ),
        expected=(
            "input default-deny in IPv4 and IPv6; every listening service (loopback aside) "
            "reachable only from the networks the inventory declares for it"
        ),
    )
    return two_sided_outcome(model, probe, wording)


def _failing_details(model: Side, probe: Side) -> str:
    return "; ".join(
        side.judgement.detail for side in (model, probe) if side.judgement.status is Status.FAIL
    )


# -- model --------------------------------------------------------------------------------------


def model_side(ctx: AuditContext, host: str) -> Side:
    facts = ctx.facts(host)
    if facts is None:
        return Side(Judgement(status=Status.INCONCLUSIVE, detail=ctx.collection_problem(host)))
    evidence = fact_evidence(facts, MODEL_FACTS)
    lacking = [f"{n} ({fact_error(facts, n)})" for n in MODEL_FACTS if getattr(facts, n) is None]
    if lacking:
        detail = f"{host}: missing " + ", ".join(lacking)
        return Side(Judgement(status=Status.INCONCLUSIVE, detail=detail), [], evidence)
    if ctx.topology is None or host not in ctx.topology.hosts:
        detail = f"the topology could not be built: {ctx.topology_error or 'unknown reason'}"
        return Side(Judgement(status=Status.INCONCLUSIVE, detail=detail), [], evidence)
    firewall = ctx.topology.hosts[host].firewall
    families = [default_deny(firewall, family) for family in (4, 6)]
    exposure = undeclared_exposure(ctx, host)
    failures = [f.detail for f in families if f.status is Status.FAIL]
    failures += [exposure.judgement.detail] if exposure.judgement.status is Status.FAIL else []
    if failures:
        return Side(Judgement(status=Status.FAIL, detail="; ".join(failures)), exposure.path,
                    evidence)  # fmt: skip
    unsure = [f.detail for f in families if f.status is Status.INCONCLUSIVE]
    unsure += [exposure.judgement.detail] if exposure.judgement.status is not Status.PASS else []
    if unsure:
        return Side(Judgement(status=Status.INCONCLUSIVE, detail="; ".join(unsure)), [], evidence)
    detail = "; ".join([f.detail for f in families] + [exposure.judgement.detail])
    # The defence depth covers the listener exposure only (the no-path part of the control);
    # default-deny is a property of one chain, not a path.
    return Side(Judgement(status=Status.PASS, detail=detail), [], evidence, exposure.no_path)


@cache
def unsolicited_input(family: int) -> PacketSpace:
    """New connections of any protocol arriving on any interface but loopback (made once per
    family: asked of every host, and an immutable value)."""
    return PacketSpace.new_connections(families=(family,)).where(iif=NameSet.all_but("lo"))


def _falls_through(outcome: FirewallOutcome) -> bool:
    """Accepted without any rule accepting it: no input base chain, or every chain's policy."""
    return outcome.verdict is Verdict.ACCEPT and all(
        step.ref.endswith(" policy") for step in outcome.steps
    )


def default_deny(firewall: Firewall, family: int) -> Judgement:
    """Is the input hook default-deny for this family (see the module's docstring)?"""
    name = f"IPv{family}"
    if not firewall.known:
        return Judgement(status=Status.INCONCLUSIVE, detail=f"{name}: no ruleset collected")
    outcomes = firewall.evaluate(Hook.INPUT, unsolicited_input(family))
    open_by_default = [o for o in outcomes if _falls_through(o)]
    certain = [o for o in open_by_default if o.certain]
    if certain:
        how = certain[0].rule
        sample = "; ".join(certain[0].origin.describe()[:2])
        return Judgement(
            status=Status.FAIL,
            detail=f"{name} input is not default-deny: unmatched new connections are accepted "
            f"({how}), e.g. {sample}",
        )
    if open_by_default:
        reasons = "; ".join(open_by_default[0].reasons[:2]) or "rules not modelled"
        return Judgement(
            status=Status.INCONCLUSIVE,
            detail=f"{name}: unmatched new connections may be accepted by policy ({reasons})",
        )
    if not any(o.verdict is Verdict.DROP for o in outcomes):
        return Judgement(status=Status.FAIL, detail=f"{name} input drops nothing")
    drops = sorted({o.rule for o in outcomes if o.verdict is Verdict.DROP})
    return Judgement(
        status=Status.PASS, detail=f"{name} input default-deny ({', '.join(drops[:2])})"
    )


def declared_sources(definition: HostDef, proto: str, port: int) -> set[str]:
    """The networks and tunnels the inventory declares a service on this port for."""
    return {
        source
        for service in definition.services
        if service.proto == proto and service.port == port
        for source in service.sources
    }


def undeclared_exposure(ctx: AuditContext, host: str) -> Side:
    """Listening sockets reachable from a segment the inventory does not declare for them."""
    assert ctx.topology is not None
    exposures = listener_exposure(ctx.topology, host)
    if exposures is None:
        return Side(Judgement(status=Status.INCONCLUSIVE, detail="listeners not collected"))
    definition = ctx.inventory.hosts[host]
    certain: list[str] = []
    uncertain: list[str] = []
    path: list[Hop] = []
    questions: list[Question] = []
    exposed = 0
    for exposure in exposures:
        result = exposure.result
        listener = exposure.listener
        allowed = declared_sources(definition, listener.proto, listener.port)
        if result.reachable is Reachability.NO:
            if exposure.segment not in allowed:
                questions.append(_exposure_question(host, exposure))
            continue
        exposed += 1
        if exposure.segment in allowed:
            continue
        text = (
            f"{listener.proto}/{listener.port} ({listener.process or 'unknown process'} on "
            f"{listener.address}) reachable from {exposure.segment}, declared for "
            f"{', '.join(sorted(allowed)) or 'nothing'}"
        )
        if result.reachable is Reachability.YES:
            certain.append(text)
            if not path and result.paths:
                path = hops_of(result.paths[0])
        else:
            uncertain.append(text + " (uncertain)")
    if certain:
        detail = "undeclared exposure: " + "; ".join(certain[:6])
        return Side(Judgement(status=Status.FAIL, detail=detail), path)
    if uncertain:
        detail = "possible undeclared exposure: " + "; ".join(uncertain[:6])
        return Side(Judgement(status=Status.INCONCLUSIVE, detail=detail))
    detail = f"{exposed} listener/segment pair(s) reachable, each declared in the inventory"
    no_path = NoPath(ctx.topology, tuple(questions)) if questions else None
    return Side(Judgement(status=Status.PASS, detail=detail), no_path=no_path)


def _exposure_question(host: str, exposure: ListenerExposure) -> Question:
    """ "Can anyone on this segment, for which the inventory declares nothing, open a
    connection to this listener?" (answered no), to be asked again without one rule."""
    listener = exposure.listener
    segment = exposure.segment

    def ask(topology: Topology) -> ReachResult:
        return inbound(topology, host, segment, exposure.space)

    label = f"{listener.proto}/{listener.port} on {host} from {segment}"
    return Question(label, ask, exposure.result)


# -- probe --------------------------------------------------------------------------------------


def scan_side(ctx: AuditContext, host: str) -> Side:
    """Open ports found by the scans of each network the host is on, against the declared."""
    definition = ctx.inventory.hosts[host]
    networks = sorted(n for n in definition.addresses if n in ctx.inventory.networks)
    evidence: list[str] = []
    undeclared: list[str] = []
    missing: list[str] = []
    for network in networks:
        attempt = ctx.scans.get(network)
        if attempt is None or not attempt.succeeded or attempt.value is None:
            why = attempt.error.message if attempt and attempt.error else "no scan"
            missing.append(f"{network}: {why}")
            evidence += list(attempt.evidence) if attempt else []
            continue
        scan = attempt.value
        evidence += list(scan.evidence) + list(attempt.evidence)
        mine = {str(a) for a in definition.addresses[network]}
        if not mine <= set(scan.targets):
            missing.append(f"{network}: {host}'s addresses were not all scanned")
            continue
        undeclared += [
            f"{p.proto}/{p.port} open on {p.address} from {scan.vantage} ({network})"
            for p in scan.open_ports
            if p.address in mine
            and p.state == "open"
            and network not in declared_sources(definition, p.proto, p.port)
        ]
    if undeclared:
        detail = "open and not declared: " + "; ".join(undeclared[:8])
        return Side(Judgement(status=Status.FAIL, detail=detail), [], evidence)
    if missing or not networks:
        why = "; ".join(missing) if missing else "the host has no address on a network"
        return Side(Judgement(status=Status.INCONCLUSIVE, detail=why), [], evidence)
    detail = f"scans of {', '.join(networks)} found only declared services open on {host}"
    return Side(Judgement(status=Status.PASS, detail=detail), [], evidence)
