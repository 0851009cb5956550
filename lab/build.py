"""The lab's base image, built from Debian packages without any container registry.

Two stages, each cached under a tag that is a hash of what it is made from:

1. ``localhost/auditor-lab-rootfs:<h1>``: ``debootstrap --variant=minbase`` with the package
   list, then ``recipe.sh`` in a chroot, imported with ``podman import``. ``h1`` hashes the
   package list, the recipe and the mirror. This is the slow part (about a minute).
2. ``localhost/auditor-lab-base:<h2>``: the rootfs image plus the files under
   ``lab/image/rootfs/`` (init and pipeline scripts, sshd drop-in), committed with the init
   script as command. ``h2`` hashes ``h1`` and those files, so editing a script rebuilds
   only this quick stage.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lab.errors import LabError
from lab.paths import IMAGE_DIR
from lab.podman import clean_stderr, image_exists, podman, podman_env

Progress = Callable[[str], None]

ROOTFS_REPO = "localhost/auditor-lab-rootfs"
BASE_REPO = "localhost/auditor-lab-base"
SUITE = "bookworm"
#: Bump when this module changes what ends up in the image.
RECIPE_VERSION = "1"
INIT_COMMAND = '["/usr/local/sbin/lab-init"]'
APT_SOURCES = Path("/etc/apt/sources.list")
APT_SOURCES_DIR = Path("/etc/apt/sources.list.d")
FALLBACK_MIRROR = "http://deb.debian.org/debian"


@dataclass(frozen=True)
class ImageRecipe:
    packages: tuple[str, ...]
    mirror: str
    rootfs_tag: str
    base_tag: str

    @property
    def rootfs_ref(self) -> str:
        return f"{ROOTFS_REPO}:{self.rootfs_tag}"

    @property
    def base_ref(self) -> str:
        return f"{BASE_REPO}:{self.base_tag}"


def read_package_list(path: Path | None = None) -> tuple[str, ...]:
    text = (path or IMAGE_DIR / "packages.txt").read_text(encoding="utf-8")
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return tuple(line for line in lines if line)


def debian_mirror() -> str:
    """The first Debian mirror of the host's apt sources that serves bookworm's main."""
    for source_file in [APT_SOURCES, *sorted(APT_SOURCES_DIR.glob("*"))]:
        if not source_file.is_file():
            continue
        text = source_file.read_text(encoding="utf-8", errors="replace")
        parse = _deb822_mirrors if source_file.suffix == ".sources" else _one_line_mirrors
        for uri in parse(text):
            return uri
    return FALLBACK_MIRROR


def _one_line_mirrors(text: str) -> list[str]:
    found = []
    for line in text.splitlines():
        parts = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
        if len(parts) >= 4 and parts[0] == "deb" and parts[2] == SUITE and "main" in parts[3:]:
            found.append(parts[1])
    return found


def _deb822_mirrors(text: str) -> list[str]:
    found = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line.startswith(" "):
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        if (
            "deb" in fields.get("types", "").split()
            and SUITE in fields.get("suites", "").split()
            and "main" in fields.get("components", "").split()
        ):
            found += fields.get("uris", "").split()
    return found


def _overlay_files() -> list[Path]:
    root = IMAGE_DIR / "rootfs"
    return sorted(p for p in root.rglob("*") if p.is_file())


def _hash(parts: list[bytes]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()[:16]


def current_recipe() -> ImageRecipe:
    """The recipe as the repository describes it now, with its cache tags."""
    packages = read_package_list()
    mirror = debian_mirror()
    rootfs_tag = _hash(
        [
            RECIPE_VERSION.encode(),
            "\n".join(packages).encode(),
            mirror.encode(),
            (IMAGE_DIR / "recipe.sh").read_bytes(),
        ]
    )
    overlay_parts = [rootfs_tag.encode()]
    for path in _overlay_files():
        relative = path.relative_to(IMAGE_DIR / "rootfs")
        overlay_parts += [str(relative).encode(), oct(path.stat().st_mode).encode()]
        overlay_parts.append(path.read_bytes())
    return ImageRecipe(packages, mirror, rootfs_tag, _hash(overlay_parts))


def build_image(progress: Progress = print, force: bool = False) -> str:
    """Build the base image if the cached one does not match the recipe; return its reference."""
    recipe = current_recipe()
    if not force and image_exists(recipe.base_ref):
        progress(f"image {recipe.base_ref} is up to date")
        return recipe.base_ref
    if force or not image_exists(recipe.rootfs_ref):
        _build_rootfs(recipe, progress)
    else:
        progress(f"root file system {recipe.rootfs_ref} is cached")
    _build_base(recipe, progress)
    _remove_stale_images(recipe, progress)
    progress(f"image {recipe.base_ref} is ready")
    return recipe.base_ref


def _require_root_tools() -> None:
    if os.geteuid() != 0:
        raise LabError("building the lab image needs root (debootstrap, chroot)")
    if shutil.which("debootstrap") is None:
        raise LabError("debootstrap is not installed (apt-get install debootstrap)")


def _build_rootfs(recipe: ImageRecipe, progress: Progress) -> None:
    _require_root_tools()
    # /var/tmp: a tmpfs /tmp may be too small for ~400 MB of root file system.
    with tempfile.TemporaryDirectory(prefix="auditor-lab-rootfs-", dir="/var/tmp") as tmp:
        root = Path(tmp) / "root"
        log = Path(tmp) / "debootstrap.log"
        started = time.monotonic()
        progress(f"debootstrap {SUITE} from {recipe.mirror} ({len(recipe.packages)} packages)...")
        _run_logged(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(recipe.packages)}",
                SUITE,
                str(root),
                recipe.mirror,
            ],
            log,
            "debootstrap",
        )
        progress(f"  debootstrap done in {time.monotonic() - started:.0f} s; running recipe.sh")
        shutil.copy2(IMAGE_DIR / "recipe.sh", root / "tmp" / "recipe.sh")
        _run_logged(["chroot", str(root), "/bin/sh", "/tmp/recipe.sh"], log, "recipe.sh")
        (root / "tmp" / "recipe.sh").unlink()
        progress(f"  importing into podman as {recipe.rootfs_ref}...")
        _import_tree(root, recipe.rootfs_ref)
        progress(f"  root file system built in {time.monotonic() - started:.0f} s")


def _run_logged(cmd: list[str], log: Path, what: str) -> None:
    with log.open("a", encoding="utf-8") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
        raise LabError(f"{what} failed (exit {proc.returncode}): {' | '.join(tail)}")


def _import_tree(root: Path, reference: str) -> None:
    tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
    imported = subprocess.run(
        ["podman", "import", "--change", f"CMD={INIT_COMMAND}", "-", reference],
        stdin=tar.stdout,
        env=podman_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert tar.stdout is not None
    tar.stdout.close()
    if tar.wait() != 0 or imported.returncode != 0:
        raise LabError(f"podman import failed: {clean_stderr(imported.stderr)}")


def _build_base(recipe: ImageRecipe, progress: Progress) -> None:
    progress(f"adding lab/image/rootfs to make {recipe.base_ref}...")
    builder = f"auditor-lab-image-build-{recipe.base_tag}"
    podman("rm", "--force", "--ignore", builder)
    podman("create", "--name", builder, recipe.rootfs_ref)
    try:
        podman("cp", f"{IMAGE_DIR / 'rootfs'}/.", f"{builder}:/")
        podman("commit", "--quiet", "--change", f"CMD={INIT_COMMAND}", builder, recipe.base_ref)
    finally:
        podman("rm", "--force", "--ignore", builder)


def _remove_stale_images(recipe: ImageRecipe, progress: Progress) -> None:
    """Older tags of the lab's own two repositories only; images in use are kept."""
    listing = podman("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    keep = {recipe.rootfs_ref, recipe.base_ref}
    for reference in listing:
        ours = reference.startswith((ROOTFS_REPO + ":", BASE_REPO + ":"))
        if ours and reference not in keep and podman("rmi", reference, check=False).returncode == 0:
            progress(f"  removed stale image {reference}")


def current_image_reference() -> str:
    """The base image reference the repository's recipe calls for (built or not)."""
    return current_recipe().base_ref
