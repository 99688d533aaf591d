"""Load ControlNet files: original layout (``control_model.`` prefix optional), "difference"
ControlNets (stored as the difference to a base model: the base U-Net's weights are added), and
clear refusals for what is not supported (diffusers-format ControlNets, T2I-Adapters)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from nodeflow.errors import ModelFileError
from nodeflow.models.controlnet import ControlNetModel, controlnet_from_state_dict
from nodeflow.models.detect import describe_keys, detect_kind
from nodeflow.models.devices import model_dtype
from nodeflow.models.files import read_state_dict

PREFIX = "control_model."
META_HEADS = "nodeflow.unet.num_heads"
IGNORED_SUFFIXES = ("lvlb_weights", "position_ids")


def is_difference(sd: dict[str, torch.Tensor]) -> bool:
    return "difference" in sd or "control_model.difference" in sd


def load_controlnet(path: str | os.PathLike, *, device="cpu", dtype: str = "auto",
                    base_unet: torch.nn.Module | None = None) -> ControlNetModel:
    path = Path(path)
    sd, metadata = read_state_dict(path)
    kind = detect_kind(sd)
    if kind == "t2i-adapter":
        raise ModelFileError(f"{path}: this is a T2I-Adapter; nodeflow does not support T2I-Adapters yet")
    if kind != "controlnet":
        raise ModelFileError(f"{path}: not a ControlNet; found keys like {describe_keys(sd)}")
    if "controlnet_cond_embedding.conv_in.weight" in sd:
        raise ModelFileError(f"{path}: a diffusers-format ControlNet; use the original-layout file "
                             "(control_*.safetensors / .pth) for now")
    plain = {k.removeprefix(PREFIX): v for k, v in sd.items() if not k.endswith(IGNORED_SUFFIXES)}
    if is_difference(sd):
        plain.pop("difference", None)
        if base_unet is None:
            raise ModelFileError(f"{path}: a 'difference' ControlNet; load it with DiffControlNetLoader "
                                 "and connect the model it was made for")
        from nodeflow.models.lora import base_of

        base = base_of(base_unet)[0].state_dict()
        plain = {k: (v + base[k].to(v)) if k in base and base[k].shape == v.shape else v for k, v in plain.items()}
    heads = int(metadata[META_HEADS]) if META_HEADS in metadata else None
    device = torch.device(device)
    try:
        return controlnet_from_state_dict(plain, device=device, dtype=model_dtype(device, dtype, "unet"),
                                          num_heads=heads)
    except (RuntimeError, KeyError, ValueError) as error:
        raise ModelFileError(f"{path}: the ControlNet does not match its configuration: {str(error)[:500]}") from None
