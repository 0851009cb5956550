"""The remote capture's guards, offline: the BPF filter check, the command allow-list and the
lab's sudoers forms (accept what the audit builds, refuse injection), the vantage host's
``ip -j addr`` read defensively, and a pcap cut at the byte bound."""

from __future__ import annotations

import re
import shlex
import struct
from pathlib import Path

import pytest

from auditor.audit.remote import CAPTURE_TEMPLATES, SWEEP_TEMPLATES, VANTAGE_TEMPLATES
from auditor.domain.attempts import ErrorReason
from probes.egress import DEFAULT_KINDS, _capture_filter
from probes.netlocal import RemoteResult
from probes.remotecapture import (
    RemoteCapture,
    RemoteCaptureSpec,
    UnsafeFilterError,
    addresses_of,
    capture_command,
    checked_filter,
    complete_records,
    listed_interface_holding,
)
from probes.ssh import AllowList, RunningCommand
from tests.unit.probes.netns_fixtures import MemorySink

SUDOERS = Path(__file__).parents[2] / "lab" / "sudoers" / "auditor"

#: Recorded on the lab's inet-canary (`ip -j addr show`, run as the audit account).
CANARY_IP_ADDR = (
    b'[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"mtu":65536,'
    b'"qdisc":"noqueue","operstate":"UNKNOWN","group":"default","txqlen":1000,'
    b'"link_type":"loopback","address":"00:00:00:00:00:00","broadcast":"00:00:00:00:00:00",'
    b'"addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8,"scope":"host",'
    b'"label":"lo","valid_life_time":4294967295,"preferred_life_time":4294967295},'
    b'{"family":"inet6","local":"::1","prefixlen":128,"scope":"host",'
    b'"valid_life_time":4294967295,"preferred_life_time":4294967295}]},'
    b'{"ifindex":2,"link_index":7499,"ifname":"inet","flags":["BROADCAST","MULTICAST","UP",'
    b'"LOWER_UP"],"mtu":1500,"qdisc":"noqueue","operstate":"UP","group":"default",'
    b'"link_type":"ether","address":"a6:75:f8:40:e5:ac","broadcast":"ff:ff:ff:ff:ff:ff",'
    b'"link_netnsid":0,"addr_info":[{"family":"inet","local":"10.98.0.100","prefixlen":24,'
    b'"broadcast":"10.98.0.255","scope":"global","label":"inet",'
    b'"valid_life_time":4294967295,"preferred_life_time":4294967295},{"family":"inet6",'
    b'"local":"fd98::100","prefixlen":64,"scope":"global","valid_life_time":4294967295,'
    b'"preferred_life_time":4294967295},{"family":"inet6","local":"fe80::a475:f8ff:fe40:e5ac",'
    b'"prefixlen":64,"scope":"link","valid_life_time":4294967295,'
    b'"preferred_life_time":4294967295}]}]'
)

#: The shapes auditor.audit.network._link_filter and probes.egress._capture_filter build.
REAL_FILTERS = [
    "ip or ip6",
    "(ip or ip6) and not (host 10.98.0.1 or host 10.98.0.100 or host fd98::100)",
    "dst host 10.98.0.254 or dst host fd98::254 or src host 10.98.21.20",
    "net 10.98.0.0/24 and tcp and port 22",
    "icmp or icmp6 or (udp and dst port 53)",
    # the egress captures' filter as probes.egress builds it, byte comparisons included
    _capture_filter(["10.98.0.100", "fd98::100", "10.98.255.254"], DEFAULT_KINDS),
    "",
]
INJECTIONS = [
    "ip'; touch /tmp/pwned; echo '",
    "ip; reboot",
    "ip and host $(id)",
    "ip and host `id`",
    "ip\nreboot",
    "ip -w /etc/passwd",
    "ip or -z /bin/sh",
    'ip or "x"',
    "ip | nc 10.98.0.1 1",
    "ip && id",
    "ether host 00:11:22:33:44:55",
    "host 10.98.0.300",
    "net 10.98.0.1/24",
    "port 70000",
    "port",
    "(ip or ip6",
    "ip or ip6)",
    "IP",
    "ip > /tmp/x",
    "ip \\\nor ip6",
    "tcp[13] & 0x123 == 2",
    "ip[1000] == 1",
    "tcp[13] | 1 == 1",
    "tcp[13] != 0",
    "ether[0] == 1",
]


@pytest.mark.parametrize("bpf", REAL_FILTERS)
def test_the_filters_the_audit_builds_are_accepted_and_permitted(bpf: str) -> None:
    checked = checked_filter(bpf)
    spec = RemoteCaptureSpec("inet-canary", ("10.98.0.100",), bpf=bpf, max_seconds=20)
    command = capture_command(spec, "inet", checked)
    assert AllowList((), CAPTURE_TEMPLATES).permits(command), command
    assert sudoers_permits(command), command
    # The shell on the vantage host gives tcpdump the filter as one argument, unchanged.
    assert shlex.split(command)[-1] == checked
    assert checked.replace("(", "").replace(")", "").split() == (
        bpf.replace("(", "").replace(")", "").split() or ["ip", "or", "ip6"]
    )


@pytest.mark.parametrize("bpf", INJECTIONS)
def test_anything_else_in_a_filter_is_refused(bpf: str) -> None:
    with pytest.raises(UnsafeFilterError):
        checked_filter(bpf)


@pytest.mark.parametrize("bpf", INJECTIONS[:10])
def test_a_refused_filter_sends_nothing(bpf: str) -> None:
    remote = NothingMayBeSent()
    capture = RemoteCapture(
        RemoteCaptureSpec("inet-canary", ("10.98.0.100",), bpf=bpf), remote, MemorySink()
    )
    error = capture.start()
    assert error is not None and error.reason is ErrorReason.NOT_PERMITTED
    assert "inet-canary" in error.message and "nothing sent" in error.message
    assert remote.calls == []


@pytest.mark.parametrize(
    "command",
    [
        # the quoted filter closed early: a second command
        "sudo -n /usr/bin/timeout -s INT -k 5 40 /usr/bin/tcpdump -i inet -n -U "
        "--immediate-mode -s 65535 -c 10 -w - 'ip'; id; echo ''",
        # a file written instead of stdout, and tcpdump's post-rotate command
        "sudo -n /usr/bin/timeout -s INT -k 5 40 /usr/bin/tcpdump -i inet -n -U "
        "--immediate-mode -s 65535 -c 10 -w /etc/cron.d/x 'ip'",
        "sudo -n /usr/bin/timeout -s INT -k 5 40 /usr/bin/tcpdump -i inet -n -U "
        "--immediate-mode -s 65535 -c 10 -w - -z /bin/sh 'ip'",
        # an interface that is an option
        "sudo -n /usr/bin/timeout -s INT -k 5 40 /usr/bin/tcpdump -i -r -n -U "
        "--immediate-mode -s 65535 -c 10 -w - 'ip'",
        # no time bound on the host
        "sudo -n /usr/bin/tcpdump -i inet -n -U --immediate-mode -s 65535 -c 10 -w - 'ip'",
        # a prefix for a scan, a file option for the sweep
        "sudo -n /usr/bin/nmap -sS -p 22 -Pn -n -oX - 10.98.0.0/24",
        "sudo -n /usr/bin/nmap -sn -PR -e inet -n --reason -oX - -iL /etc/shadow",
        "sudo -n /usr/bin/nmap -sn -PR -e inet -n --reason -oN /tmp/x 10.98.0.0/24",
        "sudo -n /usr/bin/nmap -sn -PR -e inet -n --reason -oX - 10.98.0.0/24 --script x",
        "ip -j neigh show dev inet; id",
        "ip -j addr show; id",
    ],
)
def test_the_vantage_allow_list_and_sudoers_refuse_other_forms(command: str) -> None:
    assert not AllowList((), VANTAGE_TEMPLATES).permits(command)
    if command.startswith("sudo -n "):
        assert not sudoers_permits(command)


def test_an_unquoted_filter_is_refused_before_the_shell_could_read_it() -> None:
    """sudo sees the same words either way (it cannot tell); the allow-list refuses it."""
    command = (
        "sudo -n /usr/bin/timeout -s INT -k 5 40 /usr/bin/tcpdump -i inet -n -U "
        "--immediate-mode -s 65535 -c 10 -w - ip or ip6"
    )
    assert not AllowList((), VANTAGE_TEMPLATES).permits(command)


def test_the_sweeps_commands_are_permitted_by_both() -> None:
    allow = AllowList((), VANTAGE_TEMPLATES)
    for command in [
        "sudo -n /usr/bin/nmap -sn -PR -e inet -n --reason -oX - 10.98.0.0/24",
        "sudo -n /usr/bin/nmap -sn -6 -e inet -n --reason -oX - fd98::1 fd98::2 fd98::254",
        "sudo -n /usr/bin/nmap -sS -p 1-1024 --min-rate 100 -Pn -n --reason -T4 "
        "--max-retries 2 --host-timeout 120s -oX - 10.98.0.254",
    ]:
        assert allow.permits(command), command
        assert sudoers_permits(command), command
    assert AllowList((), SWEEP_TEMPLATES).permits("ip -j neigh show dev inet")


def test_the_interface_holding_the_vantage_address_is_found_in_recorded_output() -> None:
    assert listed_interface_holding(CANARY_IP_ADDR, ("10.98.0.100",)) == "inet"
    assert listed_interface_holding(CANARY_IP_ADDR, ("fd98:0:0:0::100",)) == "inet"
    assert listed_interface_holding(CANARY_IP_ADDR, ("10.98.0.77",)) is None
    assert set(addresses_of(CANARY_IP_ADDR, "inet")) == {
        "10.98.0.100",
        "fd98::100",
        "fe80::a475:f8ff:fe40:e5ac",
    }


@pytest.mark.parametrize(
    "output",
    [
        b"",
        b"not json",
        b"\xff\xfe[]",
        b'{"ifname": "inet"}',
        b'[1, "x", null]',
        b'[{"ifname": "inet", "addr_info": "10.98.0.100"}]',
        b'[{"ifname": 7, "addr_info": [{"local": "10.98.0.100"}]}]',
        b'[{"ifname": "inet", "addr_info": [{"local": ["10.98.0.100"]}]}]',
        # names a shell or tcpdump would read as something else
        b'[{"ifname": "-w", "addr_info": [{"local": "10.98.0.100"}]}]',
        b'[{"ifname": "inet;id", "addr_info": [{"local": "10.98.0.100"}]}]',
        b'[{"ifname": "in et", "addr_info": [{"local": "10.98.0.100"}]}]',
        b'[{"ifname": "averyveryverylongname", "addr_info": [{"local": "10.98.0.100"}]}]',
    ],
)
def test_unexpected_ip_addr_output_names_no_interface(output: bytes) -> None:
    assert listed_interface_holding(output, ("10.98.0.100",)) is None


def test_a_pcap_cut_inside_a_packet_keeps_its_whole_records() -> None:
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    records = b"".join(
        struct.pack("<IIII", 1, 0, len(body), len(body)) + body for body in (b"a" * 60, b"b" * 42)
    )
    whole = header + records
    assert complete_records(whole) == whole
    assert complete_records(whole[:-10]) == header + records[: 16 + 60]
    assert complete_records(whole[:30]) == header
    assert complete_records(header[:10]) == header[:10]


# -- helpers --------------------------------------------------------------------------------


class NothingMayBeSent:
    """Records any attempt to reach the vantage host; the refusals must make none."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, host: str, command: str, timeout: float) -> RemoteResult:
        self.calls.append(command)
        return RemoteResult(exit_status=None, stdout=b"", stderr=b"must not be called")

    def stream(
        self, host: str, command: str, *, time_limit: float, max_output: int
    ) -> RunningCommand:
        self.calls.append(command)
        raise AssertionError(f"sent to {host}: {command}")


def sudoers_permits(command: str) -> bool:
    """Does a VANTAGE entry of the lab's sudoers allow ``command`` as sudo would match it:
    the program exactly, its arguments joined by spaces against the entry's regular
    expression (POSIX ERE; the constructs used read the same in Python's re)."""
    words = shlex.split(command)
    if words[:2] != ["sudo", "-n"] or len(words) < 3:
        return False
    program, arguments = words[2], " ".join(words[3:])
    return any(
        program == entry_program and re.fullmatch(pattern[1:-1], arguments) is not None
        for entry_program, pattern in vantage_entries()
    )


def vantage_entries() -> list[tuple[str, str]]:
    entries = []
    for line in SUDOERS.read_text().splitlines():
        found = re.fullmatch(r"Cmnd_Alias AUDIT_VANTAGE_\w+ = (/\S+) (\^.*\$)", line)
        if found:
            entries.append((found[1], found[2]))
    assert len(entries) == 3, "the VANTAGE entries of lab/sudoers/auditor changed shape"
    return entries
