"""known_hosts @revoked and @cert-authority lines, read as OpenSSH reads them.

Against a real OpenSSH server on loopback; where it matters, OpenSSH's own client is asked
about the same file and must agree.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from auditor.domain.attempts import ErrorReason
from probes.parsers import parse_host_key
from probes.ssh import AllowList, AuditSession, SshError, _KnownHostsCache
from tests.unit.probes.ssh_fixtures import Sshd, allow_all, keygen, needs_sshd, sshd

__all__ = ["sshd"]  # fixture used by name

ALLOWED = AllowList(["id -un"])


def session(server: Sshd, known_hosts: Path) -> AuditSession:
    access = server.access(known_hosts=known_hosts)
    return AuditSession("loop", "127.0.0.1", access, ALLOWED, allow_all)


def connect_error(audit: AuditSession) -> SshError:
    with pytest.raises(SshError) as caught:
        audit.connect()
    audit.close()
    return caught.value


def logs_in(server: Sshd, known_hosts: Path) -> bool:
    with session(server, known_hosts) as audit:
        return audit.run("id -un").succeeded


def openssh_accepts(server: Sshd, known_hosts: Path) -> bool:
    """Whether OpenSSH's client, checking strictly against this file alone, logs in."""
    completed = subprocess.run(
        [
            "ssh",
            "-p",
            str(server.port),
            "-i",
            str(server.client_key),
            "-o",
            f"UserKnownHostsFile={known_hosts}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "root@127.0.0.1",
            "true",
        ],
        capture_output=True,
        timeout=20,
        check=False,
    )
    return completed.returncode == 0


def host_key(server: Sshd) -> str:
    """The server's key as "type base64"."""
    return " ".join(server.host_key_pub.read_text().split()[:2])


def other_key(folder: Path, name: str = "other") -> str:
    keygen(folder / name)
    return " ".join((folder / f"{name}.pub").read_text().split()[:2])


def name_of(server: Sshd) -> str:
    return f"[127.0.0.1]:{server.port}"


def hashed(folder: Path, line: str) -> str:
    """``line`` with its host name hashed, by ssh-keygen -H."""
    path = folder / "to-hash"
    path.write_text(line + "\n")
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(path)], check=True, capture_output=True)
    return path.read_text().strip()


def write(folder: Path, *lines: str) -> Path:
    path = folder / "known_hosts"
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


# -- @revoked -------------------------------------------------------------------------------


@needs_sshd
@pytest.mark.parametrize("field", ["exact", "wildcard", "pattern", "hashed"])
def test_a_revoked_host_key_is_refused_even_where_a_plain_line_lists_it(
    sshd: Sshd, tmp_path: Path, field: str
) -> None:
    key = host_key(sshd)
    hosts = {
        "exact": name_of(sshd),
        "wildcard": "*",
        "pattern": "10.9.9.9,[127.0.0.?]:*",
        "hashed": hashed(tmp_path, f"{name_of(sshd)} {key}").split()[0],
    }[field]
    known_hosts = write(tmp_path, f"{name_of(sshd)} {key}", f"@revoked {hosts} {key}")
    error = connect_error(session(sshd, known_hosts))
    assert error.reason is ErrorReason.HOST_KEY_MISMATCH
    assert "HOST KEY REVOKED" in error.message
    assert "@revoked" in error.message
    assert parse_host_key(sshd.host_key_pub.read_text()).fingerprint in error.message
    assert not openssh_accepts(sshd, known_hosts)


@needs_sshd
def test_a_revoked_key_listed_nowhere_else_is_refused_as_revoked(
    sshd: Sshd, tmp_path: Path
) -> None:
    known_hosts = write(tmp_path, f"@revoked * {host_key(sshd)}")
    error = connect_error(session(sshd, known_hosts))
    assert error.reason is ErrorReason.HOST_KEY_MISMATCH
    assert "HOST KEY REVOKED" in error.message


@needs_sshd
@pytest.mark.parametrize("hosts", ["10.9.9.9", "[127.0.0.1]:1", "*,![127.0.0.1]:*"])
def test_a_revocation_applies_only_to_the_hosts_it_names(
    sshd: Sshd, tmp_path: Path, hosts: str
) -> None:
    key = host_key(sshd)
    known_hosts = write(tmp_path, f"@revoked {hosts} {key}", f"{name_of(sshd)} {key}")
    assert logs_in(sshd, known_hosts)
    assert openssh_accepts(sshd, known_hosts)


@needs_sshd
def test_a_revoked_old_key_with_its_replacement_listed_logs_in(sshd: Sshd, tmp_path: Path) -> None:
    # The usual rotation: the old key revoked, still on the host's plain line before the new.
    old = other_key(tmp_path, "old")
    known_hosts = write(
        tmp_path,
        f"{name_of(sshd)} {old}",
        f"{name_of(sshd)} {host_key(sshd)}",
        f"@revoked * {old}",
    )
    assert logs_in(sshd, known_hosts)
    assert openssh_accepts(sshd, known_hosts)


@needs_sshd
def test_a_host_whose_only_listed_key_is_revoked_is_unknown_and_says_so(
    sshd: Sshd, tmp_path: Path
) -> None:
    old = other_key(tmp_path, "old")
    known_hosts = write(tmp_path, f"{name_of(sshd)} {old}", f"@revoked {name_of(sshd)} {old}")
    error = connect_error(session(sshd, known_hosts))
    assert error.reason is ErrorReason.HOST_KEY_UNKNOWN
    assert "known_hosts has only @revoked keys for it" in error.message


@needs_sshd
@pytest.mark.parametrize(
    "line", ["@revoked * ssh-ed25519 not-base64!", "@revoked *", "@revoked * ssh-ed25519 QUFBQQ=="]
)
def test_an_unreadable_revocation_fails_closed(sshd: Sshd, tmp_path: Path, line: str) -> None:
    # A revocation that cannot be read must not silently let its key in.
    known_hosts = write(tmp_path, f"{name_of(sshd)} {host_key(sshd)}", line)
    error = connect_error(session(sshd, known_hosts))
    assert error.reason is ErrorReason.INTERNAL
    assert f"cannot read known_hosts {known_hosts}: line 2: " in error.message


# -- @cert-authority ------------------------------------------------------------------------


@needs_sshd
@pytest.mark.parametrize("hosts", ["[127.0.0.1]:*", "*"])
def test_a_cert_authority_line_trusts_no_plain_host_key(
    sshd: Sshd, tmp_path: Path, hosts: str
) -> None:
    # Even with the host's own key as the "authority": a CA line vouches for certificates
    # only, which the auditor does not check.
    known_hosts = write(tmp_path, f"@cert-authority {hosts} {host_key(sshd)}")
    error = connect_error(session(sshd, known_hosts))
    assert error.reason is ErrorReason.HOST_KEY_UNKNOWN
    assert "@cert-authority" in error.message
    assert "host certificates are not supported" in error.message
    assert not openssh_accepts(sshd, known_hosts)


@needs_sshd
def test_a_host_unknown_with_a_cert_authority_for_others_only_says_nothing_of_it(
    sshd: Sshd, tmp_path: Path
) -> None:
    known_hosts = write(tmp_path, f"@cert-authority *.example.org {other_key(tmp_path)}")
    error = connect_error(session(sshd, known_hosts))
    assert error.reason is ErrorReason.HOST_KEY_UNKNOWN
    assert "certificate" not in error.message


# -- mixed files ----------------------------------------------------------------------------


@needs_sshd
@pytest.mark.parametrize("plain", ["written out", "hashed"])
def test_a_file_mixing_markers_and_plain_lines_still_authenticates_the_plain_host(
    sshd: Sshd, tmp_path: Path, plain: str
) -> None:
    line = f"{name_of(sshd)} {host_key(sshd)}"
    known_hosts = write(
        tmp_path,
        "# the lab's CA and a retired key",
        f"@cert-authority *.example.org,[127.0.0.1]:* {other_key(tmp_path, 'ca')}",
        f"@revoked * {other_key(tmp_path, 'retired')}",
        f"@unknown-marker {name_of(sshd)} {other_key(tmp_path, 'ignored')}",
        f"10.9.9.9,web1.example.org {other_key(tmp_path, 'web1')}",
        "",
        line if plain == "written out" else hashed(tmp_path, line),
    )
    assert logs_in(sshd, known_hosts)
    assert openssh_accepts(sshd, known_hosts)


@needs_sshd
def test_a_changed_key_is_still_a_mismatch_in_a_file_with_markers(
    sshd: Sshd, tmp_path: Path
) -> None:
    wrong = other_key(tmp_path)
    known_hosts = write(
        tmp_path,
        f"@cert-authority * {other_key(tmp_path, 'ca')}",
        f"@revoked 10.9.9.9 {host_key(sshd)}",
        f"{name_of(sshd)} {wrong}",
    )
    error = connect_error(session(sshd, known_hosts))
    assert error.reason is ErrorReason.HOST_KEY_MISMATCH
    assert "HOST KEY CHANGED" in error.message


# -- reading the host field (no server needed) ----------------------------------------------


def trust_in(tmp_path: Path, *lines: str, names: tuple[str, ...] = ("[10.0.0.1]:2222",)):
    path = write(tmp_path, *lines)
    return _KnownHostsCache().read(str(path)).trust(list(names))


def test_marker_patterns_read_brackets_literally_and_ignore_case(tmp_path: Path) -> None:
    key = other_key(tmp_path)
    # "[" is no character class: "[10.0.0.1]:2222" matches itself only.
    assert trust_in(tmp_path, f"@revoked [10.0.0.1]:2222 {key}").revoked
    assert not trust_in(tmp_path, f"@revoked [10.0.0.2]:2222 {key}").revoked
    assert trust_in(
        tmp_path, f"@revoked WEB?.Example.ORG {key}", names=("web1.example.org",)
    ).revoked


def test_plain_lines_take_no_wildcards(tmp_path: Path) -> None:
    # A plain line trusts a key for the names written out only, as before the markers.
    key = other_key(tmp_path)
    assert not trust_in(tmp_path, f"* {key}").keys
    assert not trust_in(tmp_path, f"[10.0.0.?]:2222 {key}").keys
    assert trust_in(tmp_path, f"[10.0.0.1]:2222   {key}").keys  # several spaces, as ssh allows


def test_unreadable_plain_lines_and_malformed_hashes_are_skipped(tmp_path: Path) -> None:
    key = other_key(tmp_path)
    trust = trust_in(
        tmp_path,
        "[10.0.0.1]:2222 ssh-ed25519 not-base64!",
        f"[10.0.0.1]:2222 ssh-rsa {key.split()[1]}",  # an Ed25519 key said to be RSA
        f"|1|bad|salt {key}",
        "@cert-authority",
        f"[10.0.0.1]:2222 {key}",
    )
    assert [k.get_base64() for k in trust.keys] == [key.split()[1]]
