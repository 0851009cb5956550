"""Writing files so that a reader never sees half of one, and never through a symbolic link.

The auditor runs as root in folders (run folders, the watch state folder) whose content it does
not fully control: a symlink planted at a name it writes would otherwise let it overwrite, append
to or truncate any file on the system. So:

* a whole file is written to a new temporary file in the same folder, created with
  O_CREAT | O_EXCL | O_NOFOLLOW (it cannot be a symlink someone prepared), then renamed over the
  destination. A rename replaces a symlink at the destination by the new file; it never writes
  to the link's target;
* an append (``append_bytes``) opens with O_NOFOLLOW and refuses a symlink;
* files holding host data are 0600 by default (``PRIVATE``), folders of such files 0700.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Collection
from pathlib import Path

from auditor.domain.errors import AuditorError

PRIVATE = 0o600  #: host data: readable by the auditor's own account only
PRIVATE_DIR = 0o700

_CREATE_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePathError(AuditorError):
    """A path the auditor was to write or read is a symbolic link, or not what it must be."""


def refuse_symlink(path: Path, purpose: str = "write") -> None:
    """Raise UnsafePathError if ``path`` itself (not its folder) is a symbolic link."""
    if path.is_symlink():
        raise UnsafePathError(
            f"{path} is a symbolic link; refusing to {purpose} through it (remove it first)"
        )


def write_bytes_atomically(
    path: Path, data: bytes, mode: int = PRIVATE, *, refuse_link: bool = False
) -> None:
    """Write via a new temporary file in the same folder, fsync, then rename: a reader sees the
    old file or the new one, never half of one. A symlink at ``path`` is replaced, never
    followed; with ``refuse_link`` it is refused instead (UnsafePathError), for files whose
    replacement the user should hear about. ``mode`` is set exactly (umask does not apply):
    0600 unless another account must read the file."""
    if refuse_link:
        refuse_symlink(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, _CREATE_NEW, PRIVATE)
    try:
        try:
            # fchmod on the descriptor: a chmod by name could be redirected by a swapped link.
            os.fchmod(fd, mode)
            _write_fully(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomically(
    path: Path, text: str, mode: int = PRIVATE, *, refuse_link: bool = False
) -> None:
    """``write_bytes_atomically`` of ``text`` in UTF-8."""
    write_bytes_atomically(path, text.encode("utf-8"), mode, refuse_link=refuse_link)


def append_bytes(path: Path, data: bytes, mode: int = PRIVATE) -> None:
    """Append ``data`` in one write on a file opened with O_APPEND, then fsync. The file is
    created with ``mode`` if missing; a symlink at ``path`` is refused (O_NOFOLLOW)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, mode)
    except OSError as exc:
        raise _link_error(exc, path, "append") from exc
    try:
        # One write: on O_APPEND it lands whole at the end, never interleaved with another.
        written = os.write(fd, data)
        if written != len(data):
            raise OSError(errno.EIO, f"short write: {written} of {len(data)} bytes", str(path))
        os.fsync(fd)
    finally:
        os.close(fd)


def read_text_nofollow(path: Path) -> str:
    """The text of ``path``, refusing a symlink there (UnsafePathError); other OSErrors as
    they come (FileNotFoundError for a missing file)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise _link_error(exc, path, "read") from exc
    with os.fdopen(fd, "rb") as handle:
        return handle.read().decode("utf-8")


def is_real_dir(path: Path) -> bool:
    """A directory itself, not a symlink to one (lstat)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) with the folder itself 0700; refuse a symlink."""
    refuse_symlink(path, "create a folder")
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    if not is_real_dir(path):
        raise UnsafePathError(f"{path} is not a folder")


def check_output_dir(path: Path, recognised: Collection[str]) -> None:
    """Refuse ``path`` as a folder to write a run into, unless it is missing, empty, or an
    earlier run of the auditor: a folder holding one of the ``recognised`` entries. A symlink
    is refused, and so is a run folder holding a symlink at its top level (the auditor never
    makes one, and would write at one of those names)."""
    refuse_symlink(path, "write a run")
    if not path.exists():
        return
    if not path.is_dir():
        raise UnsafePathError(f"{path} exists and is not a folder")
    entries = list(path.iterdir())
    if not entries:
        return
    if not any((path / name).exists() for name in recognised):
        raise UnsafePathError(
            f"{path} is not empty and is not an earlier run of the auditor (none of "
            f"{', '.join(sorted(recognised))}); give a new or empty folder"
        )
    links = sorted(e.name for e in entries if e.is_symlink())
    if links:
        raise UnsafePathError(
            f"{path} holds symbolic links ({', '.join(links)}); refusing to write a run there"
        )


def _write_fully(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _link_error(exc: OSError, path: Path, purpose: str) -> OSError | UnsafePathError:
    # O_NOFOLLOW on a symlink fails with ELOOP; name the real problem instead.
    if exc.errno == errno.ELOOP:
        return UnsafePathError(f"{path} is a symbolic link; refusing to {purpose} through it")
    return exc
