"""k-diffusion's sampling module as a test reference, loaded without its package __init__.

``import k_diffusion`` needs torchvision and more (its declared dependencies would replace the CPU
torch with a CUDA build); sampling.py itself only needs ``utils.append_dims``, scipy, torchdiffeq,
torchsde and tqdm. So a stand-in parent package with that one helper is registered, and the
installed sampling.py is imported from its file.
"""

from __future__ import annotations

import importlib.util
import sys
import types

import pytest


def load_sampling():
    """k_diffusion/sampling.py (sample_*, get_sigmas_*), imported under a stand-in package."""
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("k-diffusion is not installed (test reference)")
    for module in ("scipy", "torchdiffeq", "torchsde", "tqdm"):
        pytest.importorskip(module)
    name = "_kdiffusion_reference"
    if f"{name}.sampling" in sys.modules:
        return sys.modules[f"{name}.sampling"]
    package = types.ModuleType(name)
    package.__path__ = []
    utils = types.ModuleType(f"{name}.utils")

    def append_dims(x, target_dims):
        return x[(...,) + (None,) * (target_dims - x.ndim)]

    utils.append_dims = append_dims
    package.utils = utils
    sys.modules[name] = package
    sys.modules[f"{name}.utils"] = utils
    path = spec.submodule_search_locations[0] + "/sampling.py"
    module_spec = importlib.util.spec_from_file_location(f"{name}.sampling", path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[f"{name}.sampling"] = module
    module_spec.loader.exec_module(module)
    return module


def load_external():
    """k_diffusion/external.py (DiscreteSchedule: the discrete sigma table, t <-> sigma)."""
    name = "_kdiffusion_reference"
    load_sampling()
    if f"{name}.external" in sys.modules:
        return sys.modules[f"{name}.external"]
    path = importlib.util.find_spec("k_diffusion").submodule_search_locations[0] + "/external.py"
    module_spec = importlib.util.spec_from_file_location(f"{name}.external", path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[f"{name}.external"] = module
    module_spec.loader.exec_module(module)
    return module
