"""Image geometry and pixel edits behind the transform nodes: flips and quarter turns, stitching
two images, fit-and-pad, scaling to a longest side, seeded noise, palette quantisation and
splitting batches (ComfyUI's conventions: IMAGE (B, H, W, C) float in 0..1).

Each function states the rule it follows, so the nodes stay thin and the tests can derive the
expected pixels independently.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

from nodeflow.image.ops import image_to_nchw, nchw_to_image, upscale

FLIP_METHODS = ("x-axis: vertically", "y-axis: horizontally")
ROTATIONS = ("none", "90 degrees", "180 degrees", "270 degrees")
STITCH_DIRECTIONS = ("right", "down", "left", "up")
#: Spacing colours of ImageStitch as RGB; white and black also pad unmatched sizes (others pad with 0).
SPACING_COLORS = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0), "red": (1.0, 0.0, 0.0),
                  "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0)}
RESIZE_AND_PAD_METHODS = ("area", "bicubic", "nearest-exact", "bilinear", "lanczos")
#: ImageScaleToMaxDimension's list, as ComfyUI declares it ("bilinear" twice).
MAX_DIMENSION_METHODS = ("area", "lanczos", "bilinear", "nearest-exact", "bilinear", "bicubic")
DITHER_METHODS = ("none", "floyd-steinberg", "bayer-2", "bayer-4", "bayer-8", "bayer-16")


def flip(image: torch.Tensor, method: str) -> torch.Tensor:
    """Mirror (B, H, W, C): "x-axis: vertically" reverses the rows, "y-axis: horizontally" the columns."""
    return torch.flip(image, dims=[1] if method.startswith("x") else [2])


def rotate(image: torch.Tensor, rotation: str) -> torch.Tensor:
    """Turn (B, H, W, C) clockwise by 0, 90, 180 or 270 degrees (a quarter turn from the width axis
    towards the height axis: the top-left pixel moves to the top-right)."""
    turns = ROTATIONS.index(rotation)
    return torch.rot90(image, k=turns, dims=[2, 1])


def _repeat_last(images: torch.Tensor, batch: int) -> torch.Tensor:
    """Extend a batch to ``batch`` images by repeating its last image."""
    missing = batch - images.shape[0]
    return torch.cat([images, images[-1:].expand(missing, *images.shape[1:])]) if missing > 0 else images


def _pad_centred(image: torch.Tensor, dim: int, size: int, value: float) -> torch.Tensor:
    """Pad (B, H, W, C) along ``dim`` (1 rows, 2 columns) to ``size``: floor(extra / 2) before,
    the rest after, every channel filled with ``value``."""
    extra = size - image.shape[dim]
    if extra <= 0:
        return image
    before = list(image.shape)
    before[dim] = extra // 2
    after = list(image.shape)
    after[dim] = extra - extra // 2
    return torch.cat([image.new_full(before, value), image, image.new_full(after, value)], dim=dim)


def _widen_channels(image: torch.Tensor, channels: int) -> torch.Tensor:
    """Append channels of ones (an opaque alpha) up to ``channels``."""
    missing = channels - image.shape[-1]
    if missing <= 0:
        return image
    return torch.cat([image, image.new_ones(*image.shape[:-1], missing)], dim=-1)


def stitch(image1: torch.Tensor, image2: torch.Tensor, direction: str, match_image_size: bool,
           spacing_width: int, spacing_color: str) -> torch.Tensor:
    """Put ``image2`` beside ``image1`` (ComfyUI's ImageStitch).

    - Batches of different sizes: the smaller one repeats its last image.
    - ``match_image_size``: image2 is resized (Lanczos, 8-bit as ComfyUI's) to image1's height
      for right/left, width int(H1 * W2 / H2); to image1's width for down/up, height
      int(W1 * H2 / W2). Otherwise the shorter side is padded, centred (floor before), with 1 for
      white, 0 for black and 0 for the other colours, on every channel.
    - A channel count that differs gets ones appended (opaque alpha).
    - ``spacing_width`` > 0 (rounded up to even) puts a strip of ``spacing_color`` between them
      (alpha 1 on RGBA images).
    - right/down: image1 first; left/up: image2 first.
    """
    horizontal = direction in ("left", "right")
    batch = max(image1.shape[0], image2.shape[0])
    image1, image2 = _repeat_last(image1, batch), _repeat_last(image2, batch)
    rgb = SPACING_COLORS[spacing_color]
    if match_image_size:
        (h1, w1), (h2, w2) = image1.shape[1:3], image2.shape[1:3]
        aspect = w2 / h2
        width, height = (int(h1 * aspect), h1) if horizontal else (w1, int(w1 / aspect))
        image2 = nchw_to_image(upscale(image_to_nchw(image2), width, height, "lanczos"))
    else:
        pad_value = rgb[0] if spacing_color in ("white", "black") else 0.0
        dim = 1 if horizontal else 2  # pad the heights to match for a row, the widths for a column
        size = max(image1.shape[dim], image2.shape[dim])
        image1, image2 = _pad_centred(image1, dim, size, pad_value), _pad_centred(image2, dim, size, pad_value)
    channels = max(image1.shape[-1], image2.shape[-1])
    image1, image2 = _widen_channels(image1, channels), _widen_channels(image2.to(image1), channels)
    parts = [image2, image1] if direction in ("left", "up") else [image1, image2]
    if spacing_width > 0:
        spacing_width += spacing_width % 2
        if horizontal:
            shape = (batch, max(image1.shape[1], image2.shape[1]), spacing_width, channels)
        else:
            shape = (batch, spacing_width, max(image1.shape[2], image2.shape[2]), channels)
        strip = image1.new_zeros(shape)
        for channel, value in enumerate(rgb[:channels]):
            strip[..., channel] = value
        if channels == 4:
            strip[..., 3] = 1.0
        parts.insert(1, strip)
    return torch.cat(parts, dim=2 if horizontal else 1)


def resize_and_pad(image: torch.Tensor, target_width: int, target_height: int, padding_color: str,
                   interpolation: str) -> torch.Tensor:
    """Fit (B, H, W, C) inside target_width x target_height keeping its aspect ratio (scale
    min(tw / W, th / H), sizes truncated), centred (offsets floor((target - size) / 2)) on a
    canvas of 1 (white) or 0 (black) in every channel."""
    batch, height, width, channels = image.shape
    scale = min(target_width / width, target_height / height)
    new_width, new_height = max(1, int(width * scale)), max(1, int(height * scale))
    resized = nchw_to_image(upscale(image_to_nchw(image), new_width, new_height, interpolation))
    canvas = image.new_full((batch, target_height, target_width, channels), 0.0 if padding_color == "black" else 1.0)
    top, left = (target_height - new_height) // 2, (target_width - new_width) // 2
    canvas[:, top:top + new_height, left:left + new_width] = resized.to(canvas)
    return canvas


def max_dimension_size(width: int, height: int, largest_size: int) -> tuple[int, int]:
    """(width, height) with the longer side ``largest_size`` and the other rounded in proportion
    (a square gets largest_size on both)."""
    if height > width:
        return round(width / height * largest_size), largest_size
    if width > height:
        return largest_size, round(height / width * largest_size)
    return largest_size, largest_size


def seeded_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (modulo 2^64, as torch takes 0 .. 2^64 - 1): the same
    stream as ComfyUI's ``torch.manual_seed(seed)``, without reseeding torch's global generator."""
    generator = torch.Generator(device="cpu")
    generator.manual_seed(int(seed) & (2**64 - 1))
    return generator


def add_noise(image: torch.Tensor, seed: int, strength: float) -> torch.Tensor:
    """clamp(image + strength * N(0, 1), 0, 1), the noise one ``torch.randn(image.shape)`` drawn in
    float32 on the CPU from ``seed`` (ComfyUI's ImageAddNoise: same seed, same pixels)."""
    noise = torch.randn(tuple(image.shape), generator=seeded_generator(seed), dtype=torch.float32)
    return torch.clamp(image + strength * noise.to(image), min=0.0, max=1.0)


def bayer_matrix(order: int) -> np.ndarray:
    """The (order x order) ordered-dither matrix, centred on 0: M_0 = [0] and
    M_n = [[m - 1.5, m + 0.5], [m + 1.5, m - 0.5]] / 4^n with m = 4^n M_{n-1} (values in -0.5..0.5)."""
    matrix = np.zeros((1, 1))
    for n in range(1, int(math.log2(order)) + 1):
        scaled = 4**n * matrix
        matrix = np.block([[scaled - 1.5, scaled + 0.5], [scaled + 1.5, scaled - 0.5]]) / 4**n
    return matrix


def _bayer_dither(picture: Image.Image, palette: Image.Image, order: int) -> Image.Image:
    """Ordered dithering: every pixel gets 2 * 256 / colours * M[y % n, x % n] + 0.5 added (on all
    three channels), clamped to 0..255 and truncated to 8 bits, then maps to the nearest palette colour."""
    colours = len(palette.getpalette()) // 3
    offsets = 2 * 256 / colours * bayer_matrix(order) + 0.5  # (n, n)
    pixels = np.asarray(picture, dtype=np.float32)  # (H, W, 3)
    height, width = pixels.shape[:2]
    tiled = np.tile(offsets, (math.ceil(height / order), math.ceil(width / order)))[:height, :width]
    shifted = np.clip((pixels + tiled[..., None]).astype(np.float32), 0, 255).astype(np.uint8)
    return Image.fromarray(shifted).quantize(palette=palette, dither=Image.Dither.NONE)


def quantize(image: torch.Tensor, colors: int, dither: str) -> torch.Tensor:
    """Reduce each image of (B, H, W, C >= 3) to at most ``colors`` colours, as ComfyUI's
    ImageQuantize: the 8-bit RGB image (truncated) gets a median-cut palette from Pillow, then
    each pixel maps to a palette colour without dithering, with Floyd-Steinberg error diffusion
    (Pillow's), or with ordered Bayer dithering of order 2, 4, 8 or 16. Channels after the third
    (alpha) are kept as they are."""
    result = image.clone()
    for index, frame in enumerate(image):
        array = (frame[..., :3].detach().cpu().float().clamp(0, 1) * 255).to(torch.uint8).numpy()
        picture = Image.fromarray(array)  # (H, W, 3) uint8: RGB
        palette = picture.quantize(colors=colors)  # a palette image (Pillow needs one: its issue 5836)
        if dither == "none":
            quantized = picture.quantize(palette=palette, dither=Image.Dither.NONE)
        elif dither == "floyd-steinberg":
            quantized = picture.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG)
        else:
            quantized = _bayer_dither(picture, palette, int(dither.split("-")[-1]))
        pixels = torch.from_numpy(np.asarray(quantized.convert("RGB"), dtype=np.float32) / 255.0)
        result[index, ..., :3] = pixels.to(result)
    return result


def rebatch_images(images: list[torch.Tensor], batch_size: int) -> list[torch.Tensor]:
    """ComfyUI's RebatchImages: all images of the given batches, in order, regrouped into batches
    of ``batch_size`` (the last one may be smaller)."""
    singles = [image[i:i + 1] for image in images for i in range(image.shape[0])]
    return [torch.cat(singles[i:i + batch_size]) for i in range(0, len(singles), batch_size)]
