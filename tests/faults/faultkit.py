"""Helpers for the lab fault-injection tests: inventory variants, the audit run through the real
command line, the evidence store read while a run is going, faults fired from a thread, and
files on lab hosts replaced and put back.

Everything here only touches the lab (containers ``lab-*``, addresses in 10.98.0.0/16) and
processes these tests started.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from auditor.evidence.store import ArtifactRecord, connect_read_only, read_raw_rows, record_from_row
from auditor.evidence.verify import VerificationReport, verify_run
from lab.podman import podman
from lab.runtime import LabState

AUDITOR = [sys.executable, "-m", "auditor"]
INDEX = Path("evidence") / "index.sqlite"
DECIDED = {"pass", "fail", "not-applicable"}


# -- inventory variants ---------------------------------------------------------------------


def inventory_copy(
    lab: LabState,
    dest: Path,
    *,
    ssh: Mapping[str, Any] | None = None,
    hosts: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """The lab's inventory written to ``dest``/inventory.yaml with absolute key and
    known_hosts paths; ``ssh`` entries replace those of the ssh section, ``hosts`` entries
    those of the named hosts."""
    document = yaml.safe_load(lab.inventory_path.read_text(encoding="utf-8"))
    document["ssh"]["key"] = str(lab.auditor_key)
    document["ssh"]["known_hosts"] = str(lab.known_hosts)
    document["ssh"].update(ssh or {})
    for host, changes in (hosts or {}).items():
        document["hosts"][host].update(changes)
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / "inventory.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), "utf-8")
    return path


# -- running the audit ----------------------------------------------------------------------


@dataclass
class AuditRun:
    out: Path
    exit_code: int
    stdout: str
    stderr: str
    seconds: float
    findings: list[dict[str, Any]] = field(default_factory=list)

    def of(self, subject: str) -> list[dict[str, Any]]:
        return [f for f in self.findings if f["subject"] == subject]

    def status(self) -> dict[tuple[str, str], str]:
        return {(f["control"], f["subject"]): f["status"] for f in self.findings}


class AuditProcess:
    """``auditor audit`` started in the background (so that a fault can strike meanwhile)."""

    def __init__(self, inventory: Path, out: Path, *, network: bool) -> None:
        self.out = out
        args = [*AUDITOR, "audit", "--inventory", str(inventory), "--out", str(out)]
        if not network:
            args.append("--no-network")
        self.started = time.monotonic()
        # Messages are never wrapped off a terminal; the width is for the summary table.
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "COLUMNS": "400"},
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait(self, timeout: float) -> AuditRun:
        """Wait for the end; kill it (and fail) if it runs longer than ``timeout``."""
        try:
            stdout, stderr = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            stdout, stderr = self.proc.communicate()
            raise AssertionError(
                f"the audit did not end within {timeout:.0f} s\n{stdout}\n{stderr}"
            ) from None
        seconds = time.monotonic() - self.started
        findings_file = self.out / "findings.json"
        findings: list[dict[str, Any]] = []
        if findings_file.is_file():
            findings = json.loads(findings_file.read_text(encoding="utf-8"))["findings"]
        return AuditRun(self.out, self.proc.returncode, stdout, stderr, seconds, findings)


def run_audit_cli(inventory: Path, out: Path, *, network: bool, timeout: float) -> AuditRun:
    return AuditProcess(inventory, out, network=network).wait(timeout)


# -- the evidence store ---------------------------------------------------------------------


def artifacts(out: Path) -> list[ArtifactRecord]:
    """The index's rows, readable while the run is still writing (WAL); [] before it exists."""
    index = out / INDEX
    if not index.is_file():
        return []
    try:
        with contextlib.closing(connect_read_only(index)) as conn:
            return [record_from_row(row) for row in read_raw_rows(conn)]
    except sqlite3.Error:
        return []


def stored(out: Path, host: str, command: str) -> list[ArtifactRecord]:
    return [a for a in artifacts(out) if a.host == host and a.command == command]


def object_bytes(out: Path, record: ArtifactRecord) -> bytes:
    return (out / "evidence" / "objects" / record.sha256[:2] / record.sha256).read_bytes()


def assert_verifies(out: Path) -> VerificationReport:
    report = verify_run(out)
    assert report.intact, "\n".join(str(p) for p in report.problems)
    return report


# -- faults -----------------------------------------------------------------------------------


class Trigger(threading.Thread):
    """Waits (polling) for ``condition``, then runs ``action`` once. ``fired`` tells whether
    it ran, ``error`` holds what it raised; ``stop()`` ends the wait without firing."""

    def __init__(
        self,
        condition: Callable[[], bool],
        action: Callable[[], None],
        *,
        timeout: float,
        interval: float = 0.1,
    ) -> None:
        super().__init__(daemon=True)
        self._condition = condition
        self._action = action
        self._timeout = timeout
        self._interval = interval
        self._stopped = threading.Event()
        self.fired_at: float | None = None
        self.error: BaseException | None = None

    @property
    def fired(self) -> bool:
        return self.fired_at is not None

    def run(self) -> None:
        deadline = time.monotonic() + self._timeout
        try:
            while not self._stopped.is_set() and time.monotonic() < deadline:
                if self._condition():
                    self.fired_at = time.monotonic()
                    self._action()
                    return
                time.sleep(self._interval)
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc

    def stop(self) -> None:
        self._stopped.set()
        self.join(timeout=60)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (read from /proc), children first."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: the ppid follows the last ")".
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop(0)
        found.append(child)
        todo.extend(children.get(child, []))
    return found


def command_line(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def find_descendant(pid: int, matches: Callable[[list[str]], bool]) -> int | None:
    """A process below ``pid`` (ours) whose command line ``matches``."""
    for child in descendants(pid):
        if matches(command_line(child)):
            return child
    return None


def kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


# -- lab hosts --------------------------------------------------------------------------------


def run_in(host: str, script: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """A shell snippet in lab-<host> as root; never raises on a non-zero exit."""
    return podman("exec", f"lab-{host}", "sh", "-c", script, check=False, timeout=timeout)


@contextlib.contextmanager
def replaced_tool(host: str, path: str, script: str) -> Iterator[None]:
    """``path`` on lab-<host> replaced by the shell ``script`` (the original is at
    ``path``.faultkit-orig meanwhile, for the script to call); put back afterwards, checked."""
    saved = f"{path}.faultkit-orig"
    install = (
        f"set -e; cat > {path}.faultkit-new; chmod 755 {path}.faultkit-new; "
        f"test -e {saved} || mv {path} {saved}; mv -f {path}.faultkit-new {path}"
    )
    proc = podman(
        "exec", "-i", f"lab-{host}", "sh", "-c", install,
        input_bytes=script.encode(), check=False, timeout=60,
    )  # fmt: skip
    try:
        assert proc.returncode == 0, f"cannot replace {path} on {host}: {proc.stderr}"
        yield
    finally:
        restore = run_in(host, f"test -e {saved} && mv -f {saved} {path}")
        assert restore.returncode == 0, f"{path} on {host} NOT restored: {restore.stderr}"


def container_state(host: str) -> str:
    proc = podman("inspect", "--format", "{{.State.Status}}", f"lab-{host}", check=False)
    return proc.stdout.strip()
