#!/usr/bin/env python3
"""Re-record the JSON test data: load each .nft file with the real nft in a throwaway network
namespace and save ``nft -j list ruleset`` beside it. Needs root, nft and iproute2.

    sudo python3 tests/data/nft/record.py            # every .nft file here
    sudo python3 tests/data/nft/record.py order.nft  # some of them

Rules are never loaded into the caller's own namespace: every command runs under
``ip netns exec fwtest-record-<pid>``, and the namespace is deleted afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def record(source: Path, namespace: str) -> Path:
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    try:
        inside = ["ip", "netns", "exec", namespace]
        subprocess.run([*inside, "nft", "flush", "ruleset"], check=True)
        subprocess.run([*inside, "nft", "-f", str(source)], check=True)
        listed = subprocess.run(
            [*inside, "nft", "-j", "list", "ruleset"], check=True, capture_output=True, text=True
        ).stdout
    finally:
        subprocess.run(["ip", "netns", "del", namespace], check=True)
    target = source.with_suffix(".json")
    target.write_text(json.dumps(json.loads(listed), indent=1) + "\n", encoding="utf-8")
    return target


def main(names: list[str]) -> int:
    sources = [HERE / n for n in names] if names else sorted(HERE.glob("*.nft"))
    namespace = f"fwtest-record-{os.getpid()}"
    for source in sources:
        print(f"{source.name} -> {record(source, namespace).name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
