"""Load single-file Stable Diffusion checkpoints (SD1.x, SD2.x with SD2.1 unCLIP, SDXL base and
refiner) and standalone VAEs in the original layout.

A checkpoint's keys split by prefix: ``model.diffusion_model.*`` (U-Net), ``first_stage_model.*``
(VAE) and the text encoders' (per family, see nodeflow.loading.families: SD1's
``cond_stage_model.transformer.*``, SD2's ``cond_stage_model.model.*``, SDXL's
``conditioner.embedders.N.*``). What the file is comes first (nodeflow.loading.detect): families
nodeflow does not run (SD3, Flux, Stable Cascade, video models ...) are refused by name before
anything is built. An unCLIP checkpoint's CLIP image tower (``embedder.model.visual.``) is built
only when asked for (unCLIPCheckpointLoader; ComfyUI's CheckpointLoaderSimple does not either); its
other extras are the family's ``unused_prefixes`` (nodeflow.loading.families). Loading is strict: a
key no part claims is an error, and so is a key a part is
missing — except the known harmless extras in ``IGNORED``, on purpose: EMA copies
(``model_ema.*``), the schedule buffers of the original training code (``betas``,
``alphas_cumprod``, ``posterior_*``, ``sqrt_*``...), the training-only ``logvar`` and
``lvlb_weights``, ``position_ids`` (rebuilt), CLIP-L's ``text_projection`` and ``logit_scale``
(the image-text head, unused by the conditioning; OpenCLIP towers' are handled by
nodeflow.loading.open_clip), the ``v_pred`` / ``ztsnr`` markers (read by
nodeflow.loading.families) and, in VAE files, the training loss's weights (``loss.*``, the
discriminator and LPIPS of the original VAE training).

``low_vram`` (``--vram low``, nodeflow.runtime.vram): the weights stay in CPU memory, in the
dtypes of the run's device: the U-Net streams block by block to the device
(nodeflow.models.streaming), the VAE is copied there for each pass (nodeflow.image.vae), and the
text encoders (and an unCLIP checkpoint's image tower) compute on the CPU, in the CPU's dtype, as
CLIPLoader's ``device=cpu`` does. The MODEL's and VAE's ``device`` stay the run's device.

Safetensors metadata may say what shapes cannot: ``nodeflow.unet.num_heads`` and
``nodeflow.vae.scaling_factor`` (the embedded model stores both).
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from nodeflow.errors import ModelFileError
from nodeflow.loading.detect import describe_keys, detect_kind
from nodeflow.loading.build_errors import built
from nodeflow.loading.diffusers_keys import vae_to_original
from nodeflow.loading.families import FAMILIES, KIND_FAMILY, TEXT_PREFIXES, build_clip, model_sampling, take_text_parts
from nodeflow.loading.files import read_diffusers_vae, read_state_dict, read_state_dict_for
from nodeflow.runtime.devices import dtype_option, model_dtype
from nodeflow.models.streaming import pin_storage, stream_blocks
from nodeflow.models.unet import unet_from_state_dict
from nodeflow.models.vae import vae_from_state_dict
from nodeflow.image.vae import VAE
from nodeflow.sampling.latent_preview import VaePreview, small_enough_to_preview
from nodeflow.sampling.model import DiffusionModel

logger = logging.getLogger(__name__)

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
SD1_SCALING_FACTOR = 0.18215
META_UNET_HEADS = "nodeflow.unet.num_heads"
META_VAE_SCALE = "nodeflow.vae.scaling_factor"
#: live-preview factors fitted to the file's own VAE (nodeflow.training.preview_factors):
#: JSON {"factors": 4 x 3, "bias": 3}
META_LATENT_RGB = "nodeflow.latent_rgb"

#: Keys ignored on purpose (see the module docstring).
IGNORED = re.compile(
    r"^(model_ema\.|betas$|alphas_cumprod|alphas_cumprod_prev$|sqrt_|log_one_minus_alphas_cumprod$"
    r"|posterior_|logvar$|lvlb_weights$|model\.diffusion_model\.logvar|.*position_ids$|v_pred$|ztsnr$"
    r"|(cond_stage_model|conditioner\.embedders\.0)\.transformer\.(text_projection|logit_scale))")


@dataclass(frozen=True, eq=False)
class Checkpoint:
    model: DiffusionModel
    clip: object  # a TextEncoder (nodeflow.text.text_encoder) or, for SDXL, a DualTextEncoder (nodeflow.text.families)
    vae: VAE
    kind: str
    metadata: dict = field(default_factory=dict)
    clip_vision: object = None  # a ClipVision (nodeflow.image.clip_vision) when asked for (unCLIP checkpoints)


def preview_factors(path: Path, text: str) -> dict:
    """The live-preview factors stored in a file's metadata, as LatentFormat fields."""
    try:
        stored = json.loads(text)
        factors = tuple(tuple(float(v) for v in row) for row in stored["factors"])
        bias = tuple(float(v) for v in stored["bias"])
    except (ValueError, KeyError, TypeError) as error:
        raise ModelFileError(f"{path}: unreadable {META_LATENT_RGB} metadata ({error})") from None
    if len(factors) != 4 or any(len(row) != 3 for row in factors) or len(bias) != 3:
        raise ModelFileError(f"{path}: {META_LATENT_RGB} metadata must hold 4 x 3 factors and 3 biases")
    return {"rgb_factors": factors, "rgb_bias": bias}


def _take(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Remove the keys under ``prefix`` from ``sd``; return them without the prefix."""
    return {k[len(prefix):]: sd.pop(k) for k in [k for k in sd if k.startswith(prefix)]}


def _check_unclaimed(path: Path, sd: dict[str, torch.Tensor], prefixes: tuple[str, ...]) -> None:
    unexpected = sorted(k for k in sd if not k.startswith(prefixes) and not IGNORED.match(k))
    if unexpected:
        shown = ", ".join(unexpected[:8]) + (f" ... ({len(unexpected)} in all)" if len(unexpected) > 8 else "")
        raise ModelFileError(f"{path}: unexpected keys: {shown}")


def load_checkpoint(path: str | os.PathLike, *, device: str | torch.device = "cpu",
                    dtype: str = "auto", tokenizer=None, clip_vision: bool = False,
                    low_vram: bool = False) -> Checkpoint:
    """MODEL, CLIP and VAE from one single-file checkpoint; with ``clip_vision``, also its CLIP
    image tower (an unCLIP checkpoint's; other files are refused); ``low_vram``: weights kept in
    CPU memory (module docstring)."""
    path = Path(path)
    device = torch.device(device)
    sd, metadata = _read_checkpoint(path, device, dtype, storage_for(device, low_vram))
    return checkpoint_from_state_dict(sd, path, metadata, device=device, dtype=dtype, tokenizer=tokenizer,
                                      clip_vision=clip_vision, low_vram=low_vram)


def storage_for(device: torch.device, low_vram: bool) -> torch.device:
    """Where a model's weights are kept: CPU memory with ``low_vram``, else ``device`` itself."""
    return torch.device("cpu") if low_vram else device


def text_dtype(device: torch.device, where: torch.device, dtype: str) -> torch.dtype:
    """The dtype of a text encoder computing on ``where`` in a run on ``device`` (dtype_option)."""
    return model_dtype(where, dtype_option(where, device, dtype), "text")


def stream_unet(unet: torch.nn.Module, storage: torch.device, device: torch.device) -> torch.nn.Module:
    """``unet`` (weights on ``storage``) made to run on ``device``: its blocks streamed there
    when the two differ (pinned for CUDA), else as it is."""
    if storage != device:
        stream_blocks(unet, device, pin=device.type == "cuda")
    return unet


def checkpoint_from_state_dict(sd: dict[str, torch.Tensor], path: Path, metadata: dict | None = None, *,
                               device: str | torch.device = "cpu", dtype: str = "auto",
                               tokenizer=None, clip_vision: bool = False, low_vram: bool = False) -> Checkpoint:
    """MODEL, CLIP and VAE (and with ``clip_vision`` the CLIP image tower) from a checkpoint's
    tensors (``path`` names it in messages). ``sd`` is emptied as the parts are built. On the meta
    device, nothing is allocated (key and shape checks)."""
    from nodeflow.text.tokenizer import load_tokenizer

    device, metadata = torch.device(device), metadata or {}
    storage = storage_for(device, low_vram)
    kind = detect_kind(sd)
    if kind not in KIND_FAMILY:
        raise ModelFileError(_unsupported(path, kind, sd))
    family = FAMILIES[KIND_FAMILY[kind]]
    sampling = model_sampling(kind, sd)
    text_parts = take_text_parts(family, sd, ignored=IGNORED.match)
    _check_unclaimed(path, sd, (UNET_PREFIX, VAE_PREFIX, *family.unused_prefixes))
    vision = _clip_vision(path, sd, family, storage, dtype) if clip_vision else None
    heads = int(metadata[META_UNET_HEADS]) if META_UNET_HEADS in metadata else None
    head_channels = family.head_channels if heads is None else None
    latent_format = family.latent_format
    if META_VAE_SCALE in metadata:
        latent_format = replace(latent_format, scale_factor=float(metadata[META_VAE_SCALE]))
    if META_LATENT_RGB in metadata:
        latent_format = replace(latent_format, **preview_factors(path, metadata[META_LATENT_RGB]))
    scale = latent_format.scale_factor
    unet_sd = {k: v for k, v in _take(sd, UNET_PREFIX).items() if not IGNORED.match(k)}
    vae_sd = _take(sd, VAE_PREFIX)
    sd.clear()  # each part's file tensors are released once that part is built (lower peak memory)
    for tower, part in text_parts.items():
        if not part:
            raise ModelFileError(f"{path}: no {tower} text encoder ({family.towers[tower][0]}*) in this "
                                 f"{family.name} checkpoint")
    unet_dtype = model_dtype(device, dtype, "unet")
    unet = built(path, "U-Net", lambda: unet_from_state_dict(
        unet_sd, device=storage, dtype=unet_dtype, num_heads=heads, head_channels=head_channels))
    del unet_sd
    stream_unet(unet, storage, device)
    vae = load_vae_state_dict(path, vae_sd, device, dtype, scale, storage=storage)
    del vae_sd
    clip = built(path, "text encoder", lambda: build_clip(
        KIND_FAMILY[kind], text_parts, tokenizer or load_tokenizer(), storage, text_dtype(device, storage, dtype)))
    del text_parts
    if small_enough_to_preview(vae):  # a linear preview of a tiny VAE's latents is misleading
        latent_format = replace(latent_format, preview_decoder=VaePreview(vae, latent_format.process_out))
    model = DiffusionModel(unet, sampling, latent_format, device, unet_dtype, name=path.name, adm=family.adm,
                           family=family.name)
    logger.info("loaded %s (%s, %s prediction) on %s", path.name, kind, sampling.parameterization, device)
    return Checkpoint(model, clip, vae, kind, metadata, vision)


def _clip_vision(path: Path, sd: dict[str, torch.Tensor], family, device: torch.device, dtype: str):
    """The checkpoint's CLIP image tower (under the family's ``vision_prefix``), or a clear refusal."""
    from nodeflow.loading.clip_vision import clip_vision_from_state_dict

    prefix = family.vision_prefix
    if prefix is None or not any(k.startswith(prefix) for k in sd):
        where = f" (expected {prefix}*)" if prefix else ""
        raise ModelFileError(f"{path}: this {family.name} checkpoint has no CLIP image tower{where}; "
                             "unCLIPCheckpointLoader is for SD2.1 unCLIP checkpoints, use CheckpointLoaderSimple")
    return clip_vision_from_state_dict(sd, path, device=device, dtype=dtype, prefix=prefix)


def _read_checkpoint(path: Path, device: torch.device, dtype: str,
                     storage: torch.device | None = None) -> tuple[dict, dict]:
    """The file's tensors, read to ``storage`` (default ``device``), each part's converted to
    its dtype as it is read (see read_state_dict_for): the U-Net's and VAE's for ``device``, where
    they compute; the text encoders' for ``storage``, where they compute."""
    storage = device if storage is None else storage
    parts = ((UNET_PREFIX, "unet", device), (VAE_PREFIX, "vae", device),
             *((prefix, "text", storage) for prefix in TEXT_PREFIXES))

    def dtype_for(key: str) -> torch.dtype | None:
        part = next(((name, where) for prefix, name, where in parts if key.startswith(prefix)), None)
        if part is None:
            return None
        return text_dtype(device, storage, dtype) if part[0] == "text" else model_dtype(part[1], dtype, part[0])

    return read_state_dict_for(path, storage, dtype_for)


def load_vae_state_dict(path: Path, sd: dict[str, torch.Tensor], device: torch.device, dtype: str,
                        scale: float = SD1_SCALING_FACTOR, storage: torch.device | None = None) -> VAE:
    """The VAE of ``sd``, computing on ``device``; its weights kept on ``storage`` (default
    ``device``; elsewhere: copied to ``device`` for each pass, an offloaded VAE)."""
    sd = {k: v for k, v in sd.items() if not IGNORED.match(k) and not k.startswith("loss.")}
    if "encoder.conv_in.weight" not in sd:
        raise ModelFileError(f"{path}: no VAE (first_stage_model.*) found")
    storage = device if storage is None else storage
    vae_dtype = model_dtype(device, dtype, "vae")
    model = built(path, "VAE", lambda: vae_from_state_dict(sd, device=storage, dtype=vae_dtype))
    if storage != device and device.type == "cuda":
        pin_storage([model])
    return VAE(model, scale, device, vae_dtype, name=path.name, offloaded=storage != device)


def load_vae(path: str | os.PathLike, *, device: str | torch.device = "cpu", dtype: str = "auto",
             low_vram: bool = False) -> VAE:
    """A standalone VAE (e.g. vae-ft-mse-840000): a file in the original layout, keys with or
    without ``first_stage_model.``; or in diffusers' layout (``diffusion_pytorch_model.safetensors``
    of an AutoencoderKL, or its folder with ``config.json``). ``low_vram``: the weights stay in
    CPU memory, copied to ``device`` for each pass."""
    path = Path(path)
    sd, metadata = read_diffusers_vae(path) if path.is_dir() else read_state_dict(path)
    if detect_kind(sd) != "vae":
        raise ModelFileError(_unsupported(path, detect_kind(sd), sd, wanted="a VAE"))
    plain = {k.removeprefix(VAE_PREFIX): v for k, v in sd.items()}
    if any(k.startswith("decoder.up_blocks.") for k in plain):  # diffusers' key layout
        plain = vae_to_original(plain, path)
    scale = float(metadata.get(META_VAE_SCALE, SD1_SCALING_FACTOR))
    device = torch.device(device)
    return load_vae_state_dict(path, plain, device, dtype, scale, storage=storage_for(device, low_vram))


#: Diffusion-model families nodeflow does not run, as users know them (kinds from nodeflow.loading.detect).
FAMILY_NAMES = {
    "sdxl-edm": "an SDXL EDM model (Playground v2.5 or an EDM v-prediction fine-tune)",
    "svd": "a Stable Video Diffusion (video) model", "sd3": "a Stable Diffusion 3 / 3.5 model",
    "stable-cascade": "a Stable Cascade model", "stable-audio": "a Stable Audio model", "auraflow": "an AuraFlow model",
    "hunyuan-dit": "a Hunyuan-DiT model", "hunyuan-video": "a HunyuanVideo (video) model", "chroma": "a Chroma model",
    "flux2": "a FLUX.2 model", "flux": "a FLUX.1 model", "mochi": "a Mochi (video) model", "pixart": "a PixArt model",
    "ltxv": "an LTX-Video (video) model", "wan": "a Wan (video) model", "hidream": "a HiDream model",
    "lumina2": "a Lumina 2 model", "cosmos": "a Cosmos (video) model",
    "sd2-x4-upscaler": "SD2's x4 upscaler (stable-diffusion-x4-upscaler)",
}
OTHER_KINDS = {"vae": "a standalone VAE (use VAELoader)", "lora": "a LoRA (use LoraLoader)",
               "controlnet": "a ControlNet (use ControlNetLoader)", "t2i-adapter": "a T2I-Adapter",
               **{kind: f"{FAMILIES[family].name} checkpoint (use CheckpointLoaderSimple)"
                  for kind, family in KIND_FAMILY.items()}}
RUNS = "nodeflow runs SD1.x, SD2.x and SDXL"


def _unsupported(path: Path, kind: str, sd: dict, wanted: str = "a Stable Diffusion checkpoint") -> str:
    if kind == "unknown":
        return f"{path}: not {wanted}; found keys like {describe_keys(sd)}"
    if kind in FAMILY_NAMES:
        return f"{path}: this is {FAMILY_NAMES[kind]}, a model family nodeflow does not run ({RUNS})"
    if kind in KIND_FAMILY:
        return f"{path}: this is an {OTHER_KINDS[kind]}, not {wanted}"
    return f"{path}: this is {OTHER_KINDS.get(kind, kind)}, not {wanted}"
