"""Write the trained models as one single-file checkpoint in Stable Diffusion's original layout.

Keys are prefixed as in the original SD1.x ``.ckpt``/``.safetensors`` files, so the checkpoint
loads through exactly the code path of community checkpoints:

- ``model.diffusion_model.*``                     the U-Net
- ``first_stage_model.*``                         the AutoencoderKL
- ``cond_stage_model.transformer.text_model.*``   the CLIP text encoder (transformers layout)

Tensors are stored in fp16. Metadata values are strings (the safetensors format); what the
tensors' shapes cannot tell (attention heads, the VAE's latent scaling factor) is stored there
under ``nodeflow.*`` keys that the loader reads.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_PREFIX = "cond_stage_model.transformer."

META_UNET_HEADS = "nodeflow.unet.num_heads"
META_VAE_SCALE = "nodeflow.vae.scaling_factor"


def checkpoint_state_dict(
    unet: torch.nn.Module, vae: torch.nn.Module, text_encoder: torch.nn.Module
) -> dict[str, torch.Tensor]:
    """The combined state dict in the original layout, fp16, contiguous, on the CPU.

    ``text_encoder`` is a transformers ``CLIPTextModel`` (keys ``text_model.*``) or a module
    whose state dict holds the same keys.
    """
    tensors: dict[str, torch.Tensor] = {}
    for prefix, module in ((UNET_PREFIX, unet), (VAE_PREFIX, vae), (TEXT_PREFIX, text_encoder)):
        for key, value in module.state_dict().items():
            if key.endswith("position_ids"):
                continue  # a constant buffer, not a weight
            if module is text_encoder and not key.startswith("text_model."):
                key = "text_model." + key  # transformers >= 5 drops the segment; SD files have it
            tensors[prefix + key] = to_fp16(value)
    return tensors


def to_fp16(value: torch.Tensor) -> torch.Tensor:
    value = value.detach().to("cpu")
    if value.is_floating_point():
        value = value.to(torch.float16)
    return value.contiguous()


def export_checkpoint(
    path: str | os.PathLike,
    unet: torch.nn.Module,
    vae: torch.nn.Module,
    text_encoder: torch.nn.Module,
    *,
    name: str,
    description: str,
    unet_num_heads: int,
    vae_scaling_factor: float,
    settings: dict[str, Any],
    seed: int,
) -> Path:
    """Save the checkpoint atomically (temporary file, then rename) and return its path."""
    metadata = {
        "name": name,
        "description": description,
        "nodeflow.training": json.dumps(settings, sort_keys=True),
        "nodeflow.seed": str(seed),
        META_UNET_HEADS: str(unet_num_heads),
        META_VAE_SCALE: repr(float(vae_scaling_factor)),
        "format": "pt",
    }
    return save_atomically(path, checkpoint_state_dict(unet, vae, text_encoder), metadata)


def export_controlnet(path: str | os.PathLike, controlnet: torch.nn.Module, *, name: str, description: str,
                      unet_num_heads: int, settings: dict[str, Any], seed: int) -> Path:
    """Save a ControlNet in the original layout (``control_model.*``), fp16, atomically."""
    tensors = {"control_model." + key: to_fp16(value) for key, value in controlnet.state_dict().items()}
    metadata = {"name": name, "description": description, "nodeflow.training": json.dumps(settings, sort_keys=True),
                "nodeflow.seed": str(seed), META_UNET_HEADS: str(unet_num_heads), "format": "pt"}
    return save_atomically(path, tensors, metadata)


def save_atomically(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """Write a .safetensors file through a temporary file and a rename, readable by all."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(target.name + ".tmp")
    save_file(tensors, str(temporary), metadata=metadata)
    os.chmod(temporary, 0o644)  # safetensors writes 0600; the file is meant to be shared
    os.replace(temporary, target)
    return target
