"""The audit, phase by phase: collect, probe the network, build the model, judge, write.

Each phase is timed and reports to an observer. A phase that fails is recorded and the audit
goes on: what it would have supplied is missing from the context, and the checks that needed
it turn inconclusive with the reason. Nothing collected before a failure is lost: every
artifact is in the evidence store the moment it is collected.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from auditor.audit.network import (
    NetworkPhase,
    NetworkProbes,
    audit_scan_profile,
    run_overlapping,
)
from auditor.audit.observer import AuditObserver
from auditor.audit.options import AuditOptions
from auditor.audit.scope import ScopeGuard
from auditor.domain.errors import AuditorError
from auditor.domain.files import (
    UnsafePathError,
    check_output_dir,
    write_bytes_atomically,
    write_text_atomically,
)
from auditor.domain.findings import (
    Finding,
    FindingsDocument,
    RunInfo,
    WaiverWarning,
    write_findings,
)
from auditor.domain.inventory import Inventory, load_inventory
from auditor.domain.waivers import WAIVERS_COPY, LoadedWaivers, apply_waivers, load_waivers
from auditor.evidence.store import (
    INDEX_FILE,
    EvidenceError,
    EvidenceStore,
    auditor_version,
    seal_run,
)
from policies.context import AuditContext
from policies.model import load_controls
from policies.registry import evaluate_all
from policies.snapshot import OBSERVATIONS_FILE, write_observations
from probes.host_collector import collect_inventory
from probes.windows import collect_windows_inventory
from topology.graph import Topology


class AuditError(AuditorError):
    """The audit cannot run at all (exit code 3): bad inventory, nothing in scope, no output."""


@dataclass
class AuditResult:
    run_dir: Path
    findings: list[Finding]
    phases: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    #: artifacts in the evidence store at the end: 0 means nothing could be collected at all
    artifacts: int = 0
    #: the audit's wall time, from the first phase to the last file written (phases overlap:
    #: this, not the sum of ``phases``, is how long the audit took)
    seconds: float = 0.0
    #: of which the phases, from the first one's start to the last one's end
    phases_seconds: float = 0.0
    #: the problems of the waivers file, when one was applied (docs/waivers.md)
    waiver_warnings: list[WaiverWarning] | None = None


#: What makes a non-empty folder acceptable as ``--out``: an earlier run of the auditor holds
#: findings.json or an evidence index, and a folder ``auditor watch`` prepared for a run holds
#: its marker (auditor.watch.state.MARKER_FILE). Any other non-empty folder is refused: the
#: audit writes its files there as root. (A folder with an evidence index is then refused by
#: the evidence store, which never reuses one.)
EARLIER_RUN_SIGNS = ("findings.json", INDEX_FILE, "watch-run.json")


def check_out_dir(out_dir: Path) -> None:
    """Refuse a symlink, a file, or a non-empty folder that is not an earlier run as --out."""
    try:
        check_output_dir(out_dir, EARLIER_RUN_SIGNS)
    except UnsafePathError as exc:
        raise AuditError(str(exc)) from exc


def new_run_id(now: datetime) -> str:
    """Sortable by time, unique even for two runs started in the same second."""
    return now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def load_for_audit(inventory_path: Path) -> Inventory:
    inventory = load_inventory(inventory_path)
    if not inventory.organisation_hosts():
        raise AuditError(
            f"{inventory_path}: no organisation host to audit (roles receiving, "
            "sending, processing, terminal or log)"
        )
    return inventory


class _Phases:
    """Times each phase on its own clock: network phases overlap, so each one's seconds are
    its own wall time from start to end, and their sum can exceed the audit's
    (``AuditResult.seconds``)."""

    def __init__(self, observer: AuditObserver, result: AuditResult) -> None:
        self.observer = observer
        self.result = result
        self._lock = threading.Lock()  # phases in threads of their own record here

    @contextmanager
    def phase(self, name: str, description: str) -> Iterator[None]:
        self.observer.phase_started(name, description)
        began = time.monotonic()
        try:
            yield
        except Exception as exc:  # one phase's failure must not lose the others' results
            message = f"{type(exc).__name__}: {exc}"
            with self._lock:
                self.result.problems.append(f"{name}: {message}")
            self.observer.problem(name, message)
        finally:
            seconds = time.monotonic() - began
            with self._lock:
                self.result.phases[name] = round(seconds, 3)
            self.observer.phase_finished(name, seconds)

    def run(self, step: NetworkPhase) -> None:
        with self.phase(step.name, step.description):
            step.run()


def run_audit(
    inventory_path: Path,
    out_dir: Path,
    observer: AuditObserver,
    options: AuditOptions | None = None,
    waivers: Path | None = None,
) -> AuditResult:
    """Run every probe and control; write findings.json and the evidence under ``out_dir``.

    Raises AuditError (or SourceError for a malformed inventory) before anything is sent when
    the audit cannot run.
    """
    options = options or AuditOptions()
    check_out_dir(out_dir)
    inventory = load_for_audit(inventory_path)
    accepted = load_waivers(waivers) if waivers is not None else None  # refused before probing
    guard = ScopeGuard.from_inventory(inventory)
    started = datetime.now(UTC)
    run_id = new_run_id(started)
    try:
        out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # it will hold host data
        store = EvidenceStore.create(out_dir, run_id)
    except OSError as exc:
        raise AuditError(f"cannot write to {out_dir}: {exc.strerror or exc}") from exc
    except EvidenceError as exc:
        raise AuditError(f"cannot start the evidence store in {out_dir}: {exc}") from exc
    result = AuditResult(out_dir, [])
    began = time.monotonic()
    phases = _Phases(observer, result)
    ctx = AuditContext(inventory=inventory)
    info = RunInfo(
        id=run_id,
        started=started.isoformat(),
        inventory=str(inventory_path.resolve()),
        tool_version=auditor_version(),
    )
    try:
        _run_phases(
            ctx, phases=phases, store=store, guard=guard, options=options, observer=observer
        )
    finally:
        result.phases_seconds = round(time.monotonic() - began, 3)
        closing = _close(store, result)
    info.finished = datetime.now(UTC).isoformat()
    info.phases = dict(result.phases)
    if accepted is not None:
        _waive(out_dir, result, accepted, started, observer)
    try:
        document = FindingsDocument(
            run=info, findings=result.findings, waiver_warnings=result.waiver_warnings
        )
        write_findings(out_dir / "findings.json", document)
    except OSError as exc:  # a full disk: the evidence stored so far still verifies
        raise AuditError(
            f"cannot write {out_dir / 'findings.json'}: {exc.strerror or exc}"
            + (f"; {closing}" if closing else "")
        ) from exc
    if closing:
        raise AuditError(closing)
    _render(out_dir, inventory_path, result, observer)
    sealing = _seal(out_dir)
    result.seconds = round(time.monotonic() - began, 3)
    if sealing:
        raise AuditError(sealing)
    return result


def _close(store: EvidenceStore, result: AuditResult) -> str | None:
    """Count the artifacts and close the store; on failure (a full disk) say so: what was
    stored before still verifies."""
    with contextlib.suppress(EvidenceError, sqlite3.Error):
        result.artifacts = len(store.artifacts())
    try:
        store.close()
    except EvidenceError as exc:
        return f"the evidence could not be completed: {exc}; the artifacts stored before verify"
    return None


def _seal(out_dir: Path) -> str | None:
    """Seal the run's files (findings.json, facts.json, observations.json, the inventory copy,
    the waivers applied, every report) into its closed evidence, last, once they are all
    written, so that verify checks them too. On failure (a link planted at one's name, a full
    disk) say so: the evidence still verifies, and verify says that the files are not sealed."""
    from auditor.report import written_names

    try:
        names = ["findings.json", "facts.json", OBSERVATIONS_FILE, WAIVERS_COPY]
        seal_run(out_dir, [*names, *written_names()])
    except EvidenceError as exc:
        return f"the run's files could not be sealed: {exc}"
    return None


def _waive(
    out_dir: Path,
    result: AuditResult,
    accepted: LoadedWaivers,
    started: datetime,
    observer: AuditObserver,
) -> None:
    """Apply the waivers to the judged findings (on the auditing machine's date when the run
    started) and keep the exact text applied in the run folder, where it is sealed."""
    today = started.astimezone().date()
    outcome = apply_waivers(
        result.findings, accepted.waivers, today=today, controls=load_controls()
    )
    result.findings, result.waiver_warnings = outcome.findings, outcome.warnings
    try:
        write_bytes_atomically(out_dir / WAIVERS_COPY, accepted.content)
    except OSError as exc:  # the findings still carry the waivers; the copy is missing
        message = f"cannot copy {accepted.path} to {out_dir / WAIVERS_COPY}: {exc}"
        result.problems.append(f"waivers: {message}")
        observer.problem("waivers", message)


def _render(
    out_dir: Path, inventory_path: Path, result: AuditResult, observer: AuditObserver
) -> None:
    """The reports are derived from findings.json and the evidence; a rendering failure is
    reported, and `auditor report` can produce them again later."""
    from auditor.report import render_reports

    try:
        render_reports(out_dir, inventory_path=inventory_path)
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}"
        result.problems.append(f"report: {message}")
        observer.problem("report", message)


def _run_phases(
    ctx: AuditContext,
    *,
    phases: _Phases,
    store: EvidenceStore,
    guard: ScopeGuard,
    options: AuditOptions,
    observer: AuditObserver,
) -> None:
    result = phases.result
    collected = threading.Event()  # the scans of protected networks wait for the listeners
    collection = NetworkPhase(
        "collect",
        f"SSH collection from {len(ctx.inventory.organisation_hosts())} hosts",
        lambda: _collect(
            ctx,
            store=store,
            guard=guard,
            observer=observer,
            collected=collected,
            run_dir=result.run_dir,
        ),
    )
    if options.network_probes:
        profile = audit_scan_profile(options.scan_rate)
        network = NetworkProbes(ctx, store, guard, observer, profile, collected=collected)
        steps = [collection, *network.steps(options)]
    else:
        steps = [collection]
    for step in steps:  # findings.json lists the phases in this order, however they end
        result.phases.setdefault(step.name, 0.0)
    run_overlapping(steps, phases.run)
    with phases.phase("model", "topology graph and compiled firewalls"):
        ctx.topology = _build_topology(ctx)
    with phases.phase("judge", "controls"):
        result.findings = evaluate_all(ctx)
        # After judging, so that failing to write it (a full disk) never costs the findings.
        write_observations(phases.result.run_dir / OBSERVATIONS_FILE, ctx)


def _collect(
    ctx: AuditContext,
    *,
    store: EvidenceStore,
    guard: ScopeGuard,
    observer: AuditObserver,
    collected: threading.Event,
    run_dir: Path,
) -> None:
    try:
        ctx.collection = collect_inventory(ctx.inventory, store, guard.check)
        ctx.collection.update(collect_windows_inventory(ctx.inventory, store, guard.check))
    finally:  # also when it failed: the scans then go ahead without the listeners
        collected.set()
    for host, attempt in ctx.collection.items():
        if attempt.error is not None:
            observer.problem("collect", f"{host}: {attempt.error.reason}: {attempt.error.message}")
    write_facts(run_dir / "facts.json", ctx)


def write_facts(path: Path, ctx: AuditContext) -> None:
    """The parsed facts of every host, for re-judging and diffing without probing again.
    (The raw outputs they come from are in the evidence store; these are derived.)"""
    facts = {
        host: collected.model_dump(mode="json")
        for host, attempt in ctx.collection.items()
        if (collected := attempt.collected) is not None
    }
    write_text_atomically(path, json.dumps(facts, ensure_ascii=False, indent=1) + "\n", mode=0o600)


def _build_topology(ctx: AuditContext) -> Topology | None:
    facts = {h: f for h, a in ctx.collection.items() if (f := a.collected) is not None}
    try:
        return Topology.build(ctx.inventory, facts)
    except Exception as exc:
        ctx.topology_error = f"{type(exc).__name__}: {exc}"
        raise


Step = Callable[[], None]
