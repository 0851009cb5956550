"""Model and probe judgements shared by the reachability controls.

The model side asks the topology engine which new connections get from a host to the
external networks (or into a host from them); the probe side reads the egress attempts and
the scans. Each returns a ``Judgement`` plus the hops and artifacts it rests on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from auditor.domain.facts import HostFacts
from auditor.domain.findings import Defence, Hop, HopDirection, Judgement, Protection, Status
from auditor.domain.inventory import Role, Zone
from policies.context import AuditContext
from policies.empirical import EgressObservation
from policies.support.common import Outcome, combine, missing_parts
from topology.defence import DefenceDepth, Question, defence_depth, hook_question
from topology.firewall import Hook
from topology.graph import Topology
from topology.intervals import AddressSet
from topology.reach import (
    Direction,
    Reachability,
    ReachPath,
    ReachResult,
    describe_destinations,
    inbound,
    reach,
)
from topology.space import PacketSpace

#: The facts a reachability verdict about a host rests on.
ROUTING_FACTS = ("interfaces", "routes", "nftables", "forwarding_v4", "forwarding_v6")


@dataclass(frozen=True)
class NoPath:
    """The no-path questions a passing model verdict answered *no*, and the topology they
    were asked of: what ``defence_of`` examines for the rules holding the pass."""

    topology: Topology
    questions: tuple[Question, ...]

    def joined(self, other: NoPath | None) -> NoPath:
        if other is None:
            return self
        return NoPath(self.topology, self.questions + other.questions)


@dataclass
class Side:
    """One side's verdict (model or probe) with what it rests on."""

    judgement: Judgement
    path: list[Hop] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    #: for a model pass, the no-path questions behind it (None: none asked, or not a pass)
    no_path: NoPath | None = None


def joined_no_path(*parts: NoPath | None) -> NoPath | None:
    found: NoPath | None = None
    for part in parts:
        if part is not None:
            found = part.joined(found)
    return found


def defence_of(side: Side) -> Defence | None:
    """For a model pass resting on no-path questions, the rules holding it (docs/controls.md,
    "Defence depth"); None for any other verdict, or a pass no question was asked for."""
    if side.judgement.status is not Status.PASS or side.no_path is None:
        return None
    if not side.no_path.questions:
        return None
    return as_defence(defence_depth(side.no_path.topology, side.no_path.questions))


def as_defence(depth: DefenceDepth) -> Defence:
    """The engine's answer as the findings' ``Defence``."""
    return Defence(
        depth=depth.depth.value,
        single_points=[
            Protection(host=p.host, rule=p.text, rule_ref=p.ref, opens=p.opens)
            for p in depth.single_points
        ],
        examined=depth.examined,
        note=depth.note,
    )


def fact_evidence(facts: HostFacts | None, names: tuple[str, ...] = ROUTING_FACTS) -> list[str]:
    if facts is None:
        return []
    # A fact built from several commands has one artifact per part: "routes:v4", "routes:v6".
    return [ref for key, ref in facts.evidence.items() if key.split(":", 1)[0] in names]


def fact_error(facts: HostFacts, name: str) -> str:
    """Why a fact is missing, from its own error or those of its parts."""
    reasons = [why for key, why in facts.errors.items() if key.split(":", 1)[0] == name]
    return "; ".join(reasons) or "not collected"


def missing_routing_facts(ctx: AuditContext, host: str) -> str | None:
    """Why the model cannot judge this host, or None when every needed fact is there."""
    facts = ctx.facts(host)
    if facts is None:
        return ctx.collection_problem(host)
    lacking = [
        f"{name} ({fact_error(facts, name)})"
        for name in ROUTING_FACTS
        if getattr(facts, name) is None
    ]
    return f"{host}: missing " + ", ".join(lacking) if lacking else None


def external_addresses(ctx: AuditContext) -> AddressSet:
    """Every address of the external and office networks (computed once per inventory)."""
    inventory = ctx.inventory
    return ctx.derived(
        "external-addresses",
        lambda: AddressSet.of(
            *(p for n in ctx.external_networks() for p in inventory.networks[n].prefixes)
        ),
    )


def inside_segments(ctx: AuditContext) -> frozenset[str]:
    """The segments whose wire is inside the certified area: the protected networks and the
    tunnels running over one. A packet delivered to a host over one of them has not crossed
    an external link, whichever of that host's addresses it was sent to. Unmapped segments
    and tunnels over an external, office or undeclared network are not among them."""
    if ctx.topology is None:
        return frozenset()
    return frozenset(name for name, s in ctx.topology.segments.items() if s.zone is Zone.PROTECTED)


def _no_model(ctx: AuditContext, host: str) -> Side | None:
    if ctx.topology is None:
        detail = f"the topology could not be built: {ctx.topology_error or 'unknown reason'}"
        return Side(Judgement(status=Status.INCONCLUSIVE, detail=detail))
    problem = missing_routing_facts(ctx, host)
    if problem is not None:
        return Side(Judgement(status=Status.INCONCLUSIVE, detail=problem))
    return None


_HOP_DIRECTION: dict[Direction, HopDirection] = {
    Direction.OUTPUT: "output",
    Direction.FORWARD: "forward",
    Direction.INPUT: "input",
    Direction.ROUTE: "route",
    Direction.LINK: "link",
}


def hops_of(path: ReachPath) -> list[Hop]:
    """The engine's steps of a path as a finding's hops."""
    return [
        Hop(
            host=step.host,
            network=step.network,
            direction=_HOP_DIRECTION[step.direction],
            rule=step.rule,
            rule_ref=step.rule_ref,
        )
        for step in path.hops
    ]


def _first_path(result: ReachResult, certain: bool) -> list[Hop]:
    for path in result.paths:
        if path.certain == certain:
            return hops_of(path)
    return hops_of(result.paths[0]) if result.paths else []


def _from_reach(result: ReachResult, what: str, none_text: str) -> tuple[Judgement, list[Hop]]:
    if result.reachable is Reachability.YES:
        detail = f"{what}: {'; '.join(result.summary()[:4])} (to {describe_destinations(result)})"
        return Judgement(status=Status.FAIL, detail=detail), _first_path(result, True)
    if result.reachable is Reachability.UNKNOWN:
        notes = "; ".join(result.notes[:3]) or "uncertain steps on the path"
        detail = f"{what} only over uncertain paths ({notes}): {'; '.join(result.summary()[:3])}"
        return Judgement(status=Status.INCONCLUSIVE, detail=detail), _first_path(result, False)
    return Judgement(status=Status.PASS, detail=none_text), []


def model_outbound(ctx: AuditContext, host: str) -> Side:
    """Can a new connection started by ``host`` reach an external or office network?"""
    unavailable = _no_model(ctx, host)
    if unavailable is not None:
        return unavailable
    assert ctx.topology is not None
    # Delivered over a protected segment to a host's own address on an external network, a
    # packet stays on that host (docs/controls.md, "What counts as outside").
    destinations = external_addresses(ctx)
    inside = inside_segments(ctx)

    def ask(topology: Topology) -> ReachResult:
        return reach(topology, host, destinations, local_over=inside)

    result = ask(ctx.topology)
    judgement, hops = _from_reach(
        result,
        f"new connections from {host} reach external networks",
        f"no new connection from {host} (TCP, UDP, ICMP echo; IPv4 and IPv6) reaches an "
        "external or office network",
    )
    question = Question(f"new connections from {host} to external networks", ask, result)
    no_path = NoPath(ctx.topology, (question,)) if judgement.status is Status.PASS else None
    return Side(judgement, hops, fact_evidence(ctx.facts(host)), no_path)


def model_forwards_outward(ctx: AuditContext, host: str) -> Side:
    """Would ``host`` forward another host's new connection toward an external network?"""
    unavailable = _no_model(ctx, host)
    if unavailable is not None:
        return unavailable
    assert ctx.topology is not None
    model = ctx.topology.hosts[host]
    evidence = fact_evidence(ctx.facts(host))
    forwarded = PacketSpace.empty()
    asked: list[tuple[int, PacketSpace]] = []
    for family in (4, 6):
        if not model.forwarding.get(family):
            continue
        space = PacketSpace.connection_attempts(families=(family,)).where(
            daddr=external_addresses(ctx)
        )
        asked.append((family, space))
        forwarded = forwarded.union(model.firewall.accepts(Hook.FORWARD, space))
    if forwarded:
        detail = f"{host} forwards new connections toward external networks: " + "; ".join(
            forwarded.describe()[:3]
        )
        hop = Hop(host=host, direction="forward", rule="forwarding enabled, forward hook accepts")
        return Side(Judgement(status=Status.FAIL, detail=detail), [hop], evidence)
    detail = f"{host} forwards nothing toward external networks"
    # Forwarding switched off is a barrier but not a rule: only the enabled families ask.
    questions = tuple(
        hook_question(
            ctx.topology,
            f"IPv{family} new connections {host} forwards to external networks",
            host,
            Hook.FORWARD,
            space,
        )
        for family, space in asked
    )
    no_path = NoPath(ctx.topology, questions) if questions else None
    return Side(Judgement(status=Status.PASS, detail=detail), [], evidence, no_path)


def model_inbound(ctx: AuditContext, host: str) -> Side:
    """Can a new connection from an external network or an outside party's tunnel get in?"""
    unavailable = _no_model(ctx, host)
    if unavailable is not None:
        return unavailable
    assert ctx.topology is not None
    segments = outside_segments(ctx, host)
    evidence = fact_evidence(ctx.facts(host))
    verdicts = []
    questions: list[Question] = []
    undecided: Side | None = None
    for segment in segments:
        result = inbound(ctx.topology, host, segment)
        judgement, hops = _from_reach(
            result, f"{host} accepts new connections from {segment}", "nothing accepted"
        )
        if judgement.status is Status.FAIL:
            return Side(judgement, hops, evidence)
        if judgement.status is not Status.PASS:
            # Kept, not returned: a later segment may still certainly fail, which says more.
            undecided = undecided or Side(judgement, hops, evidence)
            continue
        verdicts.append(segment)
        questions.append(_inbound_question(host, segment, result))
    if undecided is not None:
        return undecided
    detail = (
        f"{host} accepts no new connection from {', '.join(verdicts)} (IPv4 and IPv6)"
        if verdicts
        else f"{host} has no interface on an external network or outside party's tunnel"
    )
    no_path = NoPath(ctx.topology, tuple(questions)) if questions else None
    return Side(Judgement(status=Status.PASS, detail=detail), [], evidence, no_path)


def _inbound_question(host: str, segment: str, result: ReachResult) -> Question:
    def ask(topology: Topology) -> ReachResult:
        return inbound(topology, host, segment)

    return Question(f"new connections from {segment} accepted by {host}", ask, result)


def outside_segments(ctx: AuditContext, host: str) -> list[str]:
    """External networks the host is on, and tunnels it shares with an outside party."""
    external = set(ctx.external_networks())
    attached = ctx.host_networks(host)
    segments = sorted(attached & external)
    for name, tunnel in ctx.inventory.tunnels.items():
        peers = [e for e in tunnel.endpoints if e != host]
        if name in attached and any(
            Role.EXTERNAL_PARTY in ctx.inventory.hosts[p].roles for p in peers
        ):
            segments.append(name)
    return segments


def empirical_egress(ctx: AuditContext, host: str) -> Side:
    """Did any egress attempt made from ``host`` leave toward an external network?"""
    attempt = ctx.egress.get(host)
    if attempt is None or not attempt.succeeded or attempt.value is None:
        why = attempt.error.message if attempt and attempt.error else "no egress test was made"
        evidence = list(attempt.evidence) if attempt else []
        return Side(Judgement(status=Status.INCONCLUSIVE, detail=why), [], evidence)
    observation = attempt.value
    evidence = list(observation.evidence) + list(attempt.evidence)
    touched = ctx.host_networks(host) & set(ctx.external_networks())
    uncovered = sorted(touched - set(observation.captured_networks))
    executed = [a for a in observation.attempts if a.executed]
    escaped = observation.escaped()
    if escaped:
        listing = "; ".join(
            f"{a.proto} {a.destination}{':' + str(a.port) if a.port else ''} "
            f"({a.outcome}, seen on {', '.join(a.seen_on) or 'none'})"
            for a in escaped[:6]
        )
        detail = f"{len(escaped)} of {len(executed)} attempts got out: {listing}"
        return Side(Judgement(status=Status.FAIL, detail=detail), [], evidence)
    if not observation.captured_networks or uncovered or not executed:
        why = (
            f"no capture on {', '.join(uncovered)}"
            if uncovered
            else "no capture ran"
            if not observation.captured_networks
            else "no attempt was executed"
        )
        return Side(Judgement(status=Status.INCONCLUSIVE, detail=why), [], evidence)
    detail = (
        f"{len(executed)} attempts ({attempts_by_protocol(observation)}) from {host}; "
        f"nothing seen on {', '.join(observation.captured_networks)}"
    )
    return Side(Judgement(status=Status.PASS, detail=detail), [], evidence)


def attempts_by_protocol(observation: EgressObservation) -> str:
    """How many attempts of each protocol really ran, naming a protocol that never did (a
    command the host refused, such as ping without its sudo grant), so that a pass never
    claims a protocol it did not try."""
    parts = []
    for proto in ("tcp", "udp", "icmp"):
        tried = [a for a in observation.attempts if a.proto == proto]
        ran = sum(a.executed for a in tried)
        if tried and not ran:
            parts.append(f"{proto.upper()} not executed")
        elif tried:
            parts.append(f"{proto.upper()} {ran}")
    return ", ".join(parts)


def empirical_inbound(ctx: AuditContext, host: str) -> Side:
    """Did a scan from a vantage point on each external network find an open port?"""
    definition = ctx.inventory.hosts[host]
    external = [s for s in outside_segments(ctx, host) if s in ctx.inventory.networks]
    evidence: list[str] = []
    open_found: list[str] = []
    missing: list[str] = []
    for network in external:
        attempt = ctx.scans.get(network)
        if attempt is None or not attempt.succeeded or attempt.value is None:
            why = attempt.error.message if attempt and attempt.error else "no scan"
            missing.append(f"{network}: {why}")
            continue
        scan = attempt.value
        evidence += list(scan.evidence)
        mine = {str(a) for a in definition.addresses.get(network, [])}
        if not mine or not mine <= set(scan.targets):
            missing.append(f"{network}: {host}'s addresses were not all scanned")
            continue
        open_found += [
            f"{p.proto}/{p.port} on {p.address} from {scan.vantage}"
            for p in scan.open_ports
            if p.address in mine and p.state == "open"
        ]
    if open_found:
        detail = "open from outside: " + "; ".join(open_found[:8])
        return Side(Judgement(status=Status.FAIL, detail=detail), [], evidence)
    if missing or not external:
        why = "; ".join(missing) if missing else "no external network to scan from"
        return Side(Judgement(status=Status.INCONCLUSIVE, detail=why), [], evidence)
    detail = f"scans from {', '.join(external)} found no open port on {host}"
    return Side(Judgement(status=Status.PASS, detail=detail), [], evidence)


@dataclass(frozen=True)
class Wording:
    """What a two-sided finding says, per verdict, in English and Japanese. ``undecided``
    texts take ``{reason}``: which side kept the verdict from being reached, and why."""

    fail: tuple[str, str]
    passed: tuple[str, str]
    undecided: tuple[str, str]
    expected: str


def two_sided_outcome(model: Side, probe: Side, wording: Wording) -> Outcome:
    """The finding of a control judged by the model and by a probe (docs/controls.md): both
    verdicts shown, a fail from either fails, a pass needs both, a disagreement is stated."""
    status, disagreement = combine(model.judgement, probe.judgement)
    if status is Status.FAIL:
        en, ja = wording.fail
    elif status is Status.PASS:
        en, ja = wording.passed
    else:
        reason = missing_parts(model.judgement, probe.judgement)
        en, ja = (text.format(reason=reason) for text in wording.undecided)
    return Outcome(
        status,
        en,
        ja,
        expected=wording.expected,
        actual=f"model: {model.judgement.detail} | probe: {probe.judgement.detail}",
        reason=en if status is Status.INCONCLUSIVE else None,
        model=model.judgement,
        empirical=probe.judgement,
        disagreement=disagreement,
        path=model.path,
        evidence=model.evidence + probe.evidence,
        defence=defence_of(model),
    )
