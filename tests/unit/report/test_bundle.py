"""The certification bundle, and `auditor verify` on it: every kind of tampering is named."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
import shutil
import sqlite3
import stat
import struct
import time
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from auditor.audit import orchestrator as audit
from auditor.audit.observer import SilentObserver
from auditor.audit.options import AuditOptions
from auditor.audit.orchestrator import run_audit
from auditor.cli.exitcodes import ExitCode
from auditor.cli.report import register as register_report
from auditor.cli.verify import register as register_verify
from auditor.cli.verify import render
from auditor.domain.attempts import Attempt
from auditor.domain.facts import HostFacts
from auditor.domain.findings import Status, read_findings
from auditor.domain.waivers import WAIVERS_COPY
from auditor.evidence.signing import (
    generate_key,
    load_private_key,
    public_key_path,
    public_pem,
    sign,
)
from auditor.evidence.store import INDEX_FILE, EvidenceStore, genesis, next_chain
from auditor.evidence.verify import (
    BUNDLE_MANIFEST,
    BUNDLE_PUBLIC_KEY,
    BUNDLE_SIGNATURE,
    VerificationReport,
    verify_path,
)
from auditor.report import render_reports
from auditor.report.bundle import BundleError, bundle_files, create_bundle, write_bundle
from policies.snapshot import OBSERVATIONS_FILE
from tests.lab_scenarios import INVENTORY_FILE, RECORDING_FILE, RECORDINGS, recording
from tests.unit.test_waivers_outputs import SAMPLE_WAIVERS, TERMINAL_WAIVER, write_waivers

RUN_ID = "20261126T030000Z-failing"


@pytest.fixture
def key(tmp_path: Path) -> Path:
    return generate_key(tmp_path / "keys" / "auditor.key").private


@pytest.fixture
def bundle(failing_run: Path, key: Path, tmp_path: Path) -> Path:
    # The sample run holds observations.json, as an audit leaves it: bundled like the rest.
    assert (failing_run / OBSERVATIONS_FILE).is_file()
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


def test_a_partial_edit_of_the_index_is_caught_even_when_resealed_with_the_right_key(
    bundle: Path, key: Path, tmp_path: Path
) -> None:
    """Two index rows swapped, the bundle signed again, but no hash computed again: the chain
    tells. (A key holder who computes every hash again is not caught: see the next test.)"""
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
        run_id=RUN_ID,
        key=load_private_key(key),
        created="2026-11-26T04:00:00Z",
    )
    report = verify_path(resealed, trusted_fingerprint=trusted(key))
    assert report.signed and report.trusted, "the seal itself is valid"
    chain = [p.subject for p in report.problems if p.check == "chain"]
    assert chain and chain[0].startswith("artifact #2 ")
    assert not report.intact


def test_a_key_holder_who_rewrites_everything_consistently_is_not_caught(
    bundle: Path, key: Path, tmp_path: Path
) -> None:
    """What docs/evidence.md says: the chain, the manifests and the seal protect against a
    partial edit; whoever holds the signing key can rewrite an artifact's row, every hash after
    it, the manifest and the seal, sign again, and the bundle verifies. The signature says who
    sealed the bundle, not that they were honest."""
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(unpacked)
    with EvidenceStore.open(unpacked) as store:
        records, seal = store.artifacts(), store.seal_document()
    assert seal is not None
    conn = sqlite3.connect(unpacked / INDEX_FILE)
    previous = genesis(RUN_ID)
    with conn:
        for record in records:
            meta = record.metadata()
            meta["command"] = "innocent" if record.seq == 1 else meta["command"]
            previous = next_chain(previous, meta)
            conn.execute(
                "UPDATE artifacts SET command = ?, chain = ? WHERE seq = ?",
                (meta["command"], previous, record.seq),
            )
        seal["chain_head"] = previous
        conn.execute("UPDATE run SET value = ? WHERE key = 'seal'", (json.dumps(seal),))
    conn.close()
    with EvidenceStore.open(unpacked) as store:
        manifest = store.manifest()
    (unpacked / "evidence" / "manifest.json").chmod(0o644)
    (unpacked / "evidence" / "manifest.json").write_text(json.dumps(manifest))
    rewritten = tmp_path / "rewritten.zip"
    files = bundle_files(unpacked)
    write_bundle(
        unpacked, files, rewritten, run_id=RUN_ID, key=load_private_key(key), created="later"
    )
    report = verify_path(rewritten, trusted_fingerprint=trusted(key))
    assert report.intact and report.authenticated, [str(p) for p in report.problems]


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
    assert report.intact and not report.signed and not report.authenticated
    assert any("not signed" in note for note in report.notes)
    # A trusted key does not make an unsigned bundle worse than unauthenticated (exit 5).
    with_key = verify_path(result.path, trusted_fingerprint=trusted(key))
    assert with_key.intact and not with_key.authenticated and with_key.trusted is False
    assert "not signed" in (with_key.unauthenticated_reason() or "")


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


# -- verify exits 0 only for content authenticated by a trusted key ---------------------------


def test_verify_exits_0_only_for_a_bundle_signed_by_the_trusted_key(
    bundle: Path, failing_run: Path, key: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    pub = str(public_key_path(key))

    def code(path: Path, *extra: str) -> int:
        return runner.invoke(cli(), ["verify", str(path), *extra]).exit_code

    assert code(bundle, "--trusted-key", pub) == ExitCode.OK
    assert code(bundle) == ExitCode.UNAUTHENTICATED  # signed, but by whom?
    # The same run, sealed and signed by someone else's key: intact, and never 0.
    intruder = generate_key(tmp_path / "intruder.key").private
    forged = create_bundle(failing_run, tmp_path / "forged.zip", intruder).path
    assert verify_path(forged).intact
    assert code(forged) == ExitCode.UNAUTHENTICATED
    assert code(forged, "--trusted-key", pub) == ExitCode.FAIL
    unsigned = create_bundle(failing_run, tmp_path / "unsigned.zip").path
    assert code(unsigned) == ExitCode.UNAUTHENTICATED
    assert code(unsigned, "--trusted-key", pub) == ExitCode.UNAUTHENTICATED
    result = runner.invoke(cli(), ["verify", str(forged)])
    assert "UNAUTHENTICATED" in result.output and "no trusted key was given" in result.output


def test_the_signer_fingerprint_is_printed_whole_on_a_narrow_terminal(
    bundle: Path, key: Path
) -> None:
    out = io.StringIO()
    render(verify_path(bundle), Console(file=out, width=40, force_terminal=True))
    assert trusted(key) in out.getvalue()


# -- the container: nothing outside the signed entries, nothing past the limits ---------------


def test_bytes_prepended_or_appended_to_the_zip_are_refused(bundle: Path, tmp_path: Path) -> None:
    content = bundle.read_bytes()
    for name, forged in (
        ("prepended.zip", b"#!/bin/sh\necho unsigned\n" + content),
        ("appended.zip", content + b"unsigned trailer"),
    ):
        path = tmp_path / name
        path.write_bytes(forged)
        report = verify_path(path)
        assert not report.intact, name
        assert problems(report) == [("bundle", name)], report.problems
        assert "(refused)" in report.problems[0].message


def _raw_zip(path: Path, members: list[tuple[str, int, bytes, int, int]]) -> None:
    """A zip written by hand: (name, method, compressed bytes, crc, declared size) each, so a
    member can declare what zipfile would never write."""
    body, directory = bytearray(), bytearray()
    for name, method, data, crc, size in members:
        encoded, offset = name.encode(), len(body)
        fields = (20, 0, method, 0, 0x21, crc, len(data), size, len(encoded))
        body += struct.pack("<4s5H3L2H", b"PK\x03\x04", *fields, 0) + encoded + data
        directory += struct.pack(
            "<4s6H3L5H2L", b"PK\x01\x02", 0x031E, *fields, 0, 0, 0, 0, 0o100644 << 16, offset
        )
        directory += encoded
    end = struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members), len(directory), len(body), 0
    )
    path.write_bytes(bytes(body + directory + end))


def _zeros_deflated(size: int) -> bytes:
    """A raw deflate stream of ``size`` zero bytes (a multiple of 16 MiB), made in a moment:
    one fully flushed block, repeated, then an empty final block."""
    chunk = 16 << 20
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(chunk)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return block * (size // chunk) + b"\x03\x00"


@pytest.mark.timeout(60)
def test_a_zip_bomb_is_refused_before_anything_is_inflated(bundle: Path, tmp_path: Path) -> None:
    """findings.json inflates to 1.5 GiB from about 1.5 MB; facts.json declares 100 bytes but
    inflates to 1.5 GiB too. Neither is inflated past its declared size or the limits."""
    huge = 3 << 29  # 1.5 GiB
    bomb = _zeros_deflated(huge)
    crc = 0
    for _ in range(huge // (16 << 20)):
        crc = zlib.crc32(bytes(16 << 20), crc)
    with zipfile.ZipFile(bundle) as archive:
        members = [
            (info.filename, zipfile.ZIP_STORED, data, zlib.crc32(data), len(data))
            for info in archive.infolist()
            if info.filename not in ("findings.json", "facts.json")
            for data in [archive.read(info)]
        ]
    members += [
        ("findings.json", zipfile.ZIP_DEFLATED, bomb, crc, huge),
        ("facts.json", zipfile.ZIP_DEFLATED, bomb, crc, 100),
    ]
    forged = tmp_path / "bomb.zip"
    _raw_zip(forged, members)
    assert forged.stat().st_size < 8 << 20

    tracemalloc.start()
    try:
        began = time.monotonic()
        report = verify_path(forged)
        seconds = time.monotonic() - began
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seconds < 30 and peak < 200 << 20, (seconds, peak)
    messages = {(p.check, p.subject): p.message for p in report.problems}
    assert "more than the" in messages[("bundle", "findings.json")]
    assert "more than the" in messages[("findings", "findings.json")]
    assert "not read" in messages[("bundle", "facts.json")]


@pytest.mark.timeout(30)
def test_a_recursive_view_in_a_bundled_index_is_refused_before_any_query(
    bundle: Path, tmp_path: Path
) -> None:
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(unpacked)
    conn = sqlite3.connect(unpacked / INDEX_FILE)
    with conn:
        conn.execute("DROP TABLE pending")
        conn.execute(
            "CREATE VIEW pending AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 "
            "FROM c) SELECT x AS id, 'ab' AS sha256 FROM c"
        )
    conn.close()
    doctored = (unpacked / INDEX_FILE).read_bytes()
    rewrite(bundle, lambda entries: entries.__setitem__(INDEX_FILE, doctored))
    report = verify_path(bundle)
    assert ("bundle", INDEX_FILE) in problems(report)
    assert any("unexpected view 'pending'" in p.message for p in report.problems)


@pytest.mark.timeout(30)
def test_an_unzipped_bundle_with_a_fifo_or_a_linked_folder_is_refused_unopened(
    bundle: Path, tmp_path: Path
) -> None:
    unpacked = tmp_path / "unzipped"
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(unpacked)
    # A report is read (for the signer it names): opened, a FIFO would wait forever.
    (unpacked / "report.en.html").unlink()
    os.mkfifo(unpacked / "report.en.html")
    shard = next(p for p in (unpacked / "evidence" / "objects").iterdir())
    shard.rename(tmp_path / "moved")
    shard.symlink_to(tmp_path / "moved", target_is_directory=True)
    found = problems(verify_path(unpacked))
    assert ("layout", "report.en.html") in found
    assert ("layout", f"evidence/objects/{shard.name}") in found
    assert ("bundle", "report.en.html") in found


# -- packing: no link, no special file, a private zip -----------------------------------------


def test_bundle_refuses_a_link_or_a_special_file_among_the_run_files(
    failing_run: Path, key: Path, tmp_path: Path
) -> None:
    secret = key.read_bytes()
    (failing_run / "findings.sarif").unlink()
    (failing_run / "findings.sarif").symlink_to(key)
    with pytest.raises(BundleError, match=r"findings\.sarif \(a symbolic link\)"):
        bundle_files(failing_run)
    with pytest.raises(BundleError, match=r"findings\.sarif"):
        create_bundle(failing_run, tmp_path / "never.zip", key)
    # Even handed the name directly, the packer opens no link.
    with pytest.raises(BundleError, match="refusing to bundle it"):
        write_bundle(
            failing_run, ["findings.sarif"], tmp_path / "x.zip", run_id=RUN_ID, key=None, created=""
        )
    assert not (tmp_path / "never.zip").exists() and not (tmp_path / "x.zip").exists()
    assert not list(tmp_path.glob(".*.tmp"))
    (failing_run / "findings.sarif").unlink()
    os.mkfifo(failing_run / "findings.sarif")
    with pytest.raises(BundleError, match=r"findings\.sarif \(a FIFO\)"):
        bundle_files(failing_run)
    assert secret == key.read_bytes()


def test_the_bundle_zip_is_private(bundle: Path) -> None:
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o600


def test_rendering_again_renews_the_seal_and_the_run_still_verifies(
    bundle: Path, failing_run: Path
) -> None:
    """Bundling renders the reports again (naming the signer): the run folder's seal is
    renewed for them, and the audit's other files keep their hashes."""
    report = verify_path(failing_run)
    assert report.intact, [str(p) for p in report.problems]
    assert report.seal_generation is not None and report.seal_generation >= 2
    findings = failing_run / "findings.json"
    findings.write_bytes(findings.read_bytes().replace(b'"fail"', b'"pass"'))
    render_reports(failing_run)  # renders the forged verdicts, and seals the reports only
    assert ("seal", "findings.json") in problems(verify_path(failing_run))


# -- a run whose fails were waived ---------------------------------------------------------------


def replay_terminal_usb(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Collection replaced by the terminal-usb recording (term-2 fails the removable-media
    control), stored as the run's one artifact; the scenario's inventory. Every fact cites
    that artifact (the recording's own hashes name artifacts this run does not hold), so the
    run's evidence verifies and it can be bundled."""
    _, recorded = recording("terminal-usb")
    recorded_file = RECORDINGS / "terminal-usb" / RECORDING_FILE

    def replay(_inventory: object, store: EvidenceStore, _scope: object) -> dict[str, Any]:
        now = datetime.now(UTC)
        ref = store.add(
            recorded_file.read_bytes(),
            probe="recording",
            command=f"replay {recorded_file.name}",
            host=None,
            started=now,
            finished=now,
            media_type="application/gzip",
        )
        return {host: citing(attempt, ref) for host, attempt in recorded.collection.items()}

    monkeypatch.setattr(audit, "collect_inventory", replay)
    monkeypatch.setattr(audit, "collect_windows_inventory", lambda *_: {})
    return RECORDINGS / "terminal-usb" / INVENTORY_FILE


def citing(attempt: Attempt[HostFacts], ref: str) -> Attempt[HostFacts]:
    facts = attempt.value
    if facts is not None:
        facts = facts.model_copy(update={"evidence": dict.fromkeys(facts.evidence, ref)})
    return dataclasses.replace(attempt, value=facts, evidence=[ref] if attempt.evidence else [])


def waived_audit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A whole offline audit of the terminal-usb recording run with --waivers (its one fail
    waived): the run folder, sealed with its waivers.yaml."""
    inventory = replay_terminal_usb(monkeypatch)
    path = write_waivers(tmp_path, TERMINAL_WAIVER.format(expires="2999-12-31"))
    out = tmp_path / "waived"
    run_audit(inventory, out, SilentObserver(), AuditOptions(network_probes=False), waivers=path)
    assert (out / WAIVERS_COPY).read_bytes() == path.read_bytes()
    [fail] = [f for f in read_findings(out / "findings.json").findings if f.status is Status.FAIL]
    assert fail.waiver is not None and fail.waiver.in_force
    return out


def test_the_bundle_of_an_audit_with_waivers_carries_them_and_verifies(
    monkeypatch: pytest.MonkeyPatch, key: Path, tmp_path: Path
) -> None:
    run_dir = waived_audit(monkeypatch, tmp_path)
    bundle = create_bundle(run_dir, tmp_path / "waived.zip", key).path
    report = verify_path(bundle, trusted_fingerprint=trusted(key))
    assert report.intact, [str(p) for p in report.problems]
    with zipfile.ZipFile(bundle) as archive:
        assert archive.read(WAIVERS_COPY) == (run_dir / WAIVERS_COPY).read_bytes()
        manifest = json.loads(archive.read(BUNDLE_MANIFEST))
    assert WAIVERS_COPY in {entry["path"] for entry in manifest["files"]}
    # The copy is covered by the signed manifest: a later edit of the waivers is named.
    rewrite(bundle, lambda entries: entries.update({WAIVERS_COPY: b"waivers: []\n"}))
    assert ("bundle", WAIVERS_COPY) in problems(verify_path(bundle))


def test_auditor_bundle_then_verify_of_a_run_reported_with_waivers_is_intact(
    failing_run: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    keyfile = tmp_path / "cli.key"
    assert runner.invoke(cli(), ["keygen", "--out", str(keyfile)]).exit_code == 0
    accepted = write_waivers(tmp_path, SAMPLE_WAIVERS)
    waived = runner.invoke(cli(), ["report", str(failing_run), "--waivers", str(accepted)])
    assert waived.exit_code == 0, waived.output
    out = tmp_path / "waived.zip"
    made = runner.invoke(cli(), ["bundle", str(failing_run), "--out", str(out), "-k", str(keyfile)])
    assert made.exit_code == 0, made.output
    result = runner.invoke(cli(), ["verify", str(out), "--trusted-key", f"{keyfile}.pub"])
    assert result.exit_code == ExitCode.OK, result.output
    assert "INTACT" in result.output
    # Without the waivers it applied, the bundle no longer verifies: the seal names the copy.
    rewrite(out, lambda entries: entries.pop(WAIVERS_COPY))
    missing = runner.invoke(cli(), ["verify", str(out), "--trusted-key", f"{keyfile}.pub"])
    assert missing.exit_code == ExitCode.FAIL
    assert WAIVERS_COPY in missing.output and "missing" in missing.output
