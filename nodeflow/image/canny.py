"""Canny edge detection (Canny 1986) in torch: Gaussian smoothing, Sobel gradients, non-maximum
suppression along the gradient direction, double threshold and hysteresis."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from nodeflow.image.ops import gaussian_kernel


def _filter(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    pad = kernel.shape[-1] // 2
    return F.conv2d(F.pad(x, (pad,) * 4, mode="replicate"), kernel[None, None].to(x))


def canny(gray: torch.Tensor, low: float, high: float, sigma: float = 1.0, max_iterations: int = 1000) -> torch.Tensor:
    """Edges (B, 1, H, W) in {0, 1} of grey images (B, 1, H, W) in 0..1; thresholds on the
    gradient magnitude of the smoothed image."""
    smooth = _filter(gray, gaussian_kernel(max(1, math.ceil(2 * sigma)), sigma))
    sobel_x = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    gx, gy = _filter(smooth, sobel_x), _filter(smooth, sobel_x.T)
    magnitude = torch.sqrt(gx**2 + gy**2 + 1e-12)
    angle = torch.rad2deg(torch.atan2(gy, gx)) % 180.0
    direction = (((angle + 22.5) // 45.0) % 4).long()  # 0: horizontal gradient, 1: 45, 2: 90, 3: 135
    padded = F.pad(magnitude, (1, 1, 1, 1))
    height, width = magnitude.shape[-2:]

    def shifted(dy: int, dx: int) -> torch.Tensor:
        return padded[..., 1 + dy:1 + dy + height, 1 + dx:1 + dx + width]

    offsets = [((0, 1), (0, -1)), ((1, 1), (-1, -1)), ((1, 0), (-1, 0)), ((1, -1), (-1, 1))]
    keep = torch.zeros_like(magnitude, dtype=torch.bool)
    for index, ((dy1, dx1), (dy2, dx2)) in enumerate(offsets):
        is_max = (magnitude >= shifted(dy1, dx1)) & (magnitude >= shifted(dy2, dx2))
        keep |= (direction == index) & is_max
    thin = magnitude * keep
    strong = thin >= high
    weak = (thin >= low) & ~strong
    edges = strong.float()
    kernel = torch.ones(1, 1, 3, 3)
    for _ in range(max_iterations):  # hysteresis: grow strong edges into connected weak ones
        grown = ((F.conv2d(F.pad(edges, (1, 1, 1, 1)), kernel) > 0) & weak) | strong
        if torch.equal(grown.float(), edges):
            break
        edges = grown.float()
    return edges
