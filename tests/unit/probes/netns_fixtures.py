"""Throwaway network namespaces for the network-probe tests.

Each test module builds its own small topology: Linux bridges in the auditor's namespace (it
holds ``.1`` / ``::1`` on each, as it does on the reference lab's podman bridges) and
namespaces attached to them by veth pairs. Only 10.98.240.0/24-10.98.249.0/24 and
fd98:0:0:240::/64-fd98:0:0:249::/64 are used: they are reserved for these tests.

Safety: the bridges live in a namespace with no link to the outside, which the test process
enters (see NetnsLab); every namespace has forwarding off. Everything is deleted on teardown,
even when a test fails.
"""

from __future__ import annotations

import ctypes
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest

from probes.netlocal import RemoteResult, RunRemote, run_tool

FIRST_TEST_SUBNET = 240
LAST_TEST_SUBNET = 249


def have_root_and_tools() -> bool:
    return os.geteuid() == 0 and all(shutil.which(t) for t in ("ip", "nft", "nmap", "tcpdump"))


needs_netns = pytest.mark.skipif(
    not have_root_and_tools(), reason="needs root, iproute2, nftables, nmap and tcpdump"
)


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=30)


@dataclass(frozen=True)
class Bridge:
    name: str
    subnet: int  #: the third octet: 10.98.<subnet>.0/24, fd98:0:0:<subnet>::/64

    def v4(self, host: int) -> str:
        return f"10.98.{self.subnet}.{host}"

    def v6(self, host: int) -> str:
        return f"fd98:0:0:{self.subnet}::{host:x}"

    @property
    def prefix4(self) -> str:
        return f"10.98.{self.subnet}.0/24"

    @property
    def prefix6(self) -> str:
        return f"fd98:0:0:{self.subnet}::/64"

    @property
    def auditor4(self) -> str:
        return self.v4(1)

    @property
    def auditor6(self) -> str:
        return self.v6(1)


@dataclass
class Namespace:
    name: str
    addresses: dict[str, list[str]] = field(default_factory=dict)  #: bridge name -> addrs

    def all_addresses(self) -> list[str]:
        return [a for addrs in self.addresses.values() for a in addrs]

    def run(self, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.name, *shlex.split(command), check=check)

    def start(self, argv: Sequence[str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            ["ip", "netns", "exec", self.name, *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )


class NetnsLab:
    """Builds bridges and namespaces, and removes all of them in ``close``.

    The test process itself moves into a namespace of its own (``aud``) for the lab's life:
    it stands for this machine, holding ``.1`` on every bridge. So the probes run exactly as
    on site (their tools are subprocesses and inherit the namespace), the host's own firewall
    (the reference lab's guard table drops 10.98/16 there) does not interfere, and nothing a
    test sends can leave: the ``aud`` namespace has no link to the outside at all.
    """

    def __init__(self, tag: str) -> None:
        self.tag = f"{tag[:3]}{os.getpid() % 0xFFF:03x}"
        self.bridges: list[Bridge] = []
        self.namespaces: list[Namespace] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        self._veths = 0
        self._home: int | None = None
        self.auditor = self.namespace("aud")
        self._home = enter_namespace(self.auditor.name)

    def bridge(self, subnet: int) -> Bridge:
        assert FIRST_TEST_SUBNET <= subnet <= LAST_TEST_SUBNET, "not a test subnet"
        bridge = Bridge(f"b{self.tag}{subnet - FIRST_TEST_SUBNET}", subnet)
        sh("ip", "link", "add", bridge.name, "type", "bridge")
        self.bridges.append(bridge)
        sh("ip", "addr", "add", f"{bridge.auditor4}/24", "dev", bridge.name)
        sh("ip", "addr", "add", f"{bridge.auditor6}/64", "dev", bridge.name, "nodad")
        sh("ip", "link", "set", bridge.name, "up")
        return bridge

    def namespace(self, short: str) -> Namespace:
        ns = Namespace(f"ap-{self.tag}-{short}")
        sh("ip", "netns", "add", ns.name)
        self.namespaces.append(ns)
        ns.run("ip link set lo up")
        # A namespace must never route: whatever it sends is its own.
        ns.run("sysctl -q -w net.ipv4.ip_forward=0")
        ns.run("sysctl -q -w net.ipv6.conf.all.forwarding=0")
        return ns

    def attach(
        self, ns: Namespace, bridge: Bridge, host: int, v6_host: int | None = None
    ) -> tuple[str, str]:
        """Give ``ns`` an interface on ``bridge`` with .host / ::host (or ::v6_host)."""
        self._veths += 1
        outer, inner = f"v{self.tag}{self._veths}", f"eth{len(ns.addresses)}"
        sh("ip", "link", "add", outer, "type", "veth", "peer", "name", "tmp" + outer)
        sh("ip", "link", "set", "tmp" + outer, "netns", ns.name)
        ns.run(f"ip link set tmp{outer} name {inner}")
        sh("ip", "link", "set", outer, "master", bridge.name, "up")
        v4, v6 = bridge.v4(host), bridge.v6(host if v6_host is None else v6_host)
        ns.run(f"ip addr add {v4}/24 dev {inner}")
        ns.run(f"ip addr add {v6}/64 dev {inner} nodad")
        ns.run(f"ip link set {inner} up")
        ns.addresses[bridge.name] = [v4, v6]
        return v4, v6

    def start(self, ns: Namespace, argv: Sequence[str]) -> subprocess.Popen[bytes]:
        proc = ns.start(argv)
        self.processes.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
        if self._home is not None:
            leave_namespace(self._home)
            self._home = None
        for ns in self.namespaces:  # their veths and the bridges inside ``aud`` go with them
            sh("ip", "netns", "del", ns.name, check=False)


_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


def enter_namespace(name: str) -> int:
    """Move this thread (the test's, which starts the probes' tools) into ``name``; returns
    a handle on the namespace it left, for ``leave_namespace``."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        _setns(target)
    finally:
        os.close(target)
    return home


def leave_namespace(home: int) -> None:
    try:
        _setns(home)
    finally:
        os.close(home)


@pytest.fixture(scope="module")
def netns_lab(request: pytest.FixtureRequest) -> Iterator[NetnsLab]:
    lab = NetnsLab(Path(str(request.module.__file__)).stem.removeprefix("test_"))
    try:
        yield lab
    finally:
        lab.close()


LISTENER = r"""
import socket, sys, threading
tcp = [int(p) for p in sys.argv[1].split(",") if p]
udp = [int(p) for p in sys.argv[2].split(",") if p]
socks = []
for port in tcp:
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", port)); s.listen(16); socks.append(s)
    def accept(s=s):
        while True:
            c, _ = s.accept(); c.close()
    threading.Thread(target=accept, daemon=True).start()
for port in udp:
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port)); socks.append(s)
    def echo(s=s):
        while True:
            data, peer = s.recvfrom(4096); s.sendto(b"ok" + data[:16], peer)
    threading.Thread(target=echo, daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""


def start_listeners(
    lab: NetnsLab, ns: Namespace, tcp: Sequence[int], udp: Sequence[int]
) -> subprocess.Popen[bytes]:
    """TCP accept-and-close and UDP echo servers on every address of ``ns``, both families."""
    proc = lab.start(
        ns,
        [sys.executable, "-c", LISTENER, ",".join(map(str, tcp)), ",".join(map(str, udp))],
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"ready"
    return proc


def netns_run_remote(hosts: dict[str, Namespace]) -> RunRemote:
    """A run_remote that really executes the command inside the host's namespace."""

    def run(host: str, command: str, timeout: float) -> RemoteResult:
        ns = hosts[host]
        result = run_tool(["ip", "netns", "exec", ns.name, *shlex.split(command)], timeout)
        return RemoteResult(
            exit_status=None if result.timed_out else result.exit_status,
            stdout=result.stdout,
            stderr=result.stderr,
            timed_out=result.timed_out,
        )

    return run


@dataclass
class StoredArtifact:
    content: bytes
    probe: str
    command: str
    host: str | None
    media_type: str
    exit_status: int | None
    tool_version: str | None


class MemorySink:
    """The smallest EvidenceSink: keeps what was added, by its sha256 reference."""

    def __init__(self) -> None:
        self.items: dict[str, StoredArtifact] = {}

    def add(
        self,
        content: bytes,
        *,
        probe: str,
        command: str,
        host: str | None,
        started: datetime,
        finished: datetime,
        tool_version: str | None = None,
        media_type: str = "text/plain",
        exit_status: int | None = None,
    ) -> str:
        import hashlib

        ref = "sha256:" + hashlib.sha256(content).hexdigest()
        self.items[ref] = StoredArtifact(
            content, probe, command, host, media_type, exit_status, tool_version
        )
        return ref

    def of_type(self, media_type: str) -> list[StoredArtifact]:
        return [a for a in self.items.values() if a.media_type == media_type]


class ScopeRefusedError(Exception):
    pass


def scope_check(*allowed: str) -> Callable[[str], None]:
    """A check_target with the ScopeGuard's contract over the given prefixes."""
    from netaddr import IPNetwork, IPSet

    authorized = IPSet([IPNetwork(p) for p in allowed])

    def check(address: str) -> None:
        if not IPSet([IPNetwork(address).cidr]).issubset(authorized):
            raise ScopeRefusedError(f"{address} is outside the authorized scope")

    return check


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False
