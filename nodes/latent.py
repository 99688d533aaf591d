"""Latent nodes: empty latents, resizing, batches, compositing, transforms, noise masks."""

from __future__ import annotations

import logging
import math

import torch

from nodeflow.errors import NodeInputError
from nodeflow.image.ops import LATENT_UPSCALE_METHODS, repeat_to_batch, upscale
from nodeflow.spec import LATENT, MASK, Choice, Float, Input, Int, Output, node

logger = logging.getLogger(__name__)

MAX_RESOLUTION = 16384


def _copy(latent: dict, samples: torch.Tensor, **changes) -> dict:
    result = {k: v for k, v in latent.items() if k != "samples"}
    result["samples"] = samples
    result.update(changes)
    return result


@node("EmptyLatentImage", display="Empty Latent Image", category="latent",
      inputs=[Int("width", 512, min=16, max=MAX_RESOLUTION, step=8, tooltip="pixels"),
              Int("height", 512, min=16, max=MAX_RESOLUTION, step=8, tooltip="pixels"),
              Int("batch_size", 1, min=1, max=4096)],
      outputs=[Output(LATENT)])
def empty_latent_image(width: int, height: int, batch_size: int):
    """A batch of zero latents at 1/8 of the pixel size, the starting point of text-to-image."""
    from nodeflow.runtime.devices import fits_in_memory

    shape = (batch_size, 4, height // 8, width // 8)
    needed = 4 * math.prod(shape)  # float32 bytes
    fits, free = fits_in_memory(needed)
    if not fits:
        raise NodeInputError("batch_size", f"{batch_size} latents of {width}x{height} need "
                                           f"{needed / 2**30:.1f} GiB; {free / 2**30:.1f} GiB of memory are free")
    return ({"samples": torch.zeros(shape)},)


@node("LatentUpscale", display="Upscale Latent", category="latent",
      inputs=[Input("samples", LATENT), Choice("upscale_method", list(LATENT_UPSCALE_METHODS)),
              Int("width", 512, min=0, max=MAX_RESOLUTION, step=8),
              Int("height", 512, min=0, max=MAX_RESOLUTION, step=8),
              Choice("crop", ["disabled", "center"])],
      outputs=[Output(LATENT)])
def latent_upscale(samples: dict, upscale_method: str, width: int, height: int, crop: str):
    """Resize latents to a pixel size, at least 64 (0 for one side keeps the aspect ratio)."""
    x = samples["samples"]  # (B, C, h, w)
    if width == 0 and height == 0:
        return (_copy(samples, x),)
    if width == 0:
        height = max(64, height)
        width = max(64, round(x.shape[3] * height / x.shape[2]))
    elif height == 0:
        width = max(64, width)
        height = max(64, round(x.shape[2] * width / x.shape[3]))
    else:
        width, height = max(64, width), max(64, height)
    return (_copy(samples, upscale(x, width // 8, height // 8, upscale_method, crop)),)


@node("LatentUpscaleBy", display="Upscale Latent By", category="latent",
      inputs=[Input("samples", LATENT), Choice("upscale_method", list(LATENT_UPSCALE_METHODS)),
              Float("scale_by", 1.5, min=0.01, max=8.0, step=0.01)],
      outputs=[Output(LATENT)])
def latent_upscale_by(samples: dict, upscale_method: str, scale_by: float):
    """Resize latents by a factor (to 1 latent pixel at least)."""
    x = samples["samples"]
    width, height = max(1, round(x.shape[3] * scale_by)), max(1, round(x.shape[2] * scale_by))
    return (_copy(samples, upscale(x, width, height, upscale_method)),)


@node("LatentFromBatch", display="Latent From Batch", category="latent/batch",
      inputs=[Input("samples", LATENT), Int("batch_index", 0, min=0, max=63), Int("length", 1, min=1, max=64)],
      outputs=[Output(LATENT)])
def latent_from_batch(samples: dict, batch_index: int, length: int):
    """Take ``length`` latents starting at ``batch_index``; their noise stays that of their index."""
    x = samples["samples"]
    start = min(x.shape[0] - 1, batch_index)
    if start != batch_index:
        logger.warning("LatentFromBatch: batch_index %d is outside the batch of %d latents; taking latent %d "
                       "(ComfyUI clamps it the same way)", batch_index, x.shape[0], start)
    length = min(x.shape[0] - start, length)
    result = _copy(samples, x[start:start + length].clone())
    mask = samples.get("noise_mask")
    if mask is not None and mask.ndim == 4 and mask.shape[0] > 1:
        mask = repeat_to_batch(mask, x.shape[0])[start:start + length]
        result["noise_mask"] = mask
    indices = samples.get("batch_index") or list(range(x.shape[0]))
    result["batch_index"] = indices[start:start + length]
    return (result,)


@node("RepeatLatentBatch", display="Repeat Latent Batch", category="latent/batch",
      inputs=[Input("samples", LATENT), Int("amount", 1, min=1, max=64)], outputs=[Output(LATENT)])
def repeat_latent_batch(samples: dict, amount: int):
    """Repeat the batch ``amount`` times."""
    x = samples["samples"]
    result = _copy(samples, x.repeat(amount, 1, 1, 1))
    mask = samples.get("noise_mask")
    if mask is not None and mask.ndim == 4 and mask.shape[0] > 1:
        result["noise_mask"] = repeat_to_batch(mask, x.shape[0]).repeat(amount, 1, 1, 1)
    if "batch_index" in samples:
        offset = max(samples["batch_index"]) - min(samples["batch_index"]) + 1
        result["batch_index"] = [i + k * offset for k in range(amount) for i in samples["batch_index"]]
    return (result,)


@node("LatentComposite", display="Latent Composite", category="latent",
      inputs=[Input("samples_to", LATENT), Input("samples_from", LATENT),
              Int("x", 0, min=0, max=MAX_RESOLUTION, step=8), Int("y", 0, min=0, max=MAX_RESOLUTION, step=8),
              Int("feather", 0, min=0, max=MAX_RESOLUTION, step=8)],
      outputs=[Output(LATENT)])
def latent_composite(samples_to: dict, samples_from: dict, x: int, y: int, feather: int):
    """Paste samples_from onto samples_to at (x, y) pixels. With ``feather`` (pixels, 8 per latent
    cell) the pasted edges that lie inside the target fade in: cell t from the edge gets weight
    (t + 1) / feather_cells."""
    target = samples_to["samples"].clone()
    source = repeat_to_batch(samples_from["samples"], target.shape[0])
    x, y, feather = x // 8, y // 8, feather // 8
    h = min(source.shape[2], target.shape[2] - y)
    w = min(source.shape[3], target.shape[3] - x)
    if h <= 0 or w <= 0:
        return (_copy(samples_to, target),)
    source = source[:, :, :h, :w]
    mask = torch.ones_like(source)
    for t in range(feather):
        ramp = (t + 1) / feather
        if y != 0:
            mask[:, :, t:t + 1, :] *= ramp
        if y + h < target.shape[2]:
            mask[:, :, h - 1 - t:h - t, :] *= ramp
        if x != 0:
            mask[:, :, :, t:t + 1] *= ramp
        if x + w < target.shape[3]:
            mask[:, :, :, w - 1 - t:w - t] *= ramp
    region = target[:, :, y:y + h, x:x + w]
    target[:, :, y:y + h, x:x + w] = source * mask + region * (1 - mask)
    return (_copy(samples_to, target),)


@node("LatentBlend", display="Latent Blend", category="_for_testing",
      inputs=[Input("samples1", LATENT), Input("samples2", LATENT),
              Float("blend_factor", 0.5, min=0, max=1, step=0.01)],
      outputs=[Output(LATENT)])
def latent_blend(samples1: dict, samples2: dict, blend_factor: float):
    """samples1 * blend_factor + samples2 * (1 - blend_factor) (samples2 resized if needed)."""
    a, b = samples1["samples"], samples2["samples"]
    if a.shape != b.shape:
        b = upscale(b, a.shape[3], a.shape[2], "bicubic", "center")
    return (_copy(samples1, a * blend_factor + b * (1 - blend_factor)),)


@node("LatentCrop", display="Crop Latent", category="latent/transform",
      inputs=[Input("samples", LATENT),
              Int("width", 512, min=64, max=MAX_RESOLUTION, step=8), Int("height", 512, min=64, max=MAX_RESOLUTION, step=8),
              Int("x", 0, min=0, max=MAX_RESOLUTION, step=8), Int("y", 0, min=0, max=MAX_RESOLUTION, step=8)],
      outputs=[Output(LATENT)])
def latent_crop(samples: dict, width: int, height: int, x: int, y: int):
    """Crop latents to a pixel rectangle."""
    s = samples["samples"]
    x, y = min(x // 8, s.shape[3] - 8) if s.shape[3] > 8 else 0, min(y // 8, s.shape[2] - 8) if s.shape[2] > 8 else 0
    x, y = max(x, 0), max(y, 0)
    return (_copy(samples, s[:, :, y:y + height // 8, x:x + width // 8]),)


@node("LatentFlip", display="Flip Latent", category="latent/transform",
      inputs=[Input("samples", LATENT), Choice("flip_method", ["x-axis: vertically", "y-axis: horizontally"])],
      outputs=[Output(LATENT)])
def latent_flip(samples: dict, flip_method: str):
    """Mirror latents vertically or horizontally."""
    dim = 2 if flip_method.startswith("x") else 3
    return (_copy(samples, torch.flip(samples["samples"], dims=[dim])),)


@node("LatentRotate", display="Rotate Latent", category="latent/transform",
      inputs=[Input("samples", LATENT),
              Choice("rotation", ["none", "90 degrees", "180 degrees", "270 degrees"])],
      outputs=[Output(LATENT)])
def latent_rotate(samples: dict, rotation: str):
    """Rotate latents clockwise."""
    turns = {"none": 0, "90 degrees": 3, "180 degrees": 2, "270 degrees": 1}[rotation]
    return (_copy(samples, torch.rot90(samples["samples"], k=turns, dims=[2, 3])),)


@node("SetLatentNoiseMask", display="Set Latent Noise Mask", category="latent/inpaint",
      inputs=[Input("samples", LATENT), Input("mask", MASK)], outputs=[Output(LATENT)])
def set_latent_noise_mask(samples: dict, mask: torch.Tensor):
    """Only repaint where the mask is white (the rest stays as the input latent)."""
    if mask.ndim not in (2, 3):
        raise NodeInputError("mask", f"expected a mask (B, H, W), got shape {tuple(mask.shape)}")
    return (_copy(samples, samples["samples"], noise_mask=mask.reshape(-1, 1, mask.shape[-2], mask.shape[-1])),)

