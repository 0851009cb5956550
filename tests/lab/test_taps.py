"""The taps: the remote-vantage layout's vantage hosts, one per network the auditor cannot
plug into, each on an emulated mirror port (docs/lab.md, "The remote-vantage inventory").

The offline tests check what the inventories and the plan declare; the lab tests start the
taps on the running baseline, log in to each one as an audit does, capture on a tap the
frames its bridge carries between others, and check that taps down leaves the bridges as
podman made them.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from auditor.audit.scope import ScopeGuard
from auditor.domain.inventory import Role, load_inventory
from lab import runtime
from lab.labinventory import INVENTORY_FILE, REMOTE_INVENTORY_FILE, write_inventory
from lab.model import HOSTS, NETWORKS, TAP_OCTET, TAPS
from lab.paths import SCENARIOS_DIR
from lab.plan import make_plan
from lab.podman import podman, podman_env
from lab.runtime import LabState
from lab.scenario import load_scenario, scenario_or_baseline
from tests.conftest import LabSession
from tests.lab.labtools import run_in, ssh_client, ssh_run

# -- offline: what the lab declares ------------------------------------------------------------


@pytest.mark.parametrize("scenario", ["baseline", "rogue-device", "shared-host"])
def test_the_remote_inventory_declares_the_taps_and_inet_canary_as_vantage_hosts(
    scenario: str, tmp_path: Path
) -> None:
    write_inventory(load_scenario(scenario), tmp_path)
    remote = load_inventory(tmp_path / REMOTE_INVENTORY_FILE)
    direct = load_inventory(tmp_path / INVENTORY_FILE)
    assert sorted(remote.hosts_with(Role.VANTAGE)) == sorted(["inet-canary", *TAPS])
    assert direct.hosts_with(Role.VANTAGE) == ["inet-canary"]
    assert not set(TAPS) & set(direct.hosts)
    # The taps are the only difference in hosts between the two layouts.
    assert {n: h for n, h in remote.hosts.items() if n not in TAPS} == direct.hosts


def test_every_tap_is_single_homed_at_its_ssh_address_inside_the_scope(tmp_path: Path) -> None:
    write_inventory(load_scenario("baseline"), tmp_path)
    remote = load_inventory(tmp_path / REMOTE_INVENTORY_FILE)
    guard = ScopeGuard.from_inventory(remote)
    for name in TAPS:
        tap = remote.hosts[name]
        assert list(tap.roles) == [Role.VANTAGE]
        networks = set(tap.addresses)
        assert len(networks) == 1, f"{name} must be on one network only: {networks}"
        (network,) = networks
        assert name == f"tap-{network}"
        assert tap.ssh is not None and ipaddress.ip_address(tap.ssh) in [
            ipaddress.ip_address(a) for a in tap.addresses[network]
        ]
        for address in tap.addresses[network]:
            guard.check(str(address))  # raises OutOfScopeError when refused


def test_no_host_of_any_scenario_holds_the_taps_host_part() -> None:
    for scenario in sorted(p.parent.name for p in SCENARIOS_DIR.glob("*/scenario.yaml")):
        plan = make_plan(scenario_or_baseline(scenario))
        for container in plan.containers.values():
            for network, octet in container.networks.items():
                assert octet != TAP_OCTET or network not in {
                    n for t in TAPS.values() for n in t.addresses
                }, f"{scenario}: {container.host} holds .{TAP_OCTET} on {network}"


def test_the_plan_creates_the_taps_apart_with_their_host_keys_in_known_hosts() -> None:
    plan = make_plan(scenario_or_baseline(None))
    assert set(plan.taps) == set(TAPS)
    assert not set(plan.taps) & set(plan.containers)
    assert not set(TAPS) & set(HOSTS)
    known = plan.known_hosts_lines()
    for name, tap in plan.taps.items():
        assert tap.container == f"lab-{name}"
        assert len(tap.networks) == 1 and not tap.tunnels and not tap.plays
        assert tap.sysctls["net.ipv4.ip_forward"] == "0"
        assert tap.sysctls["net.ipv6.conf.all.forwarding"] == "0"
        assert tap.host_key is not None
        line = f"{','.join(tap.addresses())} {tap.host_key.public_key}"
        assert line in known
        services = tap.files["/etc/lab/services"].decode().split()
        assert services == ["rsyslog", "sshd"]
        assert "/etc/lab/pipeline.json" not in tap.files
        assert "/home/auditor/.ssh/authorized_keys" in tap.files
    # Each tap keeps its MAC from one start to the next (and from one plan to the next).
    macs = [mac for tap in plan.taps.values() for mac in tap.macs.values()]
    assert len(set(macs)) == len(TAPS)
    again = make_plan(scenario_or_baseline(None))
    assert [t.macs for t in again.taps.values()] == [t.macs for t in plan.taps.values()]


# -- on the running lab ------------------------------------------------------------------------


def _qdiscs(devices: list[str]) -> dict[str, str]:
    return {
        d: subprocess.run(
            ["tc", "qdisc", "show", "dev", d], capture_output=True, text=True, check=False
        ).stdout
        for d in devices
    }


def _bridge_devices() -> list[str]:
    """Every tapped network's bridge and its ports as they are now."""
    devices = []
    for network in {n for t in TAPS.values() for n in t.addresses}:
        bridge = runtime.bridge_of(network)
        devices += [bridge, *runtime.bridge_ports(bridge)]
    return devices


def _macs(devices: list[str]) -> dict[str, str]:
    return {d: Path(f"/sys/class/net/{d}/address").read_text().strip() for d in devices}


def _tap_states() -> dict[str, str]:
    return {
        name: podman("inspect", f"lab-{name}", "--format", "{{.State.Status}}").stdout.strip()
        for name in TAPS
    }


def _tap_addresses() -> list[str]:
    return [
        address
        for tap in TAPS.values()
        for network, octet in tap.addresses.items()
        for address in (NETWORKS[network].address4(octet), NETWORKS[network].address6(octet))
    ]


def _neighbour_entries(address: str) -> str:
    """This machine's neighbour-table lines for ``address`` ("" when it has none)."""
    return subprocess.run(
        ["ip", "neigh", "show", "to", address], capture_output=True, text=True, check=False
    ).stdout.strip()


@pytest.fixture(scope="module")
def taps(lab_session: LabSession) -> Iterator[LabState]:
    lab = lab_session.ensure("baseline")
    runtime.taps_up()
    yield lab
    runtime.taps_down()


@pytest.mark.lab
def test_taps_down_restores_the_bridges_and_stops_the_taps(lab: LabState) -> None:
    runtime.taps_down()  # whatever ran before: the direct layout's state
    before = _bridge_devices()
    podman_made = _qdiscs(before)
    addresses = _macs(before)
    assert all("clsact" not in q for q in podman_made.values()), podman_made
    assert set(_tap_states().values()) <= {"created", "exited", "stopped"}

    started = time.monotonic()
    mirrors = runtime.taps_up()
    taps_up_seconds = time.monotonic() - started
    assert {m.tap for m in mirrors} == set(TAPS)
    assert set(_tap_states().values()) == {"running"}
    for mirror in mirrors:
        assert mirror.devices == [*mirror.ports, mirror.bridge]
        assert all("clsact" in q for q in _qdiscs(mirror.devices).values())
    assert taps_up_seconds < 30, f"taps up took {taps_up_seconds:.1f} s"
    for address in _tap_addresses():  # as a remote audit does: this machine talks to each
        subprocess.run(["ping", "-c", "1", "-W", "1", address], capture_output=True, check=False)
    assert any(_neighbour_entries(a) for a in _tap_addresses())

    runtime.taps_down()
    assert set(_tap_states().values()) <= {"exited", "stopped"}
    # nothing of the taps is left in this machine's neighbour table, where a sweep that
    # reads it (auditor inventory draft) would find them as unknown devices
    assert {a: _neighbour_entries(a) for a in _tap_addresses()} == dict.fromkeys(
        _tap_addresses(), ""
    )
    assert _bridge_devices() == before
    assert _qdiscs(before) == podman_made
    # the bridges' MACs (this machine's .1 on each segment) did not move under the containers
    assert _macs(before) == addresses
    assert runtime.recorded_mirrors() == []


@pytest.mark.lab
def test_each_tap_answers_ssh_with_strict_host_keys_as_a_vantage_host(
    taps: LabState,
) -> None:
    for name, tap in TAPS.items():
        assert tap.ssh_address is not None
        client = ssh_client(taps, tap.ssh_address)
        try:
            assert ssh_run(client, "hostname") == (0, f"{name}\n")
            # the lab's sudoers are in place and valid there (which commands a host named
            # tap-* may run as root is lab/sudoers/auditor's Host_Alias VANTAGE)
            code, output = ssh_run(client, "sudo -n -l")
            assert code == 0 and "User auditor may run" in output, (name, output)
            assert ssh_run(client, "command -v nmap tcpdump")[0] == 0, name
            # a vantage host, not an organisation host: nothing of the pipeline runs there
            assert ssh_run(client, "test -e /etc/lab/pipeline.json")[0] != 0
            assert ssh_run(client, "cat /proc/sys/net/ipv4/ip_forward") == (0, "0\n")
        finally:
            client.close()


class Capture:
    """tcpdump on a tap's interface, inside the tap (``podman exec``)."""

    def __init__(self, tap: str, expression: str, seconds: int) -> None:
        (network,) = TAPS[tap].addresses
        interface = NETWORKS[network].interface
        tcpdump = ["tcpdump", "-i", interface, "-n", "-l", "-e", expression]
        self.process = subprocess.Popen(
            ["podman", "exec", f"lab-{tap}", "timeout", str(seconds), *tcpdump],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=podman_env(),
        )
        assert self.process.stderr is not None
        # tcpdump says so on stderr once its socket is open: frames sent after are seen.
        for line in self.process.stderr:
            if "listening on" in line:
                return
        raise AssertionError(f"tcpdump did not start on {tap}")

    def lines(self) -> list[str]:
        stdout, _ = self.process.communicate(timeout=60)
        return stdout.splitlines()


def _ping_from_host(address: str) -> None:
    family = "-6" if ":" in address else "-4"
    subprocess.run(["ping", family, "-n", "-c", "2", "-i", "0.2", "-W", "1", address], check=False)


def _requests(lines: list[str], source: str, destination: str) -> int:
    """Echo requests from ``source`` to ``destination`` (the replies of a ping the other
    way go between the same addresses)."""
    return sum(
        f" {source} > {destination}: ICMP" in line and "echo request" in line for line in lines
    )


@pytest.mark.lab
def test_the_mirror_shows_a_tap_the_frames_between_others_and_this_machine(
    taps: LabState,
) -> None:
    carrier_in = NETWORKS["carrier-in"]
    hospital4, recv4 = carrier_in.address4(10), carrier_in.address4(20)
    hospital6, recv6 = carrier_in.address6(10), carrier_in.address6(20)
    host4, host6 = carrier_in.address4(1), carrier_in.address6(1)
    capture = Capture("tap-carrier-in", "icmp or icmp6 or udp port 51820", seconds=8)
    for target in (recv4, recv6, host4, host6):
        run_in("hospital", f"ping -n -c 2 -i 0.2 -W 1 {target}")
    for target in (hospital4, hospital6):
        _ping_from_host(target)
    lines = capture.lines()
    # container to container: the WireGuard tunnel (pipeline traffic every 2 s) and pings
    wireguard = [line for line in lines if "UDP" in line and f" {hospital4}." in line]
    assert any(f" > {recv4}.51820: UDP" in line for line in wireguard), lines
    assert any(f"{recv4}.51820 > {hospital4}." in line for line in wireguard), lines
    assert _requests(lines, hospital4, recv4) == 2, lines
    assert _requests(lines, hospital6, recv6) == 2, lines
    # container to this machine (.1 / ::1), and this machine to a container, both families
    assert _requests(lines, hospital4, host4) == 2, lines
    assert _requests(lines, hospital6, host6) == 2, lines
    assert _requests(lines, host4, hospital4) == 2, lines
    assert _requests(lines, host6, hospital6) == 2, lines


@pytest.mark.lab
@pytest.mark.parametrize("tap", sorted(TAPS))
def test_every_tap_sees_this_machine_talk_to_its_neighbours_once(taps: LabState, tap: str) -> None:
    """On every tapped network: one echo request from this machine to another container is
    seen exactly once (mirrored, not flooded twice), and none to the tap itself twice."""
    (network,) = TAPS[tap].addresses
    octet = next(h.addresses[network] for h in HOSTS.values() if network in h.addresses)
    neighbour = NETWORKS[network].address4(octet)
    own = NETWORKS[network].address4(TAP_OCTET)
    capture = Capture(tap, "icmp", seconds=4)
    _ping_from_host(neighbour)
    _ping_from_host(own)
    lines = capture.lines()
    host = NETWORKS[network].address4(1)
    assert _requests(lines, host, neighbour) == 2, lines
    assert _requests(lines, host, own) == 2, lines


@pytest.mark.lab
def test_lab_status_lists_the_taps_and_their_state(taps: LabState) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "auditor", "lab", "status"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "250"},
    )
    assert result.returncode == 0, result.stderr
    for name in TAPS:
        row = next((line for line in result.stdout.splitlines() if f" {name} " in line), "")
        assert (
            "running" in row
            and NETWORKS[next(iter(TAPS[name].addresses))].address4(TAP_OCTET) in row
        ), result.stdout
    state = json.loads((Path(taps.state_dir) / runtime.STATE_FILE).read_text())
    assert set(state["taps"]) == set(TAPS)
