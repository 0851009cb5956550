"""Offline verification: every kind of tampering is caught and named; a killed run verifies."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from auditor.cli.exitcodes import ExitCode
from auditor.cli.verify import register
from auditor.evidence.store import (
    INDEX_FILE,
    MANIFEST_FILE,
    TMP_DIR,
    EvidenceStore,
    NotARunError,
    genesis,
    next_chain,
    object_path,
    seal_run,
)
from auditor.evidence.verify import Limits, Problem, VerificationReport, verify_run

RUN_ID = "run-verify-test"
T = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


#: The run files the fixture's audit seals (some absent, as a run without reports has them).
SEALED = ["findings.json", "facts.json", "report.en.html"]


def make_run(
    run_dir: Path, count: int = 5, close: bool = True, *, sealed: bool = False
) -> list[str]:
    """A run of ``count`` artifacts; ``sealed``: with findings.json and facts.json, sealed at
    its end as an audit seals it."""
    store = EvidenceStore.create(run_dir, RUN_ID)
    refs = [
        store.add(
            f"artifact {n}\n".encode(),
            probe="ssh-collector",
            command=f"cmd {n}",
            host=f"host-{n}",
            started=T,
            finished=T,
        )
        for n in range(1, count + 1)
    ]
    if close:
        store.close()
    if sealed:
        write_findings(run_dir, refs)
        (run_dir / "facts.json").write_text('{"host-1": {}}\n')
        seal_run(run_dir, SEALED)
    return refs


def write_findings(run_dir: Path, refs: list[str], run_id: str = RUN_ID) -> None:
    document = {
        "run": {"id": run_id, "started": "s", "finished": "f"},
        "findings": [
            {
                "control": "recv-no-outbound",
                "subject": "recv-srv",
                "status": "pass",
                "evidence": refs[:2],
                "path": [{"host": "recv-srv", "direction": "output", "evidence": refs[2:3]}],
            }
        ],
    }
    (run_dir / "findings.json").write_text(json.dumps(document))


def writable(path: Path) -> Path:
    path.chmod(0o644)  # objects are stored read-only
    return path


def index(run_dir: Path) -> sqlite3.Connection:
    return sqlite3.connect(run_dir / INDEX_FILE, isolation_level=None)


def problems_of(report: VerificationReport) -> list[tuple[str, str]]:
    return [(p.check, p.subject) for p in report.problems]


@pytest.fixture
def run(tmp_path: Path) -> tuple[Path, list[str]]:
    run_dir = tmp_path / "run"
    refs = make_run(run_dir, sealed=True)
    return run_dir, refs


def test_an_untouched_run_is_intact(run: tuple[Path, list[str]]) -> None:
    run_dir, _ = run
    report = verify_run(run_dir)
    assert report.problems == []
    assert report.intact
    assert report.run_id == RUN_ID
    assert report.artifact_count == 5
    assert report.closed and report.manifest_present and report.findings_present
    assert report.sealed_files == 2 and report.seal_generation == 1
    assert report.notes == []
    # Intact, never authenticated: a run folder is signed by no one.
    assert not report.authenticated and report.unauthenticated_reason()


def test_a_changed_byte_in_an_artifact_names_that_artifact(run: tuple[Path, list[str]]) -> None:
    run_dir, refs = run
    path = writable(run_dir / object_path(refs[2].removeprefix("sha256:")))
    content = bytearray(path.read_bytes())
    content[0] ^= 0x01
    path.write_bytes(bytes(content))

    report = verify_run(run_dir)
    assert problems_of(report) == [("object", f"artifact #3 {refs[2]}")]
    assert "content changed" in report.problems[0].message


def test_a_removed_artifact_is_reported_missing(run: tuple[Path, list[str]]) -> None:
    run_dir, refs = run
    (run_dir / object_path(refs[0].removeprefix("sha256:"))).unlink()
    report = verify_run(run_dir)
    assert problems_of(report) == [("object", f"artifact #1 {refs[0]}")]
    assert "missing" in report.problems[0].message


def test_an_added_object_is_reported_unreferenced(run: tuple[Path, list[str]]) -> None:
    run_dir, _ = run
    sha = "ab" * 32
    planted = run_dir / object_path(sha)
    planted.parent.mkdir(parents=True, exist_ok=True)
    planted.write_bytes(b"planted after the fact\n")
    stray = run_dir / "evidence" / "notes.txt"
    stray.write_text("hello")

    report = verify_run(run_dir)
    assert sorted(problems_of(report)) == [
        ("layout", "evidence/notes.txt"),
        ("object", object_path(sha)),
    ]
    message = next(p.message for p in report.problems if p.check == "object")
    assert "not referenced" in message and "hashes to" in message


def test_reordered_rows_break_the_chain_at_and_after_each_moved_row(
    run: tuple[Path, list[str]],
) -> None:
    run_dir, refs = run
    with index(run_dir) as conn:
        conn.execute("UPDATE artifacts SET seq = -2 WHERE seq = 2")
        conn.execute("UPDATE artifacts SET seq = 2 WHERE seq = 4")
        conn.execute("UPDATE artifacts SET seq = 4 WHERE seq = -2")

    report = verify_run(run_dir)
    chain = [p.subject for p in report.problems if p.check == "chain"]
    # A moved row breaks its own link (its seq is hashed) and the next row's (its predecessor
    # changed); row 1 is untouched.
    assert chain == [
        f"artifact #2 {refs[3]}",
        f"artifact #3 {refs[2]}",
        f"artifact #4 {refs[1]}",
        f"artifact #5 {refs[4]}",
    ]
    # The untouched manifest still lists the original order: it disagrees on both rows.
    manifest = {p.subject for p in report.problems if p.check == "manifest"}
    assert manifest == {f"artifact #2 {refs[3]}", f"artifact #4 {refs[1]}"}


def test_a_removed_row_leaves_a_gap_and_breaks_the_next_link(
    run: tuple[Path, list[str]],
) -> None:
    run_dir, refs = run
    with index(run_dir) as conn:
        conn.execute("DELETE FROM artifacts WHERE seq = 3")

    report = verify_run(run_dir)
    assert ("sequence", "artifact #3") in problems_of(report)
    assert ("chain", f"artifact #4 {refs[3]}") in problems_of(report)
    # Its object is now referenced by nothing, and findings.json cites it.
    assert ("object", object_path(refs[2].removeprefix("sha256:"))) in problems_of(report)
    findings = [p for p in report.problems if p.check == "findings"]
    assert [p.message for p in findings] == [f"cites {refs[2]!r}, which is not in the evidence"]


def test_an_edited_index_row_is_pinned_to_that_row(run: tuple[Path, list[str]]) -> None:
    run_dir, refs = run
    with index(run_dir) as conn:
        conn.execute("UPDATE artifacts SET exit_status = 1 WHERE seq = 2")

    report = verify_run(run_dir)
    assert problems_of(report) == [
        ("chain", f"artifact #2 {refs[1]}"),
        ("manifest", f"artifact #2 {refs[1]}"),
    ]
    assert report.problems[1].message.endswith("in: exit_status")


def test_a_rewritten_chain_still_disagrees_with_the_manifest(
    run: tuple[Path, list[str]],
) -> None:
    """Editing a row and recomputing every chain hash after it defeats the chain alone; the
    manifest and the seal (which name the chain head) catch it, unless they are rewritten too:
    only a bundle's signature by a trusted key stands in the way of that."""
    run_dir, _ = run
    store = EvidenceStore.open(run_dir)
    records = store.artifacts()
    store.close()
    previous = genesis(RUN_ID)
    with index(run_dir) as conn:
        for record in records:
            meta = record.metadata()
            if record.seq == 1:
                meta["command"] = "innocent"
            chain = next_chain(previous, meta)
            conn.execute(
                "UPDATE artifacts SET command = ?, chain = ? WHERE seq = ?",
                (meta["command"], chain, record.seq),
            )
            previous = chain

    report = verify_run(run_dir)
    assert {p.check for p in report.problems} == {"manifest", "seal"}
    assert ("manifest", "chain_head") in problems_of(report)
    assert ("seal", "run") in problems_of(report)


def test_an_unreadable_index_row_is_reported(run: tuple[Path, list[str]]) -> None:
    run_dir, _ = run
    with index(run_dir) as conn:
        conn.execute("UPDATE artifacts SET redactions = 'not json' WHERE seq = 5")
    report = verify_run(run_dir)
    assert ("index", "row with seq 5") in problems_of(report)


def test_an_edited_manifest_is_reported(run: tuple[Path, list[str]]) -> None:
    run_dir, _ = run
    path = run_dir / MANIFEST_FILE
    manifest = json.loads(path.read_text())
    manifest["count"] = 4
    manifest["artifacts"].pop()
    path.write_text(json.dumps(manifest))

    report = verify_run(run_dir)
    assert ("manifest", "count") in problems_of(report)
    assert any(p.message == "in the index, not in the manifest" for p in report.problems)


def test_a_removed_manifest_of_a_closed_run_is_reported(run: tuple[Path, list[str]]) -> None:
    run_dir, _ = run
    (run_dir / MANIFEST_FILE).unlink()
    assert problems_of(verify_run(run_dir)) == [("manifest", MANIFEST_FILE)]


def test_findings_of_another_run_are_reported(run: tuple[Path, list[str]]) -> None:
    run_dir, refs = run
    write_findings(run_dir, [*refs[:1], "sha256:" + "f" * 64], run_id="other")
    report = verify_run(run_dir)
    messages = [p.message for p in report.problems]
    assert "run id 'other' is not 'run-verify-test'" in messages
    assert f"cites {'sha256:' + 'f' * 64!r}, which is not in the evidence" in messages


def test_a_folder_without_evidence_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(NotARunError):
        verify_run(tmp_path)


def test_an_interrupted_run_verifies_from_its_index(tmp_path: Path) -> None:
    refs = make_run(tmp_path, count=3, close=False)
    report = verify_run(tmp_path)
    assert report.intact, report.problems
    assert report.artifact_count == 3
    assert not report.closed and not report.manifest_present
    assert any("interrupted before close" in note for note in report.notes)
    assert len(refs) == 3


def test_debris_of_an_interrupted_add_is_a_note_but_a_planted_object_is_a_problem(
    tmp_path: Path,
) -> None:
    """The state a kill leaves between writing an object and committing its row."""
    make_run(tmp_path, count=2, close=False)
    interrupted = hashlib.sha256(b"never indexed").hexdigest()
    with index(tmp_path) as conn:
        conn.execute("INSERT INTO pending (sha256) VALUES (?)", (interrupted,))
    for sha, content in ((interrupted, b"never indexed"), ("cd" * 32, b"planted")):
        path = tmp_path / object_path(sha)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    (tmp_path / TMP_DIR / "half-written.tmp").write_bytes(b"half")

    report = verify_run(tmp_path)
    assert problems_of(report) == [("object", object_path("cd" * 32))]
    assert any(interrupted in note for note in report.notes)
    assert any("1 temporary file(s)" in note for note in report.notes)


KILLED_WRITER = textwrap.dedent(
    """
    import sys, os
    from datetime import UTC, datetime
    from pathlib import Path
    from auditor.evidence.store import EvidenceStore

    store = EvidenceStore.create(Path(sys.argv[1]), "killed-run")
    n = 0
    while True:
        n += 1
        now = datetime.now(UTC)
        body = (f"artifact {n} " * (1 + n % 50)).encode() + os.urandom(n % 4096)
        ref = store.add(body, probe="loop", command=f"cmd {n}", host="h", started=now,
                        finished=now, media_type="application/octet-stream")
        print(ref, flush=True)
    """
)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kill_after", [1, 17, 60])
def test_a_run_killed_mid_write_still_verifies_and_holds_what_was_added(
    tmp_path: Path, kill_after: int
) -> None:
    run_dir = tmp_path / "killed"
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(run_dir)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    acknowledged = [writer.stdout.readline().strip() for _ in range(kill_after)]
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    acknowledged += [line.strip() for line in writer.stdout if line.strip()]

    report = verify_run(run_dir)
    assert report.intact, [str(p) for p in report.problems]
    store = EvidenceStore.open(run_dir)
    stored = [r.ref for r in store.artifacts()]
    assert stored[: len(acknowledged)] == acknowledged
    assert len(stored) - len(acknowledged) in (0, 1)  # at most the add the kill interrupted
    for ref in stored:
        store.read(ref)  # every committed row has its complete object
    store.close()


# -- the command ----------------------------------------------------------------------------


def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.callback()
    def root() -> None:
        """A root with a callback keeps ``verify`` a named subcommand, as in auditor.cli.main."""

    return app


def test_cli_exit_code_of_an_intact_run_folder_is_unauthenticated(
    run: tuple[Path, list[str]],
) -> None:
    """Exit 0 would say "authentic": a run folder is never signed, so 5, with a trusted key
    given or not."""
    for extra in ([], ["--trusted-fingerprint", "SHA256:" + "ab" * 32]):
        result = CliRunner().invoke(cli(), ["verify", str(run[0]), *extra])
        assert result.exit_code == ExitCode.UNAUTHENTICATED, result.output
        assert result.exit_code == 5  # documented in README and docs/evidence.md
        assert "UNAUTHENTICATED" in result.output and "never signed" in result.output
        assert RUN_ID in result.output


def test_cli_exit_code_is_fail_on_tampering_and_names_the_artifact(
    run: tuple[Path, list[str]],
) -> None:
    run_dir, refs = run
    (run_dir / object_path(refs[4].removeprefix("sha256:"))).unlink()
    result = CliRunner().invoke(cli(), ["verify", str(run_dir)], env={"COLUMNS": "250"})
    assert result.exit_code == ExitCode.FAIL
    assert "NOT INTACT" in result.output
    assert f"artifact #5 {refs[4]}" in result.output


def test_cli_exit_code_is_cannot_run_for_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli(), ["verify", str(tmp_path)])
    assert result.exit_code == ExitCode.CANNOT_RUN
    assert "not a run" in result.output


def test_problem_text_names_check_subject_and_message() -> None:
    problem = Problem("object", "artifact #1 sha256:ab", "missing")
    assert str(problem) == "[object] artifact #1 sha256:ab: missing"


# -- the seal of the run's files -------------------------------------------------------------


@pytest.mark.parametrize("name", ["findings.json", "facts.json"])
def test_a_changed_or_removed_run_file_breaks_the_seal(
    run: tuple[Path, list[str]], name: str
) -> None:
    run_dir, _ = run
    path = run_dir / name
    path.write_bytes(path.read_bytes().replace(b"}", b" }", 1))  # still valid JSON
    report = verify_run(run_dir)
    assert ("seal", name) in problems_of(report)
    assert "changed since the run was sealed" in str(report.problems)
    path.unlink()
    report = verify_run(run_dir)
    assert ("seal", name) in problems_of(report)
    assert any("sealed, but missing" in p.message for p in report.problems)


def test_a_file_the_seal_saw_absent_is_caught_when_it_appears(run: tuple[Path, list[str]]) -> None:
    run_dir, _ = run
    (run_dir / "report.en.html").write_text("<html>a report nobody rendered</html>")
    assert problems_of(verify_run(run_dir)) == [("seal", "report.en.html")]


def test_an_interrupted_run_has_no_seal_and_says_so(tmp_path: Path) -> None:
    make_run(tmp_path, count=2, close=False)
    report = verify_run(tmp_path)
    assert report.intact and report.seal_generation is None
    assert any("not sealed: the audit was interrupted" in note for note in report.notes)


# -- a verifier that cannot be exhausted or misled --------------------------------------------

HOSTILE = "evil\x1b[2J\x1b]0;pwned\x07\u202eelif"


def test_run_derived_text_reaches_the_terminal_escaped(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    store = EvidenceStore.create(run_dir, HOSTILE)
    store.add(b"x\n", probe="p", command="c", host=HOSTILE, started=T, finished=T)
    store.close()
    (run_dir / "evidence" / f"{HOSTILE}.txt").write_text("planted")  # a problem subject too
    result = CliRunner().invoke(cli(), ["verify", str(run_dir)], env={"COLUMNS": "250"})
    assert result.exit_code == ExitCode.FAIL, result.output
    for raw in ("\x1b", "\x07", "\u202e"):
        assert raw not in result.output
    assert "evil\\x1b[2J\\x1b]0;pwned\\x07\\u202eelif" in result.output


@pytest.mark.timeout(30)
def test_special_files_and_links_in_a_run_folder_are_refused_unopened(
    run: tuple[Path, list[str]], tmp_path: Path
) -> None:
    """A FIFO would hang a reader forever; a linked folder would have the verifier vouch for
    files elsewhere. Both are named as problems, and neither is followed nor opened."""
    run_dir, refs = run
    (run_dir / "findings.json").unlink()
    os.mkfifo(run_dir / "findings.json")
    planted = run_dir / object_path("ee" * 32)  # an unreferenced object is hashed: opened
    planted.parent.mkdir()
    os.mkfifo(planted)
    sha = refs[0].removeprefix("sha256:")
    shard = run_dir / object_path(sha)
    elsewhere = tmp_path / "elsewhere"
    shard.parent.rename(elsewhere)  # the objects still hash right, but not in the run
    shard.parent.symlink_to(elsewhere, target_is_directory=True)

    report = verify_run(run_dir)
    found = problems_of(report)
    assert ("layout", "findings.json") in found
    assert ("seal", "findings.json") in found
    assert ("layout", f"evidence/objects/{sha[:2]}") in found
    assert ("object", f"artifact #1 {refs[0]}") in found
    assert ("layout", object_path("ee" * 32)) in found
    assert "FIFO" in str(report.problems) and "symbolic link" in str(report.problems)


def test_an_index_that_is_a_link_is_not_opened(run: tuple[Path, list[str]], tmp_path: Path) -> None:
    run_dir, _ = run
    real = tmp_path / "real-index.sqlite"
    (run_dir / INDEX_FILE).rename(real)
    (run_dir / INDEX_FILE).symlink_to(real)
    report = verify_run(run_dir)
    assert ("layout", INDEX_FILE) in problems_of(report)
    assert ("index", INDEX_FILE) in problems_of(report)
    assert report.run_id is None  # nothing of it was read


RECURSIVE = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c)"


@pytest.mark.timeout(30)
def test_an_index_with_a_recursive_view_is_refused_before_any_query(
    run: tuple[Path, list[str]],
) -> None:
    """The rows are read with ORDER BY: over an endless view, that query would never end."""
    run_dir, _ = run
    columns = (
        "x AS seq, '' AS sha256, 0 AS size, NULL AS host, '' AS probe, '' AS command, "
        "NULL AS tool_version, NULL AS exit_status, '' AS media_type, '' AS started, "
        "'' AS finished, '{}' AS redactions, 0 AS redaction_applied, '' AS chain"
    )
    with index(run_dir) as conn:
        conn.execute("ALTER TABLE artifacts RENAME TO real_artifacts")
        conn.execute(f"CREATE VIEW artifacts AS {RECURSIVE} SELECT {columns} FROM c")
    report = verify_run(run_dir)
    messages = [p.message for p in report.problems if (p.check, p.subject) == ("index", INDEX_FILE)]
    assert any("not the evidence schema: unexpected view 'artifacts'" in m for m in messages)
    assert any("table 'artifacts' is missing" in m for m in messages)


def test_a_trigger_or_extra_table_in_the_index_is_refused(run: tuple[Path, list[str]]) -> None:
    run_dir, _ = run
    with index(run_dir) as conn:
        conn.execute("CREATE TABLE extra (x)")
        conn.execute("CREATE TRIGGER t AFTER INSERT ON run BEGIN DELETE FROM artifacts; END")
    wrong = {p.message for p in verify_run(run_dir).problems}
    assert "not the evidence schema: unexpected table 'extra' (not read)" in wrong
    assert "not the evidence schema: unexpected trigger 't' (not read)" in wrong


def test_every_query_of_the_index_is_bounded_in_time(tmp_path: Path) -> None:
    from auditor.evidence.verify import _open_index

    path = tmp_path / "index.sqlite"
    sqlite3.connect(path).close()
    conn = _open_index(path, immutable=True, seconds=0.3)
    began = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="interrupt"):
        conn.execute(f"{RECURSIVE} SELECT count(*) FROM c").fetchone()
    assert time.monotonic() - began < 10
    conn.close()


def test_a_file_past_the_limits_is_refused_unread(run: tuple[Path, list[str]]) -> None:
    run_dir, _ = run
    small = Limits(document=64, member=1 << 20)
    report = verify_run(run_dir, small)
    refused = [p for p in report.problems if p.subject in ("findings.json", MANIFEST_FILE)]
    assert {p.check for p in refused} == {"findings", "manifest"}
    assert all("more than the 64" in p.message for p in refused)
