"""A host's nftables ruleset, evaluated symbolically over packet spaces.

``Firewall.from_nft_json(doc)`` compiles ``nft -j list ruleset``; ``evaluate(hook, space)``
walks every base chain registered on the hook, in priority order, over classes of packets and
returns which part of the space each rule accepts or drops. Semantics follow nft(8):

* rules in order, first terminal verdict wins; ``counter``/``log``/``limit`` do not decide;
* ``jump`` returns to the next rule of the caller, ``goto`` does not; ``return`` (or the end of
  a chain) goes back to the caller, and at a base chain applies its policy;
* a table of family ``ip`` sees IPv4 only, ``ip6`` IPv6 only, ``inet`` both;
* several base chains on one hook run by ascending priority: a packet must be accepted by each,
  a drop anywhere is final;
* NAT chains see only the first packet of a connection (ct state new); a NAT statement ends
  its chain with accept; dnat/snat to one address are applied to the space at once (so a
  later chain, and routing, see the translated destination); masquerade and redirect depend on
  the interface and are left to the caller, recorded in ``Outcome.nat``;
* an expression outside the modelled subset makes the rule *may match*: the packets it may
  match are reported twice (taking the verdict, and going on), both ``certain=False``;
* each hook evaluation has a ``Budget`` (cubes its splits produce, flow/rule tests, optionally
  seconds): past it, every packet not yet decided is reported accepted and dropped, both
  ``certain=False``, with the reason. What was decided before the cut stays as it is.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import cache
from time import monotonic
from typing import Any

from netaddr import IPAddress

from topology.addrtypes import AddressTypes
from topology.fields import NO_DEVICE, PORT_PROTOS, IntervalSet, NameSet
from topology.intervals import AddressSet
from topology.nftjson import Action, Arm, Chain, Nat, Rule, Ruleset, parse_ruleset
from topology.space import FIELDS, Constraint, Cube, Packet, PacketSpace, is_empty_value

#: Deeper jump nesting than the kernel allows (16) is a loop or a parse error: unknown.
MAX_JUMP_DEPTH = 16


@dataclass(frozen=True)
class Budget:
    """How much work one hook evaluation (``run_hook``: every base chain of a hook over the
    given flows) may do before the packets it has not decided yet become uncertain.

    ``cubes``: cubes produced by splitting flows at rules (the packet space fragmenting);
    ``tests``: flow/rule intersections tried (the walk's work; rules the index skips are not
    counted); ``seconds``: wall-clock time, off by default, since answers would then depend on
    the machine's load. None lifts a limit. Limits are checked before each rule: a cut comes
    at a rule boundary, so one rule may overshoot by the flows it splits.
    """

    cubes: int | None = 50_000
    tests: int | None = 400_000
    seconds: float | None = None

    def __post_init__(self) -> None:
        for name in ("cubes", "tests", "seconds"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"budget {name} must not be negative, got {value}")

    @classmethod
    def unlimited(cls) -> Budget:
        return cls(cubes=None, tests=None, seconds=None)


#: The budget of a Firewall built without one. Far above what any rule set seen in the lab or
#: the synthetic organisation needs (see docs/benchmarks.md, firewall-worst), and low enough
#: that a pathological rule set costs seconds, not minutes.
DEFAULT_BUDGET = Budget()


class _Meter:
    """The work of one hook evaluation against its budget; ``cut`` says why it stopped."""

    __slots__ = ("_deadline", "budget", "cubes", "cut", "hook", "tests")

    def __init__(self, budget: Budget, hook: Hook) -> None:
        self.budget = budget
        self.hook = hook
        self.cubes = 0
        self.tests = 0
        self.cut: str | None = None
        self._deadline = None if budget.seconds is None else monotonic() + budget.seconds

    def exhausted(self) -> bool:
        """Is the budget spent? Once it is, it stays so (and ``cut`` gives the reason)."""
        if self.cut is not None:
            return True
        budget = self.budget
        if budget.cubes is not None and self.cubes > budget.cubes:
            self.cut = f"evaluation budget of {budget.cubes} cubes exceeded on {self.hook}"
        elif budget.tests is not None and self.tests > budget.tests:
            self.cut = f"evaluation budget of {budget.tests} rule tests exceeded on {self.hook}"
        elif self._deadline is not None and monotonic() > self._deadline:
            self.cut = f"evaluation budget of {budget.seconds} s exceeded on {self.hook}"
        else:
            return False
        self.cut += "; the rest is uncertain"
        return True


class Hook(StrEnum):
    PREROUTING = "prerouting"
    INPUT = "input"
    FORWARD = "forward"
    OUTPUT = "output"
    POSTROUTING = "postrouting"


class Verdict(StrEnum):
    ACCEPT = "accept"
    DROP = "drop"


@dataclass(frozen=True)
class Decision:
    """What one base chain decided for some packets: the rule (or policy) and its text."""

    ref: str  #: "inet filter/input/12" or "inet filter/input policy"
    text: str


@dataclass(frozen=True, slots=True)
class Flow:
    """Packets on their way through the rules, with what happened to them so far.

    ``origin`` is the same class as first given, before any translation: fields not yet
    translated are equal in both, so every split is mirrored onto the origin exactly.
    """

    cube: Cube
    origin: Cube
    translated: frozenset[str] = frozenset()
    certain: bool = True
    reasons: tuple[str, ...] = ()
    steps: tuple[Decision, ...] = ()
    nat: tuple[Nat, ...] = ()
    #: Did this host translate the destination (``ct status dnat``)? None: not known (the
    #: flow was not followed from the host's first hook).
    dnat: bool | None = None

    @classmethod
    def start(cls, cube: Cube, dnat: bool | None = None) -> Flow:
        return cls(cube, cube, dnat=dnat)

    # The copies below are written out: ``dataclasses.replace`` introspects the fields on
    # every call, and flows are copied at every rule that splits them.
    def _copy(
        self,
        *,
        cube: Cube | None = None,
        origin: Cube | None = None,
        translated: frozenset[str] | None = None,
        certain: bool | None = None,
        reasons: tuple[str, ...] | None = None,
        steps: tuple[Decision, ...] | None = None,
        nat: tuple[Nat, ...] | None = None,
        dnat: bool | None = None,
    ) -> Flow:
        return Flow(
            self.cube if cube is None else cube,
            self.origin if origin is None else origin,
            self.translated if translated is None else translated,
            self.certain if certain is None else certain,
            self.reasons if reasons is None else reasons,
            self.steps if steps is None else steps,
            self.nat if nat is None else nat,
            self.dnat if dnat is None else dnat,
        )

    def at_first_hook(self) -> Flow:
        """Entering a host (prerouting, or output for its own packets): nothing translated
        the destination there yet."""
        return self if self.dnat is False else self._copy(dnat=False)

    def destination_translated(self) -> Flow:
        return self._copy(dnat=True)

    def narrowed(self, piece: Cube) -> Flow:
        if piece is self.cube:
            return self
        if self.origin is self.cube and not self.translated:
            # Nothing translated yet: the origin is the cube itself, and stays so.
            return self._copy(cube=piece, origin=piece)
        before = self.cube
        # Only the fields the split changed (a new object) need mirroring onto the origin.
        shared = {
            n: value
            for n in FIELDS
            if (value := getattr(piece, n)) is not getattr(before, n) and n not in self.translated
        }
        origin = self.origin._with(shared) if shared else self.origin
        return self._copy(cube=piece, origin=origin)

    def doubtful(self, reason: str) -> Flow:
        reasons = self.reasons if reason in self.reasons else (*self.reasons, reason)
        return self._copy(certain=False, reasons=reasons)

    def translate(self, **values: Any) -> Flow:
        return self._copy(
            cube=self.cube.with_fields(**values),
            translated=self.translated | frozenset(values),
        )

    def decided(self, decision: Decision) -> Flow:
        return self._copy(steps=(*self.steps, decision))

    def reset(self) -> Flow:
        """The same packets with no rules or translations recorded yet (for the next hook)."""
        if not self.steps and not self.nat:
            return self
        return Flow(
            self.cube, self.origin, self.translated, self.certain, self.reasons, dnat=self.dnat
        )


@dataclass(frozen=True)
class Outcome:
    """A part of the evaluated space, its verdict, and the rules that gave it."""

    space: PacketSpace  #: after the translations applied on this hook
    origin: PacketSpace  #: the same packets as they were given to evaluate
    verdict: Verdict
    certain: bool
    steps: tuple[Decision, ...]  #: one decision per base chain passed, in order
    nat: tuple[Nat, ...] = ()
    reasons: tuple[str, ...] = ()  #: why uncertain

    @property
    def rule(self) -> str:
        """The deciding rule's text: the dropping one, or every accepting one joined."""
        if not self.steps:
            return "no base chain on this hook (accept)"
        if self.verdict is Verdict.DROP:
            return self.steps[-1].text
        return "; ".join(s.text for s in self.steps)

    @property
    def rule_ref(self) -> str | None:
        if not self.steps:
            return None
        if self.verdict is Verdict.DROP:
            return self.steps[-1].ref
        return "; ".join(s.ref for s in self.steps)


@dataclass(frozen=True)
class _Ending:
    flow: Flow
    verdict: Verdict
    decision: Decision
    nat: Nat | None = None


@dataclass
class _Walk:
    """Collects what leaves a chain: final verdicts, and packets returning to the caller."""

    meter: _Meter
    endings: list[_Ending] = field(default_factory=list)
    returned: list[Flow] = field(default_factory=list)


_FAMILY_OF_TABLE = {"ip": frozenset({4}), "ip6": frozenset({6}), "inet": frozenset({4, 6})}

#: A flow walking a chain, with a bit set for each rule of the chain it may match.
_Marked = tuple[Flow, int]


class _ChainIndex:
    """Which rules of one chain packets of a given shape may match: a bit per rule.

    A shape is every field of a cube but the addresses (protocol, ports, interfaces, ct
    state, ...). A rule that no packet of a flow's shape can match passes the flow on
    untouched, so the walk skips it for that flow with one bit test instead of an
    intersection. Most flow/rule pairs are such: a narrow query (one listener: one
    protocol, one port, one interface) meets mostly rules for other ports and interfaces,
    and a split leaves pieces (another interface, another protocol) that the following rules
    of their kind no longer concern. Shapes, unlike addresses, recur across the hosts that
    share a rule set and across queries, so each is worked out once per chain.
    """

    def __init__(self, chain: Chain) -> None:
        self._chain = chain
        self._rules_by_shape: dict[tuple[object, ...], int] = {}
        # Every term of every rule (sure or possible, any arm), numbered; a bit per term.
        terms: list[Constraint] = []
        self._rule_of_term: list[int] = []
        for i, rule in enumerate(chain.rules):
            for arm in rule.arms:
                for term in (*arm.condition.sure, *arm.condition.possible):
                    terms.append(term)
                    self._rule_of_term.append(i)
        self._terms = terms
        #: Term i is rule i (one term per rule, the usual case): term bits are rule bits.
        self._one_term_each = self._rule_of_term == list(range(len(chain.rules)))
        every = (1 << len(terms)) - 1
        #: Per field, the terms that constrain it, and the terms that do not (always admit).
        self._constraining: dict[str, list[tuple[int, Any]]] = {}
        self._free: dict[str, int] = {}
        for name in FIELDS:
            constraining = [(k, t.values[name]) for k, t in enumerate(terms) if name in t.values]
            self._constraining[name] = constraining
            self._free[name] = every & ~sum(1 << k for k, _ in constraining)
        self._terms_by_value: dict[tuple[str, object], int] = {}
        self._ranges: dict[str, _RangeIndex] = {}
        # Rule bits (not term bits) for the addresses: asked per flow, not per shape.
        self._saddr = _AddressIndex(
            [(self._rule_of_term[k], v) for k, v in self._constraining["saddr"]],
            self._as_rules(self._free["saddr"]),
        )
        self._daddr = _AddressIndex(
            [(self._rule_of_term[k], v) for k, v in self._constraining["daddr"]],
            self._as_rules(self._free["daddr"]),
        )

    def marked(self, flows: list[Flow]) -> list[_Marked]:
        return [(flow, self.rules_for(flow.cube)) for flow in flows]

    def rules_for(self, cube: Cube) -> int:
        key = cube.shape_key()
        rules = self._rules_by_shape.get(key)
        if rules is None:
            rules = self._rules_by_shape[key] = self._rules_admitting(cube.shape())
        if rules:
            # The addresses narrow it further (per flow: addresses, unlike shapes, rarely
            # recur). A per-address allow list of thousands of rules is then walked by the
            # few rules naming each piece's addresses.
            rules &= self._saddr.meeting(cube.saddr) & self._daddr.meeting(cube.daddr)
        return rules

    def _as_rules(self, terms: int) -> int:
        """Term bits to rule bits: a rule's bit is set when any of its terms' is."""
        if self._one_term_each or not terms:
            return terms
        rules = 0
        while terms:
            low = terms & -terms
            rules |= 1 << self._rule_of_term[low.bit_length() - 1]
            terms ^= low
        return rules

    def _rules_admitting(self, shape: Cube) -> int:
        """Bit i set when some packet of ``shape`` may match rule i (any arm, sure or possible
        term): a packet that a rule cannot match whatever its addresses, it cannot match.

        A term admits the shape when every field it constrains meets the shape's value there
        (what ``Cube.intersect`` decides). Per field, the rules with a term meeting the shape's
        value there are worked out once per (field, value) (values recur across shapes far more
        than whole shapes do); a rule admitted by every field may still have no single term
        admitted by all (a rule of several terms): a bit too many, which costs a test, never
        an answer.
        """
        bits = -1
        for name in FIELDS:
            bits &= self._rules_meeting(name, getattr(shape, name))
            if not bits:
                return 0
        return bits

    def _rules_meeting(self, name: str, value: Any) -> int:
        key = (name, value)
        found = self._terms_by_value.get(key)
        if found is None:
            found = self._free[name]
            if type(value) is IntervalSet:
                ranges = self._ranges.get(name)
                if ranges is None:
                    ranges = self._ranges[name] = _RangeIndex(
                        [(k, wanted.intervals) for k, wanted in self._constraining[name]]
                    )
                found |= ranges.meeting(value.intervals)
            else:
                for k, wanted in self._constraining[name]:
                    if not is_empty_value(value & wanted):
                        found |= 1 << k
            found = self._terms_by_value[key] = self._as_rules(found)
        return found


class _AddressIndex:
    """The rules (some term of) an address set may meet: exact for one span per family, and
    for a set of several spans those meeting its hull (a superset: the index only skips rules
    that cannot match, so trying one that does not is merely work)."""

    def __init__(self, constraining: list[tuple[int, Any]], free: int) -> None:
        self._free = free
        self._v4 = _RangeIndex([(k, value.v4) for k, value in constraining])
        self._v6 = _RangeIndex([(k, value.v6) for k, value in constraining])

    def meeting(self, value: AddressSet) -> int:
        found = self._free
        if value.v4:
            found |= self._v4.meeting(((value.v4[0][0], value.v4[-1][1]),))
        if value.v6:
            found |= self._v6.meeting(((value.v6[0][0], value.v6[-1][1]),))
        return found


class _RangeIndex:
    """Which terms' integer sets (ports, protocols, ICMP types) meet a given set, by
    elementary segments: the term bounds cut the line into segments, each covered by a fixed
    set of terms (a bit each), and a range of segments is answered by a sparse table of ORs.
    Building it is O(T log T); each question costs two bisections and an OR per span, where
    trying every term cost T set intersections (a chain of overlapping port ranges meets
    thousands of fragmented port sets)."""

    def __init__(self, constraining: list[tuple[int, tuple[tuple[int, int], ...]]]) -> None:
        # Bit k's spans (several terms may share a bit: a rule's) may overlap: count them.
        events: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for k, spans in constraining:
            for lo, hi in spans:
                events[lo].append((k, 1))
                events[hi + 1].append((k, -1))
        self._starts = sorted(events.keys() | {0})
        covering: list[int] = []
        open_spans: dict[int, int] = defaultdict(int)
        active = 0
        for start in self._starts:
            for k, change in events.get(start, ()):
                open_spans[k] += change
                if open_spans[k]:
                    active |= 1 << k
                else:
                    active &= ~(1 << k)
            covering.append(active)
        self._table = [covering]
        width = 1
        while width * 2 <= len(covering):
            below = self._table[-1]
            self._table.append([below[i] | below[i + width] for i in range(len(below) - width)])
            width *= 2

    def meeting(self, spans: tuple[tuple[int, int], ...]) -> int:
        found = 0
        starts, table = self._starts, self._table
        for lo, hi in spans:
            first = bisect_right(starts, lo) - 1
            last = bisect_right(starts, hi) - 1
            level = (last - first + 1).bit_length() - 1
            row = table[level]
            found |= row[first] | row[last - (1 << level) + 1]
        return found


class Firewall:
    """One host's compiled ruleset. ``Firewall.unknown()`` stands for a ruleset not collected."""

    def __init__(self, ruleset: Ruleset | None, budget: Budget | None = None) -> None:
        self._ruleset = ruleset
        #: The limit of each hook evaluation (see ``Budget``).
        self.budget = DEFAULT_BUDGET if budget is None else budget
        self._hooks: dict[Hook, list[Chain]] = defaultdict(list)
        #: evaluate() answers by (hook, space): the ruleset never changes once compiled, and
        #: checks ask the same question of every host sharing it (default-deny, say).
        self._evaluated: dict[tuple[Hook, PacketSpace], list[Outcome]] = {}
        self._has_nat: dict[Hook, bool] = {}
        self._indexes: dict[tuple[str, str, str], _ChainIndex] = {}
        self._without: dict[str, Firewall | None] = {}
        if ruleset is not None:
            for chain in ruleset.chains.values():
                if chain.is_base and chain.family in _FAMILY_OF_TABLE and chain.hook in set(Hook):
                    self._hooks[Hook(chain.hook)].append(chain)
            for chains in self._hooks.values():
                # Equal priorities run in an order the kernel does not promise; keep listing.
                chains.sort(key=lambda c: c.prio)

    @classmethod
    def from_nft_json(
        cls,
        doc: Mapping[str, Any],
        budget: Budget | None = None,
        types: AddressTypes | None = None,
    ) -> Firewall:
        """``types``: the host's address types, for ``fib daddr type`` matches."""
        return cls(parse_ruleset(doc, types), budget)

    def with_budget(self, budget: Budget) -> Firewall:
        """The same compiled rule set under another budget (nothing memoised is shared)."""
        return Firewall(self._ruleset, budget)

    @classmethod
    def unknown(cls) -> Firewall:
        return cls(None)

    def without(self, ref: str) -> Firewall | None:
        """The same rule set less the rule ``ref`` names ("inet filter/input/12"), or with the
        drop policy of the base chain ``ref`` names ("inet filter/input policy") turned to
        accept: what the host would do had that one barrier never been written. None when the
        rule set has no such rule or drop policy (a budget cut, no rule set collected).

        Kept per ref: hosts sharing a compiled rule set share the result too, and the chains
        left as they were keep the indexes built already."""
        if ref in self._without:
            return self._without[ref]
        changed = None if self._ruleset is None else _ruleset_without(self._ruleset, ref)
        derived = None
        if changed is not None:
            ruleset, key = changed
            derived = Firewall(ruleset, self.budget)
            derived._indexes = {k: v for k, v in self._indexes.items() if k != key}
        self._without[ref] = derived
        return derived

    @property
    def known(self) -> bool:
        return self._ruleset is not None

    @property
    def problems(self) -> list[str]:
        """Parts of the ruleset not modelled (other families, unknown expressions)."""
        if self._ruleset is None:
            return ["no ruleset collected"]
        found = list(self._ruleset.problems)
        for chain in self._ruleset.chains.values():
            if chain.is_base and chain.family not in _FAMILY_OF_TABLE:
                found.append(f"{chain.ref}: family {chain.family} not modelled")
            found += [f"{r.ref}: {u}" for r in chain.rules for u in r.unknown]
        return found

    def chains_on(self, hook: Hook) -> list[Chain]:
        return list(self._hooks.get(hook, []))

    def has_nat(self, hook: Hook) -> bool:
        found = self._has_nat.get(hook)
        if found is None:
            found = self._has_nat[hook] = any(
                arm.action is Action.NAT
                for chain in self._hooks.get(hook, [])
                for rule in self._all_rules_from(chain)
                for arm in rule.arms
            )
        return found

    def _all_rules_from(self, chain: Chain, seen: set[str] | None = None) -> Iterable[Rule]:
        seen = seen if seen is not None else set()
        if chain.name in seen:
            return
        seen.add(chain.name)
        for rule in chain.rules:
            yield rule
            for arm in rule.arms:
                target = self._chain(chain.family, chain.table, arm.target)
                if target is not None:
                    yield from self._all_rules_from(target, seen)

    # -- the public questions ----------------------------------------------------------------
    def evaluate(self, hook: Hook, space: PacketSpace) -> list[Outcome]:
        key = (hook, space)
        outcomes = self._evaluated.get(key)
        if outcomes is None:
            outcomes = self._evaluated[key] = self.evaluate_flows(
                hook, [Flow.start(c) for c in space]
            )
        return list(outcomes)

    def accepts(self, hook: Hook, space: PacketSpace) -> PacketSpace:
        """Every packet that may be accepted (certainly or not), after translations."""
        return _union(o.space for o in self.evaluate(hook, space) if o.verdict is Verdict.ACCEPT)

    def certainly_accepts(self, hook: Hook, space: PacketSpace) -> PacketSpace:
        outcomes = self.evaluate(hook, space)
        return _union(o.space for o in outcomes if o.verdict is Verdict.ACCEPT and o.certain)

    def decision_for(self, hook: Hook, packet: Packet, dnat: bool | None = None) -> list[Outcome]:
        """The outcome(s) for one packet: one when certain, accept and drop when not.
        ``dnat``: whether this host translated its destination on an earlier hook (for
        ``ct status dnat``); None when not known."""
        absent = {
            Hook.PREROUTING: ("oif",),
            Hook.INPUT: ("oif",),
            Hook.OUTPUT: ("iif",),
        }.get(hook, ())
        cube = packet.as_cube()
        if absent:
            fixed = {n: NameSet.of(NO_DEVICE) for n in absent if getattr(packet, n) is None}
            cube = cube.with_fields(**fixed)
        if dnat is not None:
            return self.evaluate_flows(hook, [Flow.start(cube, dnat)])
        return self.evaluate(hook, PacketSpace((cube,)))

    # -- evaluation ------------------------------------------------------------------------
    def evaluate_flows(self, hook: Hook, flows: list[Flow]) -> list[Outcome]:
        return _group(self.run_hook(hook, flows))

    def run_hook(self, hook: Hook, flows: list[Flow]) -> list[tuple[Verdict, Flow]]:
        """Every flow's verdict on the hook; each flow's steps name the deciding rules."""
        if self._ruleset is None:
            return _unknown_verdicts(flows)
        dropped: list[tuple[Verdict, Flow]] = []
        flows = _with_hook_devices(hook, flows)
        meter = _Meter(self.budget, hook)
        for chain in self._hooks.get(hook, []):
            passing: list[Flow] = []
            for flow in flows:
                inside, outside = _applicable(chain, flow)
                passing += outside
                for ending in self._run_base_chain(chain, inside, meter):
                    if ending.verdict is Verdict.DROP:
                        dropped.append((Verdict.DROP, ending.flow.decided(ending.decision)))
                    else:
                        passing.append(_after_accept(ending))
            flows = passing
        return dropped + [(Verdict.ACCEPT, f) for f in flows]

    def _run_base_chain(self, chain: Chain, flows: list[Flow], meter: _Meter) -> list[_Ending]:
        if not flows:
            return []
        walk = _Walk(meter)
        self._run_chain(chain, flows, 0, walk)
        policy = Decision(f"{chain.ref} policy", f"policy {chain.policy}")
        verdict = Verdict.DROP if chain.policy == "drop" else Verdict.ACCEPT
        return walk.endings + [_Ending(f, verdict, policy) for f in walk.returned]

    def _run_chain(self, chain: Chain, flows: list[Flow], depth: int, walk: _Walk) -> None:
        index = self._index_of(chain)
        live = index.marked(flows)
        meter = walk.meter
        for position, rule in enumerate(chain.rules):
            if not live:
                return
            if meter.exhausted():
                _cut(rule, [flow for flow, _ in live], meter, walk)
                return
            live = self._apply_rule(rule, 1 << position, index, live, depth=depth, walk=walk)
        walk.returned += [flow for flow, _ in live]

    def _index_of(self, chain: Chain) -> _ChainIndex:
        key = (chain.family, chain.table, chain.name)
        index = self._indexes.get(key)
        if index is None:
            index = self._indexes[key] = _ChainIndex(chain)
        return index

    def _apply_rule(
        self,
        rule: Rule,
        bit: int,
        index: _ChainIndex,
        flows: list[_Marked],
        *,
        depth: int,
        walk: _Walk,
    ) -> list[_Marked]:
        going_on: list[_Marked] = []
        remaining = flows
        tests = produced = 0
        for arm in rule.arms:
            not_matched: list[_Marked] = []
            only = arm.condition.single_term()
            needs_dnat = arm.condition.dnat
            for marked in remaining:
                flow, may_match = marked
                if not may_match & bit:
                    # Not a rule for packets of this flow's shape: it goes on untouched.
                    not_matched.append(marked)
                    continue
                if needs_dnat is not None and flow.dnat is not None and flow.dnat != needs_dnat:
                    not_matched.append(marked)  # ct status: this flow's translation differs
                    continue
                tests += 1
                if only is not None:
                    # Most rules are one exact term, and do not apply to most flows: one
                    # intersection decides it, and is the matched part when it does apply.
                    hit = flow.cube.intersect(only)
                    if hit is None:
                        not_matched.append(marked)
                        continue
                    # All of the flow matching (the cube itself back) leaves nothing outside.
                    never = [] if hit is flow.cube else flow.cube.subtract(only)
                    sure = [hit]
                    maybe: list[Cube] = []
                else:
                    sure, maybe, never = arm.condition.split([flow.cube])
                    if needs_dnat is not None and flow.dnat is None:
                        # Whether the destination was translated here is not known.
                        sure, maybe = [], sure + maybe
                if not sure and not maybe:
                    # The usual case, the rule does not apply: ``never`` is the cube itself.
                    not_matched.append(marked)
                    continue
                produced += len(never) + len(sure) + len(maybe)
                not_matched += index.marked([flow.narrowed(c) for c in never])
                unsure: list[Flow] = []
                if maybe:
                    doubt = f"{rule.ref} may match: {_why_unsure(rule, needs_dnat, flow)}"
                    unsure = [flow.narrowed(c).doubtful(doubt) for c in maybe]
                # Packets that may match take the arm and also go on, both as uncertain.
                not_matched += index.marked(unsure)
                taken = [flow.narrowed(c) for c in sure] + unsure
                going_on += index.marked(self._take(rule, arm, taken, depth, walk))
            remaining = not_matched
        meter = walk.meter
        meter.tests += tests
        meter.cubes += produced
        return going_on + remaining

    def _take(self, rule: Rule, arm: Arm, flows: list[Flow], depth: int, walk: _Walk) -> list[Flow]:
        """Apply an arm's action; returns the flows that go on with the next rule."""
        if not flows:
            return []
        decision = Decision(rule.ref, rule.text)
        action = arm.action
        if action in (Action.NONE, Action.CONTINUE):
            return flows
        if action is Action.RETURN:
            walk.returned += flows
            return []
        if action in (Action.JUMP, Action.GOTO):
            return self._call(rule, arm, flows, depth, walk)
        if action is Action.QUEUE:
            doubt = f"{rule.ref}: verdict decided elsewhere ({rule.text})"
            for verdict in Verdict:
                walk.endings += [_Ending(f.doubtful(doubt), verdict, decision) for f in flows]
            return []
        verdict = Verdict.DROP if action in (Action.DROP, Action.REJECT) else Verdict.ACCEPT
        walk.endings += [_Ending(f, verdict, decision, arm.nat) for f in flows]
        return []

    def _call(self, rule: Rule, arm: Arm, flows: list[Flow], depth: int, walk: _Walk) -> list[Flow]:
        target = self._chain(rule.family, rule.table, arm.target)
        if target is None or depth >= MAX_JUMP_DEPTH:
            doubt = f"{rule.ref}: cannot follow {arm.action} {arm.target}"
            decision = Decision(rule.ref, rule.text)
            for verdict in Verdict:
                walk.endings += [_Ending(f.doubtful(doubt), verdict, decision) for f in flows]
            return []
        inner = _Walk(walk.meter)
        self._run_chain(target, flows, depth + 1, inner)
        walk.endings += inner.endings
        if arm.action is Action.JUMP:
            return inner.returned
        # goto: returning from the target returns from this chain too.
        walk.returned += inner.returned
        return []

    def _chain(self, family: str, table: str, name: str | None) -> Chain | None:
        if self._ruleset is None or name is None:
            return None
        return self._ruleset.chains.get((family, table, name))


_SOME_DEVICE = NameSet.all_but(NO_DEVICE)
_NO_DEVICE = NameSet.of(NO_DEVICE)
#: Only forwarded packets have both devices; input has no oif, output no iif. (Made once:
#: every hook run of every query starts with this.)
_HOOK_DEVICES = {
    Hook.PREROUTING: Constraint({"iif": _SOME_DEVICE, "oif": _NO_DEVICE}),
    Hook.INPUT: Constraint({"iif": _SOME_DEVICE, "oif": _NO_DEVICE}),
    Hook.FORWARD: Constraint({"iif": _SOME_DEVICE, "oif": _SOME_DEVICE}),
    Hook.OUTPUT: Constraint({"iif": _NO_DEVICE, "oif": _SOME_DEVICE}),
    Hook.POSTROUTING: Constraint({"oif": _SOME_DEVICE}),
}


def _cut(rule: Rule, flows: list[Flow], meter: _Meter, walk: _Walk) -> None:
    """The budget is spent before ``rule``: the flows not decided yet may be accepted and may
    be dropped (both uncertain, with the reason), never decided certainly. In a called chain
    they end here too: the callers cut their own flows at their next rule."""
    reason = meter.cut or "evaluation budget exceeded; the rest is uncertain"
    decision = Decision(f"{rule.ref} (budget)", f"not evaluated from {rule.ref} on: {reason}")
    doubtful = [f.doubtful(reason) for f in flows]
    for verdict in Verdict:
        walk.endings += [_Ending(f, verdict, decision) for f in doubtful]


def _ruleset_without(ruleset: Ruleset, ref: str) -> tuple[Ruleset, tuple[str, str, str]] | None:
    """``ruleset`` with one rule removed or one drop policy turned to accept (see
    ``Firewall.without``), and the key of the chain changed; None when ``ref`` names neither."""
    for key, chain in ruleset.chains.items():
        if ref == f"{chain.ref} policy":
            if not chain.is_base or chain.policy != "drop":
                return None
            changed = replace(chain, policy="accept")
        else:
            kept = tuple(rule for rule in chain.rules if rule.ref != ref)
            if len(kept) == len(chain.rules):
                continue
            changed = replace(chain, rules=kept)
        chains = dict(ruleset.chains)
        chains[key] = changed
        return Ruleset(chains, list(ruleset.problems)), key
    return None


def _with_hook_devices(hook: Hook, flows: list[Flow]) -> list[Flow]:
    constraint = _HOOK_DEVICES[hook]
    return [flow.narrowed(c) for flow in flows if (c := flow.cube.intersect(constraint))]


@cache
def _seen_by(family: str, chain_type: str | None) -> Constraint:
    """The packets a base chain of this table family and type sees."""
    values: dict[str, Any] = {"family": _FAMILY_OF_TABLE[family]}
    if chain_type == "nat":
        # Later packets of a connection follow the conntrack entry, not the nat chain.
        values["ct"] = frozenset({"new"})
    return Constraint(values)


def _applicable(chain: Chain, flow: Flow) -> tuple[list[Flow], list[Flow]]:
    """Split a flow into the part this base chain sees and the part it never sees."""
    seen = _seen_by(chain.family, chain.type)
    inside = flow.cube.intersect(seen)
    outside = [] if inside is flow.cube else flow.cube.subtract(seen)
    return ([flow.narrowed(inside)] if inside else []), [flow.narrowed(c) for c in outside]


def _why_unsure(rule: Rule, needs_dnat: bool | None, flow: Flow) -> str:
    if needs_dnat is not None and flow.dnat is None and not rule.unknown:
        return "ct status dnat: whether this host translated the destination is not known"
    return "; ".join(rule.unknown) or "unmodelled"


def _after_accept(ending: _Ending) -> Flow:
    flow = ending.flow.decided(ending.decision)
    nat = ending.nat
    if nat is None:
        return flow
    flow = flow._copy(nat=(*flow.nat, nat))
    if nat.kind in ("dnat", "redirect"):
        flow = flow.destination_translated()
    if not nat.exact:
        return flow.doubtful(f"{nat.text}: translation target not modelled")
    return _apply_exact_nat(flow, nat)


def _apply_exact_nat(flow: Flow, nat: Nat) -> Flow:
    """Apply dnat/snat to one address (and port); masquerade/redirect are the caller's."""
    address_field = {"dnat": "daddr", "snat": "saddr"}.get(nat.kind)
    port_field = {"dnat": "dport", "snat": "sport", "redirect": "dport"}.get(nat.kind)
    values: dict[str, Any] = {}
    if address_field and nat.addr is not None:
        values[address_field] = AddressSet.of(IPAddress(nat.addr))
    if port_field and nat.port is not None:
        carries_ports = flow.cube.intersect(Constraint({"proto": PORT_PROTOS}))
        if carries_ports is not None:
            values[port_field] = IntervalSet.of(65535, [nat.port])
    return flow.translate(**values) if values else flow


def apply_source_nat(flow: Flow, addresses: AddressSet) -> Flow:
    """Masquerade: the source becomes the egress interface's address(es)."""
    return flow.translate(saddr=addresses)


def apply_redirect(flow: Flow, addresses: AddressSet) -> Flow:
    return flow.translate(daddr=addresses)


def _unknown_verdicts(flows: list[Flow]) -> list[tuple[Verdict, Flow]]:
    decision = Decision("(no ruleset)", "no nftables ruleset was collected")
    doubt = "nftables ruleset not collected"
    return [(v, f.doubtful(doubt).decided(decision)) for f in flows for v in Verdict]


def _group(verdicts: list[tuple[Verdict, Flow]]) -> list[Outcome]:
    """Collect flows that share verdict, rules and certainty into one outcome each."""
    groups: dict[tuple[Any, ...], list[Flow]] = defaultdict(list)
    for verdict, f in verdicts:
        groups[(verdict, f.steps, f.certain, f.nat, f.reasons)].append(f)
    return [_outcome(key, members) for key, members in groups.items()]


def _outcome(key: tuple[Any, ...], members: list[Flow]) -> Outcome:
    verdict, steps, certain, nat, reasons = key
    space = PacketSpace.of(f.cube for f in members)
    # Untranslated packets are their own origin: one space, not two equal ones.
    untranslated = all(f.origin is f.cube for f in members)
    origin = space if untranslated else PacketSpace.of(f.origin for f in members)
    return Outcome(space, origin, verdict, certain, steps, nat, reasons)


def _union(spaces: Iterable[PacketSpace]) -> PacketSpace:
    out = PacketSpace.empty()
    for s in spaces:
        out = out.union(s)
    return out
