"""Upscale model files (ESRGAN, Real-ESRGAN, SwinIR, HAT, DAT, OmniSR, ...) -> spandrel models.

spandrel (https://github.com/chaiNNer-org/spandrel) detects the architecture and its
hyper-parameters from the tensors and builds the network, as ComfyUI's UpscaleModelLoader does.
nodeflow reads the file itself, tensors only (nodeflow.loading.files: safetensors, or
``torch.load(weights_only=True)``; never spandrel's TorchScript path for ``.pt`` files), and hands
spandrel the state dict. The UPSCALE_MODEL value is spandrel's ``ImageModelDescriptor``, as in
ComfyUI (``.scale``, ``.model``, called on a (1, 3, H, W) tensor in 0..1).

torchvision: spandrel declares it, but pip's torchvision for a CPU torch is a CUDA build that
replaces the torch, so nodeflow installs spandrel without it (``.ci/setup``: ``--no-deps``). Two
modules of spandrel 0.4.2 import torchvision when spandrel is imported: LaMa's network
(``rotate``, an inpainting model, never an upscaler) and RestoreFormer's call (``normalize``, a
face restorer). When torchvision is absent, spandrel is imported with a stand-in ``torchvision``
in ``sys.modules`` for the duration of that import only; its functions raise ``ModelFileError``
when called, and ``load_upscale_model`` refuses those two architectures (``NEEDS_TORCHVISION``)
up front, naming torchvision. Every other architecture works without it.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
import sys
import types
from pathlib import Path

import torch

from nodeflow.errors import ModelFileError, NodeflowError
from nodeflow.loading.detect import describe_keys, detect_kind
from nodeflow.loading.files import load_pickle, read_state_dict

logger = logging.getLogger(__name__)

#: spandrel architectures (ids) whose code uses torchvision, and what for (spandrel 0.4.2).
NEEDS_TORCHVISION = {"LaMa": "torchvision.transforms.functional.rotate",
                     "RestoreFormer": "torchvision.transforms.functional.normalize"}
#: The torchvision modules spandrel imports from (the stand-in provides exactly these).
TORCHVISION_MODULES = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")
INSTALL_HINT = "pip install --no-deps spandrel==0.4.2 (or run bash .ci/setup)"


def load_upscale_model(path: str | os.PathLike, *, device: str | torch.device = "cpu"):
    """spandrel's ``ImageModelDescriptor`` for the upscale model file ``path``, in eval mode on
    ``device`` (float32). Anything that is not a single-image model spandrel knows is a
    ModelFileError naming the file and the problem."""
    path = Path(path)
    spandrel = import_spandrel()
    sd = spandrel.canonicalize_state_dict(read_tensors(path))
    sd = {key: value for key, value in sd.items() if isinstance(value, torch.Tensor)}
    support = next((s for s in spandrel.MAIN_REGISTRY.architectures("detection") if s.detect(sd)), None)
    if support is None:
        raise ModelFileError(_unknown_message(path, sd))
    architecture = support.architecture
    _check_torchvision(path, architecture)
    try:
        model = architecture.load(sd)
    except (RuntimeError, KeyError, ValueError, IndexError, AssertionError, TypeError) as error:
        detail = " ".join(str(error).split())[:300]  # load_state_dict's messages span lines
        raise ModelFileError(f"{path}: detected as {architecture.name}, but its tensors do not fit that "
                             f"architecture ({type(error).__name__}: {detail})") from None
    if not isinstance(model, spandrel.ImageModelDescriptor):
        raise ModelFileError(f"{path}: a {architecture.name} model ({model.purpose}), not a single-image "
                             "upscale model")
    if model.input_channels != 3 or model.output_channels != 3:
        raise ModelFileError(f"{path}: a {architecture.name} model for {model.input_channels}-channel images; "
                             "only RGB (3-channel) upscale models are supported")
    logger.info("%s: %s, %dx (%s)", path.name, architecture.name, model.scale, ", ".join(model.tags))
    return model.to(torch.device(device)).eval()


def read_tensors(path: Path) -> dict:
    """The file's contents, tensors only: a safetensors file, or a pickle read with
    ``weights_only`` (kept nested: upscale ``.pth`` files wrap their tensors in ``params_ema``,
    ``params`` or ``state_dict``, which spandrel unwraps)."""
    if path.suffix.lower() == ".safetensors" or path.is_dir() or not path.is_file():
        return read_state_dict(path)[0]
    loaded = load_pickle(path)
    if not isinstance(loaded, dict):
        raise ModelFileError(f"{path}: holds a {type(loaded).__name__}, not a state dict of tensors")
    return loaded


def _unknown_message(path: Path, sd: dict[str, torch.Tensor]) -> str:
    kind = detect_kind(sd)
    if kind != "unknown":
        return f"{path}: not an upscale model: this looks like a {kind} file"
    return (f"{path}: not an upscale model of an architecture spandrel knows (ESRGAN, Real-ESRGAN, SwinIR, HAT, "
            f"DAT, OmniSR, ...); found keys like {describe_keys(sd)}")


def _check_torchvision(path: Path, architecture) -> None:
    needed = NEEDS_TORCHVISION.get(str(architecture.id))
    if needed and importlib.util.find_spec("torchvision") is None:
        raise ModelFileError(f"{path}: a {architecture.name} model, which needs torchvision ({needed}); "
                             "torchvision is not installed (nodeflow installs spandrel without it)")


# ----- importing spandrel --------------------------------------------------------------------

def import_spandrel() -> types.ModuleType:
    """The spandrel module; imported with a stand-in torchvision when the real one is absent
    (module docstring). A missing spandrel, or a torchvision that is installed but broken, is a
    NodeflowError saying what to do."""
    if "spandrel" in sys.modules:
        return sys.modules["spandrel"]
    if importlib.util.find_spec("spandrel") is None:
        raise NodeflowError(f"upscale models need the spandrel package, which is not installed: {INSTALL_HINT}")
    if importlib.util.find_spec("torchvision") is not None:
        try:
            importlib.import_module("torchvision")
        except Exception as error:  # a CUDA torchvision beside a CPU torch fails with RuntimeError
            raise NodeflowError(f"torchvision is installed but does not import ({type(error).__name__}: "
                                f"{str(error)[:200]}); uninstall it (pip uninstall torchvision) or install the "
                                f"build matching torch {torch.__version__}") from error
        return importlib.import_module("spandrel")
    with _stand_in_torchvision():
        return importlib.import_module("spandrel")


@contextlib.contextmanager
def _stand_in_torchvision():
    """``TORCHVISION_MODULES`` in ``sys.modules`` as stand-ins while the block runs, removed after."""
    taken = [name for name in TORCHVISION_MODULES if name in sys.modules]
    if taken:
        raise RuntimeError(f"torchvision modules already imported: {taken}")  # find_spec said absent: a bug
    modules = {name: types.ModuleType(name, "nodeflow's stand-in: torchvision is not installed")
               for name in TORCHVISION_MODULES}
    modules["torchvision"].transforms = modules["torchvision.transforms"]
    modules["torchvision.transforms"].functional = modules["torchvision.transforms.functional"]
    modules["torchvision.transforms.functional"].__getattr__ = _missing_attribute
    sys.modules.update(modules)
    try:
        yield
    finally:
        for name in TORCHVISION_MODULES:
            sys.modules.pop(name, None)


def _missing_attribute(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    return MissingTorchvision(f"torchvision.transforms.functional.{name}")


class MissingTorchvision:
    """What ``from torchvision... import name`` gives under the stand-in: using it raises."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, *args, **kwargs):
        raise ModelFileError(f"this model needs {self.name}, and torchvision is not installed")

    def __getattr__(self, attribute: str):
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        raise ModelFileError(f"this model needs {self.name}.{attribute}, and torchvision is not installed")
