"""The named colors and shape names of the embedded model's procedural dataset.

This module is deliberately tiny and dependency-free: the dataset (``shapes.py``) draws from it,
and the independent image checker (``tests/image_checker.py``) reads the same table to name the
colors it measures, without importing the rasteriser.
"""

from __future__ import annotations

#: Named colors, RGB in 0..255. Chosen far apart in RGB (closest pair: orange/yellow, ~80 apart)
#: so that a color survives the VAE round trip and the diffusion model's small errors.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (225, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 60, 225),
    "yellow": (245, 225, 40),
    "orange": (245, 135, 20),
    "purple": (135, 45, 195),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}

#: The shapes the dataset draws (axis aligned; the triangle and the star point up).
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")

#: Inner / outer radius of the five-pointed star (0.382 is the regular pentagram).
STAR_INNER_RATIO: float = 0.4


def caption(shape: str, foreground: str, background: str) -> str:
    """The dataset's caption template, e.g. ``"a red circle on a blue background"``."""
    return f"{_article(foreground)} {foreground} {shape} on {_article(background)} {background} background"


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"
