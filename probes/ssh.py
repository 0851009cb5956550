"""An SSH session for auditing: strict host keys, bounded in time and size, allow-listed.

Built directly on ``paramiko.Transport`` rather than ``SSHClient`` so that every safety
property is explicit here rather than a default of the library:

- the host key is checked against the inventory's known_hosts only (no ~/.ssh, no agent);
  an unknown host or a changed key ends the connection before authentication, and nothing is
  ever written back to any known_hosts file (the equivalent of ``RejectPolicy``, with the
  presented and expected fingerprints in the error); a key on an ``@revoked`` line is refused
  for the hosts that line names, and ``@cert-authority`` lines are read but trust nothing
  (host certificates are not supported);
- weak algorithms are never offered (CBC, 3DES and RC4 ciphers, MD5 and SHA-1 MACs, SHA-1 key
  exchanges, DSA and SHA-1 RSA signatures): a server that supports nothing else is refused
  during the key exchange, with what it offered in the error;
- authentication is by the inventory's key only; the key and its path never appear in an
  error, a log line or a result;
- the TCP connect, the banner and key exchange, authentication and every command have their
  own time limit, and a command that overruns is stopped (signal, then channel closed) with
  what it had written kept;
- a command's output is bounded; beyond the bound it is cut with a visible marker;
- a command ends EXITED only with an exit status the server sent; one killed by a signal, or
  whose channel or connection closed without a status, ends LOST with why (never a made-up
  status: paramiko reports -1 for all of these);
- a command runs only if the session's allow-list permits that exact string; anything else is
  refused before a byte is sent;
- the scope hook is asked about the address before any packet goes to it.
"""

from __future__ import annotations

import contextlib
import errno
import hmac
import ipaddress
import os
import re
import select
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from types import TracebackType

import paramiko
from paramiko.common import MSG_CHANNEL_REQUEST, MSG_KEXINIT, cMSG_CHANNEL_REQUEST
from paramiko.hostkeys import HostKeyEntry
from paramiko.message import Message

from auditor.domain.attempts import ErrorReason
from auditor.domain.errors import AuditorError
from auditor.domain.inventory import SshAccess
from auditor.domain.protocols import ScopeCheck
from probes.parsers.hostkey import fingerprint_sha256
from probes.redact import redact_text

#: Default bound on each output stream of a command.
DEFAULT_MAX_OUTPUT = 8 * 1024 * 1024
#: What is kept of a streaming command's stderr (diagnostics, never data).
STREAM_STDERR_BOUND = 256 * 1024
#: How long a stopped command may take to end after the signal before its channel is closed.
STOP_GRACE_SECONDS = 5.0
#: How often a running command is polled for data, exit or timeout.
_POLL_SECONDS = 0.05
_READ_CHUNK = 65536
#: paramiko's ``Channel.exit_status`` until an "exit-status" request arrives. A received
#: status is an unsigned 32-bit number, so it is never this value.
_NO_EXIT_STATUS = -1
#: Signal names as RFC 4254 6.10 writes them ("KILL", "TERM", "USR1@example.com"); anything
#: else the server sends is not echoed into errors and evidence.
_SIGNAL_NAME = re.compile(r"[A-Za-z0-9_.+@-]{1,64}")


class SshError(AuditorError):
    """A session step that failed, with the reason the rest of the auditor understands."""

    def __init__(self, reason: ErrorReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


# -- what the session negotiates ------------------------------------------------------------

#: Algorithms the auditor never offers, by paramiko's ``disabled_algorithms`` category (exact
#: names: paramiko compares them as strings). paramiko still offers CBC ciphers, 3DES and
#: MD5 and SHA-1 MACs by default, and as the client it takes the first of its own list that the
#: server allows, which puts aes128-cbc ahead of AES-GCM. Names this paramiko does not know are
#: listed too, so that a later one that adds them still never offers them. What OpenSSH 9
#: negotiates by default stays: curve25519 and ECDH, AES-CTR and AES-GCM, HMAC-SHA2 (EtM or
#: not), Ed25519, ECDSA and RSA with SHA-2 signatures.
#: DSA: 1024-bit keys signing with SHA-1. "ssh-rsa" is RSA signing with SHA-1 (refused by
#: OpenSSH's defaults since 8.8); an RSA key still signs with rsa-sha2-256/512.
_WEAK_SIGNATURES = (
    "ssh-dss",
    "ssh-dss-cert-v01@openssh.com",
    "ssh-rsa",
    "ssh-rsa-cert-v01@openssh.com",
)
_WEAK_ALGORITHMS: dict[str, tuple[str, ...]] = {
    # CBC modes (plaintext recovery, Albrecht et al. 2009); 3DES, Blowfish and CAST: 64-bit
    # blocks (Sweet32); RC4.
    "ciphers": (
        "aes128-cbc",
        "aes192-cbc",
        "aes256-cbc",
        "rijndael-cbc@lysator.liu.se",
        "3des-cbc",
        "blowfish-cbc",
        "cast128-cbc",
        "arcfour",
        "arcfour128",
        "arcfour256",
    ),
    # MD5 and SHA-1 MACs: truncated ("-96") or not, encrypt-then-MAC ("-etm") or not.
    "macs": (
        "hmac-md5",
        "hmac-md5-96",
        "hmac-md5-etm@openssh.com",
        "hmac-md5-96-etm@openssh.com",
        "hmac-sha1",
        "hmac-sha1-96",
        "hmac-sha1-etm@openssh.com",
        "hmac-sha1-96-etm@openssh.com",
    ),
    # SHA-1 exchange hashes; group1 is also a 1024-bit group (Logjam).
    "kex": (
        "diffie-hellman-group1-sha1",
        "diffie-hellman-group14-sha1",
        "diffie-hellman-group-exchange-sha1",
    ),
    # Host keys and the auditor's own key alike: see _WEAK_SIGNATURES.
    "keys": _WEAK_SIGNATURES,
    "pubkeys": _WEAK_SIGNATURES,
}
_WEAK_ALGORITHMS_ANY = frozenset(n for names in _WEAK_ALGORITHMS.values() for n in names)
#: Algorithm names as RFC 4251 6 allows them ("aes128-ctr", "name@domain"); others the server
#: sends are not echoed into errors. At most so many of a list are.
_ALGORITHM_NAME = re.compile(r"[A-Za-z0-9_.+@-]{1,64}")
_MAX_ALGORITHMS_SHOWN = 40


class _ServerOffer:
    """The algorithms the server's KEXINIT offered, to say what it lacked when no algorithm
    of some kind is acceptable to both sides.

    paramiko's own error says only "no acceptable ciphers"; for an audit, what the host
    offers is the finding. The KEXINIT is read from a copy, before paramiko's handler, through
    this connection's own copy of the handler table (as for exit signals below). With a
    paramiko that has no such table, the error is paramiko's alone.
    """

    def __init__(self) -> None:
        self._lists: list[list[str]] | None = None

    def listen(self, transport: paramiko.Transport) -> None:
        table = getattr(transport, "_handler_table", None)
        if not isinstance(table, dict) or MSG_KEXINIT not in table:
            return
        paramiko_handler: Callable[[Message], None] = table[MSG_KEXINIT]

        def handle(message: Message) -> None:
            self._note(message)
            paramiko_handler(message)

        transport._handler_table = {**table, MSG_KEXINIT: handle}  # type: ignore[attr-defined]

    def _note(self, message: Message) -> None:
        if self._lists is not None:
            return  # a re-key: the first offer is the one the session was set up with
        try:
            offer = Message(message.get_remainder())
            offer.get_bytes(16)  # cookie
            self._lists = [offer.get_list() for _ in range(6)]
        except Exception:  # in paramiko's transport thread: raising would end the connection
            return

    def what_is_missing(self, transport: paramiko.Transport) -> str | None:
        """The first kind of algorithm without one in common, said as "no cipher in common:
        the server offers ..., the auditor accepts ..."; None when each kind had one, or when
        the server's offer was not read."""
        if self._lists is None:
            return None
        # KEXINIT's lists: kex, host key, ciphers and MACs each way (client to server first).
        kinds = (
            ("key exchange", transport.preferred_kex, self._lists[0:1]),
            ("host key algorithm", transport.preferred_keys, self._lists[1:2]),
            ("cipher", transport.preferred_ciphers, self._lists[2:4]),
            ("MAC", transport.preferred_macs, self._lists[4:6]),
        )
        for what, accepted, offers in kinds:
            for offered in offers:
                if not set(offered) & set(accepted):
                    return _nothing_in_common(what, offered, accepted)
        return None


def _nothing_in_common(what: str, offered: list[str], accepted: Iterable[str]) -> str:
    # The key exchange list also carries pseudo-algorithms (extension and strict-kex signals).
    offered = [n for n in offered if not n.startswith(("ext-info-", "kex-strict-"))]
    refused = [n for n in offered if n in _WEAK_ALGORITHMS_ANY]
    why = f" ({', '.join(refused)}: weak, never used by the auditor)" if refused else ""
    return (
        f"no {what} in common: the server offers {_server_names(offered)}{why}; "
        f"the auditor accepts {', '.join(accepted)}"
    )


def _server_names(names: list[str]) -> str:
    """The server's own text: only plausible names, and not too many, are echoed."""
    shown = [n if _ALGORITHM_NAME.fullmatch(n) else "(unprintable name)" for n in names]
    if len(shown) > _MAX_ALGORITHMS_SHOWN:
        shown = [*shown[:_MAX_ALGORITHMS_SHOWN], f"{len(shown) - _MAX_ALGORITHMS_SHOWN} more"]
    return ", ".join(shown) or "none"


# -- known_hosts ----------------------------------------------------------------------------


class _KnownHostsCache:
    """known_hosts files parsed once while they stay the same file with the same content.

    Every session reads its host's keys from the inventory's known_hosts, and parsing the
    whole file for each of n hosts costs n² line parses: 10 % of the collector's CPU with 50
    hosts already. A file is identified by its device, inode, size and modification time, so
    an edited or replaced file is read again. A file modified in the last seconds is not
    cached at all: a file system's clock is coarse, and a rewrite of the same size within one
    tick would keep its identity (git's "racily clean" index entries). A parsed file is
    immutable, so threads share it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parsed: dict[str, tuple[tuple[int, int, int, int], _KnownHosts]] = {}

    def read(self, path: str) -> _KnownHosts:
        identity = _file_identity(path)
        with self._lock:
            cached = self._parsed.get(path)
            if cached is not None and cached[0] == identity:
                return cached[1]
            host_keys = _KnownHosts.load(path)
            # Checked again after parsing: a file replaced meanwhile is not cached as the old.
            settled = time.time_ns() - identity[3] >= _SETTLED_NS
            if settled and _file_identity(path) == identity:
                self._parsed[path] = (identity, host_keys)
            return host_keys


_SETTLED_NS = 2_000_000_000


def _file_identity(path: str) -> tuple[int, int, int, int]:
    stat = os.stat(path)
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


_read_known_hosts = _KnownHostsCache().read


@dataclass(frozen=True)
class _HostTrust:
    """What known_hosts says about one host."""

    keys: tuple[paramiko.PKey, ...]  #: keys of the plain lines naming it, none of them revoked
    revoked: tuple[paramiko.PKey, ...]  #: keys an ``@revoked`` line naming it refuses
    #: an ``@cert-authority`` line names it (trusted for nothing: see ``_KnownHosts``)
    has_authority: bool = False

    def is_revoked(self, key: paramiko.PKey) -> bool:
        return _among(key, self.revoked)


@dataclass(frozen=True)
class _Line:
    names: tuple[str, ...]  #: the host field as written: names, hashes or patterns
    key: paramiko.PKey


@dataclass(frozen=True)
class _KnownHosts:
    """An OpenSSH known_hosts file, markers included (sshd(8), "SSH_KNOWN_HOSTS FILE FORMAT").

    paramiko's HostKeys fails on the whole file at the first marker line, so every host would
    fail. Lines are read here, their keys by paramiko:

    - a plain line names its hosts exactly or hashed (``|1|``), as paramiko matched them: no
      wildcards, so a key is only ever trusted for a host written out;
    - ``@revoked``: its key is refused for the hosts it names, even where a plain line lists it.
      Its host field is read as OpenSSH reads patterns (``*``, ``?``, ``!``), so ``@revoked *``
      refuses the key everywhere; matching too widely only ever refuses more;
    - ``@cert-authority``: the auditor does not check host certificates, so such a line trusts
      nothing; it is kept only to say why its hosts are unknown.
    """

    plain: tuple[_Line, ...]
    revoked: tuple[_Line, ...]
    authorities: tuple[tuple[str, ...], ...]  #: host fields of the @cert-authority lines

    @classmethod
    def load(cls, path: str) -> _KnownHosts:
        """Raises OSError, or ValueError for an @revoked line whose key cannot be read."""
        plain: list[_Line] = []
        revoked: list[_Line] = []
        authorities: list[tuple[str, ...]] = []
        with open(path, encoding="utf-8", errors="replace") as file:
            for number, raw in enumerate(file, 1):
                text = raw.strip()
                if not text or text.startswith("#"):
                    continue
                marker, rest = _split_marker(text)
                if marker is None:
                    line = _parse_line(rest, number)
                    if line is not None:
                        plain.append(line)
                elif marker == "@revoked":
                    line = _parse_revoked(rest, number)
                    if line is not None:
                        revoked.append(line)
                elif marker == "@cert-authority" and rest:
                    authorities.append(tuple(rest.split()[0].split(",")))
                # Any other marker makes the line invalid (OpenSSH skips it too).
        return cls(tuple(plain), tuple(revoked), tuple(authorities))

    def trust(self, names: list[str]) -> _HostTrust:
        """What the file says about the host known as any of ``names``."""
        revoked = tuple(line.key for line in self.revoked if _patterns_name(line.names, names))
        keys = tuple(
            line.key
            for line in self.plain
            if _names_any(line.names, names) and not _among(line.key, revoked)
        )
        authority = any(_patterns_name(field, names) for field in self.authorities)
        return _HostTrust(keys, revoked, authority)


def _split_marker(text: str) -> tuple[str | None, str]:
    """(marker or None, the rest with single spaces between fields). paramiko splits on each
    space or tab, so "host  ssh-ed25519 AAAA" (two spaces) would be read as a key of type "",
    and an @revoked line written so would revoke nothing."""
    fields = text.split()
    if fields[0].startswith("@"):
        return fields[0], " ".join(fields[1:])
    return None, " ".join(fields)


def _parse_line(text: str, number: int) -> _Line | None:
    """A plain line, or None for one that is skipped: too few fields, a key type paramiko does
    not know (no such key can be negotiated), a key that does not parse (it can be trusted for
    nothing)."""
    try:
        entry = HostKeyEntry.from_line(text, number)
    except Exception:  # paramiko's key parsers raise many kinds on bad data (OverflowError, ...)
        return None
    if entry is None:
        return None
    return _Line(tuple(entry.hostnames), entry.key)


def _parse_revoked(text: str, number: int) -> _Line | None:
    """An @revoked line; None for a key type paramiko does not know (such a key can never be
    presented to it). A key that does not parse is an error, not a skipped line: the key it
    revokes would be accepted."""
    if len(text.split()) < 3:
        raise ValueError(f"line {number}: an @revoked line without a key")
    try:
        entry = HostKeyEntry.from_line(text, number)
    except Exception:  # as in _parse_line
        raise ValueError(f"line {number}: the key of an @revoked line cannot be read") from None
    if entry is None:
        return None
    return _Line(tuple(entry.hostnames), entry.key)


def _among(key: paramiko.PKey, keys: Iterable[paramiko.PKey]) -> bool:
    blob = key.asbytes()
    return any(blob == other.asbytes() for other in keys)


def _names_any(field: tuple[str, ...], names: list[str]) -> bool:
    """A plain line's host field names one of ``names``, exactly or hashed (as paramiko)."""
    return any(entry == name or _hashed(entry, name) for entry in field for name in names)


def _patterns_name(field: tuple[str, ...], names: list[str]) -> bool:
    """A marker line's host field names one of ``names``, as OpenSSH's match_hostname reads
    it: a name matching a ``!pattern`` is excluded, else one matching a pattern is named."""
    return any(_pattern_list_matches(field, name) for name in names)


def _pattern_list_matches(field: tuple[str, ...], name: str) -> bool:
    named = False
    for pattern in field:
        if pattern.startswith("!"):
            if _wildcard_matches(pattern[1:], name):
                return False
        elif _hashed(pattern, name) or _wildcard_matches(pattern, name):
            named = True
    return named


def _wildcard_matches(pattern: str, name: str) -> bool:
    # Only "*" and "?" are special, as in OpenSSH: "[" is literal ("[10.0.0.1]:2222").
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, name, re.IGNORECASE | re.DOTALL) is not None


def _hashed(entry: str, name: str) -> bool:
    """``entry`` is ``|1|salt|hash``, the HMAC-SHA1 of ``name`` (ssh-keygen -H)."""
    if not entry.startswith("|1|"):
        return False
    try:
        return hmac.compare_digest(paramiko.HostKeys.hash_host(name, entry), entry)
    except (ValueError, AssertionError, IndexError):  # a malformed hash names no host
        return False


# -- the allow-list -------------------------------------------------------------------------


@dataclass(frozen=True)
class CommandTemplate:
    """A family of commands: a fixed ``prefix`` followed by one argument that must match
    ``argument`` entirely. Used for "cat each file of a listed folder", where the names are
    only known on the host; the pattern admits no shell metacharacter."""

    prefix: str
    argument: re.Pattern[str]

    def permits(self, command: str) -> bool:
        if not command.startswith(self.prefix):
            return False
        return self.argument.fullmatch(command[len(self.prefix) :]) is not None

    def render(self, argument: str) -> str:
        command = self.prefix + argument
        if not self.permits(command):
            raise SshError(ErrorReason.NOT_PERMITTED, f"{argument!r} is not a permitted argument")
        return command


#: File names the templates may substitute: no slash, no leading dot or dash, no shell syntax.
SAFE_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+@-]{0,127}")


class AllowList:
    """The exact commands one probe may run (and its templates)."""

    def __init__(self, exact: Iterable[str], templates: Iterable[CommandTemplate] = ()) -> None:
        self.exact = frozenset(exact)
        self.templates = tuple(templates)

    def permits(self, command: str) -> bool:
        return command in self.exact or any(t.permits(command) for t in self.templates)

    def check(self, command: str, where: str) -> None:
        if not self.permits(command):
            raise SshError(
                ErrorReason.NOT_PERMITTED,
                f"{where}: command not in the allow-list, not sent: {command[:200]!r}",
            )


# -- results --------------------------------------------------------------------------------


class CommandEnd(StrEnum):
    EXITED = "exited"  #: ended by itself with an exit status
    TIMED_OUT = "timed-out"  #: stopped by us at the time limit
    TRUNCATED = "truncated"  #: stopped by us at the output bound
    LOST = "lost"  #: the channel closed without an exit status (signal, dropped connection)
    STOPPED = "stopped"  #: a streaming command the caller stopped (``RunningCommand.stop``)


@dataclass(frozen=True)
class CommandResult:
    command: str
    stdout: bytes
    stderr: bytes
    end: CommandEnd
    #: set when ``end`` is EXITED; for a streaming command also whenever the server sent one
    #: (a command that exits after the caller's stop signal, or at its bound)
    exit_status: int | None
    started: datetime
    finished: datetime
    #: set when ``end`` is LOST: "killed by signal KILL", "closed without an exit status" or
    #: "connection lost before an exit status"
    lost_reason: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.end is CommandEnd.EXITED and self.exit_status == 0

    def text(self) -> str:
        """stdout as text, secrets redacted: redaction at the door, before anything (a fact, an
        error message, a report) is derived from what the host sent. The raw bytes go to the
        evidence store, which redacts them again as it stores them."""
        return redact_text(self.stdout.decode("utf-8", errors="replace"))[0]

    def stderr_text(self) -> str:
        """stderr as text, secrets redacted (it ends up in error messages and findings)."""
        return redact_text(self.stderr.decode("utf-8", errors="replace"))[0]


class _BoundedBuffer:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.overflowed = False

    def feed(self, chunk: bytes) -> None:
        room = self.limit - len(self.data)
        if len(chunk) > room:
            self.data += chunk[: max(room, 0)]
            self.overflowed = True
        else:
            self.data += chunk

    def value(self) -> bytes:
        if self.overflowed:
            return bytes(self.data) + truncation_marker(self.limit)
        return bytes(self.data)


def truncation_marker(limit: int) -> bytes:
    return f"\n[auditor: output truncated after {limit} bytes]\n".encode()


# -- the session ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Timeouts:
    connect: float  #: TCP connect
    handshake: float  #: banner and key exchange
    auth: float
    command: float

    @classmethod
    def from_access(cls, access: SshAccess) -> Timeouts:
        return cls(
            connect=access.connect_timeout,
            handshake=access.connect_timeout,
            auth=access.connect_timeout,
            command=access.command_timeout,
        )


class AuditSession:
    """One authenticated SSH connection to one host, for one probe.

    ``host`` is the inventory name, ``address`` the address to connect to. Use as a context
    manager, or call ``connect`` and ``close``. Every failure is an ``SshError``.
    """

    def __init__(
        self,
        host: str,
        address: str,
        access: SshAccess,
        allow_list: AllowList,
        check_target: ScopeCheck,
        *,
        timeouts: Timeouts | None = None,
        max_output: int = DEFAULT_MAX_OUTPUT,
    ) -> None:
        self.host = host
        self.address = address
        self.port = access.port
        self.allow_list = allow_list
        self._user = access.user
        self._key_path = access.key
        self._known_hosts = access.known_hosts
        self._check_target = check_target
        self.timeouts = timeouts or Timeouts.from_access(access)
        self.max_output = max_output
        self._transport: paramiko.Transport | None = None
        self._exit_signals = _ExitSignals()
        self.host_key: paramiko.PKey | None = None

    @property
    def where(self) -> str:
        shown = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.host} ({shown}:{self.port})"

    def __enter__(self) -> AuditSession:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- connecting ------------------------------------------------------------------------

    def connect(self) -> None:
        """Scope check, TCP, key exchange, host key check, key authentication."""
        self._ask_scope()
        key = self._load_client_key()
        trust = self._host_trust()
        sock = self._open_socket()
        transport = paramiko.Transport(sock, disabled_algorithms=_WEAK_ALGORITHMS)
        self._transport = transport
        self._exit_signals.listen(transport)
        offer = _ServerOffer()
        offer.listen(transport)
        try:
            self._prefer_known_key_types(transport, trust.keys)
            self._handshake(transport, offer)
            self.host_key = transport.get_remote_server_key()
            self._verify_host_key(self.host_key, trust)
            self._authenticate(transport, key)
        except BaseException:
            self.close()
            raise

    def _ask_scope(self) -> None:
        try:
            self._check_target(self.address)
        except Exception as exc:
            raise SshError(
                ErrorReason.OUT_OF_SCOPE, f"{self.where}: refused by the scope guard: {exc}"
            ) from None

    def _load_client_key(self) -> paramiko.PKey:
        # Errors name the file but never its content; paramiko's messages may quote neither.
        try:
            return paramiko.PKey.from_path(self._key_path)
        except paramiko.PasswordRequiredException:
            raise SshError(
                ErrorReason.INTERNAL,
                f"{self.where}: the auditor's key {self._key_path} is encrypted; "
                "an unencrypted key readable by the auditor is needed",
            ) from None
        except (OSError, paramiko.SSHException, ValueError) as exc:
            raise SshError(
                ErrorReason.INTERNAL,
                f"{self.where}: cannot load the auditor's key {self._key_path}: "
                f"{type(exc).__name__}",
            ) from None

    def _host_trust(self) -> _HostTrust:
        try:
            known_hosts = _read_known_hosts(str(self._known_hosts))
        except (OSError, ValueError) as exc:
            raise SshError(
                ErrorReason.INTERNAL,
                f"{self.where}: cannot read known_hosts {self._known_hosts}: {exc}",
            ) from None
        return known_hosts.trust(_known_hosts_names(self.address, self.port))

    def _open_socket(self) -> socket.socket:
        try:
            sock = socket.create_connection(
                (self.address, self.port), timeout=self.timeouts.connect
            )
        except TimeoutError:
            raise SshError(
                ErrorReason.UNREACHABLE,
                f"{self.where}: no TCP connection within {self.timeouts.connect:g}s",
            ) from None
        except ConnectionRefusedError:
            raise SshError(
                ErrorReason.UNREACHABLE, f"{self.where}: connection refused (no SSH server)"
            ) from None
        except OSError as exc:
            reason = exc.strerror or (errno.errorcode.get(exc.errno or 0) or type(exc).__name__)
            raise SshError(ErrorReason.UNREACHABLE, f"{self.where}: {reason}") from None
        _send_without_delay(sock)
        return sock

    @staticmethod
    def _prefer_known_key_types(
        transport: paramiko.Transport, known: tuple[paramiko.PKey, ...]
    ) -> None:
        # Ask the server for a key type we know for this host first, as OpenSSH does; the
        # server may otherwise present another type, which would look like a changed key.
        if not known:
            return
        options = transport.get_security_options()
        wanted = [t for t in _algorithms_for(known) if t in options.key_types]
        options.key_types = wanted + [t for t in options.key_types if t not in wanted]

    def _handshake(self, transport: paramiko.Transport, offer: _ServerOffer) -> None:
        budget = self.timeouts.handshake
        # Our own wait below decides the timeout; the transport's banner limit only makes
        # sure its thread does not outlive the session for long.
        transport.banner_timeout = budget + 1
        done = threading.Event()
        try:
            transport.start_client(event=done)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SshError(ErrorReason.UNREACHABLE, f"{self.where}: {exc}") from None
        # start_client with an event returns at once; the wait is ours, so it is bounded.
        finished = done.wait(budget)
        if not finished:
            raise SshError(
                ErrorReason.TIMEOUT,
                f"{self.where}: no SSH banner and key exchange within {budget:g}s",
            )
        if not transport.is_active():
            failure = offer.what_is_missing(transport) or transport.get_exception()
            raise SshError(
                ErrorReason.UNREACHABLE,
                f"{self.where}: SSH negotiation failed: {failure or 'connection closed'}",
            )

    def _verify_host_key(self, presented: paramiko.PKey, trust: _HostTrust) -> None:
        shown = f"{presented.get_name()} {fingerprint_sha256(presented.asbytes())}"
        # First: a revoked key is refused even where a plain line lists it too.
        if trust.is_revoked(presented):
            raise SshError(
                ErrorReason.HOST_KEY_MISMATCH,
                f"{self.where}: HOST KEY REVOKED: presented {shown}, which known_hosts "
                f"{self._known_hosts} marks @revoked; refused",
            )
        if not trust.keys:
            raise SshError(
                ErrorReason.HOST_KEY_UNKNOWN,
                f"{self.where}: host not in known_hosts {self._known_hosts}; presented "
                f"{shown}; refused (keys are never accepted on first use)" + _why_unknown(trust),
            )
        if _among(presented, trust.keys):
            return
        expected = ", ".join(
            dict.fromkeys(
                f"{key.get_name()} {fingerprint_sha256(key.asbytes())}" for key in trust.keys
            )
        )
        raise SshError(
            ErrorReason.HOST_KEY_MISMATCH,
            f"{self.where}: HOST KEY CHANGED: presented {shown}, "
            f"known_hosts has {expected}; refused",
        )

    def _authenticate(self, transport: paramiko.Transport, key: paramiko.PKey) -> None:
        transport.auth_timeout = self.timeouts.auth
        try:
            transport.auth_publickey(self._user, key)
        except paramiko.AuthenticationException as exc:
            if "timeout" in str(exc).lower():
                raise SshError(
                    ErrorReason.TIMEOUT,
                    f"{self.where}: no authentication answer within {self.timeouts.auth:g}s",
                ) from None
            raise SshError(
                ErrorReason.AUTH_FAILED,
                f"{self.where}: key authentication as {self._user!r} refused",
            ) from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SshError(
                ErrorReason.UNREACHABLE, f"{self.where}: connection lost during login: {exc}"
            ) from None
        if not transport.is_authenticated():
            raise SshError(
                ErrorReason.AUTH_FAILED,
                f"{self.where}: key authentication as {self._user!r} refused",
            )

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    # -- running commands ------------------------------------------------------------------

    @property
    def host_key_line(self) -> str | None:
        """The presented (and verified) host key as an OpenSSH public key line."""
        if self.host_key is None:
            return None
        return f"{self.host_key.get_name()} {self.host_key.get_base64()}"

    def run(
        self, command: str, *, timeout: float | None = None, max_output: int | None = None
    ) -> CommandResult:
        """Run one allow-listed command; return its outputs and how it ended.

        Raises SshError: NOT_PERMITTED (nothing sent), UNREACHABLE (no usable connection),
        COMMAND_FAILED (the server refused to start it).
        """
        self.allow_list.check(command, self.where)
        transport = self._transport
        if transport is None or not transport.is_active():
            raise SshError(ErrorReason.UNREACHABLE, f"{self.where}: not connected")
        limit = self.timeouts.command if timeout is None else timeout
        bound = self.max_output if max_output is None else max_output
        started = _now()
        channel = self._open_channel(transport, command, limit)
        try:
            return self._collect(channel, command, started, limit, bound)
        finally:
            channel.close()

    def _open_channel(
        self, transport: paramiko.Transport, command: str, limit: float
    ) -> paramiko.Channel:
        try:
            channel = transport.open_session(timeout=self.timeouts.connect)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SshError(
                ErrorReason.UNREACHABLE, f"{self.where}: cannot open a channel: {exc}"
            ) from None
        self._start(channel, command, limit)
        return channel

    def _start(self, channel: paramiko.Channel, command: str, limit: float) -> None:
        """Send the exec request and wait for the server's answer, at most ``limit`` seconds.

        paramiko's exec_command waits for that answer without a timeout: a host that froze
        between opening the channel and answering (a paused VM, a hung sshd; the kernel still
        acknowledges TCP) would hold its collection, and the audit, for ever. A timer closes
        the channel at the limit, which ends paramiko's wait."""
        gave_up = threading.Event()

        def give_up() -> None:
            gave_up.set()
            channel.close()

        watchdog = threading.Timer(limit, give_up)
        watchdog.daemon = True
        watchdog.start()
        try:
            channel.exec_command(command)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            channel.close()
            if not gave_up.is_set():
                raise SshError(
                    ErrorReason.COMMAND_FAILED, f"{self.where}: server refused to run it: {exc}"
                ) from None
        finally:
            watchdog.cancel()
        if gave_up.is_set():  # also when the answer came just as the timer closed the channel
            raise SshError(
                ErrorReason.TIMEOUT,
                f"{self.where}: {command!r} was not started within {limit:g}s (the server did "
                "not answer the exec request)",
            )

    def _collect(
        self, channel: paramiko.Channel, command: str, started: datetime, limit: float, bound: int
    ) -> CommandResult:
        stdout, stderr = _BoundedBuffer(bound), _BoundedBuffer(bound)
        stopped = _read_until_the_end(channel, stdout, stderr, limit)
        status: int | None = None
        lost_reason: str | None = None
        if stopped is not None:
            end = stopped
            _stop(channel)
        else:
            end, status, lost_reason = self._how_it_ended(channel)
        return CommandResult(
            command=command,
            stdout=stdout.value(),
            stderr=stderr.value(),
            end=end,
            exit_status=status,
            started=started,
            finished=_now(),
            lost_reason=lost_reason,
        )

    def start(
        self,
        command: str,
        *,
        time_limit: float,
        max_output: int | None = None,
        on_stdout: Callable[[bytes], None] | None = None,
        stop_grace: float = STOP_GRACE_SECONDS,
    ) -> RunningCommand:
        """Start one allow-listed command and return at once; read it while it runs.

        ``time_limit`` bounds the whole run (the command is stopped at it, TIMED_OUT);
        ``max_output`` bounds what is kept of stdout (beyond it the command is stopped,
        TRUNCATED, and what it still writes while stopping is read and dropped);
        ``stop_grace`` is how long a stopped command may take to end after the INT signal
        before its channel is killed and closed. Raises as ``run`` does; nothing is sent for
        a command the allow-list refuses.
        """
        self.allow_list.check(command, self.where)
        transport = self._transport
        if transport is None or not transport.is_active():
            raise SshError(ErrorReason.UNREACHABLE, f"{self.where}: not connected")
        bound = self.max_output if max_output is None else max_output
        started = _now()
        channel = self._open_channel(transport, command, min(time_limit, self.timeouts.command))
        running = RunningCommand(
            self,
            channel,
            command,
            started=started,
            time_limit=time_limit,
            max_output=bound,
            on_stdout=on_stdout or _ignore,
            stop_grace=stop_grace,
        )
        running.begin()
        return running

    def _how_it_ended(self, channel: paramiko.Channel) -> tuple[CommandEnd, int | None, str | None]:
        """How a command that ended by itself ended: (end, exit status, why it was lost).

        paramiko's ``exit_status_ready()`` turns true on the channel's close as well, and its
        ``exit_status`` stays -1 when no status came, so neither says whether the command
        exited. The transport thread handles the server's messages in order (exit-status or
        exit-signal, then close), so by the time the channel reads as finished, whatever the
        server sent about the command has been recorded.
        """
        killed = self._exit_signals.pop(channel)
        if channel.exit_status != _NO_EXIT_STATUS:
            return CommandEnd.EXITED, channel.exit_status, None
        if killed is not None:
            return CommandEnd.LOST, None, killed
        if self._transport is None or not self._transport.is_active():
            return CommandEnd.LOST, None, "connection lost before an exit status"
        return CommandEnd.LOST, None, "closed without an exit status"


def _ignore(_: bytes) -> None:
    return None


class RunningCommand:
    """An allow-listed command running on a host, its output read by a thread of its own.

    Every byte is the host's, so nothing here trusts it: stdout is kept up to a bound (beyond
    which the command is stopped, TRUNCATED), stderr up to ``STREAM_STDERR_BOUND``, and the
    run is stopped at its time limit (TIMED_OUT) whatever the host does.

    Stopping sends the RFC 4254 "signal" request (INT) first: OpenSSH delivers it to the
    session's process, and sudo relays a signal sent by the user to the command it runs, so
    a root tool such as tcpdump ends cleanly and says what it dropped (measured on the lab's
    Debian 12: tcpdump under sudo and timeout ended 0.25 s after the request, exit 0). Only
    if it has not ended after the stop grace is the channel killed and closed (see
    ``_stop``): that alone does not end a command the host's user may not signal, which is
    why commands that must end run under the host's own ``timeout``.
    """

    def __init__(
        self,
        session: AuditSession,
        channel: paramiko.Channel,
        command: str,
        *,
        started: datetime,
        time_limit: float,
        max_output: int,
        on_stdout: Callable[[bytes], None],
        stop_grace: float,
    ) -> None:
        self.command = command
        self._session = session
        self._channel = channel
        self._started = started
        self._deadline = time.monotonic() + time_limit
        self._stdout = _BoundedBuffer(max_output)
        self._stderr = _BoundedBuffer(STREAM_STDERR_BOUND)
        self._on_stdout = on_stdout
        self._news = threading.Condition()
        self._stop_asked: CommandEnd | None = None
        self._grace = stop_grace
        self._result: CommandResult | None = None
        self._thread = threading.Thread(target=self._pump, name=f"ssh-stream {session.host}")
        self._thread.daemon = True

    def begin(self) -> None:
        self._thread.start()

    # -- what the caller asks --------------------------------------------------------------

    @property
    def ended(self) -> bool:
        return self._result is not None

    def stderr_so_far(self) -> bytes:
        with self._news:
            return bytes(self._stderr.data)

    def wait_for_stderr(self, text: bytes, timeout: float) -> bool:
        """True once ``text`` has appeared on stderr; False at ``timeout`` or when the
        command ended without writing it."""
        deadline = time.monotonic() + timeout
        with self._news:
            while text not in self._stderr.data:
                remaining = deadline - time.monotonic()
                if self._result is not None or remaining <= 0:
                    return False
                self._news.wait(remaining)
            return True

    def wait(self, timeout: float | None = None) -> CommandResult | None:
        """The result once the command has ended (by itself or at a bound), else None at
        ``timeout``."""
        self._thread.join(timeout)
        return self._result

    def stop(self) -> CommandResult:
        """Stop the command (signal INT, then after the stop grace kill and close); its
        result. A command that had already ended keeps how it ended."""
        with self._news:
            if self._stop_asked is None and self._result is None:
                self._stop_asked = CommandEnd.STOPPED
                self._news.notify_all()
        self._thread.join(self._grace + STOP_GRACE_SECONDS)
        if self._result is None:  # the reader is stuck in paramiko: end it from here
            _stop(self._channel)
            self._thread.join(STOP_GRACE_SECONDS)
        with self._news:
            if self._result is None:  # still stuck: report it lost rather than wait more
                self._result = CommandResult(
                    command=self.command,
                    stdout=bytes(self._stdout.data),
                    stderr=self._stderr.value(),
                    end=CommandEnd.LOST,
                    exit_status=None,
                    started=self._started,
                    finished=_now(),
                    lost_reason="the channel did not close after the stop",
                )
            return self._result

    # -- the reader thread -----------------------------------------------------------------

    def _pump(self) -> None:
        channel = self._channel
        try:
            cause = self._read_until_stopped(channel)
            if cause is not None:
                self._interrupt(channel)
        except (paramiko.SSHException, OSError, EOFError):
            cause = None
        finally:
            result = self._conclude(channel, cause)
            channel.close()
            with self._news:
                if self._result is None:
                    self._result = result
                self._news.notify_all()

    def _read_until_stopped(self, channel: paramiko.Channel) -> CommandEnd | None:
        """Read until the command ends by itself (None) or must be stopped (why)."""
        while True:
            self._drain(channel)
            if self._stdout.overflowed:
                return CommandEnd.TRUNCATED
            if _finished(channel):
                self._drain(channel)
                return None
            with self._news:
                if self._stop_asked is not None:
                    return self._stop_asked
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                return CommandEnd.TIMED_OUT
            _wait_for_news(channel, min(_POLL_SECONDS, remaining))

    def _drain(self, channel: paramiko.Channel) -> None:
        while channel.recv_ready():
            chunk = channel.recv(_READ_CHUNK)
            if self._stdout.overflowed:
                continue  # read and dropped: a writer blocked on a full window cannot stop
            before = len(self._stdout.data)
            self._stdout.feed(chunk)
            kept = bytes(self._stdout.data[before:])
            if kept:
                self._on_stdout(kept)
        while channel.recv_stderr_ready():
            chunk = channel.recv_stderr(_READ_CHUNK)
            with self._news:
                if not self._stderr.overflowed:
                    self._stderr.feed(chunk)
                self._news.notify_all()

    def _interrupt(self, channel: paramiko.Channel) -> None:
        """INT through the "signal" request, then wait (reading) for the command to end;
        kill and close only if it does not within the grace period."""
        _send_signal(channel, "INT")
        deadline = time.monotonic() + self._grace
        while not _finished(channel) and time.monotonic() < deadline:
            self._drain(channel)
            _wait_for_news(channel, _POLL_SECONDS)
        self._drain(channel)
        if not _finished(channel):
            _stop(channel)

    def _conclude(self, channel: paramiko.Channel, cause: CommandEnd | None) -> CommandResult:
        end, status, lost_reason = self._session._how_it_ended(channel)
        if cause is not None:
            end, lost_reason = cause, None
        return CommandResult(
            command=self.command,
            stdout=bytes(self._stdout.data),
            stderr=self._stderr.value(),
            end=end,
            exit_status=status,
            started=self._started,
            finished=_now(),
            lost_reason=lost_reason,
        )

    @property
    def stdout_overflowed(self) -> bool:
        return self._stdout.overflowed


class _ExitSignals:
    """The "exit-signal" requests the server sent, per channel, as a reason to show.

    paramiko handles "exit-status" but answers "exit-signal" as an unknown request and drops
    it, so a command killed by a signal would look like one whose channel merely closed. The
    transport dispatches channel messages through a class-level table; an instance copy with
    our reader in front of paramiko's handler changes this connection only. With a paramiko
    that has no such table, signals read as "closed without an exit status" (still LOST).
    """

    def __init__(self) -> None:
        # Weak keys: a channel the server never reports on must not be kept alive here.
        self._reasons: weakref.WeakKeyDictionary[paramiko.Channel, str] = (
            weakref.WeakKeyDictionary()
        )

    def listen(self, transport: paramiko.Transport) -> None:
        table = getattr(transport, "_channel_handler_table", None)
        if not isinstance(table, dict) or MSG_CHANNEL_REQUEST not in table:
            return
        paramiko_handler: Callable[[paramiko.Channel, Message], None] = table[MSG_CHANNEL_REQUEST]

        def handle(channel: paramiko.Channel, message: Message) -> None:
            self._note(channel, message)
            paramiko_handler(channel, message)

        transport._channel_handler_table = {**table, MSG_CHANNEL_REQUEST: handle}  # type: ignore[attr-defined]

    def _note(self, channel: paramiko.Channel, message: Message) -> None:
        try:
            reason = _exit_signal_reason(message)
        except Exception:  # in paramiko's transport thread: raising would end the connection
            return
        if reason is not None:
            self._reasons[channel] = reason

    def pop(self, channel: paramiko.Channel) -> str | None:
        return self._reasons.pop(channel, None)


def _exit_signal_reason(message: Message) -> str | None:
    """The reason an "exit-signal" channel request (RFC 4254 6.10) gives, such as "killed by
    signal KILL"; None for any other request. Reads a copy: paramiko's handler reads it next."""
    request = Message(message.get_remainder())
    if request.get_text() != "exit-signal":
        return None
    request.get_boolean()  # want-reply
    name = request.get_text()
    core_dumped = request.get_boolean()
    shown = name if _SIGNAL_NAME.fullmatch(name) else "(unnamed)"
    return f"killed by signal {shown}" + (" (core dumped)" if core_dumped else "")


def _read_until_the_end(
    channel: paramiko.Channel, stdout: _BoundedBuffer, stderr: _BoundedBuffer, limit: float
) -> CommandEnd | None:
    """Read the outputs until the command ends by itself (None) or we must stop it: at the
    output bound (TRUNCATED) or the time limit (TIMED_OUT)."""
    deadline = time.monotonic() + limit
    while True:
        _drain(channel, stdout, stderr)
        if stdout.overflowed or stderr.overflowed:
            return CommandEnd.TRUNCATED
        if _finished(channel):
            _drain(channel, stdout, stderr)
            return None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return CommandEnd.TIMED_OUT
        _wait_for_news(channel, min(_POLL_SECONDS, remaining))


def _drain(channel: paramiko.Channel, stdout: _BoundedBuffer, stderr: _BoundedBuffer) -> None:
    while channel.recv_ready() and not stdout.overflowed:
        stdout.feed(channel.recv(_READ_CHUNK))
    while channel.recv_stderr_ready() and not stderr.overflowed:
        stderr.feed(channel.recv_stderr(_READ_CHUNK))


def _wait_for_news(channel: paramiko.Channel, seconds: float) -> None:
    """Wait at most ``seconds`` for output, the exit status or the channel's close.

    Before EOF, the channel's pipe becomes readable when output arrives. After EOF paramiko
    leaves that pipe readable for good (no output can follow), so a select on it would return
    at once and spin until the exit status comes; the status event is set by the exit status
    and by the channel's close, the only news left after EOF.
    """
    if channel.eof_received:
        channel.status_event.wait(seconds)
    else:
        select.select([channel], [], [], seconds)


def _finished(channel: paramiko.Channel) -> bool:
    # OpenSSH sends EOF (after all data, both streams), then the exit status (or, for a
    # command killed by a signal, an exit-signal, which paramiko does not count), then closes;
    # a channel may also just close (connection dropped).
    if channel.closed:
        return True
    return bool(channel.eof_received and channel.exit_status_ready())


def _stop(channel: paramiko.Channel) -> None:
    """Ask the server to kill the command (RFC 4254 6.9, honoured by OpenSSH ≥ 7.9 for the
    session's process group when it may signal it), then close the channel, which also ends a
    command that writes more. Best effort: the channel is closed either way."""
    _send_signal(channel, "KILL")
    channel.close()


def _send_signal(channel: paramiko.Channel, name: str) -> None:
    """The RFC 4254 6.9 "signal" request; best effort (a closed channel gets none)."""
    if channel.closed or channel.transport is None:
        return
    message = Message()
    message.add_byte(cMSG_CHANNEL_REQUEST)
    message.add_int(channel.remote_chanid)
    message.add_string("signal")
    message.add_boolean(False)
    message.add_string(name)
    # paramiko has no public call for the "signal" request; this is how its own requests
    # (exec, pty) are sent.
    send = channel.transport._send_user_message  # type: ignore[attr-defined]
    with contextlib.suppress(paramiko.SSHException, OSError, EOFError):
        send(message)


def _send_without_delay(sock: socket.socket) -> None:
    """Turn Nagle's algorithm off, as OpenSSH does for interactive sessions.

    paramiko does not. With Nagle on, the first packet of each command's exchange waits for
    the server's delayed ACK of the previous small one (40 ms or so): on a LAN, most of a
    host's collection time. Best effort: a socket that refuses the option still works, slower.
    """
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _known_hosts_names(address: str, port: int) -> list[str]:
    """The names known_hosts may list this address under: as given and canonical, bracketed
    with the port when it is not 22 (as ssh writes them)."""
    names = [address]
    try:
        canonical = str(ipaddress.ip_address(address))
    except ValueError:
        canonical = address
    if canonical != address:
        names.append(canonical)
    if port != 22:
        names = [f"[{n}]:{port}" for n in names]
    return names


def _algorithms_for(known: Iterable[paramiko.PKey]) -> list[str]:
    algorithms: list[str] = []
    for key_type in dict.fromkeys(key.get_name() for key in known):
        if key_type == "ssh-rsa":
            # An RSA host key is negotiated under its SHA-2 signature names ("ssh-rsa", the
            # SHA-1 one, is never offered: _WEAK_ALGORITHMS).
            algorithms += ["rsa-sha2-512", "rsa-sha2-256"]
        else:
            algorithms.append(key_type)
    return algorithms


def _why_unknown(trust: _HostTrust) -> str:
    """What known_hosts has for a host it lists no usable key for, if anything."""
    reasons = []
    if trust.revoked:
        reasons.append("known_hosts has only @revoked keys for it")
    if trust.has_authority:
        reasons.append(
            "known_hosts trusts a certificate authority for it (@cert-authority), but host "
            "certificates are not supported by the auditor: list the host's own key"
        )
    return "".join(f"; {reason}" for reason in reasons)


def _now() -> datetime:
    return datetime.now(UTC)
