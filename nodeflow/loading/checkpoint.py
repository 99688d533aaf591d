"""Load single-file Stable Diffusion checkpoints and standalone VAEs in the original layout.

A checkpoint's keys split by prefix: ``model.diffusion_model.*`` (U-Net),
``first_stage_model.*`` (VAE), ``cond_stage_model.transformer.*`` (CLIP text encoder, with or
without the ``text_model.`` segment). Loading is strict: a key no part claims is an error, and so
is a key a part is missing — except the known harmless extras in ``IGNORED``, on purpose:
EMA copies (``model_ema.*``), the schedule buffers of the original training code
(``betas``, ``alphas_cumprod``, ``posterior_*``, ``sqrt_*``...), the training-only ``logvar`` and
``lvlb_weights``, ``position_ids`` (rebuilt), CLIP's ``text_projection`` and ``logit_scale``
(the image-text head, unused by SD1's conditioning) and, in VAE files, the training loss's weights
(``loss.*``, the discriminator and LPIPS of the original VAE training).

Safetensors metadata may say what shapes cannot: ``nodeflow.unet.num_heads`` and
``nodeflow.vae.scaling_factor`` (the embedded model stores both).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from nodeflow.errors import ModelFileError
from nodeflow.loading.detect import describe_keys, detect_kind
from nodeflow.runtime.devices import model_dtype
from nodeflow.loading.diffusers_keys import vae_to_original
from nodeflow.loading.files import read_diffusers_vae, read_safetensors_converted, read_state_dict, stored_dtypes
from nodeflow.models.unet import unet_from_state_dict
from nodeflow.models.vae import vae_from_state_dict
from nodeflow.image.vae import VAE
from nodeflow.sampling.model import DiffusionModel, LatentFormat
from nodeflow.sampling.model_sampling import ModelSampling

logger = logging.getLogger(__name__)

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_PREFIX = "cond_stage_model.transformer."
SD1_SCALING_FACTOR = 0.18215
META_UNET_HEADS = "nodeflow.unet.num_heads"
META_VAE_SCALE = "nodeflow.vae.scaling_factor"

#: Keys ignored on purpose (see the module docstring).
IGNORED = re.compile(
    r"^(model_ema\.|betas$|alphas_cumprod|alphas_cumprod_prev$|sqrt_|log_one_minus_alphas_cumprod$"
    r"|posterior_|logvar$|lvlb_weights$|model\.diffusion_model\.logvar|.*position_ids$"
    r"|cond_stage_model\.transformer\.text_projection|cond_stage_model\.transformer\.logit_scale)")

SUPPORTED = ("sd1", "sd1-inpaint")


@dataclass(frozen=True, eq=False)
class Checkpoint:
    model: DiffusionModel
    clip: object  # nodeflow.text.text_encoder.TextEncoder
    vae: VAE
    kind: str
    metadata: dict = field(default_factory=dict)


def _take(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Remove the keys under ``prefix`` from ``sd``; return them without the prefix."""
    return {k[len(prefix):]: sd.pop(k) for k in [k for k in sd if k.startswith(prefix)]}


def _check_unclaimed(path: Path, sd: dict[str, torch.Tensor], prefixes: tuple[str, ...]) -> None:
    unexpected = sorted(k for k in sd if not k.startswith(prefixes) and not IGNORED.match(k))
    if unexpected:
        shown = ", ".join(unexpected[:8]) + (f" ... ({len(unexpected)} in all)" if len(unexpected) > 8 else "")
        raise ModelFileError(f"{path}: unexpected keys: {shown}")


def _build(path: Path, what: str, build):
    try:
        return build()
    except RuntimeError as error:  # load_state_dict(strict=True) lists missing/unexpected keys
        message = str(error).split("\n", 1)[-1].strip()
        raise ModelFileError(f"{path}: the {what} does not match its configuration: {message[:600]}") from None
    except (KeyError, ValueError, IndexError) as error:
        raise ModelFileError(f"{path}: cannot read the {what} ({type(error).__name__}: {error})") from None


def load_checkpoint(path: str | os.PathLike, *, device: str | torch.device = "cpu",
                    dtype: str = "auto", tokenizer=None) -> Checkpoint:
    """MODEL, CLIP and VAE from one single-file checkpoint."""
    from nodeflow.text.text_encoder import text_encoder_from_state_dict
    from nodeflow.text.tokenizer import load_tokenizer

    path = Path(path)
    device = torch.device(device)
    sd, metadata = _read_checkpoint(path, device, dtype)
    kind = detect_kind(sd)
    if kind not in SUPPORTED:
        raise ModelFileError(_unsupported(path, kind, sd))
    _check_unclaimed(path, sd, (UNET_PREFIX, VAE_PREFIX, TEXT_PREFIX))
    heads = int(metadata[META_UNET_HEADS]) if META_UNET_HEADS in metadata else None
    scale = float(metadata.get(META_VAE_SCALE, SD1_SCALING_FACTOR))
    unet_sd = {k: v for k, v in _take(sd, UNET_PREFIX).items() if not IGNORED.match(k)}
    vae_sd = _take(sd, VAE_PREFIX)
    text_sd = {k: v for k, v in _take(sd, TEXT_PREFIX).items() if not IGNORED.match(TEXT_PREFIX + k)}
    sd.clear()  # each part's file tensors are released once that part is built (lower peak memory)
    if not text_sd:
        raise ModelFileError(f"{path}: no text encoder (cond_stage_model.transformer.*) in this checkpoint")
    unet = _build(path, "U-Net", lambda: unet_from_state_dict(
        unet_sd, device=device, dtype=model_dtype(device, dtype, "unet"), num_heads=heads))
    del unet_sd
    vae = load_vae_state_dict(path, vae_sd, device, dtype, scale)
    del vae_sd
    clip = _build(path, "text encoder", lambda: text_encoder_from_state_dict(
        text_sd, tokenizer or load_tokenizer(), device=device, dtype=model_dtype(device, dtype, "text")))
    del text_sd
    model = DiffusionModel(unet, ModelSampling.sd1(), LatentFormat(scale_factor=scale), device,
                           model_dtype(device, dtype, "unet"), name=path.name)
    logger.info("loaded %s (%s) on %s", path.name, kind, device)
    return Checkpoint(model, clip, vae, kind, metadata)


def _read_checkpoint(path: Path, device: torch.device, dtype: str) -> tuple[dict, dict]:
    """The file's tensors. When the CPU load changes their dtype (an fp16 file run in fp32), each
    tensor is converted as it is read, so the file is never held whole beside the converted
    weights; otherwise memory-mapped (nothing copied until used)."""
    if device.type != "cpu" or path.suffix.lower() != ".safetensors" or not path.is_file():
        return read_state_dict(path)
    parts = ((UNET_PREFIX, "unet"), (VAE_PREFIX, "vae"), (TEXT_PREFIX, "text"))

    def dtype_for(key: str) -> torch.dtype | None:
        part = next((name for prefix, name in parts if key.startswith(prefix)), None)
        return model_dtype(device, dtype, part) if part else None

    stored = stored_dtypes(path)
    if all(dtype_for(key) in (None, kind) for key, kind in stored.items() if kind.is_floating_point):
        return read_state_dict(path)
    return read_safetensors_converted(path, dtype_for)


def load_vae_state_dict(path: Path, sd: dict[str, torch.Tensor], device: torch.device, dtype: str,
                        scale: float = SD1_SCALING_FACTOR) -> VAE:
    sd = {k: v for k, v in sd.items() if not IGNORED.match(k) and not k.startswith("loss.")}
    if "encoder.conv_in.weight" not in sd:
        raise ModelFileError(f"{path}: no VAE (first_stage_model.*) found")
    vae_dtype = model_dtype(device, dtype, "vae")
    model = _build(path, "VAE", lambda: vae_from_state_dict(sd, device=device, dtype=vae_dtype))
    return VAE(model, scale, device, vae_dtype, name=path.name)


def load_vae(path: str | os.PathLike, *, device: str | torch.device = "cpu", dtype: str = "auto") -> VAE:
    """A standalone VAE (e.g. vae-ft-mse-840000): a file in the original layout, keys with or
    without ``first_stage_model.``; or in diffusers' layout (``diffusion_pytorch_model.safetensors``
    of an AutoencoderKL, or its folder with ``config.json``)."""
    path = Path(path)
    sd, metadata = read_diffusers_vae(path) if path.is_dir() else read_state_dict(path)
    if detect_kind(sd) != "vae":
        raise ModelFileError(_unsupported(path, detect_kind(sd), sd, wanted="a VAE"))
    plain = {k.removeprefix(VAE_PREFIX): v for k, v in sd.items()}
    if any(k.startswith("decoder.up_blocks.") for k in plain):  # diffusers' key layout
        plain = vae_to_original(plain, path)
    scale = float(metadata.get(META_VAE_SCALE, SD1_SCALING_FACTOR))
    return load_vae_state_dict(path, plain, torch.device(device), dtype, scale)


FAMILY_NAMES = {"sd2": "SD2.x", "sd2-v": "SD2.x (v-prediction)", "sd2-inpaint": "SD2.x inpainting", "sdxl": "SDXL", "sdxl-refiner": "SDXL refiner"}
OTHER_KINDS = {"vae": "a standalone VAE (use VAELoader)", "lora": "a LoRA (use LoraLoader)",
               "controlnet": "a ControlNet (use ControlNetLoader)", "t2i-adapter": "a T2I-Adapter",
               "sd1": "an SD1.x checkpoint (use CheckpointLoaderSimple)",
               "sd1-inpaint": "an SD1.x inpainting checkpoint (use CheckpointLoaderSimple)"}


def _unsupported(path: Path, kind: str, sd: dict, wanted: str = "a Stable Diffusion 1.x checkpoint") -> str:
    if kind == "unknown":
        return f"{path}: not {wanted}; found keys like {describe_keys(sd)}"
    if kind in FAMILY_NAMES:
        return f"{path}: {FAMILY_NAMES[kind]} checkpoints are not supported yet (nodeflow runs SD1.x)"
    return f"{path}: this is {OTHER_KINDS.get(kind, kind)}, not {wanted}"
