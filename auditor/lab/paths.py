"""Where the lab's data (in the repository) and state (on the machine) live."""

from __future__ import annotations

import os
from pathlib import Path

#: The repository's ``lab/`` folder: image recipe, per-host configuration, scenarios.
LAB_DATA = Path(__file__).resolve().parents[2] / "lab"
CONTAINERS_CONF = LAB_DATA / "containers.conf"
IMAGE_DIR = LAB_DATA / "image"
HOSTS_DIR = LAB_DATA / "hosts"
SCENARIOS_DIR = LAB_DATA / "scenarios"
SUDOERS_DIR = LAB_DATA / "sudoers"

DEFAULT_STATE = Path("/var/lib/auditor-lab")


def state_dir() -> Path:
    """The state folder (keys, known_hosts, inventory, staged host files); env overridable."""
    return Path(os.environ.get("AUDITOR_LAB_STATE", str(DEFAULT_STATE)))
