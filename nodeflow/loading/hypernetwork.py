"""Hypernetwork files (AUTOMATIC1111's format) -> nodeflow.models.hypernetwork.Hypernetwork.

A ``.pt`` file is a dict: for each attention width an integer key (768, 320, 640, 1280 ...) holding
a list of two state dicts, the keys' MLP and the values' MLP, each ``linear.N.weight`` /
``linear.N.bias`` with N the layer's place in AUTOMATIC1111's Sequential (2-D weights: linear layers,
1-D: layer norms; NovelAI's first files say ``linear1`` / ``linear2``); beside them the options
``activation_func`` (default "linear"; None means it too), ``activate_output``, ``is_layer_norm``,
``use_dropout`` and training facts (``step``, ``name``, ``layer_structure``, ...), unused here.
It loads through ``torch.load(weights_only=True)``: plain containers and tensors only; a file that
needs other Python objects is refused unexecuted.

A ``.safetensors`` hypernetwork holds the same tensors under flattened names,
``<width>.<0 keys | 1 values>.linear.N.weight``, and the options as text in its metadata
("true"/"false" for the flags).

Every problem is one ModelFileError naming the file and what was expected.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch

from nodeflow.errors import ModelFileError
from nodeflow.loading.files import load_pickle, read_state_dict
from nodeflow.models.hypernetwork import ACTIVATIONS, Hypernetwork, Layer, MLPOptions, build_mlp

logger = logging.getLogger(__name__)

_LAYER_KEY = re.compile(r"linear\.?(\d+)\.(weight|bias)")
_FLAT_KEY = re.compile(r"(\d+)\.([01])\.(.+)")


def load_hypernetwork(path: str | Path, device: torch.device | str = "cpu",
                      dtype: torch.dtype = torch.float32) -> Hypernetwork:
    """The hypernetwork of ``path`` (.pt or .safetensors) on ``device`` in ``dtype``."""
    path = Path(path)
    data = read_hypernetwork_file(path)
    options = _options(data, path)
    pairs = {}
    for width, modules in _widths(data, path).items():
        pairs[width] = tuple(
            build_mlp([(kind, weight.to(device, dtype), bias.to(device, dtype)) for kind, weight, bias in
                       _layers(module, width, path, f"width {width}, {which}")], options)
            for which, module in zip(("keys", "values"), modules))
    logger.info("%s: hypernetwork for attention widths %s (%s)", path.name, sorted(pairs), options.activation)
    return Hypernetwork(pairs)


def read_hypernetwork_file(path: Path) -> dict:
    """The file's dict as AUTOMATIC1111 saves it (a .safetensors file unflattened)."""
    if path.suffix.lower() == ".safetensors":
        tensors, metadata = read_state_dict(path)
        return _unflatten(tensors, metadata, path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such hypernetwork file")
    data = load_pickle(path)
    if not isinstance(data, dict):
        raise ModelFileError(f"{path}: holds a {type(data).__name__}, not a hypernetwork "
                             "(expected a dict of attention widths)")
    return data


def _unflatten(tensors: dict[str, torch.Tensor], metadata: dict[str, str], path: Path) -> dict:
    data: dict = {key: _metadata_value(value) for key, value in metadata.items()}
    for key, tensor in tensors.items():
        match = _FLAT_KEY.fullmatch(key)
        if match is None:
            raise ModelFileError(f"{path}: unexpected tensor {key!r} in a hypernetwork "
                                 "(expected <width>.<0|1>.linear.N.weight/bias)")
        width, which, name = match.groups()
        data.setdefault(int(width), [{}, {}])[int(which)][name] = tensor
    return data


def _metadata_value(text: str):
    return {"true": True, "false": False, "none": None}.get(text.strip().lower(), text)


def _options(data: dict, path: Path) -> MLPOptions:
    activation = data.get("activation_func") or "linear"
    if activation not in ACTIVATIONS:
        raise ModelFileError(f"{path}: unsupported hypernetwork activation_func {activation!r} "
                             f"(supported: {', '.join(ACTIVATIONS)})")
    return MLPOptions(activation=activation, activate_output=bool(data.get("activate_output", False)))


def _widths(data: dict, path: Path) -> dict[int, tuple[dict, dict]]:
    """{width: (keys' state dict, values' state dict)} from the integer keys."""
    found = {}
    for key, value in data.items():
        if isinstance(key, int) or (isinstance(key, str) and key.isdigit()):
            if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, dict) for v in value)):
                raise ModelFileError(f"{path}: attention width {key} must hold two state dicts (keys, values), "
                                     f"found {type(value).__name__}")
            found[int(key)] = tuple(value)
    if not found:
        raise ModelFileError(f"{path}: not a hypernetwork (no attention widths such as 768 among its keys: "
                             f"{', '.join(map(str, list(data)[:8]))})")
    return found


def _layers(module: dict, width: int, path: Path, where: str) -> list[Layer]:
    """The MLP's layers in order, their shapes checked to chain from ``width`` back to ``width``."""
    numbered: dict[int, dict[str, torch.Tensor]] = {}
    for key, tensor in module.items():
        match = _LAYER_KEY.fullmatch(str(key))
        if match is None or not isinstance(tensor, torch.Tensor):
            raise ModelFileError(f"{path}: {where}: unexpected entry {key!r} (expected linear.N.weight/bias tensors)")
        numbered.setdefault(int(match.group(1)), {})[match.group(2)] = tensor
    layers: list[Layer] = []
    size = width
    for number in sorted(numbered):
        pair = numbered[number]
        if set(pair) != {"weight", "bias"}:
            raise ModelFileError(f"{path}: {where}: layer {number} needs a weight and a bias")
        weight, bias = pair["weight"], pair["bias"]
        kind = "linear" if weight.ndim == 2 else "norm"
        expected_in = weight.shape[1] if kind == "linear" else weight.shape[0]
        if weight.ndim not in (1, 2) or expected_in != size or bias.shape != weight.shape[:1]:
            raise ModelFileError(f"{path}: {where}: layer {number} has weight {tuple(weight.shape)} and bias "
                                 f"{tuple(bias.shape)}, expected a linear layer or layer norm taking {size} features")
        layers.append((kind, weight, bias))
        size = weight.shape[0]
    if not any(kind == "linear" for kind, _, _ in layers) or size != width:
        raise ModelFileError(f"{path}: {where}: the layers must map {width} features back to {width}")
    return layers
