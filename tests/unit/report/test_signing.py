"""Ed25519 keys: file modes, no overwrite, signatures that fail when they should."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from auditor.evidence.signing import (
    SigningKeyError,
    fingerprint,
    generate_key,
    load_private_key,
    load_public_key,
    sign,
    signature_valid,
)


def test_keygen_writes_a_private_key_only_its_owner_can_read(tmp_path: Path) -> None:
    files = generate_key(tmp_path / "keys" / "auditor.key")
    assert stat.S_IMODE(files.private.stat().st_mode) == 0o600
    assert files.public == tmp_path / "keys" / "auditor.key.pub"
    assert b"PRIVATE KEY" not in files.public.read_bytes()
    public = load_public_key(files.public.read_bytes(), "pub")
    assert fingerprint(public) == files.fingerprint
    assert files.fingerprint.startswith("SHA256:") and len(files.fingerprint) == 7 + 64


def test_keygen_refuses_to_overwrite(tmp_path: Path) -> None:
    files = generate_key(tmp_path / "k")
    before = files.private.read_bytes()
    with pytest.raises(SigningKeyError, match="already exists"):
        generate_key(tmp_path / "k")
    assert files.private.read_bytes() == before


def test_a_signature_verifies_only_for_its_data_and_key(tmp_path: Path) -> None:
    key = load_private_key(generate_key(tmp_path / "a").private)
    other = load_private_key(generate_key(tmp_path / "b").private)
    signature = sign(key, b"manifest")
    assert signature_valid(key.public_key(), signature, b"manifest")
    assert not signature_valid(key.public_key(), signature, b"manifesT")
    assert not signature_valid(other.public_key(), signature, b"manifest")


def test_a_non_key_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "junk").write_text("not a key")
    with pytest.raises(SigningKeyError):
        load_private_key(tmp_path / "junk")
