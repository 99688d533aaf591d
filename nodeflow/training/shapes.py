"""The procedural dataset of the embedded model: one colored shape on a plain colored background.

Every sample is drawn from a seeded ``numpy`` generator and rasterised on the fly, with no files:
a shape (circle, square, triangle, star) of a named color (``palette.PALETTE``), a random size
and position, on a background of another named color, captioned from the template
``"a red circle on a blue background"``.

Rasterisation is vectorised over the whole batch with signed distance functions (SDF, in pixel
units): the coverage of a pixel is ``clip(0.5 - sdf(pixel centre), 0, 1)``, a one-pixel wide
anti-aliased edge (exact for straight edges, close for curves). The coverage map is returned too,
as the shape's mask (a ControlNet's control image).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nodeflow.training.palette import PALETTE, SHAPES, STAR_INNER_RATIO, caption

_COLOR_NAMES: tuple[str, ...] = tuple(PALETTE)
_COLOR_TABLE = np.array([PALETTE[name] for name in _COLOR_NAMES], dtype=np.float32) / 255.0


@dataclass(frozen=True)
class ShapeBatch:
    """A batch of samples and their ground truth."""

    images: np.ndarray  # (N, H, W, 3) float32 in 0..1
    masks: np.ndarray  # (N, H, W) float32 coverage of the shape in 0..1
    shapes: list[str]
    foregrounds: list[str]
    backgrounds: list[str]
    boxes: np.ndarray  # (N, 4) float32 x0, y0, x1, y1 of the shape in pixels
    captions: list[str]

    def __len__(self) -> int:
        return len(self.captions)


@dataclass(frozen=True)
class ShapeDataset:
    """Draws ``ShapeBatch``es from a seeded generator.

    ``min_size`` and ``max_size`` bound the side of the square that holds the shape, as a
    fraction of the image side; the shape is placed fully inside the image with ``margin`` pixels
    to spare.
    """

    resolution: int = 64
    min_size: float = 0.35
    max_size: float = 0.75
    margin: float = 2.0

    def sample(self, rng: np.random.Generator, n: int) -> ShapeBatch:
        """Draw ``n`` random samples (shape, colors, size, position) and rasterise them."""
        res = self.resolution
        shape_ids = rng.integers(0, len(SHAPES), size=n)
        fg_ids = rng.integers(0, len(_COLOR_NAMES), size=n)
        # Background: any other color (uniform over the remaining ones).
        bg_ids = (fg_ids + rng.integers(1, len(_COLOR_NAMES), size=n)) % len(_COLOR_NAMES)
        sizes = rng.uniform(self.min_size, self.max_size, size=n).astype(np.float32) * res
        lo = sizes / 2 + self.margin
        hi = res - sizes / 2 - self.margin
        centers = lo[:, None] + rng.uniform(size=(n, 2)).astype(np.float32) * (hi - lo)[:, None]
        return self.render(shape_ids, fg_ids, bg_ids, centers, sizes)

    def render(
        self,
        shape_ids: np.ndarray,
        fg_ids: np.ndarray,
        bg_ids: np.ndarray,
        centers: np.ndarray,
        sizes: np.ndarray,
    ) -> ShapeBatch:
        """Rasterise given parameters: indices into SHAPES / PALETTE, centres (N, 2) x, y and
        sizes (N,) in pixels."""
        coverage, boxes = rasterise(shape_ids, centers, sizes, self.resolution)  # (N, H, W)
        fg = _COLOR_TABLE[fg_ids][:, None, None, :]  # (N, 1, 1, 3)
        bg = _COLOR_TABLE[bg_ids][:, None, None, :]  # (N, 1, 1, 3)
        images = bg + (fg - bg) * coverage[..., None]  # (N, H, W, 3)
        shapes = [SHAPES[i] for i in shape_ids]
        fgs = [_COLOR_NAMES[i] for i in fg_ids]
        bgs = [_COLOR_NAMES[i] for i in bg_ids]
        return ShapeBatch(
            images=images.astype(np.float32),
            masks=coverage,
            shapes=shapes,
            foregrounds=fgs,
            backgrounds=bgs,
            boxes=boxes,
            captions=[caption(s, f, b) for s, f, b in zip(shapes, fgs, bgs)],
        )


def rasterise(
    shape_ids: np.ndarray, centers: np.ndarray, sizes: np.ndarray, resolution: int
) -> tuple[np.ndarray, np.ndarray]:
    """Anti-aliased coverage (N, H, W) in 0..1 and bounding boxes (N, 4) of the shapes.

    Each shape fits the ``size`` x ``size`` square centred on ``center``.
    """
    n = len(shape_ids)
    coords = np.arange(resolution, dtype=np.float32) + 0.5  # pixel centres
    coverage = np.zeros((n, resolution, resolution), dtype=np.float32)
    boxes = np.zeros((n, 4), dtype=np.float32)
    for shape_index, name in enumerate(SHAPES):
        sel = np.flatnonzero(shape_ids == shape_index)
        if sel.size == 0:
            continue
        half = sizes[sel][:, None, None] / 2  # (k, 1, 1)
        dx = coords[None, None, :] - centers[sel, 0][:, None, None]  # (k, 1, W)
        dy = coords[None, :, None] - centers[sel, 1][:, None, None]  # (k, H, 1)
        sdf, extent = _SDF[name](dx, dy, half)  # (k, H, W); extent: x0, y0, x1, y1 / half
        coverage[sel] = np.clip(0.5 - sdf, 0.0, 1.0)
        boxes[sel] = centers[sel][:, [0, 1, 0, 1]] + np.asarray(extent) * half[:, 0]
    return coverage, boxes


def _circle(dx: np.ndarray, dy: np.ndarray, half: np.ndarray):
    return np.sqrt(dx * dx + dy * dy) - half, (-1.0, -1.0, 1.0, 1.0)


def _square(dx: np.ndarray, dy: np.ndarray, half: np.ndarray):
    return np.maximum(np.abs(dx), np.abs(dy)) - half, (-1.0, -1.0, 1.0, 1.0)


def _triangle(dx: np.ndarray, dy: np.ndarray, half: np.ndarray):
    """Isosceles, apex up: apex (0, -h), base corners (+-h, h) (image y points down).

    Inside = intersection of three half planes; the SDF is the largest signed distance to the
    three edge lines (exact inside and along the edges)."""
    base = dy - half
    sides = (2 * np.abs(dx) - (dy + half)) / math.sqrt(5.0)  # both slanted edges, by symmetry
    return np.maximum(base, sides), (-1.0, -1.0, 1.0, 1.0)


_STAR_SHIFT = (1 - math.cos(math.radians(36))) / 2  # centres the star's bbox vertically


def _star(dx: np.ndarray, dy: np.ndarray, half: np.ndarray):
    """Five-pointed star, a point up, outer radius h, inner radius STAR_INNER_RATIO * h.

    Fold the plane into the sector between an outer vertex O (angle 0 from the upward axis) and
    the next inner vertex I (angle 36 deg); inside that sector the star is the half plane on the
    centre's side of the line OI."""
    up = -(dy - _STAR_SHIFT * half)  # (k, H, 1) upward axis, star centre lowered a little
    rho = np.sqrt(dx * dx + up * up)  # (k, H, W)
    phi = np.arctan2(dx, up)  # angle from the upward axis
    sector = math.radians(72)
    folded = np.abs(np.mod(phi + sector / 2, sector) - sector / 2)  # in [0, 36 deg]
    u, v = rho * np.cos(folded), rho * np.sin(folded)  # local coordinates, O on the u axis
    inner = STAR_INNER_RATIO * math.cos(math.radians(36)), STAR_INNER_RATIO * math.sin(math.radians(36))
    edge = (inner[0] - 1.0, inner[1])  # O -> I for unit radius
    normal = np.array([edge[1], -edge[0]]) / math.hypot(*edge)  # outward (away from centre)
    sdf = normal[0] * (u - half) + normal[1] * v
    c36 = math.cos(math.radians(36))
    s72 = math.sin(math.radians(72))
    extent = (-s72, -1.0 + _STAR_SHIFT, s72, c36 + _STAR_SHIFT)
    return sdf, extent


_SDF = {"circle": _circle, "square": _square, "triangle": _triangle, "star": _star}
