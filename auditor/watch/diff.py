"""What changed between two runs: verdicts, and for the reachability controls the topology.

Three layers, each from what the runs kept:

* verdicts: every (control, subject) whose status differs (``auditor.watch.drift``);
* finding paths: the hop list a reachability finding carries (the path that made it fail), as
  it appeared or disappeared between the runs;
* the model: both runs' topologies rebuilt from their ``facts.json`` and the inventory copy,
  and the reachability questions of the three reachability controls asked again of each: the
  paths (and the directed host → network edges they use) that exist in one run and not in the
  other, plus the host–network attachments of the graph itself.

The model layer is skipped, with a note, for a run that kept no facts.json or inventory.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from auditor.domain.attempts import Attempt
from auditor.domain.errors import AuditorError
from auditor.domain.facts import HostFacts
from auditor.domain.findings import Finding, FindingsDocument, Hop, read_findings
from auditor.domain.inventory import Inventory, Role, load_inventory
from auditor.domain.yamlsource import SourceError
from auditor.watch.drift import Change, compute_changes
from auditor.watch.state import FACTS_FILE, FINDINGS_FILE, INVENTORY_COPY, MARKER_FILE, RunRecord
from policies.context import AuditContext
from policies.support.paths import external_addresses, hops_of, outside_segments
from topology.graph import Topology
from topology.reach import ReachPath, inbound, reach


class Direction(StrEnum):
    OUTBOUND = "outbound"  #: new connections from the subject to external networks
    INBOUND = "inbound"  #: new connections from external networks into the subject


#: The controls whose verdict is a reachability question, and which way it is asked.
REACHABILITY_CONTROLS: dict[str, Direction] = {
    "recv-no-outbound": Direction.OUTBOUND,
    "proc-egress-only-via-gateways": Direction.OUTBOUND,
    "send-no-inbound": Direction.INBOUND,
}
_ROLE_OF = {
    "recv-no-outbound": Role.RECEIVING,
    "proc-egress-only-via-gateways": Role.PROCESSING,
    "send-no-inbound": Role.SENDING,
}
_LEAVING = frozenset({"route", "output", "forward", "link"})

_FACTS = TypeAdapter(dict[str, HostFacts])


class RunNotFoundError(AuditorError):
    pass


# -- what a run kept --------------------------------------------------------------------------


@dataclass
class RunView:
    name: str
    path: Path
    findings: FindingsDocument
    inventory: Inventory | None = None
    facts: dict[str, HostFacts] | None = None
    notes: list[str] = field(default_factory=list)


def resolve_run(ref: str, state: Path | None) -> Path:
    """A run folder given as a path, or as a run id (or a unique prefix of one) under
    ``state``/runs."""
    candidate = Path(ref)
    if (candidate / FINDINGS_FILE).is_file() or (candidate / MARKER_FILE).is_file():
        return candidate
    if state is None:
        raise RunNotFoundError(
            f"{ref}: not a run folder (no findings.json); give --state to look it up by id"
        )
    runs = state / "runs"
    exact = runs / ref
    if exact.is_dir():
        return exact
    matches = sorted(p for p in runs.glob(f"{ref}*") if p.is_dir()) if runs.is_dir() else []
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise RunNotFoundError(f"{ref}: no such run under {runs}")
    raise RunNotFoundError(f"{ref}: ambiguous, matches {', '.join(p.name for p in matches)}")


def load_run(path: Path) -> RunView:
    try:
        findings = read_findings(path / FINDINGS_FILE)
    except (OSError, ValueError) as exc:
        raise RunNotFoundError(f"{path}: no readable findings.json ({exc})") from exc
    view = RunView(name=path.name, path=path, findings=findings)
    record = _read_marker(path)
    if record is not None and record.state.value != "finished":
        view.notes.append(f"{path.name} is {record.state.value}, not finished")
    view.inventory = _load_inventory_of(path, findings, view.notes)
    view.facts = _load_facts(path, view.notes)
    return view


def _read_marker(path: Path) -> RunRecord | None:
    try:
        return RunRecord.model_validate_json((path / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValidationError):
        return None


def _load_inventory_of(
    path: Path, findings: FindingsDocument, notes: list[str]
) -> Inventory | None:
    # The copy the watcher kept; else the file the audit named, if it is still there.
    for candidate in (path / INVENTORY_COPY, Path(findings.run.inventory or "")):
        if candidate.is_file():
            try:
                return load_inventory(candidate)
            except SourceError as exc:
                notes.append(f"{path.name}: inventory {candidate} is invalid: {exc}")
                return None
    notes.append(f"{path.name}: no inventory kept; the topology cannot be rebuilt")
    return None


def _load_facts(path: Path, notes: list[str]) -> dict[str, HostFacts] | None:
    facts_path = path / FACTS_FILE
    if not facts_path.is_file():
        notes.append(f"{path.name}: no {FACTS_FILE}; the topology cannot be rebuilt")
        return None
    try:
        return _FACTS.validate_json(facts_path.read_bytes())
    except (OSError, ValidationError) as exc:
        notes.append(f"{path.name}: {FACTS_FILE} unreadable: {str(exc).splitlines()[0]}")
        return None


# -- paths and edges --------------------------------------------------------------------------


def hop_text(hop: Hop) -> str:
    where = f"@{hop.network}" if hop.network else ""
    return f"{hop.host} {hop.direction}{where}"


def path_signature(hops: Iterable[Hop]) -> tuple[str, ...]:
    """A path's identity: who passes it where, in which direction. Rule texts and handles are
    shown but not compared: reloading the same rule set renumbers handles."""
    return tuple(hop_text(h) for h in hops)


def path_edges(hops: Iterable[Hop]) -> set[tuple[str, str]]:
    """The directed graph edges a path uses: host → network when it leaves a host, network →
    host when it enters one."""
    edges: set[tuple[str, str]] = set()
    for hop in hops:
        if hop.network is None:
            continue
        if hop.direction == "input":
            edges.add((f"network:{hop.network}", f"host:{hop.host}"))
        elif hop.direction in _LEAVING:
            edges.add((f"host:{hop.host}", f"network:{hop.network}"))
    return edges


@dataclass(frozen=True)
class ModelPath:
    """A reachability path found by the model, with what it carries."""

    signature: tuple[str, ...]
    hops: tuple[Hop, ...]
    packets: tuple[str, ...]
    certain: bool
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class PathChange:
    control: str
    subject: str
    source: str  #: "finding" (the path a finding carries) or "model" (rebuilt topology)
    change: str  #: "appeared" or "disappeared"
    hops: tuple[str, ...]
    rules: tuple[str, ...] = ()
    packets: tuple[str, ...] = ()
    certain: bool = True
    reasons: tuple[str, ...] = ()  #: why an uncertain path is uncertain


@dataclass(frozen=True)
class EdgeChange:
    source: str  #: "reach" (directed, from the model's paths) or "graph" (attachments)
    change: str
    edge: tuple[str, str]
    controls: tuple[str, ...] = ()  #: for reach edges: the controls whose paths use it


@dataclass
class RunDiff:
    run_a: str
    run_b: str
    verdicts: list[Change]
    paths: list[PathChange]
    edges: list[EdgeChange]
    notes: list[str]

    def to_json(self) -> dict[str, object]:
        return {
            "run_a": self.run_a,
            "run_b": self.run_b,
            "verdicts": [c.model_dump(mode="json", by_alias=True) for c in self.verdicts],
            "paths": [vars(p) for p in self.paths],
            "edges": [vars(e) for e in self.edges],
            "notes": self.notes,
        }


def _rules(hops: Iterable[Hop]) -> tuple[str, ...]:
    return tuple(f"{h.host} {h.direction}: {h.rule}" for h in hops if h.rule)


def finding_path_changes(a: FindingsDocument, b: FindingsDocument) -> list[PathChange]:
    before = {(f.control, f.subject): f for f in a.findings if f.control in REACHABILITY_CONTROLS}
    after = {(f.control, f.subject): f for f in b.findings if f.control in REACHABILITY_CONTROLS}
    changes: list[PathChange] = []
    for key in sorted(before.keys() | after.keys()):
        old, new = _hops(before.get(key)), _hops(after.get(key))
        if path_signature(old) == path_signature(new):
            continue
        for hops, change in ((old, "disappeared"), (new, "appeared")):
            if hops:
                changes.append(
                    PathChange(
                        key[0], key[1], "finding", change, path_signature(hops), _rules(hops)
                    )
                )
    return changes


def _hops(finding: Finding | None) -> list[Hop]:
    return list(finding.path) if finding is not None else []


# -- the model, rebuilt -------------------------------------------------------------------------


def _context(view: RunView) -> AuditContext | None:
    if view.inventory is None or view.facts is None:
        return None
    collection = {h: Attempt.ok("facts", h, f, []) for h, f in view.facts.items()}
    ctx = AuditContext(inventory=view.inventory, collection=collection)
    try:
        ctx.topology = Topology.build(view.inventory, view.facts)
    except Exception as exc:  # the diff still shows verdicts; it says why there is no model
        view.notes.append(
            f"{view.name}: topology could not be rebuilt: {type(exc).__name__}: {exc}"
        )
        return None
    return ctx


def model_paths(ctx: AuditContext, control: str, host: str) -> dict[tuple[str, ...], ModelPath]:
    """The paths the control's reachability question finds for ``host`` in this model."""
    assert ctx.topology is not None
    found: list[ReachPath] = []
    if REACHABILITY_CONTROLS[control] is Direction.OUTBOUND:
        found += reach(ctx.topology, host, external_addresses(ctx)).paths
    else:
        for segment in outside_segments(ctx, host):
            found += inbound(ctx.topology, host, segment).paths
    paths: dict[tuple[str, ...], ModelPath] = {}
    for path in found:
        hops = tuple(hops_of(path))
        signature = path_signature(hops)
        packets = tuple(path.space.describe()[:4])
        reasons = tuple(path.reasons[:3])
        certain = path.certain
        known = paths.get(signature)
        if known is not None:
            # Several packet classes on one path: one entry, certain if any class is.
            packets = tuple(dict.fromkeys(known.packets + packets))[:6]
            reasons = tuple(dict.fromkeys(known.reasons + reasons))[:3]
            certain = certain or known.certain
        paths[signature] = ModelPath(signature, hops, packets, certain, reasons)
    return paths


def _subjects(ctx: AuditContext, control: str) -> list[str]:
    return [h for h in ctx.inventory.hosts_with(_ROLE_OF[control]) if ctx.facts(h) is not None]


def model_changes(
    ctx_a: AuditContext, ctx_b: AuditContext
) -> tuple[list[PathChange], list[EdgeChange]]:
    paths: list[PathChange] = []
    edges_a: dict[tuple[str, str], set[str]] = {}
    edges_b: dict[tuple[str, str], set[str]] = {}
    for control in REACHABILITY_CONTROLS:
        for host in sorted(set(_subjects(ctx_a, control)) | set(_subjects(ctx_b, control))):
            before = model_paths(ctx_a, control, host) if host in _subjects(ctx_a, control) else {}
            after = model_paths(ctx_b, control, host) if host in _subjects(ctx_b, control) else {}
            paths += _path_set_changes(control, host, before, after)
            _collect_edges(edges_a, before.values(), control)
            _collect_edges(edges_b, after.values(), control)
    edges = _edge_changes("reach", edges_a, edges_b)
    assert ctx_a.topology is not None and ctx_b.topology is not None
    edges += _edge_changes("graph", _attachments(ctx_a.topology), _attachments(ctx_b.topology))
    return paths, edges


def _path_set_changes(
    control: str,
    host: str,
    before: dict[tuple[str, ...], ModelPath],
    after: dict[tuple[str, ...], ModelPath],
) -> list[PathChange]:
    changes = []
    for side, other, change in ((before, after, "disappeared"), (after, before, "appeared")):
        for signature in sorted(side.keys() - other.keys()):
            path = side[signature]
            changes.append(
                PathChange(
                    control,
                    host,
                    "model",
                    change,
                    signature,
                    _rules(path.hops),
                    path.packets,
                    path.certain,
                    path.reasons,
                )
            )
    return changes


def _collect_edges(
    into: dict[tuple[str, str], set[str]], paths: Iterable[ModelPath], control: str
) -> None:
    for path in paths:
        for edge in path_edges(path.hops):
            into.setdefault(edge, set()).add(control)


def _attachments(topology: Topology) -> dict[tuple[str, str], set[str]]:
    edges: dict[tuple[str, str], set[str]] = {}
    for u, v, data in topology.graph.edges(data=True):
        if data.get("kind") != "attachment":
            continue
        host, segment = (u, v) if str(u).startswith("host:") else (v, u)
        edges[(str(host), str(segment).replace("segment:", "network:", 1))] = set()
    return edges


def _edge_changes(
    source: str, a: dict[tuple[str, str], set[str]], b: dict[tuple[str, str], set[str]]
) -> list[EdgeChange]:
    changes = [
        EdgeChange(source, "disappeared", edge, tuple(sorted(a[edge])))
        for edge in sorted(a.keys() - b.keys())
    ]
    changes += [
        EdgeChange(source, "appeared", edge, tuple(sorted(b[edge])))
        for edge in sorted(b.keys() - a.keys())
    ]
    return changes


def diff_runs(a: RunView, b: RunView) -> RunDiff:
    verdicts = compute_changes(
        a.findings,
        b.findings,
        run=b.name,
        previous_run=a.name,
        at=_finished_at(b.findings),
    )
    paths = finding_path_changes(a.findings, b.findings)
    edges: list[EdgeChange] = []
    ctx_a, ctx_b = _context(a), _context(b)
    notes = a.notes + b.notes  # read after _context, which may add its own
    if ctx_a is not None and ctx_b is not None:
        model_paths_changed, edges = model_changes(ctx_a, ctx_b)
        paths += model_paths_changed
    else:
        notes.append("model comparison skipped: both runs need facts.json and an inventory")
    return RunDiff(a.name, b.name, verdicts, paths, edges, notes)


def _finished_at(document: FindingsDocument) -> datetime:
    text = document.run.finished or document.run.started
    return datetime.fromisoformat(text)
