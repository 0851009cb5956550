"""``python -m bench [BENCHMARK ...] [options]``: run benchmarks, write bench/results/latest.json.

Benchmarks: ``reachability`` (synthetic organisations, no lab needed), ``audit-lab`` (the
baseline lab audit per phase; takes /tmp/auditor-lab.lock and brings the lab up itself),
``collection`` (SSH host collection of one host and of --hosts hosts, containers set up like
the lab's term-1 on a podman network of its own; takes /tmp/auditor-lab.lock, needs root and
the lab image, and removes everything it created), ``firewall-worst`` (one host's rule set at
its worst, overlapping ranges, and at its largest; see bench/firewall_worst.py), ``query``
(``auditor query`` questions on the synthetic organisation's model; see bench/query.py),
``oracle`` (the engine against the kernel on rule sets real tools write; needs root; see
bench/oracle.py).
Without a name, every benchmark that needs no lab runs. Results of benchmarks not run this
time are kept in latest.json from earlier runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "latest.json"
DEFAULT_SIZES = [200, 2000, 10000]
KNOWN = {"reachability", "audit-lab", "collection", "firewall-worst", "query", "oracle"}


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []


def _machine() -> dict[str, Any]:
    import os

    memory_kib = next(
        (
            int(line.split()[1])
            for line in _read_lines(Path("/proc/meminfo"))
            if line.startswith("MemTotal:")
        ),
        0,
    )
    cpu_lines = [
        line.split(":", 1)[1].strip()
        for line in _read_lines(Path("/proc/cpuinfo"))
        if line.startswith("model name")
    ]
    cpu = cpu_lines[0] if cpu_lines else ""
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "system": platform.platform(),
    }


def _save(new: list[dict[str, Any]]) -> None:
    """Replace the entries of the benchmarks just run; keep the others."""
    previous: list[dict[str, Any]] = []
    if RESULTS.exists():
        previous = json.loads(RESULTS.read_text(encoding="utf-8")).get("benchmarks", [])
    ran = {r["name"] for r in new}
    merged = [r for r in previous if r.get("name") not in ran] + new
    document = {
        "written": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
        "benchmarks": merged,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"written {RESULTS}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "benchmarks",
        nargs="*",
        metavar="BENCHMARK",
        help="reachability, audit-lab, collection, firewall-worst, query, oracle "
        "(default: reachability, firewall-worst, query)",
    )
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=DEFAULT_SIZES,
        help="reachability, query: organisation sizes in hosts",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="reachability, query: generator seed"
    )
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="reachability: seconds allowed per size"
    )
    parser.add_argument(
        "--hosts", type=int, default=50, help="collection: SSH hosts collected together"
    )
    parser.add_argument(
        "--parallel",
        type=int,
        default=None,
        help="collection: hosts collected at once (default: the inventory's ssh.parallel default)",
    )
    parser.add_argument(
        "--runs", type=int, default=3, help="collection: timed runs of one host and of all"
    )
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from bench.synthetic import SEED

    seed = SEED if args.seed is None else args.seed
    if args.child is not None:
        from bench.reachability import measure

        print(json.dumps(measure(args.child, seed)))
        return 0
    chosen = args.benchmarks or ["reachability", "firewall-worst", "query"]
    unknown = set(chosen) - KNOWN
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    results: list[dict[str, Any]] = []
    if "reachability" in chosen:
        from bench.reachability import run_sizes

        results += run_sizes(args.sizes, seed, args.timeout)
    if "firewall-worst" in chosen:
        from bench.firewall_worst import run_firewall_worst

        results.append(run_firewall_worst())
    if "query" in chosen:
        from bench.query import run_query

        results += run_query(args.sizes, seed)
    if "oracle" in chosen:
        from bench.oracle import run_oracle

        results.append(run_oracle())
    if "audit-lab" in chosen:
        from bench.auditlab import run_audit_lab

        results.append(run_audit_lab())
    if "collection" in chosen:
        from bench.collection import run_collection

        results.append(run_collection(args.hosts, args.parallel, args.runs))
    _save(results)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
