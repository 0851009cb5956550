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
import re
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
from lab.model import AUDITOR_OCTET, NETWORKS, TAPS
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
    #: tap -> addresses: the remote layout's vantage hosts, created stopped (``taps_up``)
    taps: dict[str, list[str]] = field(default_factory=dict)

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
    everything = [*plan.containers.values(), *plan.taps.values()]
    in_parallel(lambda c: _create_container(c, image, state), everything)
    progress(f"  {len(plan.containers)} containers created, and {len(plan.taps)} taps (stopped)")
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
        taps={c.host: c.addresses() for c in plan.taps.values()},
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
    for container in [*plan.containers.values(), *plan.taps.values()]:
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
        mac = f",mac={container.macs[net]}" if net in container.macs else ""
        attachments.append(
            f"{network.podman_name}:ip={network.address4(octet)},"
            f"ip6={network.address6(octet)},interface_name={network.interface}{mac}"
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
    _remove_mirrors()  # before the devices go: a bridge podman reuses must come back clean
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
    # The taps run only around a remote audit (``taps_up``): "created" or "exited" otherwise.
    rows += [
        HostStatus(tap, states.get(tap_container_name(tap), "missing"), addresses, {})
        for tap, addresses in lab.taps.items()
    ]
    return lab, rows


# -- taps: the remote layout's vantage hosts ----------------------------------------------------
TAPS_STATE_FILE = "taps.json"
TAPS_TIMEOUT = 30.0
#: The tc filter priority of the mirror rules (``tc filter ... pref``): ours, recognisable.
MIRROR_PREF = 4900
_TC_FILTER_ADD = ("tc", "filter", "add", "dev")
_ALL = ("protocol", "all")
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")


@dataclass
class Mirror:
    """One tap's emulated mirror port: which devices got a ``clsact`` qdisc from us."""

    tap: str
    network: str
    bridge: str
    tap_port: str  #: the tap's host-side veth: where the mirrored frames are sent
    ports: list[str]  #: the bridge's other ports: what each container sends is copied
    devices: list[str] = field(default_factory=list)  #: every device we gave a clsact


def tap_container_name(tap: str) -> str:
    return f"lab-{tap}"


def taps_up(progress: Progress = _quiet) -> list[Mirror]:
    """Start the taps the lab created with it, wait for their sshd, and make each tap's
    interface a mirror port of its network's bridge. Run it only around a remote audit: a
    tap is an unknown neighbour to the direct layout's sweeps."""
    require_root()
    lab = current()
    if lab is None:
        raise LabError("no lab is running (start one with `auditor lab up`)")
    if not lab.taps:
        raise LabError("this lab was brought up without taps: run `auditor lab up` again")
    started = time.monotonic()
    _remove_mirrors()
    _pin_bridge_addresses(list(lab.taps))
    in_parallel(lambda tap: podman("start", tap_container_name(tap)), list(lab.taps))
    _wait_for_taps(list(lab.taps))
    mirrors: list[Mirror] = []
    try:
        for tap in lab.taps:
            _install_mirror(tap, mirrors)
    finally:  # also what a failure left half done: ``taps_down`` removes what is recorded
        _record_mirrors(mirrors)
    progress(f"taps up in {time.monotonic() - started:.1f} s: {', '.join(lab.taps)}")
    return mirrors


def taps_down(progress: Progress = _quiet) -> None:
    """Undo ``taps_up``: remove the mirror rules (the bridges are as podman made them again)
    and stop the taps. Idempotent; the taps stay created for the next ``taps_up``."""
    require_root()
    removed = _remove_mirrors()
    running = [t for t in TAPS if _container_state(tap_container_name(t)) == "running"]
    if running:
        in_parallel(lambda tap: podman("stop", "--time", "2", tap_container_name(tap)), running)
    _forget_taps()
    progress(f"taps down: {len(running)} stopped, mirror rules removed from {removed} devices")


def _forget_taps() -> None:
    """Drop this machine's neighbour entries for the taps' addresses. A remote audit talks to
    every tap, so its entries stay (REACHABLE, then STALE) for minutes after the taps stop,
    and a neighbour sweep that reads the table (``auditor inventory draft``) would list the
    stopped taps as unknown devices: the lab's draft tests, run right after a remote audit,
    failed until these entries were dropped."""
    for tap in TAPS.values():
        for network, octet in tap.addresses.items():
            for address in (NETWORKS[network].address4(octet), NETWORKS[network].address6(octet)):
                subprocess.run(
                    ["ip", "neigh", "flush", "to", address], capture_output=True, check=False
                )


def _pin_bridge_addresses(taps: list[str]) -> None:
    """Set each tapped bridge's MAC address to the one it has. A Linux bridge whose address
    was never set takes the lowest of its ports' addresses, so a tap's port joining or
    leaving could change the address of this machine's ``.1`` / ``::1`` under every
    container's neighbour cache (measured: the containers' frames to ``.1`` then went to a
    port that no longer existed, flooded and undelivered, until their caches expired). Once
    set, it no longer follows the ports; the value is the one the lab already uses."""
    for network in {n for tap in taps for n in TAPS[tap].addresses}:
        bridge = bridge_of(network)
        address = Path(f"/sys/class/net/{bridge}/address").read_text(encoding="utf-8").strip()
        _run_host(["ip", "link", "set", "dev", bridge, "address", address])


def _container_state(container: str) -> str:
    result = podman("inspect", container, "--format", "{{.State.Status}}", check=False)
    return result.stdout.strip() if result.returncode == 0 else "missing"


def _wait_for_taps(taps: list[str]) -> None:
    def missing() -> list[str]:
        gaps = []
        for tap in taps:
            ready = podman(
                "exec", tap_container_name(tap), "test", "-f", "/run/lab/ready", check=False
            )
            address = TAPS[tap].ssh_address
            if ready.returncode != 0 or address is None or not ssh_banner(address, 1):
                gaps.append(tap)
        return gaps

    late = poll_missing(missing, TAPS_TIMEOUT, interval=0.3)
    if late:
        raise LabError(f"taps not answering SSH within {TAPS_TIMEOUT:.0f} s: {', '.join(late)}")


def _install_mirror(tap: str, mirrors: list[Mirror]) -> None:
    """Copy every frame crossing the tap's bridge to the tap's port, as a switch's mirror
    port (SPAN) would: what each other port receives from its container (container to
    container, container to this machine), and what this machine sends into the bridge.
    The mirror joins ``mirrors`` before its first device changes."""
    (network,) = TAPS[tap].addresses
    bridge = bridge_of(network)
    container, interface = tap_container_name(tap), NETWORKS[network].interface
    tap_port = host_side_port(container, interface)
    tap_mac = _read_in(container, f"/sys/class/net/{interface}/address")
    if not _MAC.fullmatch(tap_mac):
        raise LabError(f"{container}: {interface} has no Ethernet address ({tap_mac!r})")
    ports = [p for p in bridge_ports(bridge) if p != tap_port]
    mirror = Mirror(tap, network, bridge, tap_port, ports)
    mirrors.append(mirror)
    for device, direction in [*((p, "ingress") for p in ports), (bridge, "egress")]:
        _add_clsact(device)
        mirror.devices.append(device)
        for command in _mirror_filters(device, direction, tap_port, tap_mac):
            _run_host(command)


def _mirror_filters(device: str, direction: str, tap_port: str, tap_mac: str) -> list[list[str]]:
    """Broadcasts and frames for the tap itself end classification untouched (the bridge
    delivers them to the tap already: a copy would be a duplicate, which the tap's own TCP
    sessions would take for retransmissions); every other frame is copied to the tap's port.

    Only ``u32`` and ``mirred`` are used: this project's kernels have neither ``flower``,
    ``matchall`` nor ``gact``. A ``u32`` match with a flowid and no action ends
    classification (the frame goes on unchanged); its offsets count from the network
    header, so the destination MAC is at -14 in both directions."""
    filters = (
        ["u32", "match", "ether", "dst", "ff:ff:ff:ff:ff:ff", "flowid", "1:1"],
        ["u32", "match", "ether", "dst", tap_mac, "flowid", "1:1"],
        ["u32", "match", "u32", "0", "0", "action", "mirred", "egress", "mirror", "dev", tap_port],
    )
    return [
        [*_TC_FILTER_ADD, device, direction, "pref", str(MIRROR_PREF + n), *_ALL, *rule]
        for n, rule in enumerate(filters)
    ]


def bridge_of(network: str) -> str:
    name = NETWORKS[network].podman_name
    bridge = podman("network", "inspect", name, "--format", "{{.NetworkInterface}}").stdout
    if not bridge.strip():
        raise LabError(f"podman gave no bridge name for {name}")
    return bridge.strip()


def _read_in(container: str, path: str) -> str:
    result = podman("exec", container, "cat", path, check=False)
    if result.returncode != 0 or not result.stdout.strip():
        raise LabError(f"{container}: cannot read {path}: {result.stderr.strip()}")
    return result.stdout.strip()


def host_side_port(container: str, interface: str) -> str:
    """The host's end of ``container``'s veth ``interface`` (its peer's ifindex is the
    container's ``iflink``)."""
    index = _read_in(container, f"/sys/class/net/{interface}/iflink")
    for link in _host_links():
        if str(link.get("ifindex")) == index:
            return str(link["ifname"])
    raise LabError(f"{container}: no host interface has index {index} (the peer of {interface})")


def bridge_ports(bridge: str) -> list[str]:
    return [str(link["ifname"]) for link in _host_links("master", bridge)]


def _host_links(*selector: str) -> list[dict[str, Any]]:
    proc = subprocess.run(
        ["ip", "-j", "link", "show", *selector], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise LabError(f"ip link show {' '.join(selector)} failed: {proc.stderr.strip()}")
    links: list[dict[str, Any]] = json.loads(proc.stdout or "[]")
    return links


def _add_clsact(device: str) -> None:
    """Give ``device`` the classifier qdisc the mirror rules hang on; refuse a device that
    has one already: it is not ours, and taking the taps down would remove it."""
    listing = subprocess.run(
        ["tc", "qdisc", "show", "dev", device], capture_output=True, text=True, check=False
    ).stdout
    if "clsact" in listing or "ingress" in listing.split():
        raise LabError(f"{device} already has a clsact/ingress qdisc that the lab did not add")
    _run_host(["tc", "qdisc", "add", "dev", device, "clsact"])


def _record_mirrors(mirrors: list[Mirror]) -> None:
    record = [asdict(m) for m in mirrors]
    (state_dir() / TAPS_STATE_FILE).write_text(json.dumps(record, indent=2) + "\n", "utf-8")


def recorded_mirrors() -> list[Mirror]:
    """The mirrors ``taps_up`` installed and ``taps_down`` has not removed yet."""
    path = state_dir() / TAPS_STATE_FILE
    if not path.exists():
        return []
    return [Mirror(**m) for m in json.loads(path.read_text(encoding="utf-8"))]


def _remove_mirrors() -> int:
    """Delete the clsact qdiscs ``taps_up`` added (their filters go with them); a device
    that has gone since (its container or network removed) took them along."""
    devices = {d for m in recorded_mirrors() for d in m.devices}
    for device in devices:
        subprocess.run(
            ["tc", "qdisc", "del", "dev", device, "clsact"], capture_output=True, check=False
        )
    (state_dir() / TAPS_STATE_FILE).unlink(missing_ok=True)
    return len(devices)
