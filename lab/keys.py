"""Keys the lab generates afresh for every ``lab up``: SSH (ed25519) and WireGuard (X25519)."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey


@dataclass(frozen=True)
class SshKey:
    private_openssh: bytes  #: OpenSSH private key file content
    public_line: str  #: "ssh-ed25519 AAAA... comment"

    @property
    def public_key(self) -> str:
        """ "ssh-ed25519 AAAA..." without the comment (the known_hosts form)."""
        return " ".join(self.public_line.split()[:2])


@dataclass(frozen=True)
class WireGuardKey:
    private: str  #: base64, as `wg` reads it
    public: str


def new_ssh_key(comment: str) -> SshKey:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return SshKey(private, f"{public.decode()} {comment}")


def new_wireguard_key() -> WireGuardKey:
    key = X25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return WireGuardKey(base64.b64encode(private).decode(), base64.b64encode(public).decode())
