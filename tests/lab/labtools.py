"""Small helpers for lab tests: run things in containers, wait, connect with paramiko."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import paramiko

from lab.podman import podman
from lab.runtime import LabState

ORGANISATION_SSH = {
    "recv-srv": "10.98.21.20",
    "proc-srv": "10.98.30.30",
    "send-srv": "10.98.22.20",
    "term-1": "10.98.30.41",
    "term-2": "10.98.30.42",
}


def run_in(host: str, script: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a shell snippet in lab-<host> (never raises on a non-zero exit)."""
    return podman("exec", f"lab-{host}", "sh", "-c", script, check=False, timeout=timeout)


def tcp_connects(host: str, address: str, port: int, timeout: int = 2) -> bool:
    """Can lab-<host> complete a TCP handshake with address:port? (netcat, -z: no data)"""
    family = "-6" if ":" in address else "-4"
    return run_in(host, f"nc {family} -z -w {timeout} {address} {port}").returncode == 0


def wait_for(condition: Callable[[], bool], timeout: float, interval: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def ssh_client(lab: LabState, address: str, known_hosts: Path | None = None) -> paramiko.SSHClient:
    """Log in as `auditor` with strict host-key checking (RejectPolicy)."""
    client = paramiko.SSHClient()
    client.load_host_keys(str(known_hosts or lab.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        address,
        username="auditor",
        key_filename=str(lab.auditor_key),
        look_for_keys=False,
        allow_agent=False,
        timeout=10,
    )
    return client


def ssh_run(client: paramiko.SSHClient, command: str) -> tuple[int, str]:
    _, stdout, _ = client.exec_command(command, timeout=20)
    output = stdout.read().decode()
    return stdout.channel.recv_exit_status(), output


def drop_file_at_hospital() -> str:
    """Write a record file into hospital's outbox (atomically); return its name."""
    name = f"test-{uuid.uuid4().hex[:12]}.csv"
    content = "patient_id,name,birth_year,diagnosis\\nT000001,試験 花子,1970,I10\\n"
    result = run_in(
        "hospital",
        f"printf '{content}' > /srv/outbox/.{name} && mv /srv/outbox/.{name} /srv/outbox/{name}",
    )
    assert result.returncode == 0, result.stderr
    return name


def delivered_at_recipient(name: str, container: str = "recipient") -> str | None:
    result = run_in(container, f"cat /home/xfer/inbox/{name}")
    return result.stdout if result.returncode == 0 else None


def assert_delivered_end_to_end(timeout: float = 60) -> None:
    name = drop_file_at_hospital()
    assert wait_for(lambda: delivered_at_recipient(name) is not None, timeout), (
        f"{name} written at hospital did not reach recipient within {timeout:.0f} s"
    )
    content = delivered_at_recipient(name) or ""
    assert "# processed-by proc-srv" in content, content
    assert "試験 花子" not in content and content.startswith("patient_id,birth_year"), content
