"""Load ControlNet files: original layout (``control_model.`` prefix optional), diffusers'
layout (a ``ControlNetModel`` folder as ``save_pretrained`` writes it, or its weights file alone,
keys renamed by ``nodeflow.loading.diffusers_keys``), "difference" ControlNets (stored as the
difference to a base model: the base U-Net's weights are added), and clear refusals for what is
not supported (T2I-Adapters, SDXL ControlNets)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from nodeflow.errors import ModelFileError
from nodeflow.models.controlnet import ControlNetModel, controlnet_from_state_dict
from nodeflow.loading.detect import describe_keys, detect_kind
from nodeflow.runtime.devices import model_dtype
from nodeflow.loading.diffusers_keys import controlnet_metadata, controlnet_to_original, is_diffusers_controlnet
from nodeflow.loading.files import read_diffusers_controlnet, read_state_dict

PREFIX = "control_model."
META_HEADS = "nodeflow.unet.num_heads"
META_HEAD_CHANNELS = "nodeflow.unet.head_channels"
IGNORED_SUFFIXES = ("lvlb_weights", "position_ids")
SDXL_KEYS = ("add_embedding.", "label_emb.", "control_model.label_emb.")


def is_difference(sd: dict[str, torch.Tensor]) -> bool:
    return "difference" in sd or "control_model.difference" in sd


def load_controlnet(path: str | os.PathLike, *, device="cpu", dtype: str = "auto",
                    base_unet: torch.nn.Module | None = None) -> ControlNetModel:
    path = Path(path)
    sd, metadata = read_controlnet_file(path)
    kind = detect_kind(sd)
    if kind == "t2i-adapter":
        raise ModelFileError(f"{path}: this is a T2I-Adapter; nodeflow does not support T2I-Adapters yet")
    if kind != "controlnet":
        raise ModelFileError(f"{path}: not a ControlNet; found keys like {describe_keys(sd)}")
    if any(k.startswith(SDXL_KEYS) for k in sd):
        raise ModelFileError(f"{path}: an SDXL ControlNet (it has a pooled-text/size embedding); "
                             "nodeflow's ControlNets are for SD1.x/SD2.x U-Nets")
    if is_diffusers_controlnet(sd):
        plain = controlnet_to_original({k: v for k, v in sd.items() if not k.endswith(IGNORED_SUFFIXES)}, path)
    else:
        plain = {k.removeprefix(PREFIX): v for k, v in sd.items() if not k.endswith(IGNORED_SUFFIXES)}
    if is_difference(sd):
        plain = _add_base(path, plain, base_unet)
    heads = int(metadata[META_HEADS]) if META_HEADS in metadata else None
    head_channels = int(metadata[META_HEAD_CHANNELS]) if META_HEAD_CHANNELS in metadata else None
    device = torch.device(device)
    try:
        return controlnet_from_state_dict(plain, device=device, dtype=model_dtype(device, dtype, "unet"),
                                          num_heads=heads, head_channels=head_channels)
    except (RuntimeError, KeyError, ValueError) as error:
        raise ModelFileError(f"{path}: the ControlNet does not match its configuration: {str(error)[:500]}") from None


def read_controlnet_file(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a ControlNet file or diffusers ControlNet folder.

    A diffusers-layout file inside a diffusers folder (how a model list that shows files names
    it) takes the heads from the ``config.json`` beside it; shapes cannot tell them.
    """
    if path.is_dir():
        return read_diffusers_controlnet(path)
    sd, metadata = read_state_dict(path)
    if is_diffusers_controlnet(sd):
        config = _controlnet_config_beside(path)
        if config is not None:
            metadata = {**metadata, **controlnet_metadata(config, path.parent)}
    return sd, metadata


def _controlnet_config_beside(path: Path) -> dict | None:
    """The ControlNetModel ``config.json`` next to ``path``, or None (absent, unreadable, or
    describing something else: a folder of single files may hold an unrelated one)."""
    try:
        config = json.loads((path.parent / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) and config.get("_class_name") == "ControlNetModel" else None


def _add_base(path: Path, plain: dict[str, torch.Tensor], base_unet: torch.nn.Module | None) -> dict[str, torch.Tensor]:
    """A "difference" ControlNet's weights plus the base U-Net's (where names and shapes agree)."""
    plain.pop("difference", None)
    if base_unet is None:
        raise ModelFileError(f"{path}: a 'difference' ControlNet; load it with DiffControlNetLoader "
                             "and connect the model it was made for")
    from nodeflow.loading.lora import base_of

    base = base_of(base_unet)[0].state_dict()
    return {k: (v + base[k].to(v)) if k in base and base[k].shape == v.shape else v for k, v in plain.items()}
