"""Small tensor helpers for image, mask and latent nodes (ComfyUI's conventions).

Images are (B, H, W, C) float in 0..1, masks (B, H, W), latents (B, C, h, w).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

UPSCALE_METHODS = ("nearest-exact", "bilinear", "area", "bicubic", "lanczos")


def center_crop_to_aspect(x: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Crop (B, C, H, W) at the centre to the aspect ratio width:height."""
    old_w, old_h = x.shape[-1], x.shape[-2]
    old_aspect, new_aspect = old_w / old_h, width / height
    x0 = y0 = 0
    if old_aspect > new_aspect:
        x0 = round((old_w - old_w * (new_aspect / old_aspect)) / 2)
    elif old_aspect < new_aspect:
        y0 = round((old_h - old_h * (old_aspect / new_aspect)) / 2)
    return x[..., y0:old_h - y0, x0:old_w - x0]


def upscale(x: torch.Tensor, width: int, height: int, method: str, crop: str = "disabled") -> torch.Tensor:
    """Resize (B, C, H, W) to (B, C, height, width); ``crop="center"`` keeps the aspect ratio."""
    if crop == "center":
        x = center_crop_to_aspect(x, width, height)
    if method == "lanczos":
        return _lanczos(x, width, height)
    if method not in UPSCALE_METHODS:
        raise ValueError(f"unknown upscale method {method!r}; one of {', '.join(UPSCALE_METHODS)}")
    kwargs = {"align_corners": False} if method in ("bilinear", "bicubic") else {}
    return F.interpolate(x.float(), size=(height, width), mode=method, **kwargs)


def _lanczos(x: torch.Tensor, width: int, height: int) -> torch.Tensor:
    images = []
    for image in x.float().clamp(0, 1):
        array = (image.movedim(0, -1).cpu().numpy() * 255).round().astype(np.uint8)
        mode = "L" if array.shape[-1] == 1 else None
        pil = Image.fromarray(array[..., 0] if mode else array, mode=mode)
        resized = np.asarray(pil.resize((width, height), Image.Resampling.LANCZOS), dtype=np.float32) / 255
        images.append(torch.from_numpy(resized.reshape(height, width, -1)).movedim(-1, 0))
    return torch.stack(images).to(x.device)


def image_to_nchw(image: torch.Tensor) -> torch.Tensor:
    return image.movedim(-1, 1)


def nchw_to_image(x: torch.Tensor) -> torch.Tensor:
    return x.movedim(1, -1)


def as_mask_batch(mask: torch.Tensor) -> torch.Tensor:
    """A MASK as (B, H, W) (a (H, W) mask becomes a batch of one)."""
    return mask[None] if mask.ndim == 2 else mask


def gaussian_kernel(radius: int, sigma: float) -> torch.Tensor:
    """A normalised 2-D Gaussian kernel of size 2 radius + 1."""
    coords = torch.arange(-radius, radius + 1, dtype=torch.float32)
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    kernel = g[:, None] * g[None, :]
    return kernel / kernel.sum()


def blur(image: torch.Tensor, radius: int, sigma: float) -> torch.Tensor:
    """Gaussian blur of (B, H, W, C) with reflected borders."""
    if radius <= 0:
        return image
    x = image_to_nchw(image)
    channels = x.shape[1]
    kernel = gaussian_kernel(radius, sigma).to(x)[None, None].repeat(channels, 1, 1, 1)
    padded = F.pad(x, (radius,) * 4, mode="reflect")
    return nchw_to_image(F.conv2d(padded, kernel, groups=channels))


def repeat_to_batch(x: torch.Tensor, batch: int) -> torch.Tensor:
    if x.shape[0] >= batch:
        return x[:batch]
    return x.repeat(math.ceil(batch / x.shape[0]), *([1] * (x.ndim - 1)))[:batch]
