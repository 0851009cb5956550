"""Every podman call of the lab goes through here, with the lab's containers.conf."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

from lab.errors import LabError
from lab.paths import CONTAINERS_CONF

#: podman prints this on every call on these machines; it is not an error.
_SYSLOG_NOISE = "failed to connect to syslog"


def podman_env() -> dict[str, str]:
    """The environment for podman: the caller's, with the lab's containers.conf."""
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def require_podman() -> str:
    path = shutil.which("podman")
    if path is None:
        raise LabError("podman is not installed (apt-get install podman runc)")
    return path


def clean_stderr(stderr: str) -> str:
    """stderr without podman's syslog noise, as one line."""
    lines = [line for line in stderr.splitlines() if _SYSLOG_NOISE not in line and line.strip()]
    return " | ".join(lines)


def podman(
    *args: str,
    check: bool = True,
    input_bytes: bytes | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run ``podman ARGS``; on failure (when ``check``) raise LabError naming the command."""
    cmd = [require_podman(), *args]
    try:
        proc = subprocess.run(
            cmd,
            env=podman_env(),
            input=input_bytes.decode() if input_bytes is not None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"podman {' '.join(args[:3])} timed out after {timeout:.0f} s") from exc
    if check and proc.returncode != 0:
        raise LabError(f"podman {' '.join(args[:4])} failed: {clean_stderr(proc.stderr)}")
    return proc


def podman_json(*args: str) -> Any:
    return json.loads(podman(*args).stdout or "null")


def exec_in(
    container: str, command: Sequence[str], *, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run a command inside a running lab container (as root)."""
    return podman("exec", container, *command, check=check, timeout=timeout)


def sh_in(
    container: str, script: str, *, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run a shell snippet inside a running lab container."""
    return exec_in(container, ["sh", "-c", script], check=check, timeout=timeout)


def image_exists(reference: str) -> bool:
    return podman("image", "exists", reference, check=False).returncode == 0
