"""The baseline lab works and is compliant, checked with the lab's own tools (no auditor code)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import paramiko
import pytest

from auditor.domain.inventory import Role, load_inventory
from lab import guard
from lab.keys import new_ssh_key
from lab.runtime import LabState, handshakes
from tests.lab.labtools import (
    ORGANISATION_SSH,
    assert_delivered_end_to_end,
    run_in,
    ssh_client,
    ssh_run,
    tcp_connects,
)

pytestmark = pytest.mark.lab


@pytest.mark.parametrize("host", sorted(ORGANISATION_SSH))
def test_organisation_host_answers_ssh_with_strict_host_keys(lab: LabState, host: str) -> None:
    client = ssh_client(lab, ORGANISATION_SSH[host])
    try:
        status, output = ssh_run(client, "hostname; id -un")
    finally:
        client.close()
    assert (status, output.split()) == (0, [host, "auditor"])


def test_wrong_or_missing_known_hosts_is_refused(lab: LabState, tmp_path: Path) -> None:
    address = ORGANISATION_SSH["recv-srv"]
    impostor = tmp_path / "wrong_known_hosts"
    impostor.write_text(f"{address} {new_ssh_key('impostor').public_key}\n", encoding="utf-8")
    with pytest.raises(paramiko.BadHostKeyException):
        ssh_client(lab, address, known_hosts=impostor)
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        ssh_client(lab, address, known_hosts=empty)


def test_sudo_allows_the_read_only_commands_and_nothing_else(lab: LabState) -> None:
    client = ssh_client(lab, ORGANISATION_SSH["send-srv"])
    try:
        allowed, ruleset = ssh_run(client, "sudo -n /usr/sbin/nft -j list ruleset")
        handshake, _ = ssh_run(client, "sudo -n /usr/bin/wg show all latest-handshakes")
        secret, _ = ssh_run(client, "sudo -n /usr/bin/wg show all private-key")
        shell, _ = ssh_run(client, "sudo -n /bin/sh -c id")
    finally:
        client.close()
    assert (allowed, handshake) == (0, 0)
    assert '"nftables"' in ruleset
    assert secret != 0 and shell != 0


def test_inventory_loads_and_matches_the_lab(lab: LabState) -> None:
    inventory = load_inventory(lab.inventory_path)
    assert inventory.organisation_hosts() == sorted(ORGANISATION_SSH)
    assert {h: str(inventory.hosts[h].ssh) for h in ORGANISATION_SSH} == ORGANISATION_SSH
    assert inventory.hosts_with(Role.VANTAGE) == ["inet-canary"]
    assert inventory.ssh.key.is_file() and inventory.ssh.known_hosts.is_file()
    assert sorted(inventory.tunnels) == ["wg-in", "wg-out"]


def test_a_file_from_hospital_reaches_recipient_through_proc_srv(lab: LabState) -> None:
    assert_delivered_end_to_end(timeout=60)


def test_recv_srv_opens_no_connection_while_the_reverse_flow_works(lab: LabState) -> None:
    outward = [
        ("10.98.10.10", 22),
        ("fd98:0:0:10::10", 22),
        ("10.98.100.10", 22),
        ("10.98.0.100", 80),
        ("10.98.0.100", 443),
    ]
    reached = [target for target in outward if tcp_connects("recv-srv", *target)]
    assert reached == []
    # The other way round works: hospital reaches recv-srv's sshd through the tunnel.
    assert tcp_connects("hospital", "10.98.100.20", 22)
    recent = run_in("hospital", "grep -c sftp-push /var/log/lab/pipeline.log").stdout.strip()
    assert int(recent or 0) > 0


def test_nothing_from_carrier_out_gets_into_send_srv(lab: LabState) -> None:
    targets = ["10.98.11.20", "fd98:0:0:11::20", "10.98.101.20"]
    reached = [
        (address, port)
        for address in targets
        for port in (22, 80, 443, 8443, 51820)
        if tcp_connects("recipient", address, port, timeout=1)
    ]
    assert reached == []
    # The same probe from the dedicated line does connect: the probe itself works.
    assert tcp_connects("proc-srv", "10.98.22.20", 22)
    assert tcp_connects("proc-srv", "fd98:0:0:22::20", 22)


def test_both_tunnels_have_recent_handshakes(lab: LabState) -> None:
    now = time.time()
    for host, tunnel in (
        ("hospital", "wg-in"),
        ("recv-srv", "wg-in"),
        ("send-srv", "wg-out"),
        ("recipient", "wg-out"),
    ):
        latest = handshakes(f"lab-{host}").get(tunnel, 0)
        assert now - latest < 180, f"{tunnel} on {host}: last handshake at {latest}"


def test_ipv6_works_between_neighbours(lab: LabState) -> None:
    assert tcp_connects("proc-srv", "fd98:0:0:21::20", 22)
    assert tcp_connects("term-1", "fd98:0:0:30::30", 22)
    assert run_in("office-pc", "ping -6 -c 1 -W 2 fd98:0:0:40::254").returncode == 0


def test_terminals_cannot_load_usb_storage(lab: LabState) -> None:
    for terminal in ("term-1", "term-2"):
        result = run_in(terminal, "modprobe -n -v usb-storage")
        assert "install /bin/false" in result.stdout, (terminal, result.stdout, result.stderr)


def test_only_office_pc_has_a_default_route(lab: LabState) -> None:
    with_default = {
        host: routes
        for host in lab.containers
        if (routes := run_in(host, "ip -4 route show default; ip -6 route show default").stdout)
    }
    assert list(with_default) == ["office-pc"]
    assert "via 10.98.40.254" in with_default["office-pc"]
    assert "via fd98:0:0:40::254" in with_default["office-pc"]


def _bridge_of(network: str) -> str:
    from lab.podman import podman

    return podman(
        "network", "inspect", f"lab-{network}", "--format", "{{.NetworkInterface}}"
    ).stdout.strip()


def _capture(bridge: str, expression: str, seconds: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["timeout", str(seconds), "tcpdump", "-n", "-l", "-i", bridge, expression],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def test_forward_guard_stops_routing_through_the_host(lab: LabState) -> None:
    """office-pc routes to inet via the host's office address; the host must not forward it."""
    sysctls = ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding")
    saved = {k: Path("/proc/sys", *k.split(".")).read_text().strip() for k in sysctls}
    routes = "ip route add 10.98.0.0/24 via 10.98.40.1; ip -6 route add fd98:0:0:0::/64 via fd98:0:0:40::1"
    expression = "tcp port 80 and (src host 10.98.40.20 or src host fd98:0:0:40::20)"
    try:
        # Force the case that matters: a host that forwards. Only the guard stands in the way.
        for key in sysctls:
            Path("/proc/sys", *key.split(".")).write_text("1")
        assert run_in("office-pc", routes).returncode == 0
        on_office = _capture(_bridge_of("office"), expression, 8)
        on_inet = _capture(_bridge_of("inet"), expression, 8)
        time.sleep(1.5)  # let tcpdump open its sockets
        assert not tcp_connects("office-pc", "10.98.0.100", 80, timeout=3)
        assert not tcp_connects("office-pc", "fd98:0:0:0::100", 80, timeout=3)
        seen_office, _ = on_office.communicate()
        seen_inet, _ = on_inet.communicate()
    finally:
        for key, value in saved.items():
            Path("/proc/sys", *key.split(".")).write_text(value)
        run_in("office-pc", "ip route del 10.98.0.0/24; ip -6 route del fd98:0:0:0::/64")
    assert "10.98.0.100.80" in seen_office and "fd98::100.80" in seen_office, seen_office
    assert seen_inet.strip() == ""
    canary = run_in("inet-canary", "cat /var/log/lab/canary.log").stdout
    assert "10.98.40.20" not in canary and "fd98:0:0:40::20" not in canary
    assert "counter packets" in guard.listing()


def test_lab_status_shows_every_host_the_tunnels_and_the_last_delivery(lab: LabState) -> None:
    proc = subprocess.run(
        ["auditor", "lab", "status"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"COLUMNS": "250", "PATH": f"{Path(sys.executable).parent}:/usr/sbin:/usr/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    for host in lab.containers:
        assert host in proc.stdout
    assert "wg-in:" in proc.stdout and "wg-out:" in proc.stdout
    assert "hospital-" in proc.stdout  # the name of the last file delivered at recipient
