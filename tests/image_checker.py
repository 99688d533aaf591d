"""An independent checker of what an image of the shapes dataset shows.

It reads a plain RGB image and measures, without any knowledge of how images were drawn (it
imports only the palette's names and RGB values, never the rasteriser):

- the background color: the median of the image's border pixels, named by the nearest palette
  color (Euclidean distance in RGB);
- the foreground region: the largest 4-connected region of pixels far from the background color,
  its outline then drawn half-way between the two colors (pixels nearer the foreground color);
- the foreground color: the median of the far pixels, named by the nearest palette color;
- the shape: a star is the one shape that is not convex, told by the region's solidity (its area
  over its convex hull's; 0.49 for the ideal star, 1 for convex shapes); the convex ones by the
  region's fill ratio inside its bounding box, nearest to the ratio of each ideal shape (circle
  pi/4, square 1, triangle 1/2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

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

#: Below this solidity a region is a star. Measured on the dataset's own 64x64 renders, sharp and
#: blurred (Gaussian sigma 1 px): convex shapes 0.925 or more (the pixel staircase), stars 0.694 or
#: less; the threshold is about the midpoint (tests/test_image_checker.py keeps both true).
STAR_SOLIDITY = 0.81


@dataclass(frozen=True)
class Reading:
    """What the checker sees in one image."""

    background: str
    foreground: str | None  # None when no foreground region was found
    shape: str | None
    fill_ratio: float
    solidity: float
    region: np.ndarray  # (H, W) bool, the largest foreground region
    box: tuple[int, int, int, int] | None  # x0, y0, x1, y1 (exclusive) of the region


def nearest_color(rgb: np.ndarray) -> str:
    """The palette name nearest to an RGB triple (0..255)."""
    distances = np.linalg.norm(_TABLE - np.asarray(rgb, dtype=np.float64), axis=1)  # (C,)
    return _NAMES[int(np.argmin(distances))]


def nearest_shape(fill_ratio: float, solidity: float = 1.0) -> str:
    """A star when the region is far from convex, else the convex shape whose ideal fill ratio is
    nearest."""
    if solidity < STAR_SOLIDITY:
        return "star"
    convex = [name for name in FILL_RATIOS if name != "star"]
    return min(convex, key=lambda name: abs(FILL_RATIOS[name] - fill_ratio))


def solidity_of(region: np.ndarray) -> float:
    """The region's area over the area of its convex hull (pixels as unit squares)."""
    ys, xs = np.nonzero(region)
    corners = np.concatenate([np.stack([xs + dx, ys + dy], axis=1) for dx in (0, 1) for dy in (0, 1)])
    try:
        hull_area = ConvexHull(corners).volume  # in 2-D, "volume" is the area
    except QhullError:  # degenerate (collinear) regions: a line of pixels is its own hull
        return 1.0
    return float(region.sum() / hull_area)


def _half_way_region(pixels: np.ndarray, seed: np.ndarray, foreground_rgb: np.ndarray,
                     background_rgb: np.ndarray) -> np.ndarray:
    """The shape's outline where it is half-way between the two colors (as a mask's 50% coverage
    line): pixels around ``seed`` nearer the foreground color than the background color."""
    nearer = (np.linalg.norm(pixels - foreground_rgb, axis=2)
              < np.linalg.norm(pixels - background_rgb, axis=2))  # (H, W)
    candidates = nearer & ndimage.binary_dilation(seed, iterations=2)
    labels, count = ndimage.label(candidates)
    if count == 0:
        return seed
    return labels == (1 + int(np.argmax(np.bincount(labels.ravel())[1:])))


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
        return Reading(nearest_color(background_rgb), None, None, 0.0, 1.0, empty, None)
    sizes = np.bincount(labels.ravel())[1:]
    seed_region = labels == (1 + int(np.argmax(sizes)))  # (H, W)
    foreground_rgb = np.median(pixels[seed_region], axis=0)
    region = _half_way_region(pixels, seed_region, foreground_rgb, background_rgb)

    ys, xs = np.nonzero(region)
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    fill = float(region.sum()) / ((box[2] - box[0]) * (box[3] - box[1]))
    solidity = solidity_of(region)
    return Reading(
        background=nearest_color(background_rgb),
        foreground=nearest_color(foreground_rgb),
        shape=nearest_shape(fill, solidity),
        fill_ratio=fill,
        solidity=solidity,
        region=region,
        box=box,
    )


def mask_iou(region: np.ndarray, mask: np.ndarray) -> float:
    """Intersection over union of two boolean masks of the same shape."""
    if region.shape != mask.shape:
        raise ValueError(f"mask shapes differ: {region.shape} vs {mask.shape}")
    union = np.logical_or(region, mask).sum()
    return float(np.logical_and(region, mask).sum() / union) if union else 1.0
