"""The wheel: the lab ships as a package of its own, finds its data beside its modules (not
through the checkout's folders), adds ``auditor lab`` through its entry point, and the product
runs without it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PIP = (sys.executable, "-m", "pip")
SOURCES = ("auditor", "probes", "topology", "policies", "lab", "pyproject.toml", "README.md")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built offline from a copy of the sources (no build/ in the tree)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    source.mkdir()
    for name in SOURCES:
        original = ROOT / name
        if original.is_dir():
            shutil.copytree(original, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copyfile(original, source / name)
    out = work / "dist"
    subprocess.run(
        [*PIP, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel installed into a folder of its own (its dependencies are the venv's)."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [*PIP, "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return target


def _python(site: Path, code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` with the installed copy first on the path, from outside the checkout."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=site.parent,
        env={"PYTHONPATH": str(site), "PATH": "/usr/sbin:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_wheel_carries_the_lab_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "lab/scenarios/baseline/scenario.yaml",
        "lab/containers.conf",
        "lab/image/rootfs/usr/local/lib/lab/pipeline.py",
        "lab/hosts/recv-srv/rootfs/etc/nftables.conf",
        "policies/controls/recv-no-outbound.yaml",
        "auditor/report/templates/report.html.j2",
    ):
        assert expected in names, expected
    assert not any(n.startswith("tests/") for n in names)


def test_the_installed_lab_finds_its_data_beside_its_modules(installed: Path) -> None:
    result = _python(
        installed,
        "import lab.paths as p, lab.scenario as s; "
        "print(p.LAB_DATA); print(s.load_scenario('recv-egress').expect_fail)",
    )
    assert result.returncode == 0, result.stderr
    data, expected = result.stdout.splitlines()
    assert Path(data) == installed / "lab"
    assert "recv-no-outbound" in expected


def test_the_installed_auditor_has_the_lab_commands(installed: Path) -> None:
    result = _python(
        installed,
        "import sys; sys.argv = ['auditor', 'lab', '--help']\n"
        "import auditor.cli.main as m; print(m.__file__); m.main()",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(str(installed / "auditor"))
    for command in ("build-image", "up", "down", "status", "inventory"):
        assert command in result.stdout


def test_the_product_runs_without_the_lab(installed: Path) -> None:
    result = _python(
        installed,
        "import sys; sys.modules['lab'] = None; sys.argv = ['auditor', '--help']\n"
        "import auditor.cli.main as m; m.main()",
    )
    assert result.returncode == 0, result.stderr
    assert "audit" in result.stdout and "verify" in result.stdout
    assert "command group 'lab' is not available" in result.stderr
