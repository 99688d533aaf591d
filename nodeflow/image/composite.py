"""Compositing maths: pasting a source into a destination through a mask (ComfyUI's
ImageCompositeMasked and LatentCompositeMasked), Porter-Duff compositing, and the alpha <-> mask
convention of IMAGE and MASK values (a MASK is 1 - alpha: 1 where an image is transparent).

Tensors are (B, C, H, W) for ``paste``; (B, H, W, C) images and (B, H, W) masks elsewhere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nodeflow.image.ops import repeat_to_batch

#: ComfyUI's Porter-Duff modes, in its order (the node's choices)
PORTER_DUFF_MODES = ("ADD", "CLEAR", "DARKEN", "DST", "DST_ATOP", "DST_IN", "DST_OUT", "DST_OVER", "LIGHTEN",
                     "MULTIPLY", "OVERLAY", "SCREEN", "SRC", "SRC_ATOP", "SRC_IN", "SRC_OUT", "SRC_OVER", "XOR")
ALPHA_EPSILON = 1e-5  # below this output alpha, the un-premultiplied colour is 0


def paste(destination: torch.Tensor, source: torch.Tensor, x: int, y: int, mask: torch.Tensor | None = None,
          multiplier: int = 1, resize_source: bool = False) -> torch.Tensor:
    """``source`` (B', C, h, w) blended into a copy of ``destination`` (B, C, H, W) with its top-left
    corner at (x, y), given in units of 1 / ``multiplier`` cells (8 for latents: pixel offsets,
    rounded down to whole latent cells).

    As ComfyUI's ``composite``: ``resize_source`` first resizes the source to the destination's size
    (bilinear); the source batch is repeated (or cut) to the destination's; x and y are clamped to
    -source size .. destination size; the mask (any (H, W) or (B, H, W)) is resized bilinearly to the
    source's size, its batch repeated to the source's, and where it is m the result is
    m * source + (1 - m) * destination (no mask: m = 1). Only the part of the source that lies on the
    destination is used (a negative offset skips the source's first rows or columns).
    """
    out = destination.clone()
    source = source.to(out)
    if resize_source:
        source = F.interpolate(source, size=tuple(out.shape[-2:]), mode="bilinear")
    source = repeat_to_batch(source, out.shape[0])
    height, width = source.shape[-2:]
    x = max(-width * multiplier, min(x, out.shape[-1] * multiplier))
    y = max(-height * multiplier, min(y, out.shape[-2] * multiplier))
    left, top = x // multiplier, y // multiplier
    if mask is None:
        weight = torch.ones_like(source[:, :1])  # (B, 1, h, w)
    else:
        weight = mask.to(out).reshape(-1, 1, mask.shape[-2], mask.shape[-1])
        weight = repeat_to_batch(F.interpolate(weight, size=(height, width), mode="bilinear"), source.shape[0])
    x0, y0 = max(left, 0), max(top, 0)  # the overlap, in destination cells
    x1, y1 = min(left + width, out.shape[-1]), min(top + height, out.shape[-2])
    if x1 <= x0 or y1 <= y0:
        return out
    rows, cols = slice(y0 - top, y1 - top), slice(x0 - left, x1 - left)  # the same cells in the source
    m = weight[..., rows, cols]
    out[..., y0:y1, x0:x1] = m * source[..., rows, cols] + (1 - m) * out[..., y0:y1, x0:x1]
    return out


def fit_source_channels(destination: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """The source IMAGE (.., C) with the destination's channel count: extra channels dropped, a
    missing alpha channel added as opaque (1)."""
    missing = destination.shape[-1] - source.shape[-1]
    if missing < 0:
        return source[..., :destination.shape[-1]]
    if missing > 0:
        return torch.cat([source, torch.ones(*source.shape[:-1], missing, dtype=source.dtype,
                                             device=source.device)], dim=-1)
    return source


def porter_duff(source: torch.Tensor, source_mask: torch.Tensor, destination: torch.Tensor,
                destination_mask: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Composite ``source`` over/with ``destination`` (same shape, (.., C)) by ``mode``, with their
    masks (.., 1) as 1 - alpha; returns the (un-premultiplied, clamped) image and the output mask.

    Porter & Duff 1984, "Compositing Digital Images", on premultiplied colours Sc = a_s s, Dc = a_d d:
    each operator is out = Sc F_s + Dc F_d, alpha = a_s F_s + a_d F_d (SRC_OVER: F_s = 1,
    F_d = 1 - a_s, ...); ADD sums and clamps both. The blend modes follow ComfyUI's formulas:
    DARKEN / LIGHTEN use min / max(Sc, Dc) plus the non-overlapping parts, MULTIPLY is Sc Dc with
    alpha a_s a_d, SCREEN Sc + Dc - Sc Dc, OVERLAY 2 Sc Dc where 2 Dc < a_d, else
    a_s a_d - 2 (a_d - Sc)(a_s - Dc); for opaque inputs these are the W3C compositing formulas.
    The colour is divided back by the output alpha where it exceeds 1e-5 (else 0), then clamped
    to 0..1.
    """
    a_s, a_d = 1 - source_mask, 1 - destination_mask
    s, d = source * a_s, destination * a_d  # premultiplied
    over = a_s + a_d - a_s * a_d  # the union's alpha
    if mode == "ADD":
        alpha, colour = torch.clamp(a_s + a_d, 0, 1), torch.clamp(s + d, 0, 1)
    elif mode == "CLEAR":
        alpha, colour = torch.zeros_like(a_d), torch.zeros_like(d)
    elif mode == "DARKEN":
        alpha, colour = over, (1 - a_d) * s + (1 - a_s) * d + torch.minimum(s, d)
    elif mode == "LIGHTEN":
        alpha, colour = over, (1 - a_d) * s + (1 - a_s) * d + torch.maximum(s, d)
    elif mode == "MULTIPLY":
        alpha, colour = a_s * a_d, s * d
    elif mode == "OVERLAY":
        alpha, colour = over, torch.where(2 * d < a_d, 2 * s * d, a_s * a_d - 2 * (a_d - s) * (a_s - d))
    elif mode == "SCREEN":
        alpha, colour = over, s + d - s * d
    elif mode in _FACTORS:
        f_s, f_d = _FACTORS[mode](a_s, a_d)
        colour = s * f_s + d * f_d
        # the atop operators keep the alpha of the side they lie on (a_s F_s + a_d F_d simplified)
        alpha = {"SRC_ATOP": a_d, "DST_ATOP": a_s}.get(mode, a_s * f_s + a_d * f_d)
    else:
        raise ValueError(f"unknown Porter-Duff mode {mode!r}; one of {', '.join(PORTER_DUFF_MODES)}")
    image = torch.where(alpha > ALPHA_EPSILON, colour / alpha, torch.zeros_like(colour)).clamp(0, 1)
    return image, 1 - alpha


#: Porter and Duff's operators as the fractions (F_s, F_d) of source and destination kept
_FACTORS = {
    "SRC": lambda a_s, a_d: (1, 0),
    "DST": lambda a_s, a_d: (0, 1),
    "SRC_OVER": lambda a_s, a_d: (1, 1 - a_s),
    "DST_OVER": lambda a_s, a_d: (1 - a_d, 1),
    "SRC_IN": lambda a_s, a_d: (a_d, 0),
    "DST_IN": lambda a_s, a_d: (0, a_s),
    "SRC_OUT": lambda a_s, a_d: (1 - a_d, 0),
    "DST_OUT": lambda a_s, a_d: (0, 1 - a_s),
    "SRC_ATOP": lambda a_s, a_d: (a_d, 1 - a_s),
    "DST_ATOP": lambda a_s, a_d: (1 - a_d, a_s),
    "XOR": lambda a_s, a_d: (1 - a_d, 1 - a_s),
}


def split_alpha(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IMAGE (B, H, W, C) -> its RGB (B, H, W, 3) and its mask 1 - alpha (B, H, W); an image
    without an alpha channel is opaque (mask 0)."""
    alpha = image[..., 3] if image.shape[-1] > 3 else torch.ones_like(image[..., 0])
    return image[..., :3], 1.0 - alpha


def join_alpha(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The RGB of IMAGE (B, H, W, C) with alpha 1 - mask; the mask (any (H', W') or (B', H', W'))
    is resized bilinearly to the image; the batch is the smaller of the two."""
    mask = mask.to(image).reshape(-1, 1, mask.shape[-2], mask.shape[-1])
    alpha = 1.0 - F.interpolate(mask, size=tuple(image.shape[1:3]), mode="bilinear")[:, 0]  # (B', H, W)
    batch = min(image.shape[0], alpha.shape[0])
    return torch.cat([image[:batch, ..., :3], alpha[:batch, ..., None]], dim=-1)


def color_to_mask(image: torch.Tensor, color: int) -> torch.Tensor:
    """1 where a pixel of IMAGE (B, H, W, C) has exactly the 24-bit colour 0xRRGGBB (channels
    clamped to 0..1 and rounded to 8 bits), else 0: (B, H, W)."""
    levels = (image[..., :3].clamp(0, 1) * 255.0).round().to(torch.int64)  # (B, H, W, 3)
    packed = (levels[..., 0] << 16) + (levels[..., 1] << 8) + levels[..., 2]
    return (packed == color).float()
