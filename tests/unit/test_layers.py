"""The import contract of pyproject.toml ([tool.importlinter]) holds for the tree, and bites:
one import that points up, or one product module that imports the lab, breaks `make lint`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("auditor", "probes", "topology", "policies", "lab")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """The product's and the lab's Python modules and the contract, copied."""
    for package in PACKAGES:
        for source in (ROOT / package).rglob("*.py"):
            if "image" in source.relative_to(ROOT / package).parts[:1]:
                continue  # the lab image's own files are not modules of the package
            target = tmp_path / source.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    shutil.copyfile(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _append(path: Path, line: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")


def test_the_tree_keeps_every_contract(tree: Path) -> None:
    result = _lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_probe_that_imports_the_command_line_breaks_the_layers(tree: Path) -> None:
    _append(tree / "probes" / "ssh.py", "import auditor.cli.main  # noqa")
    result = _lint(tree)
    assert result.returncode != 0
    assert "Layers only point down BROKEN" in result.stdout
    assert "probes.ssh -> auditor.cli.main" in result.stdout


def test_the_domain_importing_a_probe_breaks_the_leaf(tree: Path) -> None:
    _append(tree / "auditor" / "domain" / "facts.py", "import probes.ssh  # noqa")
    result = _lint(tree)
    assert result.returncode != 0
    assert "The domain imports nothing of the project BROKEN" in result.stdout


def test_a_product_module_importing_the_lab_is_refused(tree: Path) -> None:
    _append(tree / "auditor" / "report" / "html.py", "import lab.model  # noqa")
    result = _lint(tree)
    assert result.returncode != 0
    assert "The product never imports the lab BROKEN" in result.stdout


def test_topology_and_probes_stay_independent(tree: Path) -> None:
    _append(tree / "topology" / "graph.py", "import probes.ssh  # noqa")
    result = _lint(tree)
    assert result.returncode != 0
    assert "topology.graph -> probes.ssh" in result.stdout
