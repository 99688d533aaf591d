"""Grey-scale morphology with a flat k x k square, as ComfyUI's Morphology node computes it with
kornia.morphology (versions 0.7 and 0.8, those ComfyUI has been used with).

The window of output pixel p spans p - k // 2 .. p + k - 1 - k // 2 on each axis (centred for odd k;
for even k one more pixel before p than after) for erosion and dilation alike, and pixels outside
the image are ignored (kornia's "geodesic" border). kornia 0.9 reflects the dilation window (a
Minkowski dilation: p - k + 1 + k // 2 .. p + k // 2), which changes even kernels only. For a flat square, replicating the edge pixels
gives the same minimum and maximum: the nearest edge pixel of a position outside the image lies in
the same window. A square's maximum is the maximum over its columns of the maximum over its rows, and
each 1-D running maximum costs O(1) per pixel whatever k (van Herk 1992, "A fast algorithm for
local minimum and maximum filters on rectangular and octagonal kernels"; Gil & Werman 1993): the
maximum of window [i, i + k - 1] is the larger of the suffix maximum of i's block of k and the
prefix maximum of i + k - 1's block.

Soille, "Morphological Image Analysis" (2003), ch. 3-4: opening = dilation(erosion), closing =
erosion(dilation), gradient = dilation - erosion, top hat = x - opening, bottom hat = closing - x.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

OPERATIONS = ("erode", "dilate", "open", "close", "gradient", "bottom_hat", "top_hat")  # ComfyUI's order


def dilate(x: torch.Tensor, size: int) -> torch.Tensor:
    """Maximum of (B, C, H, W) over each pixel's ``size`` x ``size`` window."""
    before, after = size // 2, size - 1 - size // 2
    rows = _window_max(F.pad(x, (0, 0, before, after), mode="replicate"), size, dim=-2)  # (B, C, H, W)
    return _window_max(F.pad(rows, (before, after, 0, 0), mode="replicate"), size, dim=-1)


def _window_max(x: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """Maxima of the windows of ``size`` consecutive entries along ``dim`` (length n -> n - size + 1)."""
    x = x.movedim(dim, -1)
    n = x.shape[-1]
    blocks = -(-n // size)
    padded = F.pad(x, (0, blocks * size - n), value=-math.inf).unflatten(-1, (blocks, size))  # (..., blocks, size)
    prefix = padded.cummax(-1).values.flatten(-2)  # maximum from the start of the block
    suffix = padded.flip(-1).cummax(-1).values.flip(-1).flatten(-2)  # maximum to the end of the block
    count = n - size + 1
    return torch.maximum(suffix[..., :count], prefix[..., size - 1:size - 1 + count]).movedim(-1, dim)


def erode(x: torch.Tensor, size: int) -> torch.Tensor:
    """Minimum of (B, C, H, W) over each pixel's ``size`` x ``size`` window."""
    return -dilate(-x, size)


def morphology(x: torch.Tensor, operation: str, size: int) -> torch.Tensor:
    """One of ``OPERATIONS`` on (B, C, H, W) with a flat ``size`` x ``size`` square."""
    if operation == "erode":
        return erode(x, size)
    if operation == "dilate":
        return dilate(x, size)
    if operation == "open":
        return dilate(erode(x, size), size)
    if operation == "close":
        return erode(dilate(x, size), size)
    if operation == "gradient":
        return dilate(x, size) - erode(x, size)
    if operation == "top_hat":
        return x - dilate(erode(x, size), size)
    if operation == "bottom_hat":
        return erode(dilate(x, size), size) - x
    raise ValueError(f"unknown morphology operation {operation!r}; one of {', '.join(OPERATIONS)}")
