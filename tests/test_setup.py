"""The set-up the README's commands run (.ci/setup): what it installed is what the project
declares, the CPU build of torch stays on a machine without an NVIDIA GPU (no test reference
dragged in torchvision and a CUDA torch), and CI runs exactly the README's test command."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import shutil
import tomllib

import pytest
import torch

from tests.project import ROOT


def requirement_names() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + project["optional-dependencies"]["test"]
    names = []
    for requirement in requirements:
        if ";" in requirement and "python_version < '3.11'" in requirement:
            continue  # tomli: only below Python 3.11
        names.append(re.match(r"[A-Za-z0-9_.\-]+", requirement).group(0))
    return names


@pytest.mark.parametrize("name", requirement_names())
def test_every_declared_package_is_installed(name):
    assert importlib.metadata.version(name)


def test_k_diffusion_reference_is_installed_without_its_dependencies():
    assert importlib.util.find_spec("k_diffusion") is not None  # .ci/setup: pip install --no-deps
    assert importlib.util.find_spec("torchvision") is None, "a test reference pulled torchvision (and a CUDA torch)"


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="a machine with an NVIDIA GPU gets pip's CUDA torch")
def test_the_cpu_build_of_torch_stays():
    assert torch.version.cuda is None, f"torch {torch.__version__} is a CUDA build"


def test_spandrel_is_installed_as_setup_pins_it_without_torchvision():
    pinned = re.search(r'--no-deps "spandrel==([^"]+)"', (ROOT / ".ci" / "setup").read_text()).group(1)
    assert importlib.metadata.version("spandrel") == pinned
    assert importlib.util.find_spec("torchvision") is None, "spandrel's dependencies were installed (torchvision)"


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="a machine with an NVIDIA GPU gets pip's CUDA torch")
def test_no_cuda_build_came_in_with_a_dependency():
    """torch is the CPU wheel and no CUDA runtime wheel (nvidia-*, what a CUDA torch or torchvision
    pulls) is installed: nothing replaced or shadowed the CPU build."""
    assert torch.__version__.endswith("+cpu") and torch.version.cuda is None, torch.__version__
    cuda_wheels = sorted(d.metadata["Name"] for d in importlib.metadata.distributions()
                         if (d.metadata["Name"] or "").lower().startswith("nvidia-"))
    assert cuda_wheels == []


def test_ci_runs_the_readmes_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.search(r"```bash\n(.*?)```", readme, re.S).group(1).splitlines()
    test_command = commands[1].split("#")[0].strip()
    assert test_command == "bash .ci/setup --test && python3 -m pytest"
    assert (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1] == test_command
