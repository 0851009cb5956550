"""The `reachability` benchmark: a synthetic organisation through the model and every control.

Each size runs in a child process of its own, so that its peak RSS (``ru_maxrss``) is its own
and not the largest of all sizes. Phases timed: generating the organisation (not part of the
audit, reported apart), validating its inventory, ``Topology.build`` (compiling every rule
set), ``evaluate_all`` (every control; the empirical sides are absent, so they are
inconclusive: only the model works), and the model queries alone on a freshly built topology
(outbound ``reach`` from every receiving and processing host, ``inbound`` into every sending
host from its outside networks, ``listener_exposure`` of a fixed sample of organisation hosts).
"""

from __future__ import annotations

import gc
import itertools
import json
import math
import os
import resource
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

T = TypeVar("T")

#: Targets of issue 7 on a 2-core machine: size -> (seconds, MiB).
TARGETS = {2000: (10.0, 2048.0), 10000: (60.0, 8192.0)}
QUERY_SAMPLE = 100


def _timed(
    phases: dict[str, float], name: str, work: Callable[[], T], cpu: dict[str, float] | None = None
) -> T:
    began, began_cpu = time.perf_counter(), time.process_time()
    value = work()
    phases[name] = round(time.perf_counter() - began, 3)
    if cpu is not None:
        cpu[name] = round(time.process_time() - began_cpu, 3)
    return value


class _CollectorClock:
    """Process time spent in Python's cyclic garbage collector while it is installed.

    A full collection walks every object alive (on the largest organisation, the collected
    facts alone are millions) and comes whenever the long-lived objects have grown by a
    quarter since the last: whether one falls inside the timed phases or just after them
    moves ``cpu_seconds`` by seconds, so it is reported apart.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.full_collections = 0
        self._began = 0.0

    def __enter__(self) -> _CollectorClock:
        gc.callbacks.append(self._tick)
        return self

    def __exit__(self, *_: object) -> None:
        gc.callbacks.remove(self._tick)

    def _tick(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.process_time()
            return
        self.seconds += time.process_time() - self._began
        if info["generation"] == 2:
            self.full_collections += 1


def _load() -> list[float]:
    """The 1, 5 and 15 minute load averages: the machine is shared, wall time depends on it."""
    return [round(x, 2) for x in os.getloadavg()]


def measure(size: int, seed: int) -> dict[str, Any]:
    """Run one size in this process and return its figures (called in the child)."""
    from bench.synthetic import generate
    from policies.context import AuditContext
    from policies.registry import evaluate_all
    from topology.graph import Topology

    phases: dict[str, float] = {}
    cpu: dict[str, float] = {}
    org = _timed(phases, "generate", lambda: generate(size, seed))
    load_before = _load()
    with _CollectorClock() as collector:
        inventory = _timed(phases, "inventory", org.inventory, cpu)
        ctx = AuditContext(inventory=inventory, collection=org.collection())
        ctx.topology = _timed(phases, "build", lambda: Topology.build(inventory, org.facts), cpu)
        findings = _timed(phases, "evaluate", lambda: evaluate_all(ctx), cpu)
    load_after = _load()
    # The queries are timed cold, on a topology of their own: evaluate_all has memoised
    # listener exposures and firewall answers on the first one.
    ctx.topology = None
    ctx.topology = _timed(phases, "rebuild", lambda: Topology.build(inventory, org.facts))
    queries = _timed(phases, "queries", lambda: _model_queries(ctx))
    failed = {(f.control, f.subject) for f in findings if f.status == "fail"}
    seconds = phases["inventory"] + phases["build"] + phases["evaluate"]
    return {
        "name": "reachability",
        "size": size,
        "seconds": round(seconds, 3),
        # CPU time of the same three phases (one thread): what the code costs whatever else
        # the machine runs; with the load averages around them to read the wall time by.
        "cpu_seconds": round(cpu["inventory"] + cpu["build"] + cpu["evaluate"], 3),
        # Of which in the cyclic garbage collector, and how many full collections.
        "gc_cpu_seconds": round(collector.seconds, 3),
        "gc_full_collections": collector.full_collections,
        "load_average": {"before": load_before, "after": load_after},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "phases": phases,
        "seed": seed,
        "networks": len(inventory.networks),
        "tunnels": len(inventory.tunnels),
        "collected_hosts": len(org.facts),
        "rules": sum(org.rule_counts.values()),
        "rules_per_host_max": max(org.rule_counts.values()),
        "findings": dict(Counter(str(f.status) for f in findings)),
        "planted_found": len(org.planted & failed),
        "planted": len(org.planted),
        "unexpected_fail": len(failed - org.planted),
        "queries": queries,
    }


def _model_queries(ctx: Any) -> dict[str, Any]:
    from auditor.domain.inventory import Role
    from policies.support.paths import external_addresses, outside_segments
    from topology.reach import inbound, listener_exposure, reach

    topology = ctx.topology
    outside = external_addresses(ctx)
    inventory = ctx.inventory
    counts: Counter[str] = Counter()
    times: dict[str, float] = {}

    def run(kind: str, work: Callable[[], object]) -> None:
        began = time.perf_counter()
        work()
        times[kind] = times.get(kind, 0.0) + time.perf_counter() - began
        counts[kind] += 1

    for host in inventory.hosts_with(Role.RECEIVING) + inventory.hosts_with(Role.PROCESSING):
        run("reach_outbound", partial(reach, topology, host, outside))
    for host in inventory.hosts_with(Role.SENDING):
        for segment in outside_segments(ctx, host):
            run("inbound", partial(inbound, topology, host, segment))
    organisation = inventory.organisation_hosts()
    step = max(1, len(organisation) // QUERY_SAMPLE)
    for host in organisation[::step][:QUERY_SAMPLE]:
        run("listener_exposure", partial(listener_exposure, topology, host))
    return {
        kind: {
            "count": counts[kind],
            "seconds": round(times[kind], 3),
            "mean_ms": round(1000 * times[kind] / counts[kind], 2),
        }
        for kind in counts
    }


def run_sizes(sizes: list[int], seed: int, timeout: float) -> list[dict[str, Any]]:
    """Each size in a fresh interpreter; a size that overruns ``timeout`` is recorded so."""
    results = []
    for size in sizes:
        print(f"reachability: {size} hosts ...", file=sys.stderr, flush=True)
        command = [
            sys.executable,
            "-m",
            "bench",
            "reachability",
            "--child",
            str(size),
            "--seed",
            str(seed),
        ]
        try:
            done = subprocess.run(
                command, check=False, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            results.append(
                {
                    "name": "reachability",
                    "size": size,
                    "seconds": None,
                    "peak_rss_mb": None,
                    "error": f"timed out after {timeout:.0f} s",
                }
            )
            continue
        if done.returncode != 0:
            results.append(
                {
                    "name": "reachability",
                    "size": size,
                    "seconds": None,
                    "peak_rss_mb": None,
                    "error": done.stderr.strip()[-2000:],
                }
            )
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        _judge_targets(result)
        print(f"  {result['seconds']} s, {result['peak_rss_mb']} MiB", file=sys.stderr)
        results.append(result)
    _add_growth(results)
    return results


def _judge_targets(result: dict[str, Any]) -> None:
    target = TARGETS.get(result["size"])
    if target is None:
        return
    seconds, mib = target
    result["target_seconds"] = seconds
    result["target_peak_rss_mb"] = mib
    result["meets_target"] = result["seconds"] <= seconds and result["peak_rss_mb"] <= mib


def _add_growth(results: list[dict[str, Any]]) -> None:
    """The exponent k of time ~ n^k between consecutive sizes (n log n is k slightly > 1), on
    wall time and on CPU time (which depends less on what else the machine runs)."""
    done = [r for r in results if r.get("seconds")]
    for small, large in itertools.pairwise(done):
        sizes = math.log(large["size"] / small["size"])
        wall = math.log(large["seconds"] / small["seconds"]) / sizes
        large["growth_exponent_from_previous"] = round(wall, 2)
        if small.get("cpu_seconds") and large.get("cpu_seconds"):
            cpu = math.log(large["cpu_seconds"] / small["cpu_seconds"]) / sizes
            large["cpu_growth_exponent_from_previous"] = round(cpu, 2)
