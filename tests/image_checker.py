"""An independent checker of what an image of the shapes dataset shows.

It reads a plain RGB image and measures, without any knowledge of how images were drawn (it
imports only the palette's names and RGB values, never the rasteriser):

- the background color: the median of the image's border pixels, named by the nearest palette
  color (Euclidean distance in RGB);
- the foreground region: the largest 4-connected region of pixels far from the background color;
- the foreground color: the median of that region's pixels, named by the nearest palette color;
- the shape: from the region's fill ratio inside its bounding box, nearest to the ratio of each
  ideal shape (circle pi/4, square 1, triangle 1/2, five-pointed star from its geometry).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from nodeflow.training.palette import PALETTE, STAR_INNER_RATIO

#: A pixel belongs to the foreground when it is this far (RGB, 0..255) from the background color.
FOREGROUND_DISTANCE = 48.0

_NAMES = tuple(PALETTE)
_TABLE = np.array([PALETTE[name] for name in _NAMES], dtype=np.float64)  # (C, 3)


def _star_fill_ratio(inner: float) -> float:
    """Area of a five-pointed star (outer radius 1) over the area of its bounding box."""
    angles = np.radians(90 + 36 * np.arange(10))
    radii = np.where(np.arange(10) % 2 == 0, 1.0, inner)
    xs, ys = radii * np.cos(angles), radii * np.sin(angles)
    area = 0.5 * abs(np.sum(xs * np.roll(ys, -1) - np.roll(xs, -1) * ys))  # shoelace formula
    return float(area / ((xs.max() - xs.min()) * (ys.max() - ys.min())))


#: Fill ratio of each ideal shape inside its bounding box.
FILL_RATIOS: dict[str, float] = {
    "star": _star_fill_ratio(STAR_INNER_RATIO),
    "triangle": 0.5,
    "circle": math.pi / 4,
    "square": 1.0,
}


@dataclass(frozen=True)
class Reading:
    """What the checker sees in one image."""

    background: str
    foreground: str | None  # None when no foreground region was found
    shape: str | None
    fill_ratio: float
    region: np.ndarray  # (H, W) bool, the largest foreground region
    box: tuple[int, int, int, int] | None  # x0, y0, x1, y1 (exclusive) of the region


def nearest_color(rgb: np.ndarray) -> str:
    """The palette name nearest to an RGB triple (0..255)."""
    distances = np.linalg.norm(_TABLE - np.asarray(rgb, dtype=np.float64), axis=1)  # (C,)
    return _NAMES[int(np.argmin(distances))]


def nearest_shape(fill_ratio: float) -> str:
    """The shape whose ideal fill ratio is nearest."""
    return min(FILL_RATIOS, key=lambda name: abs(FILL_RATIOS[name] - fill_ratio))


def read_image(image: np.ndarray) -> Reading:
    """Measure an RGB image: (H, W, 3) uint8 in 0..255, or float in 0..1."""
    pixels = np.asarray(image)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {pixels.shape}")
    if pixels.dtype != np.uint8:
        pixels = np.clip(pixels * 255.0, 0, 255)
    pixels = pixels.astype(np.float64)  # (H, W, 3)

    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])  # (P, 3)
    background_rgb = np.median(border, axis=0)
    far = np.linalg.norm(pixels - background_rgb, axis=2) > FOREGROUND_DISTANCE  # (H, W)

    labels, count = ndimage.label(far)  # 4-connectivity
    if count == 0:
        empty = np.zeros(far.shape, dtype=bool)
        return Reading(nearest_color(background_rgb), None, None, 0.0, empty, None)
    sizes = np.bincount(labels.ravel())[1:]
    region = labels == (1 + int(np.argmax(sizes)))  # (H, W)

    ys, xs = np.nonzero(region)
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    fill = float(region.sum()) / ((box[2] - box[0]) * (box[3] - box[1]))
    foreground_rgb = np.median(pixels[region], axis=0)
    return Reading(
        background=nearest_color(background_rgb),
        foreground=nearest_color(foreground_rgb),
        shape=nearest_shape(fill),
        fill_ratio=fill,
        region=region,
        box=box,
    )


def mask_iou(region: np.ndarray, mask: np.ndarray) -> float:
    """Intersection over union of two boolean masks of the same shape."""
    if region.shape != mask.shape:
        raise ValueError(f"mask shapes differ: {region.shape} vs {mask.shape}")
    union = np.logical_or(region, mask).sum()
    return float(np.logical_and(region, mask).sum() / union) if union else 1.0
