"""The findings each recording judges to, kept beside it: the guard of refactors.

``judged.json.gz`` in each scenario's folder holds the findings (as findings.json writes them)
that the recorded observations gave when they were last written with ``--write``. The test
``test_recorded_contexts_judge_to_their_stored_findings`` judges every recording again and
requires the same findings to the byte: a change that moves code without meaning to change a
verdict, a path, a rule reference or a sentence proves it here. A change that means to alter
findings writes them again (and its diff shows what changed)::

    .venv/bin/python tests/data/contexts/rejudge.py --write
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[3]
# Run as a script, Python puts this folder first on the path, not the repository.
if str(REPOSITORY) not in sys.path:
    sys.path.insert(0, str(REPOSITORY))

from policies.registry import evaluate_all  # noqa: E402
from policies.snapshot import restore_context  # noqa: E402
from tests.lab_scenarios import RECORDING_FILE, RECORDINGS, SCENARIOS, recording  # noqa: E402

JUDGED_FILE = "judged.json.gz"


def judged_text(scenario: str) -> str:
    """The findings of the scenario's recording, judged now, as stable JSON text."""
    inventory, observations = recording(scenario)
    findings = evaluate_all(restore_context(inventory, observations))
    return json.dumps(
        [f.model_dump(mode="json") for f in findings], ensure_ascii=False, indent=1, sort_keys=True
    )


def stored_text(scenario: str) -> str:
    return gzip.decompress((RECORDINGS / scenario / JUDGED_FILE).read_bytes()).decode("utf-8")


def write(scenario: str) -> None:
    # mtime=0: the same findings give the same bytes, so an unchanged file stays unchanged in git
    data = gzip.compress(judged_text(scenario).encode("utf-8"), mtime=0)
    (RECORDINGS / scenario / JUDGED_FILE).write_bytes(data)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write the judged findings")
    args = parser.parse_args()
    differing = []
    for scenario in SCENARIOS:
        if not (RECORDINGS / scenario / RECORDING_FILE).is_file():
            # A new scenario not recorded yet (test_recorded_scenarios says so too).
            print(f"{scenario}: no recording yet, skipped (record.py {scenario})")
            continue
        if args.write:
            write(scenario)
        elif not (RECORDINGS / scenario / JUDGED_FILE).is_file():
            print(f"{scenario}: no {JUDGED_FILE} yet (rejudge.py --write)")
            differing.append(scenario)
        elif judged_text(scenario) != stored_text(scenario):
            differing.append(scenario)
    for scenario in differing:
        print(f"{scenario}: judged findings differ from {JUDGED_FILE}")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
