"""Record each lab scenario's audit observations for the offline tests (see README.md here).

As root, holding the machine's lab lock for the whole run (the lab is one per machine)::

    flock /tmp/auditor-lab.lock .venv/bin/python tests/data/contexts/record.py [SCENARIO ...]

For each scenario (all of lab/scenarios/ by default): bring it up, run the whole audit, and,
when the audit concluded exactly what the scenario expects, keep the lab's inventory and the
run's observations.json (gzipped) in tests/data/contexts/<scenario>/. A run that did not is
reported and not kept: a recording is only worth replaying if the live audit agreed with the
scenario. The lab is taken down at the end.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[3]
# Run as a script, Python puts this folder first on the path, not the repository: the shared
# test helpers (tests/lab_scenarios.py) import from there.
if str(REPOSITORY) not in sys.path:
    sys.path.insert(0, str(REPOSITORY))

from auditor.audit.observer import SilentObserver  # noqa: E402
from auditor.audit.orchestrator import run_audit  # noqa: E402
from auditor.domain.findings import Finding  # noqa: E402
from auditor.domain.inventory import load_inventory  # noqa: E402
from lab import runtime  # noqa: E402
from policies.registry import evaluate_all  # noqa: E402
from policies.snapshot import OBSERVATIONS_FILE, read_observations, restore_context  # noqa: E402
from tests.lab_scenarios import (  # noqa: E402
    INVENTORY_FILE,
    RECORDING_FILE,
    RECORDINGS,
    SCENARIOS,
    mismatch,
    verdicts_of,
)


def record(scenario: str, work: Path) -> str | None:
    """Audit the scenario on the live lab and keep its recording; the mismatch, if any."""
    began = time.monotonic()
    state = runtime.up(scenario)
    run_dir = work / scenario
    result = run_audit(state.inventory_path, run_dir, SilentObserver())
    findings = [f.model_dump(mode="json") for f in result.findings]
    problem = mismatch(scenario, verdicts_of(findings))
    if problem is None and not judges_again_the_same(
        state.inventory_path, run_dir, result.findings
    ):
        problem = f"{scenario}: its observations.json, judged again, differs from its findings"
    if problem is None:
        keep(scenario, state.inventory_path, run_dir / OBSERVATIONS_FILE)
    seconds = time.monotonic() - began
    print(f"{scenario}: {'kept' if problem is None else 'NOT kept'} ({seconds:.0f} s)", flush=True)
    return problem


def judges_again_the_same(inventory: Path, run_dir: Path, findings: list[Finding]) -> bool:
    """The recording is complete: judging it again offline gives the live audit's findings."""
    observations = read_observations(run_dir / OBSERVATIONS_FILE)
    again = evaluate_all(restore_context(load_inventory(inventory), observations))
    return [f.model_dump() for f in again] == [f.model_dump() for f in findings]


def keep(scenario: str, inventory: Path, observations: Path) -> None:
    folder = RECORDINGS / scenario
    folder.mkdir(exist_ok=True)
    # copyfile, not copy: the run folder's files are 0600; the repository's are ordinary files.
    shutil.copyfile(inventory, folder / INVENTORY_FILE)
    # mtime=0: the same observations give the same bytes, so an unchanged recording is no change
    packed = gzip.compress(observations.read_bytes(), compresslevel=9, mtime=0)
    (folder / RECORDING_FILE).write_bytes(packed)


def sizes() -> str:
    files = [*RECORDINGS.glob(f"*/{RECORDING_FILE}"), *RECORDINGS.glob(f"*/{INVENTORY_FILE}")]
    total = sum(f.stat().st_size for f in files)
    largest = max(files, key=lambda f: f.stat().st_size, default=None)
    where = (
        f"; largest {largest.relative_to(RECORDINGS)} {largest.stat().st_size:,} B"
        if largest
        else ""
    )
    return f"{len(files)} files, {total:,} B in all{where}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="default: all")
    chosen = parser.parse_args(argv).scenarios or SCENARIOS
    unknown = sorted(set(chosen) - set(SCENARIOS))
    if unknown:
        parser.error(f"no such scenario under lab/scenarios: {', '.join(unknown)}")
    problems: list[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix="record-contexts-") as work:
            for scenario in chosen:
                problem = record(scenario, Path(work))
                if problem is not None:
                    problems.append(problem)
    finally:
        runtime.down()
    print(sizes())
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
