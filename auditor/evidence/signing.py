"""Ed25519 keys and signatures for the certification bundle.

The private key is a PKCS#8 PEM file created with mode 0600 (never readable by others, even
for an instant: it is created with that mode, not chmod-ed afterwards); the public key is a
SubjectPublicKeyInfo PEM beside it (``KEY.pub``). A key's fingerprint is ``SHA256:`` and the
hex SHA-256 of its raw 32 public bytes, short enough to read out over the phone to the
certification body, which is how a verifier comes to trust it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from auditor.domain.errors import AuditorError

PUBLIC_SUFFIX = ".pub"


class SigningKeyError(AuditorError):
    """A key file cannot be created or read."""


@dataclass(frozen=True)
class KeyFiles:
    private: Path
    public: Path
    fingerprint: str


def public_key_path(private: Path) -> Path:
    return private.with_name(private.name + PUBLIC_SUFFIX)


def raw_public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(key: Ed25519PublicKey) -> str:
    return "SHA256:" + hashlib.sha256(raw_public_bytes(key)).hexdigest()


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def generate_key(out: Path) -> KeyFiles:
    """Create a new key pair at ``out`` (0600) and ``out.pub``; refuses to overwrite either."""
    public = public_key_path(out)
    for path in (out, public):
        if path.exists():
            raise SigningKeyError(f"{path} already exists; refusing to overwrite a key")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_new(out, private_pem, 0o600)
    _write_new(public, public_pem(key.public_key()), 0o644)
    return KeyFiles(out, public, fingerprint(key.public_key()))


def _write_new(path: Path, content: bytes, mode: int) -> None:
    # O_EXCL | O_NOFOLLOW: a new file, never one or a link someone prepared at that name.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        # The umask may have removed bits we asked for (never added any): make it exact, on
        # the descriptor (a chmod by name could be redirected by a link swapped in).
        os.fchmod(fd, mode)
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise SigningKeyError(f"{path}: not a readable unencrypted private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path}: not an Ed25519 private key")
    return key


def load_public_key(pem: bytes, source: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"{source}: not a PEM public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{source}: not an Ed25519 public key")
    return key


def sign(key: Ed25519PrivateKey, data: bytes) -> bytes:
    return key.sign(data)


def signature_valid(key: Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    try:
        key.verify(signature, data)
    except InvalidSignature:
        return False
    return True


__all__ = [
    "KeyFiles",
    "SigningKeyError",
    "fingerprint",
    "generate_key",
    "load_private_key",
    "load_public_key",
    "public_key_path",
    "public_pem",
    "sign",
    "signature_valid",
]
