"""Parser for OpenSSH public host key files (``/etc/ssh/ssh_host_*_key.pub``)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct

from auditor.domain.facts import HostKey
from probes.parsers.errors import ParseError

_TOOL = "ssh host key"
_KEY_TYPES = frozenset(
    {
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "ssh-dss",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)


def fingerprint_sha256(blob: bytes) -> str:
    """The fingerprint ``ssh-keygen -l`` prints: SHA-256 of the key blob, unpadded base64."""
    digest = hashlib.sha256(blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def parse_host_key(text: str) -> HostKey:
    """``<type> <base64 blob> [comment]`` on its first non-blank line."""
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if len(lines) != 1:
        raise ParseError(_TOOL, None, f"expected one key line, got {len(lines)}")
    number, line = lines[0]
    parts = line.split()
    if len(parts) < 2:
        raise ParseError(_TOOL, number, "expected '<type> <base64 key>'")
    key_type, encoded = parts[0], parts[1]
    if key_type not in _KEY_TYPES:
        raise ParseError(_TOOL, number, f"unknown key type {key_type[:40]!r}")
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ParseError(_TOOL, number, "the key is not base64") from None
    if _blob_type(blob) != key_type:
        raise ParseError(_TOOL, number, "the key's inner type does not match its label")
    return HostKey(type=key_type, fingerprint=fingerprint_sha256(blob))


def _blob_type(blob: bytes) -> str | None:
    # An SSH public key blob starts with its type as a length-prefixed string (RFC 4253 6.6).
    if len(blob) < 4:
        return None
    (length,) = struct.unpack(">I", blob[:4])
    if length > len(blob) - 4:
        return None
    try:
        return blob[4 : 4 + length].decode("ascii")
    except UnicodeDecodeError:
        return None
