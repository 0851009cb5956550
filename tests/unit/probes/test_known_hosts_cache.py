"""known_hosts parsed once per file state, and never a stale parse of a file just rewritten."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from probes.ssh import _KnownHostsCache

AN_HOUR_AGO_NS = 3600 * 10**9


def host_key_line(host: str) -> str:
    public = ed25519.Ed25519PrivateKey.generate().public_key()
    key = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return f"{host} {key.decode()}\n"


def age(path: Path, by_ns: int = AN_HOUR_AGO_NS) -> None:
    mtime = path.stat().st_mtime_ns - by_ns
    os.utime(path, ns=(mtime, mtime))


def key_of(cache: _KnownHostsCache, path: Path, host: str) -> str:
    keys = cache.read(str(path)).trust([host]).keys
    assert keys, f"{host} not in {path}"
    return keys[0].get_base64()


def test_a_settled_file_is_parsed_once(tmp_path: Path) -> None:
    cache = _KnownHostsCache()
    path = tmp_path / "known_hosts"
    path.write_text(host_key_line("10.98.200.11") + host_key_line("10.98.200.12"))
    age(path)
    first = cache.read(str(path))
    assert cache.read(str(path)) is first
    assert first.trust(["10.98.200.12"]).keys


def test_an_edited_file_is_read_again(tmp_path: Path) -> None:
    cache = _KnownHostsCache()
    path = tmp_path / "known_hosts"
    path.write_text(host_key_line("10.98.200.11"))
    age(path, 2 * AN_HOUR_AGO_NS)
    old = key_of(cache, path, "10.98.200.11")
    new_line = host_key_line("10.98.200.11")
    path.write_text(new_line)
    age(path)
    assert key_of(cache, path, "10.98.200.11") == new_line.split()[2] != old


def test_a_file_rewritten_within_one_clock_tick_is_not_taken_for_the_old(tmp_path: Path) -> None:
    # The same size, the same inode, the same modification time: only the content differs,
    # which is what a rewrite within one tick of a coarse file-system clock looks like.
    cache = _KnownHostsCache()
    path = tmp_path / "known_hosts"
    path.write_text(host_key_line("10.98.200.11"))
    before = path.stat()
    assert key_of(cache, path, "10.98.200.11")
    replacement = host_key_line("10.98.200.11")
    path.write_text(replacement)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    assert key_of(cache, path, "10.98.200.11") == replacement.split()[2]
