"""Standalone diffusion-model (U-Net) files, for UNETLoader: MODEL without a CLIP or a VAE.

What a file may hold, as ComfyUI's UNETLoader reads it (comfy/sd.py load_diffusion_model):

- the U-Net's keys bare (``input_blocks.0.0.weight`` ...), as ``save_file(unet.state_dict())`` and
  most "unet" downloads have them;
- the same under ``model.diffusion_model.``, including a whole checkpoint, of which only the U-Net
  is taken (logged);
- diffusers' UNet2DConditionModel layout (``diffusion_pytorch_model.safetensors``), renamed by
  nodeflow.loading.diffusers_keys.

The family (SD1.x, SD2.x, SDXL base, refiner, inpainting) comes from the shapes, as for
checkpoints (nodeflow.loading.detect; a U-Net-only file has no text-encoder keys to help, so the
context width, the ADM input and linear projections decide), and with it the heads, the latent
format and the noise schedule. ``v_pred`` / ``ztsnr`` markers and nodeflow's metadata
(``nodeflow.unet.num_heads``, ``nodeflow.vae.scaling_factor``) are read as in checkpoints. Any
other kind of file (a VAE, a LoRA, a Flux model ...) is refused on one line naming it.

``weight_dtype`` (UNETLoader's input): ComfyUI's fp8 choices store every U-Net weight as an 8-bit
float and cast it back to the compute dtype in each layer. nodeflow rounds each weight through that
8-bit format once, at load, and keeps the rounded values in the run's dtype: the same numbers as
ComfyUI's for the same choice, without its memory saving (logged). ``fp8_e4m3fn_fast``, which on
GPUs with fp8 matrix units also rounds the activations, is treated as ``fp8_e4m3fn``, as ComfyUI
does on hardware without them.

``low_vram`` (``--vram low``): the weights stay in CPU memory in the device's dtype and the U-Net
streams block by block to the device (nodeflow.loading.checkpoint.stream_unet).
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

import torch

from nodeflow.errors import ModelFileError
from nodeflow.loading.build_errors import built
from nodeflow.loading.checkpoint import (IGNORED, META_UNET_HEADS, META_VAE_SCALE, UNET_PREFIX, VAE_PREFIX,
                                         _unsupported, storage_for, stream_unet)
from nodeflow.loading.detect import describe_keys, detect_kind
from nodeflow.loading.diffusers_keys import unet_to_original
from nodeflow.loading.families import FAMILIES, KIND_FAMILY, TEXT_PREFIXES, model_sampling
from nodeflow.loading.files import read_state_dict_for
from nodeflow.loading.text_encoder_files import is_text_encoder
from nodeflow.models.unet import unet_from_state_dict
from nodeflow.runtime.devices import model_dtype
from nodeflow.sampling.model import DiffusionModel

logger = logging.getLogger(__name__)

#: UNETLoader's weight_dtype choices -> the 8-bit format the weights are rounded through (None: as loaded).
WEIGHT_DTYPES = {"default": None, "fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e4m3fn_fast": torch.float8_e4m3fn,
                 "fp8_e5m2": torch.float8_e5m2}
MARKERS = ("v_pred", "ztsnr")  # file-level keys, never under a prefix
WANTED = "a diffusion model (U-Net) file"


def load_diffusion_model(path: str | os.PathLike, *, device: str | torch.device = "cpu", dtype: str = "auto",
                         weight_dtype: str = "default", low_vram: bool = False) -> DiffusionModel:
    """MODEL from a U-Net file (module docstring)."""
    path, device = Path(path), torch.device(device)
    if weight_dtype not in WEIGHT_DTYPES:
        raise ValueError(f"unknown weight_dtype {weight_dtype!r}; one of {', '.join(WEIGHT_DTYPES)}")
    unet_dtype = model_dtype(device, dtype, "unet")
    storage = storage_for(device, low_vram)
    sd, metadata = _read(path, storage, unet_dtype)
    sd, kind = _original_layout(path, sd)
    family = FAMILIES[KIND_FAMILY[kind]]
    sampling = model_sampling(kind, sd)
    unet_sd = {k[len(UNET_PREFIX):]: v for k, v in sd.items()
               if k.startswith(UNET_PREFIX) and not IGNORED.match(k) and not IGNORED.match(k[len(UNET_PREFIX):])}
    sd.clear()
    heads = int(metadata[META_UNET_HEADS]) if META_UNET_HEADS in metadata else None
    head_channels = family.head_channels if heads is None else None
    unet = built(path, "U-Net", lambda: unet_from_state_dict(
        unet_sd, device=storage, dtype=unet_dtype, num_heads=heads, head_channels=head_channels))
    del unet_sd
    _round_weights(unet, weight_dtype)
    stream_unet(unet, storage, device)  # after the rounding, which replaces the weights
    latent_format = family.latent_format
    if META_VAE_SCALE in metadata:
        latent_format = replace(latent_format, scale_factor=float(metadata[META_VAE_SCALE]))
    logger.info("loaded the U-Net %s (%s, %s prediction) on %s", path.name, kind, sampling.parameterization, device)
    return DiffusionModel(unet, sampling, latent_format, device, unet_dtype, name=path.name, adm=family.adm,
                          family=family.name)


def _read(path: Path, device: torch.device, unet_dtype: torch.dtype) -> tuple[dict, dict]:
    """The file's tensors, the U-Net's converted to ``unet_dtype`` as they are read (see
    read_state_dict_for)."""

    def dtype_for(key: str) -> torch.dtype | None:
        return None if key.startswith((VAE_PREFIX, *TEXT_PREFIXES)) or key in MARKERS else unet_dtype

    return read_state_dict_for(path, device, dtype_for)


def _original_layout(path: Path, sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    """(the tensors with the U-Net under ``model.diffusion_model.``, the kind); anything that is
    not an SD1.x / SD2.x / SDXL U-Net is a ModelFileError naming what it is."""
    kind = detect_kind(sd)
    if kind in KIND_FAMILY:  # prefixed: a U-Net file in the checkpoint layout, or a whole checkpoint
        if any(not k.startswith(UNET_PREFIX) and k not in MARKERS and not IGNORED.match(k) for k in sd):
            logger.info("%s: a whole checkpoint; UNETLoader takes its U-Net only", path.name)
        return sd, kind
    if kind != "unknown":  # a VAE, a LoRA, a ControlNet, a family nodeflow does not run ...
        raise ModelFileError(_unsupported(path, kind, sd, wanted=WANTED))
    if "conv_in.weight" in sd and any(k.startswith("down_blocks.") for k in sd):  # diffusers' layout
        original = unet_to_original({k: v for k, v in sd.items() if k not in MARKERS}, path)
        prefixed = {UNET_PREFIX + k: v for k, v in original.items()}
    else:
        prefixed = {UNET_PREFIX + k: v for k, v in sd.items() if k not in MARKERS}
    prefixed |= {k: sd[k] for k in MARKERS if k in sd}
    kind = detect_kind(prefixed)
    if kind in KIND_FAMILY:
        return prefixed, kind
    if kind == "unknown" and is_text_encoder(sd):
        raise ModelFileError(f"{path}: this is a CLIP text encoder (use CLIPLoader or DualCLIPLoader), not {WANTED}")
    if kind == "unknown":
        raise ModelFileError(f"{path}: not {WANTED}; found keys like {describe_keys(sd)}")
    raise ModelFileError(_unsupported(path, kind, prefixed, wanted=WANTED))


@torch.no_grad()
def _round_weights(unet: torch.nn.Module, weight_dtype: str) -> None:
    """Every floating weight rounded through ``WEIGHT_DTYPES[weight_dtype]`` (module docstring)."""
    storage = WEIGHT_DTYPES[weight_dtype]
    if storage is None:
        return
    for parameter in unet.parameters():
        if parameter.is_floating_point():
            parameter.data = parameter.data.to(storage).to(parameter.dtype)  # a new tensor: the file's stay untouched
    logger.info("weight_dtype %s: U-Net weights rounded to %s as ComfyUI stores them; kept in %s (no memory saved)",
                weight_dtype, str(storage).removeprefix("torch."), str(next(unet.parameters()).dtype).removeprefix("torch."))
