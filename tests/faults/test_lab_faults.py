"""Faults injected into the live lab while the real ``auditor audit`` runs.

For each fault: the audit ends within a bound, the findings it touches are inconclusive with a
reason that names the problem, the findings of unaffected hosts are decided as in a clean run,
what was collected before the fault is still in the evidence store, the run verifies, and the
exit code and message are clear. SSH faults run with ``--no-network`` (about 8 s an audit);
only the faults of the network phases run the whole audit (about 45 s).

Run with the lab lock held: ``flock /tmp/auditor-lab.lock .venv/bin/pytest tests/faults/
test_lab_faults.py``. Every test that alters a lab host puts it back in a ``finally`` block.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditor.evidence.store import ArtifactRecord
from lab.podman import podman
from lab.runtime import LabState
from probes.parsers.hostkey import fingerprint_sha256
from tests.conftest import LabSession
from tests.faults import faultkit as fk

pytestmark = pytest.mark.lab

#: SSH time limits of the inventory variants: short, so that a fault costs seconds.
FAST_SSH = {"connect_timeout": 3.0, "command_timeout": 8.0}
#: Bounds on a whole audit under a fault (a clean --no-network audit takes about 8 s).
SSH_ONLY_BOUND = 90.0
FULL_BOUND = 240.0


_REFERENCE: dict[str, fk.AuditRun] = {}


@pytest.fixture
def reference(lab: LabState, tmp_path_factory: pytest.TempPathFactory) -> fk.AuditRun:
    """A clean --no-network audit of the running lab, with the same SSH limits: the verdicts
    that unaffected hosts must keep under a fault."""
    key = f"{lab.scenario}:{lab.startup_seconds}"
    if key not in _REFERENCE:
        root = tmp_path_factory.mktemp("reference")
        inventory = fk.inventory_copy(lab, root, ssh=FAST_SSH)
        run = fk.run_audit_cli(inventory, root / "out", network=False, timeout=SSH_ONLY_BOUND)
        assert run.exit_code == 2, run.stderr  # inconclusive: no scans, no egress tests
        for host in ("recv-srv", "proc-srv", "send-srv", "term-1", "term-2"):
            decided = [f for f in run.of(host) if f["status"] in fk.DECIDED]
            assert decided, f"{host}: nothing decided in the clean run"
        _REFERENCE[key] = run
    return _REFERENCE[key]


# -- what every fault must leave ----------------------------------------------------------


def assert_outcome(
    run: fk.AuditRun,
    reference: fk.AuditRun | None,
    *,
    affected: Callable[[dict[str, Any]], bool],
    reason: str,
    bound: float,
    exit_code: int = 2,
) -> list[dict[str, Any]]:
    """The common contract of a fault; returns the affected findings.

    ``reason``: a regular expression every affected finding's reason must match. Unaffected
    findings keep the reference's status (or, without a reference, a full audit of the
    baseline, pass or not-applicable)."""
    assert run.seconds < bound, f"the audit took {run.seconds:.0f} s (bound {bound:.0f} s)"
    assert run.exit_code == exit_code, f"exit {run.exit_code}\n{run.stdout}\n{run.stderr}"
    assert "Traceback" not in run.stderr, run.stderr
    assert run.findings, "no findings written"
    hit = [f for f in run.findings if affected(f)]
    assert hit, "the fault touched no finding"
    for finding in hit:
        where = f"{finding['control']} {finding['subject']}"
        assert finding["status"] == "inconclusive", f"{where}: {finding['status']} under a fault"
        assert re.search(reason, finding.get("reason") or ""), f"{where}: {finding.get('reason')}"
    for finding in run.findings:
        assert "could not be judged" not in (finding.get("reason") or ""), finding
    expected = (
        reference.status()
        if reference is not None
        else {k: "pass" for k in run.status()}  # the baseline: every finding passes or n/a
    )
    for finding in run.findings:
        key = (finding["control"], finding["subject"])
        if affected(finding):
            continue
        if reference is None:
            assert finding["status"] in {"pass", "not-applicable"}, (key, finding.get("reason"))
        elif expected.get(key) in fk.DECIDED:
            assert finding["status"] == expected[key], (key, finding.get("reason"))
    fk.assert_verifies(run.out)
    return hit


def of_host(host: str) -> Callable[[dict[str, Any]], bool]:
    return lambda finding: finding["subject"] == host


def new_public_key_line() -> str:
    key = Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()


# -- 1. a host goes down mid-collection ------------------------------------------------------


def test_host_paused_mid_collection(lab: LabState, reference: fk.AuditRun, tmp_path: Path) -> None:
    inventory = fk.inventory_copy(lab, tmp_path, ssh=FAST_SSH)
    out = tmp_path / "out"
    before: list[ArtifactRecord] = []

    def term2_started() -> bool:
        return len([a for a in fk.artifacts(out) if a.host == "term-2"]) >= 3

    def pause() -> None:
        before.extend(a for a in fk.artifacts(out) if a.host == "term-2")
        podman("pause", "lab-term-2")

    audit = fk.AuditProcess(inventory, out, network=False)
    trigger = fk.Trigger(term2_started, pause, timeout=60, interval=0.05)
    trigger.start()
    try:
        run = audit.wait(SSH_ONLY_BOUND)
    finally:
        trigger.stop()
        podman("unpause", "lab-term-2", check=False)
        assert fk.container_state("term-2") == "running"
    assert trigger.error is None and trigger.fired, trigger.error

    assert_outcome(
        run, reference, affected=of_host("term-2"), reason=r"term-2", bound=SSH_ONLY_BOUND
    )
    reasons = " ".join(f.get("reason") or "" for f in run.of("term-2"))
    assert re.search(
        r"did not finish within 8s|was not started within 8s|cannot open a channel|unreachable",
        reasons,
    )
    assert re.search(r"! collect: term-2: (timeout|unreachable)", run.stderr), run.stderr
    # What term-2 had answered before it froze is still there, unchanged.
    kept = {(a.seq, a.sha256, a.command) for a in fk.artifacts(out)}
    assert before and {(a.seq, a.sha256, a.command) for a in before} <= kept


# -- 2. sshd accepts the connection and never answers ---------------------------------------


class SilentListener:
    """A TCP listener that accepts connections and never sends a byte (no SSH banner)."""

    def __init__(self, address: str, port: int) -> None:
        self.sock = socket.create_server((address, port))
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


def test_sshd_that_never_sends_a_banner(
    lab: LabState, reference: fk.AuditRun, tmp_path: Path
) -> None:
    # This machine's own address on term-lan (no sshd here): term-2's ssh pointed at it.
    listener = SilentListener("10.98.30.1", 22)
    try:
        inventory = fk.inventory_copy(
            lab, tmp_path, ssh=FAST_SSH, hosts={"term-2": {"ssh": "10.98.30.1"}}
        )
        run = fk.run_audit_cli(inventory, tmp_path / "out", network=False, timeout=SSH_ONLY_BOUND)
    finally:
        listener.close()
    assert listener.accepted, "the audit never connected to the silent listener"
    assert_outcome(
        run,
        reference,
        affected=of_host("term-2"),
        reason=r"timeout\)?: term-2 \(10\.98\.30\.1:22\): no SSH banner and key exchange within 3s",
        bound=SSH_ONLY_BOUND,
    )
    assert not [a for a in fk.artifacts(run.out) if a.host == "term-2"]
    assert "term-2: timeout: term-2 (10.98.30.1:22): no SSH banner" in run.stderr, run.stderr


# -- 3. a login refused ----------------------------------------------------------------------


def test_login_refused_on_one_host(lab: LabState, reference: fk.AuditRun, tmp_path: Path) -> None:
    inventory = fk.inventory_copy(lab, tmp_path, ssh=FAST_SSH)
    keys = "/home/auditor/.ssh/authorized_keys"
    moved = fk.run_in("term-2", f"mv {keys} {keys}.faultkit-orig")
    assert moved.returncode == 0, moved.stderr
    try:
        run = fk.run_audit_cli(inventory, tmp_path / "out", network=False, timeout=SSH_ONLY_BOUND)
    finally:
        back = fk.run_in("term-2", f"mv {keys}.faultkit-orig {keys}")
        assert back.returncode == 0, f"term-2's authorized_keys NOT restored: {back.stderr}"
    assert_outcome(
        run,
        reference,
        affected=of_host("term-2"),
        reason=r"auth-failed\)?: term-2 \(10\.98\.30\.42:22\): key authentication as 'auditor' "
        r"refused",
        bound=SSH_ONLY_BOUND,
    )
    assert not [a for a in fk.artifacts(run.out) if a.host == "term-2"]


def test_login_refused_everywhere(lab: LabState, tmp_path: Path) -> None:
    other = tmp_path / "other_ed25519"
    other.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    other.chmod(0o600)
    inventory = fk.inventory_copy(lab, tmp_path, ssh={**FAST_SSH, "key": str(other)})
    run = fk.run_audit_cli(inventory, tmp_path / "out", network=False, timeout=SSH_ONLY_BOUND)
    assert run.seconds < SSH_ONLY_BOUND
    assert run.exit_code == 3, f"{run.exit_code}\n{run.stdout}\n{run.stderr}"
    assert "Traceback" not in run.stderr, run.stderr
    for host in ("recv-srv", "proc-srv", "send-srv", "term-1", "term-2"):
        assert f"{host}: auth-failed:" in run.stderr, run.stderr
    assert "nothing could be collected" in run.stderr, run.stderr
    assert run.findings and all(f["status"] in {"inconclusive"} for f in run.findings)
    assert fk.artifacts(run.out) == []
    fk.assert_verifies(run.out)


# -- 4. a host key that changed between two runs ---------------------------------------------


def test_host_key_changed_between_runs(
    lab: LabState, reference: fk.AuditRun, tmp_path: Path
) -> None:
    # The reference run accepted term-2's key from the lab's known_hosts; now term-2 presents
    # one that known_hosts does not hold (an attacker in the middle, or a reinstalled host).
    known_hosts = tmp_path / "known_hosts"
    forged = new_public_key_line()
    forged_fingerprint = fingerprint_sha256(base64.b64decode(forged.split()[1]))
    lines = []
    for line in lab.known_hosts.read_text(encoding="utf-8").splitlines():
        names = line.split(" ", 1)[0]  # "10.98.30.42,fd98:0:0:30::42 ssh-ed25519 AAAA..."
        lines.append(f"{names} {forged}" if "10.98.30.42" in names.split(",") else line)
    assert lines != lab.known_hosts.read_text(encoding="utf-8").splitlines()
    known_hosts.write_text("\n".join(lines) + "\n", encoding="utf-8")
    before = known_hosts.read_bytes()
    inventory = fk.inventory_copy(lab, tmp_path, ssh={**FAST_SSH, "known_hosts": str(known_hosts)})
    run = fk.run_audit_cli(inventory, tmp_path / "out", network=False, timeout=SSH_ONLY_BOUND)
    assert_outcome(
        run,
        reference,
        affected=of_host("term-2"),
        reason=r"host-key-mismatch\)?: term-2 \(10\.98\.30\.42:22\): HOST KEY CHANGED: presented"
        rf" ssh-ed25519 SHA256:\S+, known_hosts has ssh-ed25519 {re.escape(forged_fingerprint)}; "
        r"refused",
        bound=SSH_ONLY_BOUND,
    )
    assert known_hosts.read_bytes() == before, "known_hosts was changed"
    assert "HOST KEY CHANGED" in run.stderr
    # Never accepted: not one command ran on term-2.
    assert not [a for a in fk.artifacts(run.out) if a.host == "term-2"]
    assert [a for a in fk.artifacts(reference.out) if a.host == "term-2"]


# -- 5. a command that hangs -----------------------------------------------------------------

HANGING = "#!/bin/sh\nexec sleep 300\n"


def test_command_that_hangs(lab: LabState, reference: fk.AuditRun, tmp_path: Path) -> None:
    inventory = fk.inventory_copy(lab, tmp_path, ssh=FAST_SSH)
    with fk.replaced_tool("term-2", "/usr/bin/lsblk", HANGING):
        run = fk.run_audit_cli(inventory, tmp_path / "out", network=False, timeout=SSH_ONLY_BOUND)
        # The hung command was stopped on the host, not left behind.
        left = fk.run_in("term-2", "ps -eo user=,args= | grep '[s]leep 300' || true").stdout
    assert left.strip() == "", left
    hit = assert_outcome(
        run,
        reference,
        affected=lambda f: (
            (f["control"], f["subject"]) == ("terminal-removable-media-blocked", "term-2")
        ),
        reason=r"lsblk not collected \(timeout: term-2 \(10\.98\.30\.42:22\): 'lsblk -J [^']*' "
        r"did not finish within 8s",
        bound=SSH_ONLY_BOUND,
    )
    assert len(hit) == 1
    # Its (empty) output is evidence too; every other command of term-2 was collected.
    assert fk.stored(run.out, "term-2", "lsblk -J -o NAME,RM,RO,TYPE,MOUNTPOINT,TRAN")
    commands = {a.command for a in fk.artifacts(run.out) if a.host == "term-2"}
    expected = {a.command for a in fk.artifacts(reference.out) if a.host == "term-2"}
    assert commands == expected


# -- 6. output cut off halfway ---------------------------------------------------------------

HALF_IP = """#!/bin/sh
if [ "$*" = "-j addr show" ]; then
    out=$(/usr/bin/ip.faultkit-orig -j addr show)
    printf '%s' "$out" | head -c $(( ${#out} / 2 ))
    exit 0
fi
exec /usr/bin/ip.faultkit-orig "$@"
"""


def test_output_cut_off_halfway(lab: LabState, reference: fk.AuditRun, tmp_path: Path) -> None:
    inventory = fk.inventory_copy(lab, tmp_path, ssh=FAST_SSH)
    # The audit account's PATH finds /usr/bin/ip (root's would find /usr/sbin/ip).
    with fk.replaced_tool("term-2", "/usr/bin/ip", HALF_IP):
        run = fk.run_audit_cli(inventory, tmp_path / "out", network=False, timeout=SSH_ONLY_BOUND)
    # The interfaces fact is missing, with the parse error, in the model of the one control
    # that reads it; without scans that finding was inconclusive already, now for this too.
    assert_outcome(
        run,
        reference,
        affected=lambda f: (
            (f["control"], f["subject"]) == ("unauthorized-access-prevention", "term-2")
        ),
        reason=r"term-2: missing interfaces \(parse-error: ",
        bound=SSH_ONLY_BOUND,
    )
    (cut,) = fk.stored(run.out, "term-2", "ip -j addr show")
    (whole,) = fk.stored(reference.out, "term-2", "ip -j addr show")
    half, full = fk.object_bytes(run.out, cut), fk.object_bytes(reference.out, whole)
    assert 0 < len(half) < len(full) and cut.exit_status == 0  # stored as received
    # The rest of term-2 was collected: routes, rule set, and the other controls decided.
    for command in ("ip -4 -j route show table all", "sudo -n /usr/sbin/nft -j list ruleset"):
        assert fk.stored(run.out, "term-2", command), command
    assert {f["control"] for f in run.of("term-2") if f["status"] == "pass"} == {
        "authentication-hardening",
        "no-remote-control-software",
        "operation-logging",
        "security-updates-applied",
        "terminal-removable-media-blocked",
        "unexpected-operation-detection",
    }


# -- 7. the disk fills up while evidence is written ------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_fills_up(lab: LabState, small_disk: Path, tmp_path: Path) -> None:
    inventory = fk.inventory_copy(lab, tmp_path, ssh=FAST_SSH)
    out = small_disk / "out"
    run = fk.run_audit_cli(inventory, out, network=False, timeout=SSH_ONLY_BOUND)
    assert run.seconds < SSH_ONLY_BOUND
    assert "Traceback" not in run.stderr, run.stderr
    assert run.exit_code == 3, f"{run.exit_code}\n{run.stdout}\n{run.stderr}"
    # Each host's collection stops at its first refused write, saying so; then the audit
    # ends with one line naming the disk's state.
    assert re.search(r"! collect: term-2: internal-error: .*database or disk is full", run.stderr)
    assert re.search(r"cannot audit: .*No space left on device", run.stderr), run.stderr
    # What was stored before the disk filled verifies: an interrupted store, every object whole.
    report = fk.assert_verifies(out)
    assert report.artifact_count > 0 and not report.closed
    assert len({a.host for a in fk.artifacts(out)}) == 5


# -- 8. a vantage point that disappears mid-scan ---------------------------------------------


def interface_of(address: str) -> str:
    links = json.loads(
        subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True, check=True).stdout
    )
    for link in links:
        if any(a.get("local") == address for a in link.get("addr_info", [])):
            return str(link["ifname"])
    raise AssertionError(f"no interface holds {address}")


def bring_back(bridge: str, addresses: tuple[str, ...]) -> bool:
    """The bridge up with this machine's lab addresses on it, as `lab up` left it."""
    subprocess.run(["ip", "link", "set", bridge, "up"], check=False)
    for address in addresses:
        family, extra = ("-6", ["nodad"]) if ":" in address.split("/")[0] else ("-4", [])
        subprocess.run(
            ["ip", family, "address", "replace", address, "dev", bridge, *extra], check=False
        )
    link = json.loads(
        subprocess.run(
            ["ip", "-j", "addr", "show", bridge], capture_output=True, text=True, check=True
        ).stdout
    )[0]
    held = {f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])}
    return "UP" in link.get("flags", []) and set(addresses) <= held


def test_vantage_point_lost_mid_scan(
    lab: LabState, lab_session: LabSession, tmp_path: Path
) -> None:
    # This machine's link to carrier-out (its vantage point there) goes down mid-scan; without
    # the scanner's watch, nmap waited on its dead capture until --host-timeout (600 s).
    addresses = ("10.98.11.1/24", "fd98:0:0:11::1/64")
    bridge = interface_of("10.98.11.1")
    inventory = fk.inventory_copy(lab, tmp_path)
    out = tmp_path / "out"
    audit = fk.AuditProcess(inventory, out, network=True)
    outage: list[float] = []

    def carrier_out_scan() -> int | None:
        return fk.find_descendant(
            audit.pid, lambda args: "-sS" in args and args[-1:] == ["10.98.11.20"]
        )

    def link_down() -> None:
        time.sleep(2.0)
        subprocess.run(["ip", "link", "set", bridge, "down"], check=True)
        began = time.monotonic()
        while carrier_out_scan() is not None and time.monotonic() - began < 60:
            time.sleep(0.2)
        outage.append(time.monotonic() - began)
        assert bring_back(bridge, addresses)

    trigger = fk.Trigger(lambda: carrier_out_scan() is not None, link_down, timeout=180)
    trigger.start()
    try:
        run = audit.wait(FULL_BOUND)
    finally:
        trigger.stop()
        if not bring_back(bridge, addresses):
            lab_session.state = None  # the next lab test rebuilds the lab
    assert trigger.error is None and outage, trigger.error
    assert outage[0] < 10, f"nmap went on for {outage[0]:.0f} s without its vantage point"
    assert_outcome(
        run,
        None,
        affected=lambda f: (
            (f["control"], f["subject"])
            in {("send-no-inbound", "send-srv"), ("unauthorized-access-prevention", "send-srv")}
        ),
        reason=r"carrier-out: 1 of 1 targets not scanned from local 10\.98\.11\.1: tcp scan: nmap "
        r"stopped: .*\(vantage point lost\)",
        bound=FULL_BOUND,
    )
    assert "vantage point lost" in run.stdout
    scans = [a for a in fk.artifacts(out) if "-sS" in a.command and "10.98.11.20" in a.command]
    assert scans and scans[0].exit_status is not None and scans[0].exit_status < 0


# -- 9. nmap killed mid-scan -----------------------------------------------------------------


def test_nmap_killed_mid_scan(lab: LabState, tmp_path: Path) -> None:
    inventory = fk.inventory_copy(lab, tmp_path)
    out = tmp_path / "out"
    audit = fk.AuditProcess(inventory, out, network=True)
    killed: list[list[str]] = []

    def carrier_out_scan() -> int | None:
        return fk.find_descendant(
            audit.pid, lambda args: "-sS" in args and args[-1:] == ["10.98.11.20"]
        )

    def kill_it() -> None:
        time.sleep(1.0)  # mid-scan: the all-port scan takes several seconds
        pid = carrier_out_scan()
        assert pid is not None
        killed.append(fk.command_line(pid))
        fk.kill(pid)

    trigger = fk.Trigger(lambda: carrier_out_scan() is not None, kill_it, timeout=180)
    trigger.start()
    try:
        run = audit.wait(FULL_BOUND)
    finally:
        trigger.stop()
    assert trigger.error is None and killed, trigger.error
    assert_outcome(
        run,
        None,
        affected=lambda f: (
            (f["control"], f["subject"])
            in {("send-no-inbound", "send-srv"), ("unauthorized-access-prevention", "send-srv")}
        ),
        reason=r"carrier-out: 1 of 1 targets not scanned from local 10\.98\.11\.1: tcp scan: nmap "
        r"was killed by signal 9",
        bound=FULL_BOUND,
    )
    assert "killed by signal 9" in run.stdout  # the summary table
    # The partial XML of the killed scan is evidence too, with its exit status.
    (partial,) = [a for a in fk.artifacts(out) if a.command == " ".join(killed[0])]
    assert partial.exit_status == -9
