"""The `oracle` benchmark: the engine against the kernel on rule sets real tools write.

Every rule set of the corpus (ufw, firewalld, dockerd's chains through iptables-nft,
Debian's nftables examples, dockerd's chains and a host firewall through iptables-legacy) is built by its tool in
throwaway namespaces, and every probe derived from its literals
(tests/unit/topology/oracle/probes.py) is sent through the kernel; the engine is asked the
same question per hook. Figures per rule set: compared, agree, wrong, uncertain, uncertain
with the kernel's verdict among the engine's answers, engine errors, and the constructs
behind the uncertainty.

Needs root, nft, conntrack, ufw, iptables (firewalld for its rule set).
``python -m bench.oracle --record`` also writes the corpus (tests/data/oracle/NAME) the
offline tests re-run the engine on.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections import Counter
from typing import Any

from auditor.domain.errors import AuditorError
from tests.unit.topology.oracle import corpus, differential, netlab

NEEDED = ("ip", "nft", "conntrack", "unshare")
MAX_LISTED = 40


class OracleUnavailableError(AuditorError):
    """The machine cannot run the oracle (not root, a tool missing)."""


def _check_machine() -> None:
    if os.geteuid() != 0:
        raise OracleUnavailableError("the oracle benchmark needs root (network namespaces)")
    missing = [t for t in NEEDED if shutil.which(t) is None]
    if missing:
        raise OracleUnavailableError(f"the oracle benchmark needs {', '.join(missing)}")


def _one(lab: netlab.Netlab, source: corpus.Source, record: bool) -> dict[str, Any]:
    started = time.monotonic()
    measured = differential.measure(lab, source)
    figures, found = differential.compare(measured.view, measured.records)
    if record:
        differential.record(measured)
    entry = {"rule_set": source.name, "tool": source.tool, **figures.as_json()}
    entry["seconds"] = round(time.monotonic() - started, 1)
    entry["wrong_cases"] = [
        {
            "hook": c.hook,
            "probe": c.probe.as_dict(),
            "kernel": c.kernel,
            "engine": [list(a) for a in c.engine],
            "rule": c.rule,
        }
        for c in found
        if c.verdict in ("wrong", "error")
    ][:MAX_LISTED]
    print(f"oracle: {source.name}: {figures.as_json()}", file=sys.stderr)
    return entry


def _totals(entries: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("compared", "agree", "wrong", "uncertain", "uncertain_kernel_among_answers", "errors")
    totals: dict[str, Any] = {k: sum(e[k] for e in entries) for k in keys}
    causes: Counter[str] = Counter()
    for entry in entries:
        causes.update(entry["top_uncertainty_causes"])
    totals["top_uncertainty_causes"] = dict(causes.most_common(10))
    compared = max(totals["compared"], 1)
    totals["uncertain_percent"] = round(100 * totals["uncertain"] / compared, 2)
    return totals


def run_oracle(record: bool = False) -> dict[str, Any]:
    _check_machine()
    started = time.monotonic()
    with netlab.netlab() as lab:
        entries = [_one(lab, source, record) for source in corpus.sources(lab)]
    return {
        "name": "oracle",
        "seconds": round(time.monotonic() - started, 1),
        "totals": _totals(entries),
        "rule_sets": entries,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.oracle", description=__doc__)
    parser.add_argument("--record", action="store_true", help="also write tests/data/oracle")
    args = parser.parse_args(argv)
    from bench.__main__ import _save

    _save([run_oracle(record=args.record)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
