"""Mask nodes: solid masks, inversion, compositing, cropping, growing, feathering, conversions."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nodeflow.image.ops import as_mask_batch
from nodeflow.spec import IMAGE, MASK, Boolean, Choice, Float, Input, Int, Output, node

MAX_RESOLUTION = 16384


@node("SolidMask", display="Solid Mask", category="mask",
      inputs=[Float("value", 1.0, min=0.0, max=1.0, step=0.01),
              Int("width", 512, min=1, max=MAX_RESOLUTION), Int("height", 512, min=1, max=MAX_RESOLUTION)],
      outputs=[Output(MASK)])
def solid_mask(value: float, width: int, height: int):
    """A mask of one value."""
    return (torch.full((1, height, width), value),)


@node("InvertMask", display="Invert Mask", category="mask", inputs=[Input("mask", MASK)], outputs=[Output(MASK)])
def invert_mask(mask: torch.Tensor):
    """1 - mask."""
    return (1.0 - mask,)


@node("MaskComposite", display="Mask Composite", category="mask",
      inputs=[Input("destination", MASK), Input("source", MASK),
              Int("x", 0, min=0, max=MAX_RESOLUTION), Int("y", 0, min=0, max=MAX_RESOLUTION),
              Choice("operation", ["multiply", "add", "subtract", "and", "or", "xor"])],
      outputs=[Output(MASK)])
def mask_composite(destination: torch.Tensor, source: torch.Tensor, x: int, y: int, operation: str):
    """Combine source into destination at (x, y)."""
    out = as_mask_batch(destination).clone()
    src = as_mask_batch(source)
    h = max(0, min(src.shape[1], out.shape[1] - y))
    w = max(0, min(src.shape[2], out.shape[2] - x))
    if h and w:
        region = out[:, y:y + h, x:x + w]
        s = src[:, :h, :w]
        ops = {
            "multiply": lambda a, b: a * b, "add": lambda a, b: a + b, "subtract": lambda a, b: a - b,
            "and": lambda a, b: torch.logical_and(a.round().bool(), b.round().bool()).float(),
            "or": lambda a, b: torch.logical_or(a.round().bool(), b.round().bool()).float(),
            "xor": lambda a, b: torch.logical_xor(a.round().bool(), b.round().bool()).float(),
        }
        out[:, y:y + h, x:x + w] = ops[operation](region, s)
    return (out.clamp(0.0, 1.0),)


@node("CropMask", display="Crop Mask", category="mask",
      inputs=[Input("mask", MASK), Int("x", 0, min=0, max=MAX_RESOLUTION), Int("y", 0, min=0, max=MAX_RESOLUTION),
              Int("width", 512, min=1, max=MAX_RESOLUTION), Int("height", 512, min=1, max=MAX_RESOLUTION)],
      outputs=[Output(MASK)])
def crop_mask(mask: torch.Tensor, x: int, y: int, width: int, height: int):
    """Crop a rectangle of the mask."""
    return (as_mask_batch(mask)[:, y:y + height, x:x + width],)


@node("GrowMask", display="Grow Mask", category="mask",
      inputs=[Input("mask", MASK), Int("expand", 0, min=-MAX_RESOLUTION, max=MAX_RESOLUTION),
              Boolean("tapered_corners", True)],
      outputs=[Output(MASK)])
def grow_mask(mask: torch.Tensor, expand: int, tapered_corners: bool):
    """Grow (or, negative, shrink) the mask by ``expand`` pixels, one pixel per step."""
    c = 0.0 if tapered_corners else 1.0
    kernel = torch.tensor([[c, 1.0, c], [1.0, 1.0, 1.0], [c, 1.0, c]])[None, None]
    out = as_mask_batch(mask).float()[:, None]
    for _ in range(abs(expand)):
        if expand > 0:  # dilation: max over the kernel's support
            out = _max_filter(out, kernel)
        else:  # erosion
            out = 1.0 - _max_filter(1.0 - out, kernel)
    return (out[:, 0],)


def _max_filter(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    patches = F.unfold(padded, 3)  # (B, 9, H*W)
    weights = kernel.flatten()[None, :, None]
    values = torch.where(weights > 0, patches, torch.full_like(patches, -1.0))
    return values.amax(dim=1).reshape(x.shape)


@node("FeatherMask", display="Feather Mask", category="mask",
      inputs=[Input("mask", MASK)] + [Int(side, 0, min=0, max=MAX_RESOLUTION) for side in ("left", "top", "right", "bottom")],
      outputs=[Output(MASK)])
def feather_mask(mask: torch.Tensor, left: int, top: int, right: int, bottom: int):
    """Fade the mask linearly towards each edge over the given number of pixels.

    Column x (from the left) is scaled by (x + 1) / left, row y by (y + 1) / top. The right and
    bottom sides follow ComfyUI exactly, off-by-one included, so shared workflows give the same
    masks: step k = 0 .. right - 1 scales column -k (column 0 for k = 0, then W - k), by
    (k + 1) / right; rows likewise."""
    out = as_mask_batch(mask).clone()  # (B, H, W)
    height, width = out.shape[1:]
    left, right, top, bottom = min(left, width), min(right, width), min(top, height), min(bottom, height)
    for x in range(left):
        out[:, :, x] *= (x + 1) / left
    for k in range(right):
        out[:, :, -k] *= (k + 1) / right
    for y in range(top):
        out[:, y] *= (y + 1) / top
    for k in range(bottom):
        out[:, -k] *= (k + 1) / bottom
    return (out,)


@node("ImageToMask", display="Convert Image to Mask", category="mask",
      inputs=[Input("image", IMAGE), Choice("channel", ["red", "green", "blue", "alpha"])], outputs=[Output(MASK)])
def image_to_mask(image: torch.Tensor, channel: str):
    """One channel of the image as a mask."""
    index = ["red", "green", "blue", "alpha"].index(channel)
    if index >= image.shape[-1]:
        return (torch.zeros(image.shape[:3]),)
    return (image[..., index],)


@node("MaskToImage", display="Convert Mask to Image", category="mask",
      inputs=[Input("mask", MASK)], outputs=[Output(IMAGE)])
def mask_to_image(mask: torch.Tensor):
    """A grey image from the mask."""
    return (as_mask_batch(mask)[..., None].expand(-1, -1, -1, 3).clone(),)


@node("ThresholdMask", display="Threshold Mask", category="mask",
      inputs=[Input("mask", MASK), Float("value", 0.5, min=0.0, max=1.0, step=0.01)], outputs=[Output(MASK)])
def threshold_mask(mask: torch.Tensor, value: float):
    """1 where the mask is above value, else 0."""
    return ((mask > value).float(),)
