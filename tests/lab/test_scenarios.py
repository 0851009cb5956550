"""Each violation scenario really has its violation (checked with the lab's own tools)."""

from __future__ import annotations

import subprocess

import pytest

from lab.podman import podman
from lab.runtime import LabState
from lab.scenario import load_scenario
from tests.lab.labtools import (
    ORGANISATION_SSH,
    assert_delivered_end_to_end,
    run_in,
    ssh_client,
    ssh_run,
    tcp_connects,
    wait_for,
)

pytestmark = pytest.mark.lab


def _expected(lab: LabState) -> list[tuple[str, str]]:
    return load_scenario(lab.scenario).expect_fail


@pytest.mark.scenario("recv-egress")
def test_recv_egress_recv_srv_reaches_hospital(lab: LabState) -> None:
    assert _expected(lab) == [("recv-no-outbound", "recv-srv")]
    assert tcp_connects("recv-srv", "10.98.10.10", 22)
    assert tcp_connects("recv-srv", "fd98:0:0:10::10", 22)
    assert "default via 10.98.10.1" in run_in("recv-srv", "ip route").stdout


@pytest.mark.scenario("send-inbound")
def test_send_inbound_recipient_connects_to_8443(lab: LabState) -> None:
    assert tcp_connects("recipient", "10.98.11.20", 8443)
    assert tcp_connects("recipient", "fd98:0:0:11::20", 8443)
    assert not tcp_connects("recipient", "10.98.11.20", 22)


@pytest.mark.scenario("proc-dual-homed")
def test_proc_dual_homed_reaches_the_internet_via_office_gw(lab: LabState) -> None:
    assert tcp_connects("proc-srv", "10.98.0.100", 80)
    canary = run_in("inet-canary", "cat /var/log/lab/canary.log").stdout
    # office-gw masquerades: the canary sees the router's inet address, after the attempt.
    assert '"src": "10.98.0.254"' in canary
    assert "10.98.40.30" in run_in("proc-srv", "ip -4 address show office").stdout


@pytest.mark.scenario("plaintext-link")
def test_plaintext_link_carries_cleartext_and_still_delivers(lab: LabState) -> None:
    bridge = podman(
        "network", "inspect", "lab-carrier-in", "--format", "{{.NetworkInterface}}"
    ).stdout.strip()
    capture = subprocess.Popen(
        ["timeout", "8", "tcpdump", "-n", "-l", "-A", "-i", bridge, "tcp port 8080"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    output, _ = capture.communicate()
    assert "PUT /hospital-" in output and "patient_id,name" in output
    assert run_in("recv-srv", "ip link show wg-in").returncode != 0
    assert_delivered_end_to_end(timeout=60)


@pytest.mark.scenario("terminal-usb")
def test_terminal_usb_term_2_can_load_usb_storage(lab: LabState) -> None:
    term2 = run_in("term-2", "modprobe -n -v usb-storage")
    assert "install /bin/false" not in term2.stdout
    assert (
        "ImplicitPolicyTarget=allow"
        in run_in("term-2", "cat /etc/usbguard/usbguard-daemon.conf").stdout
    )
    assert "install /bin/false" in run_in("term-1", "modprobe -n -v usb-storage").stdout


@pytest.mark.scenario("shared-host")
def test_shared_host_send_addresses_are_recv_srv(lab: LabState) -> None:
    assert "send-srv" not in lab.containers
    identities = {}
    for host in ("recv-srv", "send-srv"):
        client = ssh_client(lab, ORGANISATION_SSH[host])
        try:
            transport = client.get_transport()
            assert transport is not None
            key = transport.get_remote_server_key().get_base64()
            _, machine_id = ssh_run(client, "cat /etc/machine-id; hostname")
        finally:
            client.close()
        identities[host] = (key, machine_id)
    assert identities["recv-srv"] == identities["send-srv"]
    assert identities["send-srv"][1].split()[1] == "recv-srv"
    assert_delivered_end_to_end(timeout=60)


@pytest.mark.scenario("remote-control")
def test_remote_control_vnc_banner_from_term_1(lab: LabState) -> None:
    read_banner = (
        "python3 -c \"import socket; s=socket.create_connection(('10.98.30.30', 5900), 5);"
        ' print(s.recv(12).decode())"'
    )
    banner = run_in("term-1", read_banner)
    assert banner.stdout.startswith("RFB 003.00"), (banner.stdout, banner.stderr)


@pytest.mark.scenario("logging-off")
def test_logging_off_proc_srv_records_nothing_persistently(lab: LabState) -> None:
    assert run_in("proc-srv", "pgrep -x rsyslogd").returncode != 0
    assert "Storage=volatile" in run_in("proc-srv", "cat /etc/systemd/journald.conf").stdout
    sudo_logging = run_in("proc-srv", "cat /etc/sudoers.d/logging").stdout
    assert "!syslog" in sudo_logging and "logfile=" not in sudo_logging
    assert run_in("recv-srv", "pgrep -x rsyslogd").returncode == 0


@pytest.mark.scenario("rogue-device")
def test_rogue_device_answers_on_line_recv(lab: LabState) -> None:
    assert "rogue-1" in lab.containers
    assert tcp_connects("proc-srv", "10.98.21.66", 22)
    assert wait_for(
        lambda: run_in("proc-srv", "ping -c 1 -W 1 fd98:0:0:21::66").returncode == 0, 10
    )
    assert (
        subprocess.run(
            ["ping", "-c", "1", "-W", "2", "10.98.21.66"], capture_output=True, check=False
        ).returncode
        == 0
    )


def _nft_tables(host: str) -> list[str]:
    return run_in(host, "nft list tables").stdout.splitlines()


@pytest.mark.scenario("ufw-managed")
def test_ufw_managed_filters_are_ufw_s_and_hold_the_baseline_policy(lab: LabState) -> None:
    assert _expected(lab) == []
    for host in ("recv-srv", "send-srv"):
        status = run_in(host, "ufw status verbose").stdout
        assert "Status: active" in status and "deny (incoming), deny (outgoing)" in status, status
        # ufw's tables (iptables-nft) and none of the lab's own nftables.conf.
        assert _nft_tables(host) == ["table ip filter", "table ip6 filter"]
    # recv-srv opens nothing, not even to hospital on its own link, nor a ping over IPv6 (ufw's
    # stock before6.rules would let that out).
    assert not tcp_connects("recv-srv", "10.98.10.10", 22)
    assert not tcp_connects("recv-srv", "fd98:0:0:10::10", 22)
    assert run_in("recv-srv", "ping -6 -c 1 -W 1 fd98:0:0:10::10").returncode != 0
    # Nothing new reaches send-srv from carrier-out, pings included (ufw's stock before rules
    # admit echo requests).
    assert not tcp_connects("recipient", "10.98.11.20", 22)
    assert run_in("recipient", "ping -c 1 -W 1 10.98.11.20").returncode != 0
    assert run_in("recipient", "ping -6 -c 1 -W 1 fd98:0:0:11::20").returncode != 0
    # What the baseline admits still works: SFTP on the lines and the tunnels.
    assert tcp_connects("proc-srv", "10.98.21.20", 22)
    assert tcp_connects("proc-srv", "fd98:0:0:22::20", 22)
    assert_delivered_end_to_end(timeout=60)


@pytest.mark.scenario("recv-ufw-egress")
def test_recv_ufw_egress_recv_srv_reaches_hospital(lab: LabState) -> None:
    assert _expected(lab) == [("recv-no-outbound", "recv-srv")]
    status = run_in("recv-srv", "ufw status verbose").stdout
    assert "Status: active" in status and "deny (incoming), allow (outgoing)" in status, status
    assert _nft_tables("recv-srv") == ["table ip filter", "table ip6 filter"]
    assert tcp_connects("recv-srv", "10.98.10.10", 22)
    assert tcp_connects("recv-srv", "fd98:0:0:10::10", 22)
    assert "default via 10.98.10.1" in run_in("recv-srv", "ip route").stdout


@pytest.mark.scenario("send-legacy-inbound")
def test_send_legacy_inbound_rules_only_in_legacy_admit_8443(lab: LabState) -> None:
    assert _expected(lab) == [
        ("send-no-inbound", "send-srv"),
        ("unauthorized-access-prevention", "send-srv"),
    ]
    # The nft listing shows nothing: the filter lives in iptables-legacy's tables.
    assert run_in("send-srv", "nft list ruleset").stdout.strip() == ""
    for save in ("iptables-legacy-save", "ip6tables-legacy-save"):
        listing = run_in("send-srv", save).stdout
        assert ":INPUT DROP" in listing, listing
        assert "-A INPUT -i carrier-out -p tcp -m tcp --dport 8443 -j ACCEPT" in listing, listing
    assert tcp_connects("recipient", "10.98.11.20", 8443)
    assert tcp_connects("recipient", "fd98:0:0:11::20", 8443)
    # The legacy rules do filter: the rest stays closed to carrier-out.
    assert not tcp_connects("recipient", "10.98.11.20", 22)
    assert not tcp_connects("recipient", "fd98:0:0:11::20", 22)
    assert_delivered_end_to_end(timeout=60)


@pytest.mark.scenario("send-firewalld-inbound")
def test_send_firewalld_inbound_zones_admit_8443(lab: LabState) -> None:
    assert _expected(lab) == [
        ("send-no-inbound", "send-srv"),
        ("unauthorized-access-prevention", "send-srv"),
    ]
    # firewalld's own table is the whole rule set, and it runs with its zones.
    ruleset = run_in("send-srv", "nft list ruleset").stdout
    assert "table inet firewalld" in ruleset and "tcp dport 8443 accept" in ruleset
    zones = run_in("send-srv", "firewall-cmd --get-active-zones").stdout
    assert "carrier-out" in zones and "line-send" in zones, zones
    assert tcp_connects("recipient", "10.98.11.20", 8443)
    assert tcp_connects("recipient", "fd98:0:0:11::20", 8443)
    # The drop zone filters the rest: SSH stays closed to carrier-out.
    assert not tcp_connects("recipient", "10.98.11.20", 22)
    assert not tcp_connects("recipient", "fd98:0:0:11::20", 22)
    assert_delivered_end_to_end(timeout=60)
