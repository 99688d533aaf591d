"""Compositing nodes: pasting images and latents through masks, Porter-Duff compositing, and
images with alpha <-> image and mask (ComfyUI's ids, inputs and semantics).

A MASK is 1 - alpha, as everywhere in ComfyUI: SplitImageWithAlpha gives 1 where the image is
transparent, JoinImageWithAlpha makes the image transparent where its mask is 1.
"""

from __future__ import annotations

import torch

from nodeflow.errors import NodeInputError
from nodeflow.image.composite import (PORTER_DUFF_MODES, fit_source_channels, join_alpha, paste, porter_duff,
                                      split_alpha)
from nodeflow.image.ops import as_mask_batch, upscale
from nodeflow.spec import IMAGE, LATENT, MASK, Boolean, Choice, Input, Int, Output, node

MAX_RESOLUTION = 16384


def _placement(step: int) -> list:
    return [Int("x", 0, min=0, max=MAX_RESOLUTION, step=step), Int("y", 0, min=0, max=MAX_RESOLUTION, step=step),
            Boolean("resize_source", False), Input("mask", MASK, optional=True)]


@node("ImageCompositeMasked", display="ImageCompositeMasked", category="image",
      inputs=[Input("destination", IMAGE), Input("source", IMAGE), *_placement(1)], outputs=[Output(IMAGE)])
def image_composite_masked(destination: torch.Tensor, source: torch.Tensor, x: int, y: int, resize_source: bool,
                           mask: torch.Tensor | None = None):
    """Paste source onto destination at (x, y) pixels, through the mask where given (resized to the
    source). The result has the destination's channels: a source alpha channel is dropped, a
    missing one counts as opaque."""
    source = fit_source_channels(destination, source)
    out = paste(destination.movedim(-1, 1), source.movedim(-1, 1), x, y, mask, 1, resize_source)
    return (out.movedim(1, -1),)


@node("LatentCompositeMasked", display="LatentCompositeMasked", category="latent",
      inputs=[Input("destination", LATENT), Input("source", LATENT), *_placement(8)], outputs=[Output(LATENT)])
def latent_composite_masked(destination: dict, source: dict, x: int, y: int, resize_source: bool,
                            mask: torch.Tensor | None = None):
    """Paste source latents onto destination latents at (x, y) pixels (rounded down to latent
    cells of 8), through the mask where given; the destination's other keys are kept."""
    result = dict(destination)
    result["samples"] = paste(destination["samples"], source["samples"], x, y, mask, 8, resize_source)
    return (result,)


@node("PorterDuffImageComposite", display="Porter-Duff Image Composite", category="mask/compositing",
      inputs=[Input("source", IMAGE), Input("source_alpha", MASK), Input("destination", IMAGE),
              Input("destination_alpha", MASK), Choice("mode", list(PORTER_DUFF_MODES), "DST")],
      outputs=[Output(IMAGE), Output(MASK)])
def porter_duff_image_composite(source: torch.Tensor, source_alpha: torch.Tensor, destination: torch.Tensor,
                                destination_alpha: torch.Tensor, mode: str):
    """Combine two images with their masks by a Porter-Duff operator (or a blend mode); the
    output mask is 1 - the result's alpha. The source, and both masks, are resized to the
    destination's size (bicubic, centre crop); the batch is the smallest of the four."""
    source_alpha, destination_alpha = as_mask_batch(source_alpha), as_mask_batch(destination_alpha)
    batch = min(len(source), len(source_alpha), len(destination), len(destination_alpha))
    source, destination = source[:batch], destination[:batch]
    if source.shape[-1] != destination.shape[-1]:
        raise NodeInputError("source", f"has {source.shape[-1]} channels, the destination "
                                       f"{destination.shape[-1]}: they must be equal")
    height, width = destination.shape[1:3]

    def fit(x: torch.Tensor) -> torch.Tensor:  # (B, C, h, w) -> (B, C, H, W)
        return x if x.shape[-2:] == (height, width) else upscale(x, width, height, "bicubic", "center")

    source_mask = fit(source_alpha[:batch, None]).movedim(1, -1)  # (B, H, W, 1)
    destination_mask = fit(destination_alpha[:batch, None]).movedim(1, -1)
    source = fit(source.movedim(-1, 1)).movedim(1, -1)
    image, mask = porter_duff(source, source_mask.to(source), destination, destination_mask.to(destination), mode)
    return (image, mask[..., 0])


@node("SplitImageWithAlpha", display="Split Image with Alpha", category="mask/compositing",
      inputs=[Input("image", IMAGE)], outputs=[Output(IMAGE), Output(MASK)])
def split_image_with_alpha(image: torch.Tensor):
    """The image's colours, and its transparency as a mask (1 - alpha; 0 without an alpha channel)."""
    return split_alpha(image)


@node("JoinImageWithAlpha", display="Join Image with Alpha", category="mask/compositing",
      inputs=[Input("image", IMAGE), Input("alpha", MASK)], outputs=[Output(IMAGE)])
def join_image_with_alpha(image: torch.Tensor, alpha: torch.Tensor):
    """Add an alpha channel made from a mask (alpha = 1 - mask, as LoadImage's mask), resized to the
    image."""
    return (join_alpha(image, alpha),)
