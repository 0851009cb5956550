"""The certification bundle, and `auditor verify` on it: every kind of tampering is named."""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from auditor.cli.exitcodes import ExitCode
from auditor.cli.report import register as register_report
from auditor.cli.verify import register as register_verify
from auditor.evidence.signing import generate_key, load_private_key, public_pem, sign
from auditor.evidence.store import INDEX_FILE
from auditor.evidence.verify import (
    BUNDLE_MANIFEST,
    BUNDLE_PUBLIC_KEY,
    BUNDLE_SIGNATURE,
    VerificationReport,
    verify_path,
)
from auditor.report.bundle import BundleError, bundle_files, create_bundle, write_bundle
from policies.snapshot import OBSERVATIONS_FILE, Observations, to_json


@pytest.fixture
def key(tmp_path: Path) -> Path:
    return generate_key(tmp_path / "keys" / "auditor.key").private


@pytest.fixture
def bundle(failing_run: Path, key: Path, tmp_path: Path) -> Path:
    # What the audit leaves for re-judging: bundled and hashed like every other run file.
    (failing_run / OBSERVATIONS_FILE).write_text(to_json(Observations()) + "\n", encoding="utf-8")
    return create_bundle(failing_run, tmp_path / "out" / "bundle.zip", key).path


def trusted(key: Path) -> str:
    from auditor.evidence.signing import fingerprint

    return fingerprint(load_private_key(key).public_key())


def rewrite(zip_path: Path, change: Callable[[dict[str, bytes]], object]) -> None:
    """Rewrite the zip with its entries changed by ``change`` (name -> bytes), in order."""
    with zipfile.ZipFile(zip_path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    change(entries)
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)


def problems(report: VerificationReport) -> list[tuple[str, str]]:
    return [(p.check, p.subject) for p in report.problems]


def test_a_fresh_bundle_verifies_with_its_trusted_key(bundle: Path, key: Path) -> None:
    report = verify_path(bundle, trusted_fingerprint=trusted(key))
    assert report.intact, [str(p) for p in report.problems]
    assert report.bundle and report.signed and report.trusted
    assert report.signer_fingerprint == trusted(key)
    with zipfile.ZipFile(bundle) as archive:
        names = set(archive.namelist())
        for lang in ("ja", "en"):
            page = archive.read(f"report.{lang}.html").decode()
            assert f'<meta name="signer-fingerprint" content="{trusted(key)}">' in page
    for required in (
        "findings.json",
        "oscal-assessment-results.json",
        "findings.sarif",
        "findings.junit.xml",
        "inventory.yaml",
        "facts.json",
        OBSERVATIONS_FILE,
        INDEX_FILE,
        "evidence/manifest.json",
        BUNDLE_MANIFEST,
        BUNDLE_SIGNATURE,
        BUNDLE_PUBLIC_KEY,
    ):
        assert required in names
    assert report.bundle_files == len(names) - 3


def test_every_file_has_its_changed_byte_detected(bundle: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(bundle) as archive:
        names = [n for n in archive.namelist() if not n.startswith("bundle/")]
    assert len(names) > 15
    for name in names:
        copy = tmp_path / "changed.zip"
        shutil.copyfile(bundle, copy)

        def flip(entries: dict[str, bytes], name: str = name) -> None:
            content = bytearray(entries[name])
            content[len(content) // 2] ^= 0x01
            entries[name] = bytes(content)

        rewrite(copy, flip)
        report = verify_path(copy)
        assert not report.intact, name
        assert ("bundle", name) in problems(report), name
        changed = next(p for p in report.problems if (p.check, p.subject) == ("bundle", name))
        assert "changed: it hashes to" in changed.message


def test_a_removed_artifact_is_named(bundle: Path) -> None:
    with zipfile.ZipFile(bundle) as archive:
        victim = next(n for n in archive.namelist() if n.startswith("evidence/objects/"))
    rewrite(bundle, lambda entries: entries.pop(victim))
    report = verify_path(bundle)
    assert ("bundle", victim) in problems(report)
    assert any(p.check == "object" and "is missing" in p.message for p in report.problems)


def test_an_added_file_is_named(bundle: Path) -> None:
    planted = "evidence/objects/00/" + "0" * 64

    def plant(entries: dict[str, bytes]) -> None:
        entries[planted] = b"planted"
        entries["notes.txt"] = b"added later"

    rewrite(bundle, plant)
    report = verify_path(bundle)
    assert ("bundle", planted) in problems(report)
    assert ("bundle", "notes.txt") in problems(report)
    assert ("object", planted) in problems(report)


def test_a_reordered_chain_is_caught_even_when_resealed_with_the_right_key(
    bundle: Path, key: Path, tmp_path: Path
) -> None:
    """A dishonest holder of the key swaps two index rows and signs again: the chain tells."""
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(unpacked)
    conn = sqlite3.connect(unpacked / INDEX_FILE)
    with conn:
        conn.execute("UPDATE artifacts SET seq = -1 WHERE seq = 2")
        conn.execute("UPDATE artifacts SET seq = 2 WHERE seq = 3")
        conn.execute("UPDATE artifacts SET seq = 3 WHERE seq = -1")
    conn.close()
    resealed = tmp_path / "resealed.zip"
    write_bundle(
        unpacked,
        bundle_files(unpacked),
        resealed,
        run_id="20261126T030000Z-failing",
        key=load_private_key(key),
        created="2026-11-26T04:00:00Z",
    )
    report = verify_path(resealed, trusted_fingerprint=trusted(key))
    assert report.signed and report.trusted, "the seal itself is valid"
    chain = [p.subject for p in report.problems if p.check == "chain"]
    assert chain and chain[0].startswith("artifact #2 ")
    assert not report.intact


def test_a_manifest_signed_by_another_key_is_caught(
    bundle: Path, key: Path, tmp_path: Path
) -> None:
    intruder = load_private_key(generate_key(tmp_path / "intruder.key").private)

    def resign_only(entries: dict[str, bytes]) -> None:
        entries[BUNDLE_SIGNATURE] = base64.b64encode(sign(intruder, entries[BUNDLE_MANIFEST]))

    only_signature = tmp_path / "only-signature.zip"
    shutil.copyfile(bundle, only_signature)
    rewrite(only_signature, resign_only)
    report = verify_path(only_signature)
    assert ("signature", BUNDLE_MANIFEST) in problems(report)
    assert not report.signed

    def replace_key_too(entries: dict[str, bytes]) -> None:
        resign_only(entries)
        entries[BUNDLE_PUBLIC_KEY] = public_pem(intruder.public_key())

    whole_seal = tmp_path / "whole-seal.zip"
    shutil.copyfile(bundle, whole_seal)
    rewrite(whole_seal, replace_key_too)
    report = verify_path(whole_seal, trusted_fingerprint=trusted(key))
    assert report.signed and report.trusted is False
    messages = [p.message for p in report.problems if p.check == "signature"]
    assert any("not by the trusted key" in m for m in messages)
    # Even without the trusted key, the reports and the manifest name the real signer.
    report = verify_path(whole_seal)
    assert ("signature", "report.en.html") in problems(report)
    assert ("signature", BUNDLE_PUBLIC_KEY) in problems(report)


def test_an_edited_manifest_breaks_the_signature(bundle: Path) -> None:
    def edit(entries: dict[str, bytes]) -> None:
        manifest = json.loads(entries[BUNDLE_MANIFEST])
        manifest["created"] = "2030-01-01T00:00:00Z"
        entries[BUNDLE_MANIFEST] = json.dumps(manifest).encode()

    rewrite(bundle, edit)
    assert ("signature", BUNDLE_MANIFEST) in problems(verify_path(bundle))


def test_an_unsafe_entry_name_is_refused(bundle: Path) -> None:
    rewrite(bundle, lambda entries: entries.__setitem__("../escape.txt", b"x"))
    assert ("bundle", "../escape.txt") in problems(verify_path(bundle))


def test_an_unzipped_bundle_verifies_as_a_folder_and_its_links_work(
    bundle: Path, key: Path, tmp_path: Path
) -> None:
    unpacked = tmp_path / "unzipped"
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(unpacked)
    report = verify_path(unpacked, trusted_fingerprint=trusted(key))
    assert report.intact and report.bundle and report.trusted
    page = (unpacked / "report.en.html").read_text(encoding="utf-8")
    href = page.split('class="evidence" href="', 1)[1].split('"', 1)[0]
    assert (unpacked / href).is_file()
    (unpacked / "findings.json").write_text("{}")
    assert ("bundle", "findings.json") in problems(verify_path(unpacked))


def test_an_unsigned_bundle_is_consistent_but_says_it_proves_no_signer(
    failing_run: Path, tmp_path: Path, key: Path
) -> None:
    result = create_bundle(failing_run, tmp_path / "unsigned.zip")
    report = verify_path(result.path)
    assert report.intact and not report.signed
    assert any("not signed" in note for note in report.notes)
    assert not verify_path(result.path, trusted_fingerprint=trusted(key)).intact


def test_a_tampered_run_is_not_bundled(failing_run: Path, key: Path, tmp_path: Path) -> None:
    victim = next(p for p in (failing_run / "evidence" / "objects").rglob("*") if p.is_file())
    victim.chmod(0o644)
    victim.write_bytes(victim.read_bytes() + b"!")
    with pytest.raises(BundleError, match="does not verify"):
        create_bundle(failing_run, tmp_path / "never.zip", key)
    assert not (tmp_path / "never.zip").exists()


def cli() -> typer.Typer:
    app = typer.Typer()
    register_report(app)
    register_verify(app)
    return app


def test_the_commands_end_to_end(failing_run: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    keyfile = tmp_path / "cli.key"
    result = runner.invoke(cli(), ["keygen", "--out", str(keyfile)])
    assert result.exit_code == 0, result.output
    for report in failing_run.glob("report.*.html"):
        report.unlink()
    result = runner.invoke(cli(), ["report", str(failing_run)])
    assert result.exit_code == 0 and (failing_run / "report.ja.html").is_file()
    out = tmp_path / "b.zip"
    result = runner.invoke(
        cli(), ["bundle", str(failing_run), "--out", str(out), "-k", str(keyfile)]
    )
    assert result.exit_code == 0, result.output
    args = ["verify", str(out), "--trusted-key", f"{keyfile}.pub"]
    result = runner.invoke(cli(), args)
    assert result.exit_code == ExitCode.OK, result.output
    assert "INTACT" in result.output
    rewrite(out, lambda entries: entries.pop("findings.sarif"))
    result = runner.invoke(cli(), args)
    assert result.exit_code == ExitCode.FAIL
    assert "findings.sarif" in result.output and "missing" in result.output
    assert runner.invoke(cli(), ["verify", str(tmp_path / "nothing")]).exit_code == 3
    assert runner.invoke(cli(), ["report", str(tmp_path)]).exit_code == 3
    assert runner.invoke(cli(), ["keygen", "--out", str(keyfile)]).exit_code == 3
