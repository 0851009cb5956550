"""Bring the lab up, inspect it, tear it down (the Python API behind ``auditor lab``).

``up()`` replaces any running lab: it removes stale ``lab-*`` containers and networks and the
guard table, installs the guard, creates the networks (and lets their bridges through the
guard), creates every container with its files copied in, starts them, runs the scenario's
``exec`` commands, and waits until the lab works: sshd answering at every inventory SSH
address, every tunnel handshaked, a first file delivered at the recipient.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from lab import guard
from lab.baseline import KEY_FILE, KNOWN_HOSTS_FILE
from lab.build import build_image
from lab.errors import LabError
from lab.labinventory import REMOTE_INVENTORY_FILE, inventory_document, write_inventory
from lab.model import AUDITOR_OCTET, NETWORKS
from lab.paths import state_dir
from lab.plan import ContainerPlan, LabPlan, make_plan
from lab.podman import podman, require_podman
from lab.scenario import Scenario, scenario_or_baseline

Progress = Callable[[str], None]
T = TypeVar("T")
R = TypeVar("R")

READY_TIMEOUT = 90.0
PARALLEL = 4
STATE_FILE = "lab.json"


@dataclass
class LabState:
    """What a running lab is: enough for tests and the audit to find everything."""

    scenario: str
    scenario_dir: str | None
    state_dir: str
    inventory: str
    started: float
    startup_seconds: float
    containers: dict[str, list[str]] = field(default_factory=dict)  #: host -> addresses
    expect_fail: list[tuple[str, str]] = field(default_factory=list)

    @property
    def inventory_path(self) -> Path:
        return Path(self.inventory)

    @property
    def remote_inventory_path(self) -> Path:
        """The same lab, the auditor plugged into one segment (lab.labinventory)."""
        return Path(self.state_dir) / REMOTE_INVENTORY_FILE

    @property
    def known_hosts(self) -> Path:
        return Path(self.state_dir) / KNOWN_HOSTS_FILE

    @property
    def auditor_key(self) -> Path:
        return Path(self.state_dir) / KEY_FILE


def _quiet(_: str) -> None:
    return


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (rootful podman, nftables on the host)")


def in_parallel(func: Callable[[T], R], items: Iterable[T]) -> list[R]:
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        return list(pool.map(func, items))


# -- up ----------------------------------------------------------------------------------------
def up(scenario: str | Path | None = None, progress: Progress = _quiet) -> LabState:
    """Bring the lab up with a scenario (a folder, a name under lab/scenarios, or None)."""
    chosen = scenario_or_baseline(scenario)  # rejected here, before anything changes
    require_root()
    require_podman()
    started = time.monotonic()
    image = build_image(progress)
    down(progress)
    plan = make_plan(chosen)
    state = _write_state(plan)
    progress(f"lab up: scenario {chosen.name}")
    guard.install()
    progress(f"  guard table inet {guard.TABLE} installed")
    bridges = _create_networks(progress)
    in_parallel(lambda c: _create_container(c, image, state), plan.containers.values())
    progress(f"  {len(plan.containers)} containers created")
    in_parallel(lambda c: podman("start", c.container), plan.containers.values())
    _address_bridges(bridges)
    _wait_for_init(plan)
    _run_scenario_exec(plan, progress)
    _wait_until_functional(plan, state, progress)
    lab = LabState(
        scenario=chosen.name,
        scenario_dir=str(chosen.folder) if chosen.folder else None,
        state_dir=str(state),
        inventory=str(state / "inventory.yaml"),
        started=time.time(),
        startup_seconds=round(time.monotonic() - started, 1),
        containers={c.host: c.addresses() for c in plan.containers.values()},
        expect_fail=chosen.expect_fail,
    )
    (state / STATE_FILE).write_text(json.dumps(asdict(lab), indent=2) + "\n", encoding="utf-8")
    progress(f"lab up in {lab.startup_seconds:.0f} s; inventory: {lab.inventory}")
    return lab


def _write_state(plan: LabPlan) -> Path:
    """A fresh state folder: auditor key, known_hosts, inventory, staged host files."""
    state = state_dir()
    if state.exists():
        shutil.rmtree(state)
    (state / "keys").mkdir(parents=True)
    state.chmod(0o700)
    key = state / KEY_FILE
    key.write_bytes(plan.keys.auditor.private_openssh)
    key.chmod(0o600)
    (state / f"{KEY_FILE}.pub").write_text(plan.auditor_public_key + "\n", encoding="utf-8")
    (state / KNOWN_HOSTS_FILE).write_text(
        "\n".join(plan.known_hosts_lines()) + "\n", encoding="utf-8"
    )
    write_inventory(plan.scenario, state)
    (state / "scenario").write_text(plan.scenario.name + "\n", encoding="utf-8")
    for container in plan.containers.values():
        stage_files(container, state / "hosts" / container.host / "rootfs")
    return state


def stage_files(container: ContainerPlan, root: Path) -> None:
    """Write the container's files under ``root``, secrets readable by their owner only."""
    for path, content in container.files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        target.chmod(0o600 if path in container.secret_files else 0o644)


def _create_networks(progress: Progress) -> dict[str, str]:
    """Create every lab network; return network -> bridge device name."""
    bridges = {
        network.name: create_network(network.podman_name, network.ipv4, network.ipv6)
        for network in NETWORKS.values()
    }
    progress(f"  {len(NETWORKS)} networks created, their bridges admitted by the guard")
    return bridges


def create_network(name: str, ipv4: str, ipv6: str) -> str:
    """Create an internal dual-stack podman network whose bridge the guard admits (the
    guard must be installed); return the bridge's device name."""
    podman(
        "network",
        "create",
        "--internal",
        "--disable-dns",
        "--ipv6",
        "--subnet",
        ipv4,
        "--subnet",
        ipv6,
        name,
    )
    bridge = podman("network", "inspect", name, "--format", "{{.NetworkInterface}}").stdout.strip()
    if not bridge:
        raise LabError(f"podman gave no bridge name for {name}")
    guard.add_bridge(bridge)
    return bridge


def _address_bridges(bridges: dict[str, str]) -> None:
    """Give the host (the auditor's laptop) its .1 / ::1 on every segment.

    netavark 1.4 creates an internal network's bridge when the first container starts and
    gives it no address, so the host could not reach any container: add them here.
    """
    for name, bridge in bridges.items():
        network = NETWORKS[name]
        address_bridge(bridge, network.address4(AUDITOR_OCTET), network.address6(AUDITOR_OCTET))


def address_bridge(bridge: str, address4: str, address6: str) -> None:
    """Give the host ``address4``/24 and ``address6``/64 on a started network's bridge."""
    for family, address, prefix in (("-4", address4, 24), ("-6", address6, 64)):
        extra = ["nodad"] if family == "-6" else []
        _run_host(
            ["ip", family, "address", "replace", f"{address}/{prefix}", "dev", bridge, *extra]
        )


def _run_host(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise LabError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")


def _create_container(container: ContainerPlan, image: str, state: Path) -> None:
    attachments = []
    for net, octet in container.networks.items():
        network = NETWORKS[net]
        attachments.append(
            f"{network.podman_name}:ip={network.address4(octet)},"
            f"ip6={network.address6(octet)},interface_name={network.interface}"
        )
    create_container(container, image, attachments, state / "hosts" / container.host / "rootfs")


def create_container(
    container: ContainerPlan,
    image: str,
    attachments: list[str],
    staged: Path,
    label: str = "auditor-lab=1",
) -> None:
    """``podman create`` the container (capabilities, sysctls, each ``--network``
    attachment as given), then copy its staged files in; it is not started."""
    args = [
        "create",
        "--name",
        container.container,
        "--hostname",
        container.host,
        "--cap-add",
        "NET_ADMIN",
        "--cap-add",
        "NET_RAW",
        "--stop-timeout",
        "5",
        "--label",
        label,
    ]
    if container.needs_tun:
        args += ["--device", "/dev/net/tun"]
    for key, value in container.sysctls.items():
        args += ["--sysctl", f"{key}={value}"]
    for attachment in attachments:
        args += ["--network", attachment]
    podman(*args, image)
    podman("cp", f"{staged}/.", f"{container.container}:/")


def poll_missing(what: Callable[[], list[str]], timeout: float, interval: float = 0.5) -> list[str]:
    """Call ``what`` until it returns no missing item or the time is up; return what's missing."""
    deadline = time.monotonic() + timeout
    missing = what()
    while missing and time.monotonic() < deadline:
        time.sleep(interval)
        missing = what()
    return missing


def _wait_for_init(plan: LabPlan) -> None:
    def not_ready(container: ContainerPlan) -> str | None:
        probe = podman(
            "exec",
            container.container,
            "sh",
            "-c",
            "cat /run/lab/failed 2>/dev/null && exit 2; test -f /run/lab/ready",
            check=False,
        )
        if probe.returncode == 2:
            raise LabError(f"{container.host}: lab-init failed: {probe.stdout.strip()}")
        return None if probe.returncode == 0 else container.host

    def missing() -> list[str]:
        return [h for h in in_parallel(not_ready, plan.containers.values()) if h]

    late = poll_missing(missing, 30)
    if late:
        raise LabError(f"lab-init did not finish in 30 s on: {', '.join(late)}")


def _run_scenario_exec(plan: LabPlan, progress: Progress) -> None:
    for container in plan.containers.values():
        for command in container.exec:
            result = podman("exec", container.container, "sh", "-c", command, check=False)
            if result.returncode != 0:
                raise LabError(
                    f"scenario exec on {container.host} failed ({result.returncode}): "
                    f"{command}: {result.stderr.strip() or result.stdout.strip()}"
                )
            progress(f"  {container.host}: {command}")


def ssh_banner(address: str, timeout: float = 2.0) -> str | None:
    try:
        with socket.create_connection((address, 22), timeout=timeout) as sock:
            return sock.recv(64).decode(errors="replace").strip() or None
    except OSError:
        return None


def _inventory_ssh_addresses(scenario: Scenario) -> dict[str, str]:
    hosts: dict[str, Any] = inventory_document(scenario)["hosts"]
    return {name: str(h["ssh"]) for name, h in hosts.items() if h.get("ssh")}


def handshakes(container: str) -> dict[str, int]:
    """Interface -> latest handshake (epoch seconds, 0 = never) inside a container."""
    result = podman("exec", container, "wg", "show", "all", "latest-handshakes", check=False)
    found: dict[str, int] = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2].isdigit():
            found[parts[0]] = max(found.get(parts[0], 0), int(parts[2]))
    return found


def delivered_files(plan_or_container: str) -> list[str]:
    result = podman("exec", plan_or_container, "ls", "-1t", "/home/xfer/inbox", check=False)
    return result.stdout.split()


def _wait_until_functional(plan: LabPlan, state: Path, progress: Progress) -> None:
    ssh_addresses = _inventory_ssh_addresses(plan.scenario)
    tunnel_holders = [c for c in plan.containers.values() if c.tunnels]
    recipient = plan.containers.get(plan.placed_in.get("recipient", ""), None)

    def missing() -> list[str]:
        gaps = [f"sshd of {h} at {a}" for h, a in ssh_addresses.items() if not ssh_banner(a, 1)]
        for container in tunnel_holders:
            shakes = handshakes(container.container)
            gaps += [
                f"{t} handshake on {container.host}"
                for t in container.tunnels
                if shakes.get(t, 0) == 0
            ]
        if recipient is not None and not delivered_files(recipient.container):
            gaps.append("a first file delivered at recipient")
        return gaps

    gaps = poll_missing(missing, READY_TIMEOUT, interval=1.0)
    if gaps:
        raise LabError(
            f"the lab did not come up within {READY_TIMEOUT:.0f} s: missing {'; '.join(gaps)} "
            f"(see /var/log/lab/ in the containers; state in {state})"
        )
    progress("  sshd answering, tunnels handshaked, first file delivered")


# -- down, status, inventory --------------------------------------------------------------------
def lab_containers() -> list[str]:
    names = podman("ps", "--all", "--format", "{{.Names}}").stdout.split()
    return [n for n in names if n.startswith("lab-")]


def lab_networks() -> list[str]:
    names = podman("network", "ls", "--format", "{{.Name}}").stdout.split()
    return [n for n in names if n.startswith("lab-")]


def down(progress: Progress = _quiet) -> None:
    """Remove every lab container and network and the guard table (idempotent)."""
    require_root()
    containers = lab_containers()
    if containers:
        podman("rm", "--force", "--time", "2", *containers, timeout=120)
        progress(f"  removed {len(containers)} containers")
    networks = lab_networks()
    if networks:
        podman("network", "rm", "--force", *networks)
        progress(f"  removed {len(networks)} networks")
    # The guard goes last: no lab container may run without it.
    guard.remove()
    state_file = state_dir() / STATE_FILE
    if state_file.exists():
        state_file.unlink()


def current() -> LabState | None:
    """The running lab's state, or None when no lab is up."""
    state_file = state_dir() / STATE_FILE
    if not state_file.exists():
        return None
    data = json.loads(state_file.read_text(encoding="utf-8"))
    data["expect_fail"] = [tuple(pair) for pair in data.get("expect_fail", [])]
    lab = LabState(**data)
    if not lab_containers():
        return None
    return lab


def inventory_path(remote: bool = False) -> Path:
    lab = current()
    if lab is None:
        raise LabError("no lab is running (start one with `auditor lab up`)")
    return lab.remote_inventory_path if remote else lab.inventory_path


@dataclass
class HostStatus:
    host: str
    state: str
    addresses: list[str]
    handshakes: dict[str, int]
    last_delivery: str | None = None


def status() -> tuple[LabState | None, list[HostStatus]]:
    lab = current()
    if lab is None:
        return None, []
    listing = json.loads(podman("ps", "--all", "--format", "json").stdout or "[]")
    states = {c["Names"][0]: c.get("State", "?") for c in listing}
    rows = []
    for host, addresses in lab.containers.items():
        container = f"lab-{host}"
        row = HostStatus(host, states.get(container, "missing"), addresses, {})
        if row.state == "running":
            row.handshakes = handshakes(container)
            files = delivered_files(container)
            if files:
                stamp = podman(
                    "exec",
                    container,
                    "stat",
                    "-c",
                    "%y",
                    f"/home/xfer/inbox/{files[0]}",
                    check=False,
                ).stdout.strip()
                row.last_delivery = f"{files[0]} at {stamp[:19]}"
        rows.append(row)
    return lab, rows
