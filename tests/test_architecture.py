"""The layers stated in pyproject.toml ([tool.importlinter]) hold, and the check would notice a
breach: an upward import, a model import in the engine, an import cycle, a node pack importing another."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.project import ROOT

LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())",
        "--no-cache"]


def lint(cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(pythonpath or ROOT)}
    return subprocess.run(LINT, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_import_contracts_hold():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 kept, 0 broken" in result.stdout


@pytest.fixture
def tree(tmp_path):
    """A copy of the two packages and the contracts, to break on purpose."""
    shutil.copytree(ROOT / "nodeflow", tmp_path / "nodeflow", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "nodes", tmp_path / "nodeflow_nodes", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def add_import(tree: Path, module: str, statement: str) -> None:
    path = tree.joinpath(*module.split(".")).with_suffix(".py")
    path.write_text(path.read_text() + f"\n{statement}  # deliberately breaks the layers\n")


def test_the_unchanged_copy_passes(tree):
    result = lint(tree, tree)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("module, statement, broken", [
    ("nodeflow.runtime.paths", "import nodeflow.gui.app", "nodeflow.runtime.paths -> nodeflow.gui.app"),
    ("nodeflow.models.unet", "from nodeflow.loading import files", "nodeflow.models.unet -> nodeflow.loading.files"),
    ("nodeflow.sampling.ksampler", "import nodeflow_nodes.sampling", "nodeflow.sampling.ksampler -> nodeflow_nodes"),
    ("nodeflow.engine.executor", "import nodeflow.models.unet", "nodeflow.engine.executor -> nodeflow.models.unet"),
    ("nodeflow.models.layers", "import nodeflow.models.unet", "- .layers -> .unet"),  # a cycle: unet imports layers
    ("nodeflow_nodes.lora", "from nodeflow_nodes import loaders", "nodeflow_nodes.lora -> nodeflow_nodes.loaders"),
    ("nodeflow.gui.session", "import dearpygui.dearpygui", "nodeflow.gui.session -> dearpygui"),
])
def test_a_back_import_breaks_the_contract(tree, module, statement, broken):
    add_import(tree, module, statement)
    result = lint(tree, tree)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and broken in result.stdout, result.stdout
    assert "0 broken" not in result.stdout
