"""Measure `lab up` (image cached) for the baseline: a figure, not a test.

Usage: .venv/bin/python bench/lab_startup.py [--runs N] [--out FILE] [--keep]
Prints and writes JSON: each run's seconds (down, then up until functional), min and median.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from lab import runtime
from lab.build import build_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/lab_startup.json"))
    parser.add_argument("--keep", action="store_true", help="leave the last lab running")
    args = parser.parse_args()
    build_image(print)  # not measured: the image is cached in normal use
    seconds = []
    for run in range(args.runs):
        runtime.down()
        started = time.monotonic()
        runtime.up(None)
        seconds.append(round(time.monotonic() - started, 1))
        print(f"run {run + 1}: lab up (baseline) in {seconds[-1]} s")
    if not args.keep:
        runtime.down()
    result = {
        "benchmark": "lab_startup",
        "scenario": "baseline",
        "runs": seconds,
        "min_seconds": min(seconds),
        "median_seconds": statistics.median(seconds),
        "target_seconds": 60,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
