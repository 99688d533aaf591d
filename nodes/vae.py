"""VAE nodes: pixels <-> latents, tiled variants, and encoding for inpainting.

Ids, input names, order, defaults and ranges are ComfyUI's. The tiled nodes' ``temporal_size`` and
``temporal_overlap`` exist for ComfyUI's video VAEs; they are accepted (so shared workflows run
unchanged) and have no effect on image VAEs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from nodeflow.errors import NodeInputError
from nodeflow.spec import IMAGE, LATENT, MASK, VAE, Input, Int, Output, node


def _temporal_inputs() -> list:
    return [Int("temporal_size", 64, min=8, max=4096, step=4,
                tooltip="Video VAEs only: frames per tile (no effect on image VAEs)"),
            Int("temporal_overlap", 8, min=4, max=4096, step=4,
                tooltip="Video VAEs only: frames of overlap (no effect on image VAEs)")]


@node("VAEDecode", display="VAE Decode", category="latent",
      inputs=[Input("samples", LATENT), Input("vae", VAE)], outputs=[Output(IMAGE)])
def vae_decode(samples: dict, vae):
    """Turn latents into images."""
    return (vae.decode(samples["samples"]),)


@node("VAEEncode", display="VAE Encode", category="latent",
      inputs=[Input("pixels", IMAGE), Input("vae", VAE)], outputs=[Output(LATENT)])
def vae_encode(pixels: torch.Tensor, vae):
    """Turn images into latents (the size is centre-cropped to a multiple of 8)."""
    _check_size(pixels, vae)
    return ({"samples": vae.encode(pixels)},)


@node("VAEDecodeTiled", display="VAE Decode (Tiled)", category="_for_testing",
      inputs=[Input("samples", LATENT), Input("vae", VAE),
              Int("tile_size", 512, min=64, max=4096, step=32, tooltip="tile size in pixels"),
              Int("overlap", 64, min=0, max=4096, step=32, tooltip="overlap between tiles in pixels"),
              *_temporal_inputs()],
      outputs=[Output(IMAGE)])
def vae_decode_tiled(samples: dict, vae, tile_size: int, overlap: int, temporal_size: int = 64,
                     temporal_overlap: int = 8):
    """Decode in overlapping tiles (less memory for large images)."""
    f = vae.downscale
    if tile_size < overlap * 4:  # ComfyUI's rule: an overlap of at most a quarter of a tile
        overlap = tile_size // 4
    return (vae.decode_tiled(samples["samples"], tile=max(tile_size // f, 1), overlap=overlap // f),)


@node("VAEEncodeTiled", display="VAE Encode (Tiled)", category="_for_testing",
      inputs=[Input("pixels", IMAGE), Input("vae", VAE),
              Int("tile_size", 512, min=64, max=4096, step=64, tooltip="tile size in pixels"),
              Int("overlap", 64, min=0, max=4096, step=32, tooltip="overlap between tiles in pixels"),
              *_temporal_inputs()],
      outputs=[Output(LATENT)])
def vae_encode_tiled(pixels: torch.Tensor, vae, tile_size: int, overlap: int, temporal_size: int = 64,
                     temporal_overlap: int = 8):
    """Encode in overlapping tiles (less memory for large images)."""
    _check_size(pixels, vae)
    if tile_size < overlap * 4:
        overlap = tile_size // 4
    return ({"samples": vae.encode_tiled(pixels, tile=tile_size, overlap=overlap)},)


@node("VAEEncodeForInpaint", display="VAE Encode (for Inpainting)", category="latent/inpaint",
      inputs=[Input("pixels", IMAGE), Input("vae", VAE), Input("mask", MASK),
              Int("grow_mask_by", 6, min=0, max=64, tooltip="pixels to grow the mask by (noise mask only)")],
      outputs=[Output(LATENT)])
def vae_encode_for_inpaint(pixels: torch.Tensor, vae, mask: torch.Tensor, grow_mask_by: int):
    """Encode with the masked area set to grey and attach the grown mask as the noise mask.

    As ComfyUI: the mask is resized (bilinear) to the image, image and mask are centre-cropped to
    a multiple of 8, pixels where the rounded mask is 1 become 0.5 before encoding, and the noise
    mask is the rounded mask dilated by a ``grow_mask_by`` square.
    """
    _check_size(pixels, vae)
    mask = mask.reshape(-1, 1, mask.shape[-2], mask.shape[-1]).float()
    mask = F.interpolate(mask, size=(pixels.shape[1], pixels.shape[2]), mode="bilinear")  # (B, 1, H, W)
    f = vae.downscale
    height, width = pixels.shape[1] // f * f, pixels.shape[2] // f * f
    top, left = (pixels.shape[1] % f) // 2, (pixels.shape[2] % f) // 2
    pixels = pixels[:, top:top + height, left:left + width, :3]
    mask = mask[:, :, top:top + height, left:left + width]
    if grow_mask_by == 0:
        grown = mask
    else:
        kernel = torch.ones(1, 1, grow_mask_by, grow_mask_by)
        padding = math.ceil((grow_mask_by - 1) / 2)
        grown = torch.clamp(F.conv2d(mask.round(), kernel, padding=padding), 0, 1)
    keep = (1.0 - mask.round()).movedim(1, -1)  # (B, H, W, 1): 0 where inpainted
    grey = (pixels - 0.5) * keep + 0.5  # (B, H, W, 3)
    return ({"samples": vae.encode(grey), "noise_mask": grown[:, :, :height, :width].round()},)


def _check_size(pixels: torch.Tensor, vae) -> None:
    f = vae.downscale
    if pixels.ndim != 4 or pixels.shape[1] < f or pixels.shape[2] < f:
        raise NodeInputError("pixels", f"expected images (B, H, W, C) of at least {f}x{f}, got {tuple(pixels.shape)}")
