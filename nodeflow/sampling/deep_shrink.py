"""Kohya's deep shrink (kohya-ss/sd-scripts' "Deep Shrink", ComfyUI's PatchModelAddDownscale):
the U-Net's deep layers see a large image at the size the model was trained at, early in sampling.

While the noise level sigma of the batch (its first entry, as ComfyUI reads it) lies in
[sigma_end, sigma_start] - the start and end percents converted with the model's sampling
(``percent_to_sigma``: 0 is the start of sampling, the noisiest) - the feature map after input
block ``block_number`` (ComfyUI's numbering: 0 is the first convolution) is resized to
(round(h / factor), round(w / factor)). Everything deeper runs on the smaller map. Every decoder
block whose backbone features differ in size from its skip resizes them back to the skip's size
before joining it, so the output has the input's size, odd sizes included. At high noise, where
the composition forms, the model thus lays out one subject instead of repeating it across a
canvas larger than its training images; later steps run unpatched and add the detail.

The downscale runs after the block's output was kept as the skip connection
(``downscale_after_skip``, the default: the skip keeps its full size) or before (the skip shrinks
too, and the decoder resizes back only where the shrunk region ends). Resizing is
torch.nn.functional.interpolate with the named mode in the features' dtype, or bislerp
(nodeflow.image.ops.bislerp: bilinear taps, channel vectors blended spherically), as ComfyUI's
common_upscale without cropping.

Differences from ComfyUI, only where ComfyUI fails: a factor that would shrink a side to 0 keeps
1 pixel (ComfyUI's interpolate raises), and the decoder compares both sides with the skip's
(ComfyUI compares the height only, and the join fails if only the width differs). A forward
without sigmas (a U-Net called directly, never by the samplers) is left unpatched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

from nodeflow.image.ops import bislerp
from nodeflow.models.unet_patches import PatchCall

#: ComfyUI's choices, in its order (the first is the default)
RESIZE_METHODS = ("bicubic", "nearest-exact", "bilinear", "area", "bislerp")


def resize(h: torch.Tensor, width: int, height: int, method: str) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, height, width) by ``method`` (one of RESIZE_METHODS), dtype kept."""
    if method == "bislerp":
        return bislerp(h, width, height)
    if method not in RESIZE_METHODS:
        raise ValueError(f"unknown resize method {method!r}; one of {', '.join(RESIZE_METHODS)}")
    return F.interpolate(h, size=(height, width), mode=method)


class DeepShrink(NamedTuple):
    """The two hooks: ``downscale`` for input blocks (before or after the skip), ``restore`` for
    output blocks (nodeflow.models.unet_patches)."""

    downscale: Callable[[torch.Tensor, PatchCall], torch.Tensor]
    restore: Callable[[torch.Tensor, torch.Tensor, PatchCall], tuple[torch.Tensor, torch.Tensor]]


def deep_shrink(sampling, block_number: int, downscale_factor: float, start_percent: float,
                end_percent: float, downscale_method: str = "bicubic",
                upscale_method: str = "bicubic") -> DeepShrink:
    """The hooks shrinking the features after input block ``block_number`` by ``downscale_factor``
    while sigma is within the percents' range of ``sampling`` (a ModelSampling: percent_to_sigma)."""
    for method in (downscale_method, upscale_method):
        if method not in RESIZE_METHODS:
            raise ValueError(f"unknown resize method {method!r}; one of {', '.join(RESIZE_METHODS)}")
    if downscale_factor <= 0:
        raise ValueError(f"the downscale factor must be positive, got {downscale_factor}")
    sigma_start = sampling.percent_to_sigma(start_percent)
    sigma_end = sampling.percent_to_sigma(end_percent)

    def downscale(h: torch.Tensor, call: PatchCall) -> torch.Tensor:
        if call.block[1] != block_number or call.sigma is None:
            return h
        sigma = float(call.sigma.reshape(-1)[0])
        if not sigma_end <= sigma <= sigma_start:
            return h
        height, width = h.shape[-2:]
        return resize(h, max(1, round(width / downscale_factor)), max(1, round(height / downscale_factor)),
                      downscale_method)  # (B, C, h / f, w / f)

    def restore(h: torch.Tensor, skip: torch.Tensor, call: PatchCall) -> tuple[torch.Tensor, torch.Tensor]:
        if h.shape[-2:] != skip.shape[-2:]:
            h = resize(h, skip.shape[-1], skip.shape[-2], upscale_method)  # (B, C, skip's h, w)
        return h, skip

    return DeepShrink(downscale, restore)
