"""Where the auditor writes as root: never through a symlink, into no folder it should not.

``auditor.domain.files`` (atomic writes replace a symlink rather than follow it; appends and
reads refuse one; modes exact whatever the umask) and ``auditor audit --out`` (a symlink, a
file, or a non-empty folder that is no earlier run is refused before anything is sent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from auditor.audit.orchestrator import EARLIER_RUN_SIGNS
from auditor.cli.main import app
from auditor.domain.files import (
    UnsafePathError,
    append_bytes,
    check_output_dir,
    read_text_nofollow,
    write_text_atomically,
)
from auditor.watch.state import MARKER_FILE

INVENTORIES = Path(__file__).parents[1] / "data" / "inventory"
#: Accepted by the loader, refused by the audit right after ("no organisation host"): an audit
#: that gets this far passed the --out check, and still sends nothing.
NO_HOSTS = (
    (INVENTORIES / "minimal.yaml")
    .read_text(encoding="utf-8")
    .replace("roles: [receiving]", "roles: [office]")
    .replace("    ssh: 10.98.21.20\n", "")
)


def _target(tmp_path: Path) -> Path:
    target = tmp_path / "passwd"
    target.write_text("root:x:0:0\n")
    return target


def _mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o777


# -- auditor.domain.files -----------------------------------------------------------------------


def test_an_atomic_write_replaces_a_symlink_and_leaves_its_target(tmp_path: Path) -> None:
    target = _target(tmp_path)
    path = tmp_path / "findings.json"
    path.symlink_to(target)
    write_text_atomically(path, "{}\n")
    assert target.read_text() == "root:x:0:0\n"
    assert not path.is_symlink() and path.read_text() == "{}\n"
    assert _mode(path) == 0o600


def test_an_atomic_write_can_refuse_a_symlink_instead(tmp_path: Path) -> None:
    target = _target(tmp_path)
    path = tmp_path / "report.en.html"
    path.symlink_to(target)
    with pytest.raises(UnsafePathError, match=r"report\.en\.html is a symbolic link"):
        write_text_atomically(path, "<html>", refuse_link=True)
    assert path.is_symlink() and target.read_text() == "root:x:0:0\n"


def test_atomic_modes_are_exact_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        write_text_atomically(tmp_path / "metrics.prom", "x 1\n", mode=0o644)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "metrics.prom") == 0o644
    write_text_atomically(tmp_path / "facts.json", "{}")
    assert _mode(tmp_path / "facts.json") == 0o600  # the default: host data
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_the_temporary_file_is_never_a_prepared_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Someone guessed the temporary name and planted a symlink there: the write must fail,
    # not write through it (O_CREAT | O_EXCL | O_NOFOLLOW).
    target = _target(tmp_path)
    monkeypatch.setattr("auditor.domain.files.secrets.token_hex", lambda n: "guessed")
    (tmp_path / ".out.json.guessed.tmp").symlink_to(target)
    with pytest.raises(FileExistsError):
        write_text_atomically(tmp_path / "out.json", "{}")
    assert target.read_text() == "root:x:0:0\n"
    assert (tmp_path / ".out.json.guessed.tmp").is_symlink()  # not ours to remove, left as is


def test_append_and_read_refuse_a_symlink(tmp_path: Path) -> None:
    target = _target(tmp_path)
    path = tmp_path / "drift.jsonl"
    path.symlink_to(target)
    with pytest.raises(UnsafePathError, match="refusing to append"):
        append_bytes(path, b"line\n")
    with pytest.raises(UnsafePathError, match="refusing to read"):
        read_text_nofollow(path)
    assert target.read_text() == "root:x:0:0\n"
    path.unlink()
    append_bytes(path, b"one\n")
    append_bytes(path, b"two\n")
    assert read_text_nofollow(path) == "one\ntwo\n" and _mode(path) == 0o600
    with pytest.raises(FileNotFoundError):
        read_text_nofollow(tmp_path / "absent")


def test_output_folders(tmp_path: Path) -> None:
    signs = ["findings.json"]
    check_output_dir(tmp_path / "new", signs)  # missing: fine
    (tmp_path / "empty").mkdir()
    check_output_dir(tmp_path / "empty", signs)
    (tmp_path / "earlier").mkdir()
    (tmp_path / "earlier" / "findings.json").write_text("{}")
    check_output_dir(tmp_path / "earlier", signs)
    (tmp_path / "link").symlink_to(tmp_path / "empty")
    with pytest.raises(UnsafePathError, match="link is a symbolic link"):
        check_output_dir(tmp_path / "link", signs)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0\n")
    with pytest.raises(UnsafePathError, match="not an earlier run"):
        check_output_dir(tmp_path / "etc", signs)
    (tmp_path / "earlier" / "report.en.html").symlink_to(tmp_path / "etc" / "passwd")
    with pytest.raises(UnsafePathError, match=r"holds symbolic links \(report.en.html\)"):
        check_output_dir(tmp_path / "earlier", signs)
    with pytest.raises(UnsafePathError, match="not a folder"):
        check_output_dir(tmp_path / "etc" / "passwd", signs)


# -- auditor audit --out --------------------------------------------------------------------------


def _audit(tmp_path: Path, out: Path) -> tuple[int, str]:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(NO_HOSTS, encoding="utf-8")
    result = CliRunner().invoke(app, ["audit", "--inventory", str(inventory), "--out", str(out)])
    return result.exit_code, result.output


def test_audit_refuses_a_symlink_as_out(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "run"
    out.symlink_to(elsewhere)
    code, output = _audit(tmp_path, out)
    assert code == 3, output
    assert "cannot audit" in output and "run is a symbolic link" in output
    assert list(elsewhere.iterdir()) == []


def test_audit_refuses_a_folder_that_is_no_earlier_run(tmp_path: Path) -> None:
    out = tmp_path / "etc"
    out.mkdir()
    (out / "passwd").write_text("root:x:0:0\n")
    code, output = _audit(tmp_path, out)
    assert code == 3, output
    assert "is not empty and is not an earlier run of the auditor" in output
    assert sorted(p.name for p in out.iterdir()) == ["passwd"]


@pytest.mark.parametrize("sign", ["findings.json", MARKER_FILE, None])
def test_audit_accepts_a_new_empty_or_earlier_run_folder(tmp_path: Path, sign: str | None) -> None:
    out = tmp_path / "run"
    out.mkdir()
    if sign is not None:
        (out / sign).write_text("{}")
    code, output = _audit(tmp_path, out)
    # Past the --out check, stopped by the inventory (nothing to audit, nothing sent).
    assert code == 3, output
    assert "no organisation host to audit" in output


def test_a_folder_watch_prepares_counts_as_an_earlier_run() -> None:
    assert MARKER_FILE in EARLIER_RUN_SIGNS
    assert "evidence/index.sqlite" in EARLIER_RUN_SIGNS
