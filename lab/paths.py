"""Where the lab's data (in the repository) and state (on the machine) live."""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path


def _package_folder() -> Path:
    """The lab package's own folder: its data (image recipe, hosts, scenarios, sudoers) is
    package data beside its modules, in a checkout and in an installed wheel alike. Podman and
    debootstrap need real paths, so a package that is not a plain folder (a zip) is refused."""
    root = files(__package__ or "lab")
    if not isinstance(root, Path):
        raise RuntimeError(f"the lab package must be installed as files, not from {root}")
    return root


#: The lab's data: image recipe, per-host configuration, scenarios, sudoers.
LAB_DATA = _package_folder()
CONTAINERS_CONF = LAB_DATA / "containers.conf"
IMAGE_DIR = LAB_DATA / "image"
HOSTS_DIR = LAB_DATA / "hosts"
SCENARIOS_DIR = LAB_DATA / "scenarios"
SUDOERS_DIR = LAB_DATA / "sudoers"

DEFAULT_STATE = Path("/var/lib/auditor-lab")


def state_dir() -> Path:
    """The state folder (keys, known_hosts, inventory, staged host files); env overridable."""
    return Path(os.environ.get("AUDITOR_LAB_STATE", str(DEFAULT_STATE)))
