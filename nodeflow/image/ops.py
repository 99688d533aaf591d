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
LATENT_UPSCALE_METHODS = ("nearest-exact", "bilinear", "area", "bicubic", "bislerp")


def center_crop_to_aspect(x: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Crop (B, C, H, W) at the centre to the aspect ratio width:height (at least the middle
    pixel or two stay: 512 x 512 cropped to 512:1 keeps 2 rows, not 0)."""
    old_w, old_h = x.shape[-1], x.shape[-2]
    old_aspect, new_aspect = old_w / old_h, width / height
    x0 = y0 = 0
    if old_aspect > new_aspect:
        x0 = min(round((old_w - old_w * (new_aspect / old_aspect)) / 2), (old_w - 1) // 2)
    elif old_aspect < new_aspect:
        y0 = min(round((old_h - old_h * (old_aspect / new_aspect)) / 2), (old_h - 1) // 2)
    return x[..., y0:old_h - y0, x0:old_w - x0]


def upscale(x: torch.Tensor, width: int, height: int, method: str, crop: str = "disabled") -> torch.Tensor:
    """Resize (B, C, H, W) to (B, C, height, width); ``crop="center"`` keeps the aspect ratio."""
    if crop == "center":
        x = center_crop_to_aspect(x, width, height)
    if method == "lanczos":
        return _lanczos(x, width, height)
    if method == "bislerp":
        return bislerp(x, width, height)
    if method not in UPSCALE_METHODS:
        known = sorted(set(UPSCALE_METHODS) | set(LATENT_UPSCALE_METHODS))
        raise ValueError(f"unknown upscale method {method!r}; one of {', '.join(known)}")
    kwargs = {"align_corners": False} if method in ("bilinear", "bicubic") else {}
    return F.interpolate(x.float(), size=(height, width), mode=method, **kwargs)


def _lanczos(x: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Pillow's Lanczos filter on 8-bit images (values truncated to 0..255, as ComfyUI)."""
    images = []
    for image in x.float():
        array = np.clip(image.movedim(0, -1).cpu().numpy() * 255, 0, 255).astype(np.uint8)
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
    """A normalised 2-D Gaussian of size 2 radius + 1 (ComfyUI's convention: the coordinates span
    -1..1 across the kernel, so ``sigma`` is relative to the radius, not in pixels)."""
    coords = torch.linspace(-1, 1, 2 * radius + 1)  # (K,)
    g = torch.exp(-(coords[:, None] ** 2 + coords[None, :] ** 2) / (2 * sigma**2))  # (K, K)
    return g / g.sum()


def _filter(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Convolve every channel of (B, H, W, C) with a (K, K) kernel, borders reflected."""
    radius = kernel.shape[-1] // 2
    x = image_to_nchw(image)  # (B, C, H, W)
    if radius >= min(x.shape[-2:]):
        raise ValueError(f"filter radius {radius} must be smaller than the image ({x.shape[-1]}x{x.shape[-2]})")
    channels = x.shape[1]
    weights = kernel.to(x)[None, None].repeat(channels, 1, 1, 1)  # (C, 1, K, K)
    padded = F.pad(x, (radius,) * 4, mode="reflect")
    return nchw_to_image(F.conv2d(padded, weights, groups=channels))


def blur(image: torch.Tensor, radius: int, sigma: float) -> torch.Tensor:
    """Gaussian blur of (B, H, W, C) with reflected borders."""
    if radius <= 0:
        return image
    return _filter(image, gaussian_kernel(radius, sigma))


def sharpen(image: torch.Tensor, radius: int, sigma: float, alpha: float) -> torch.Tensor:
    """Unsharp mask as ComfyUI's ImageSharpen: x + 10 alpha (x - blur(x)), clamped to 0..1."""
    if radius <= 0:
        return image
    kernel = gaussian_kernel(radius, sigma) * -(alpha * 10)  # (K, K)
    kernel[radius, radius] += 1.0 - kernel.sum()
    return _filter(image, kernel).clamp(0, 1)


def _slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of the rows of (N, C) ``a`` and ``b`` by (N, 1) ``t``; the length is
    interpolated linearly. Nearly parallel rows keep ``a``, opposite rows interpolate linearly."""
    norm_a, norm_b = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)  # (N, 1)
    unit_a = torch.where(norm_a == 0, 0.0, a / norm_a)
    unit_b = torch.where(norm_b == 0, 0.0, b / norm_b)
    dot = (unit_a * unit_b).sum(-1, keepdim=True)  # (N, 1)
    omega = torch.acos(dot)
    sin_omega = torch.sin(omega)
    result = (torch.sin((1 - t) * omega) * unit_a + torch.sin(t * omega) * unit_b) / sin_omega
    result = result * (norm_a * (1 - t) + norm_b * t)
    result = torch.where(dot < 1e-5 - 1, a * (1 - t) + b * t, result)
    return torch.where(dot > 1 - 1e-5, a, result)


def _bilinear_taps(old: int, new: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each of ``new`` output positions: lower source index, upper index, fraction (half-pixel
    centres, clamped at the borders: the positions bilinear resizing samples)."""
    position = ((torch.arange(new, device=device) + 0.5) * (old / new) - 0.5).clamp(0, old - 1)  # (new,)
    lower = position.floor()
    return lower.long(), (lower + 1).clamp(max=old - 1).long(), position - lower


def bislerp(x: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Resize (B, C, H, W) like bilinear, but blending the channel vectors spherically (ComfyUI's
    "bislerp" latent upscale): first along the width, then along the height."""
    dtype, x = x.dtype, x.float()
    for dim, size in ((3, width), (2, height)):
        lower, upper, t = _bilinear_taps(x.shape[dim], size, x.device)
        a = x.index_select(dim, lower).movedim(1, -1)  # (B, ..., C)
        b = x.index_select(dim, upper).movedim(1, -1)
        shape = a.shape
        t = t.reshape((size, 1) if dim == 2 else (1, size)).expand(shape[1:3]).expand(shape[:3])
        x = _slerp(a.reshape(-1, shape[-1]), b.reshape(-1, shape[-1]), t.reshape(-1, 1)).reshape(shape).movedim(-1, 1)
    return x.to(dtype)


def match_channels(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Give two IMAGEs (B, H, W, C) the same channel count: an RGB image next to an RGBA one gets
    an opaque alpha channel (as ComfyUI's image_alpha_fix)."""
    channels = max(a.shape[-1], b.shape[-1])

    def widen(x: torch.Tensor) -> torch.Tensor:
        missing = channels - x.shape[-1]
        return torch.cat([x, torch.ones(*x.shape[:-1], missing, dtype=x.dtype, device=x.device)], -1) if missing else x

    return widen(a), widen(b)


def repeat_to_batch(x: torch.Tensor, batch: int) -> torch.Tensor:
    if x.shape[0] >= batch:
        return x[:batch]
    return x.repeat(math.ceil(batch / x.shape[0]), *([1] * (x.ndim - 1)))[:batch]
