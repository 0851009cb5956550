"""Real OpenSSH servers on loopback for the SSH session and collector tests.

Each server runs from a temporary folder with its own configuration, host key and
authorized_keys (root login by key only, inside that configuration); nothing under /etc/ssh
is read or changed, and the system's sshd service is never started. Servers listen on
127.0.0.1 only and are stopped at teardown.

A server can also run inside a throwaway network namespace (``sshd -i`` behind a loopback
forwarder), so that a test sees a "host" with its own interfaces, routes, nftables rule set
and WireGuard interface.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest

from auditor.domain.inventory import SshAccess

SSHD = Path("/usr/sbin/sshd")
TEST_USER = "auditor-test"

needs_sshd = pytest.mark.skipif(
    os.geteuid() != 0 or not SSHD.exists() or shutil.which("ssh-keygen") is None,
    reason="needs root and openssh-server (apt-get install -y openssh-server)",
)


@dataclass
class Artifact:
    content: bytes
    probe: str
    command: str
    host: str | None
    started: datetime
    finished: datetime
    tool_version: str | None
    media_type: str
    exit_status: int | None


@dataclass
class MemorySink:
    """The EvidenceSink protocol, in memory, for tests: keeps every artifact as received."""

    artifacts: dict[str, Artifact] = field(default_factory=dict)  #: by ref (last one kept)
    received: list[Artifact] = field(default_factory=list)  #: every call, in order
    threads: set[str] = field(default_factory=set)  #: names of the threads that called add
    lock: threading.Lock = field(default_factory=threading.Lock)

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
        artifact = Artifact(
            content, probe, command, host, started, finished, tool_version, media_type, exit_status
        )
        with self.lock:
            self.artifacts[ref] = artifact
            self.received.append(artifact)
            self.threads.add(threading.current_thread().name)
        return ref

    def everything(self) -> bytes:
        return b"\n".join(a.content + a.command.encode() for a in self.received)


def allow_all(address: str) -> None:
    """A scope hook that admits only loopback, as the tests only ever connect there."""
    if not address.startswith("127."):
        raise ValueError(f"{address} is not loopback")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def keygen(path: Path, comment: str = "test") -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
    )


def wait_for_port(port: int, deadline_s: float = 10.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port}")


@dataclass
class Sshd:
    """One running test sshd and what a client needs to reach it."""

    folder: Path
    port: int
    host_key_pub: Path
    client_key: Path
    known_hosts: Path
    process: subprocess.Popen[bytes] | None = None
    forwarder: socket.socket | None = None

    def access(self, user: str = "root", **overrides: float | int | Path) -> SshAccess:
        values: dict[str, object] = {
            "user": user,
            "key": self.client_key,
            "known_hosts": self.known_hosts,
            "port": self.port,
            "connect_timeout": 5.0,
            "command_timeout": 20.0,
            "parallel": 4,
        }
        values.update(overrides)
        return SshAccess.model_validate(values)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.forwarder is not None:
            self.forwarder.close()


def _prepare(folder: Path, port: int, users: str, extra_config: str = "") -> Sshd:
    folder.mkdir(parents=True, exist_ok=True)
    # The unprivileged test user's sshd reads authorized_keys as that user: the folder must
    # be reachable by it (pytest's own temporary folders are not).
    folder.chmod(0o755)
    # sshd refuses to start without its privilege-separation directory; the package makes
    # it at service start, which we do not use.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    host_key = folder / "host_ed25519"
    client_key = folder / "client_ed25519"
    keygen(host_key, "test-host")
    keygen(client_key, "test-client")
    (folder / "authorized_keys").write_text((folder / "client_ed25519.pub").read_text())
    (folder / "authorized_keys").chmod(0o644)
    (folder / "sshd_config").write_text(
        f"Port {port}\n"
        "ListenAddress 127.0.0.1\n"
        f"HostKey {host_key}\n"
        f"PidFile {folder / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {folder / 'authorized_keys'}\n"
        # The temporary folder's modes are not sshd's business here.
        "StrictModes no\n"
        "PubkeyAuthentication yes\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\n"
        "UsePAM no\n"
        f"AllowUsers {users}\n"
        "LogLevel ERROR\n" + extra_config
    )
    public = (folder / "host_ed25519.pub").read_text().split()
    known_hosts = folder / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {public[0]} {public[1]}\n")
    return Sshd(folder, port, folder / "host_ed25519.pub", client_key, known_hosts)


def start_sshd(folder: Path, users: str = f"root {TEST_USER}", extra_config: str = "") -> Sshd:
    """``extra_config``: sshd_config lines added after ours (Ciphers, MACs, HostKey, ...)."""
    port = free_port()
    server = _prepare(folder, port, users, extra_config)
    server.process = subprocess.Popen(
        [str(SSHD), "-D", "-e", "-f", str(folder / "sshd_config")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port)
    return server


def start_sshd_in_netns(folder: Path, netns: str) -> Sshd:
    """sshd inside network namespace ``netns``, one ``sshd -i`` per connection, reached
    through a forwarder on 127.0.0.1 in this namespace."""
    port = free_port()
    server = _prepare(folder, port, "root")
    listener = socket.socket()
    listener.bind(("127.0.0.1", port))
    listener.listen(8)
    server.forwarder = listener
    command = ["ip", "netns", "exec", netns, str(SSHD), "-i", "-e", "-f"]
    command.append(str(folder / "sshd_config"))

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return  # closed at teardown
            with connection:
                subprocess.Popen(
                    command,
                    stdin=connection.fileno(),
                    stdout=connection.fileno(),
                    stderr=subprocess.DEVNULL,
                )

    threading.Thread(target=serve, daemon=True).start()
    return server


def ensure_test_user() -> None:
    """A local unprivileged user for the tests that must not run as root."""
    try:
        subprocess.run(["id", TEST_USER], check=True, capture_output=True)
    except subprocess.CalledProcessError:
        subprocess.run(
            ["useradd", "--system", "--shell", "/bin/sh", "--home-dir", "/nonexistent", TEST_USER],
            check=True,
        )
    # A system account is created locked ("!"), and sshd refuses locked accounts even for key
    # logins when PAM is off; "*" means "no password" without "locked".
    subprocess.run(["usermod", "-p", "*", TEST_USER], check=True)


@contextlib.contextmanager
def public_temp_folder() -> Iterator[Path]:
    """A temporary folder under /tmp that other users may traverse (see ``_prepare``)."""
    folder = Path(tempfile.mkdtemp(prefix="auditor-sshd-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def running_sshd(extra_config: str = "", users: str = "root") -> Iterator[Sshd]:
    """A server of its own for one test, with ``extra_config`` added to its sshd_config."""
    with public_temp_folder() as folder:
        server = start_sshd(folder, users, extra_config)
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="module")
def sshd() -> Iterator[Sshd]:
    ensure_test_user()
    with public_temp_folder() as folder:
        server = start_sshd(folder)
        try:
            yield server
        finally:
            server.stop()


@dataclass
class SilentServer:
    """Accepts TCP connections on loopback and never says a word (no SSH banner)."""

    port: int
    accepted: int = 0
    sock: socket.socket | None = None
    held: list[socket.socket] = field(default_factory=list)


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    server = SilentServer(port=sock.getsockname()[1], sock=sock)

    def accept() -> None:
        while True:
            try:
                connection, _ = sock.accept()
            except OSError:
                return
            server.accepted += 1
            server.held.append(connection)  # kept open, silent, until teardown

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield server
    finally:
        sock.close()
        for connection in server.held:
            connection.close()


def process_running(args_marker: str) -> bool:
    """True when a process of this machine has exactly these command-line words."""
    wanted = args_marker.split()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            words = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if [w.decode(errors="replace") for w in words if w] == wanted:
            return True
    return False


def eventually(condition: Callable[[], bool], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()
