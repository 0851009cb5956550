"""The machine's lab lock, held by every benchmark that uses podman or the lab.

The lab is one per machine: ``make test-lab`` and other runs take ``flock /tmp/auditor-lab.lock``
(flock(1)); taking flock(2) on the same file here makes them wait for each other.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK = Path("/tmp/auditor-lab.lock")


@contextmanager
def holding_lab_lock() -> Iterator[None]:
    """Wait for the lock, hold it for the block; closing the file releases it."""
    with LOCK.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
