"""Defence depth: which single firewall rules hold a no-path answer.

A no-path question ("does any new connection from recv-srv reach an external network?")
answered *no* may rest on one rule (remove it and packets get through) or on several
independent ones. ``defence_depth`` finds the *single points of protection*: the rules, and
base-chain drop policies, whose removal alone turns the answer into yes or unknown.

Sound and cheap: a rule can hold an answer only if the original search's packets met it and
it dropped some of them (``ReachResult.drops``); a rule never met stops nothing the search
sent, so removing it changes no answer. Each such drop is tried once: the same topology with
that one rule removed (or that chain's policy turned to accept) on that one host, and every
question whose search met it asked again. Only firewall rules and policies count: forwarding
switched off, a missing route, a host without an interface on a network are barriers too, but
they are not rules, and are never listed or removed.

The number of drops tried is bounded (``MAX_CANDIDATES``): past it the depth is ``single`` if
a single point was found among those tried, else ``unknown``, never ``layered``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from topology.firewall import Firewall, Hook, Verdict
from topology.graph import HostModel, Topology
from topology.reach import DropPoint, Reachability, ReachResult, segment_index
from topology.space import PacketSpace

#: At most this many drop decisions are tried for one finding. The lab's controls meet
#: fewer than ten; a rule set that drops a query's packets at more places than this is
#: judged ``unknown`` rather than made to cost a search per rule.
MAX_CANDIDATES = 32


class Depth(StrEnum):
    SINGLE = "single"  #: removing one rule alone opens a path
    LAYERED = "layered"  #: every rule met was tried, and none alone opens a path
    UNKNOWN = "unknown"  #: not decided (see the note)


@dataclass(frozen=True)
class Question:
    """One no-path question: how to ask it of a topology, and its answer on the audited one
    (with the drops its search met)."""

    label: str  #: what is asked, for the reader ("new connections from h to external networks")
    ask: Callable[[Topology], ReachResult]
    answer: ReachResult


@dataclass(frozen=True)
class SinglePoint:
    """A rule (or drop policy) whose removal alone opens a path; ``opens`` says what passes."""

    host: str
    hook: Hook
    ref: str
    text: str
    opens: str


@dataclass(frozen=True)
class DefenceDepth:
    depth: Depth
    single_points: tuple[SinglePoint, ...] = ()
    examined: int = 0  #: rules and policies whose removal was tried
    note: str = ""


@dataclass
class _Candidate:
    drop: DropPoint
    questions: list[Question] = field(default_factory=list)


def defence_depth(
    topology: Topology, questions: Sequence[Question], *, limit: int = MAX_CANDIDATES
) -> DefenceDepth:
    """How many independent rules hold every one of ``questions`` at *no* (see the module)."""
    if not questions:
        return DefenceDepth(Depth.UNKNOWN, note="no path question to examine")
    undecided = [q.label for q in questions if q.answer.reachable is not Reachability.NO]
    if undecided:
        return DefenceDepth(Depth.UNKNOWN, note="not answered no: " + "; ".join(undecided[:3]))
    candidates = _candidates(questions)
    singles: list[SinglePoint] = []
    examined = 0
    not_removable: list[str] = []
    for candidate in candidates[:limit]:
        drop = candidate.drop
        derived = without_drop(topology, drop)
        if derived is None:
            not_removable.append(f"{drop.host} {drop.ref}")
            continue
        examined += 1
        opened = _first_opened(derived, candidate.questions)
        if opened is not None:
            singles.append(SinglePoint(drop.host, drop.hook, drop.ref, drop.text, opened))
    return _verdict(singles, examined, len(candidates) - limit, not_removable, limit)


def _candidates(questions: Sequence[Question]) -> list[_Candidate]:
    """Every (host, rule) that dropped packets of some question, with the questions it did."""
    found: dict[tuple[str, str], _Candidate] = {}
    for question in questions:
        for drop in question.answer.drops:
            key = (drop.host, drop.ref)
            candidate = found.setdefault(key, _Candidate(drop))
            candidate.questions.append(question)
    return list(found.values())


def _first_opened(derived: Topology, questions: Sequence[Question]) -> str | None:
    """What the first question no longer answered *no* lets through, or None."""
    for question in questions:
        result = question.ask(derived)
        if result.reachable is not Reachability.NO:
            return opens_summary(question.label, result)
    return None


def _verdict(
    singles: list[SinglePoint],
    examined: int,
    beyond_limit: int,
    not_removable: list[str],
    limit: int,
) -> DefenceDepth:
    notes = []
    if beyond_limit > 0:
        notes.append(f"{beyond_limit} more drop decision(s) not tried (bound: {limit})")
    if not_removable:
        notes.append(
            "drops that are not a rule of a collected rule set (a budget cut, an unfollowed "
            "jump, no rule set): " + ", ".join(not_removable[:4])
        )
    note = "; ".join(notes)
    if singles:
        return DefenceDepth(Depth.SINGLE, tuple(singles), examined, note)
    if notes:
        return DefenceDepth(Depth.UNKNOWN, (), examined, note)
    if not examined:
        # No rule dropped anything the search sent: no rule holds it, and "layered" says
        # exactly that; the note says what does.
        note = (
            "no firewall rule or policy dropped the search's packets: the answer rests on "
            "routing or forwarding, which are not counted"
        )
    return DefenceDepth(Depth.LAYERED, (), examined, note)


#: ``opens`` is one line for a table cell: longer summaries are cut here.
OPENS_WIDTH = 240


def opens_summary(label: str, result: ReachResult) -> str:
    """One line: what would get through (the first packet class; how many more), and whether
    that is certain."""
    if result.reachable is Reachability.YES:
        lines, how = result.reached.describe(), "certain"
    else:
        lines, how = result.maybe_reached.describe(), "uncertain"
    if not lines:
        return f"{label}: {result.reachable}"
    more = f" (+{len(lines) - 1} more)" if len(lines) > 1 else ""
    text = f"{label}: {how}: {lines[0]}"
    if len(text) + len(more) > OPENS_WIDTH:
        text = text[: OPENS_WIDTH - len(more) - 1] + "…"
    return text + more


def without_drop(topology: Topology, drop: DropPoint) -> Topology | None:
    """``topology`` with the one rule (or drop policy) ``drop`` names removed on its host, all
    else shared; None when it is not a rule of that host's collected rule set."""
    model = topology.hosts.get(drop.host)
    if model is None:
        return None
    firewall = model.firewall.without(drop.ref)
    if firewall is None:
        return None
    return with_firewall(topology, model, firewall)


def with_firewall(topology: Topology, model: HostModel, firewall: Firewall) -> Topology:
    """A copy of ``topology`` in which only ``model``'s firewall differs.

    Shallow: segments, addresses and every other host are the same objects (the copy is
    asked questions, never changed), so a copy costs one dictionary, not a rebuild."""
    derived = copy.copy(topology)
    derived.hosts = {**topology.hosts, model.name: replace(model, firewall=firewall)}
    segment_index(topology).share_with(derived)
    return derived


def hook_question(
    topology: Topology, label: str, host: str, hook: Hook, space: PacketSpace
) -> Question:
    """ "Does ``host``'s ``hook`` accept any of ``space``?" as a Question, answered on
    ``topology``: a firewall-only no-path question (forwarding toward the outside, say)."""

    def ask(asked: Topology) -> ReachResult:
        return hook_accepts(asked, host, hook, space)

    return Question(label, ask, ask(topology))


def hook_accepts(topology: Topology, host: str, hook: Hook, space: PacketSpace) -> ReachResult:
    """Which of ``space`` the host's hook accepts, as a reachability answer: yes for a certain
    accept, unknown for an uncertain one only, no otherwise; its drops are the rules met."""
    outcomes = topology.hosts[host].firewall.evaluate(hook, space)
    reached = PacketSpace.empty()
    maybe = PacketSpace.empty()
    drops: dict[str, DropPoint] = {}
    for outcome in outcomes:
        if outcome.verdict is Verdict.ACCEPT:
            if outcome.certain:
                reached = reached.union(outcome.origin)
            else:
                maybe = maybe.union(outcome.origin)
        elif outcome.steps:
            decision = outcome.steps[-1]
            drops.setdefault(decision.ref, DropPoint(host, hook, decision.ref, decision.text))
    maybe = maybe.subtract(reached)
    if reached:
        verdict = Reachability.YES
    elif maybe:
        verdict = Reachability.UNKNOWN
    else:
        verdict = Reachability.NO
    return ReachResult(verdict, reached, maybe, (), drops=tuple(drops.values()))
