"""VAE nodes: pixels <-> latents, tiled variants, and encoding for inpainting."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nodeflow.errors import NodeInputError
from nodeflow.spec import IMAGE, LATENT, MASK, VAE, Input, Int, Output, node


@node("VAEDecode", display="VAE Decode", category="latent",
      inputs=[Input("samples", LATENT), Input("vae", VAE)], outputs=[Output(IMAGE)])
def vae_decode(samples: dict, vae):
    """Turn latents into images."""
    return (vae.decode(samples["samples"]),)


@node("VAEEncode", display="VAE Encode", category="latent",
      inputs=[Input("pixels", IMAGE), Input("vae", VAE)], outputs=[Output(LATENT)])
def vae_encode(pixels: torch.Tensor, vae):
    """Turn images into latents (the size is cropped to a multiple of 8)."""
    _check_size(pixels, vae)
    return ({"samples": vae.encode(pixels)},)


@node("VAEDecodeTiled", display="VAE Decode (Tiled)", category="_for_testing",
      inputs=[Input("samples", LATENT), Input("vae", VAE),
              Int("tile_size", 512, min=64, max=4096, step=32), Int("overlap", 64, min=0, max=4096, step=32)],
      outputs=[Output(IMAGE)])
def vae_decode_tiled(samples: dict, vae, tile_size: int, overlap: int):
    """Decode in overlapping tiles (less memory for large images)."""
    f = vae.downscale
    overlap = min(overlap, tile_size // 4)
    return (vae.decode_tiled(samples["samples"], tile=max(tile_size // f, 1), overlap=overlap // f),)


@node("VAEEncodeTiled", display="VAE Encode (Tiled)", category="_for_testing",
      inputs=[Input("pixels", IMAGE), Input("vae", VAE),
              Int("tile_size", 512, min=64, max=4096, step=64), Int("overlap", 64, min=0, max=4096, step=32)],
      outputs=[Output(LATENT)])
def vae_encode_tiled(pixels: torch.Tensor, vae, tile_size: int, overlap: int):
    """Encode in overlapping tiles (less memory for large images)."""
    _check_size(pixels, vae)
    return ({"samples": vae.encode_tiled(pixels, tile=tile_size, overlap=min(overlap, tile_size // 4))},)


@node("VAEEncodeForInpaint", display="VAE Encode (for Inpainting)", category="latent/inpaint",
      inputs=[Input("pixels", IMAGE), Input("vae", VAE), Input("mask", MASK),
              Int("grow_mask_by", 6, min=0, max=64)],
      outputs=[Output(LATENT)])
def vae_encode_for_inpaint(pixels: torch.Tensor, vae, mask: torch.Tensor, grow_mask_by: int):
    """Encode with the masked area set to grey and attach the (grown) mask as the noise mask."""
    _check_size(pixels, vae)
    f = vae.downscale
    height, width = pixels.shape[1] // f * f, pixels.shape[2] // f * f
    mask = mask.reshape(-1, 1, mask.shape[-2], mask.shape[-1]).float()
    mask = F.interpolate(mask, size=(pixels.shape[1], pixels.shape[2]), mode="bilinear")
    pixels, mask = pixels[:, :height, :width, :3].clone(), mask[:, :, :height, :width]
    if grow_mask_by:  # dilate with a square kernel, as ComfyUI does
        kernel = torch.ones(1, 1, grow_mask_by, grow_mask_by)
        padding = grow_mask_by // 2
        grown = torch.clamp(F.conv2d(mask.round(), kernel, padding=padding), 0, 1)[:, :, :height, :width]
    else:
        grown = mask
    keep = (1.0 - mask.round()).movedim(1, -1)  # (B, H, W, 1)
    pixels = (pixels - 0.5) * keep + 0.5
    return ({"samples": vae.encode(pixels), "noise_mask": grown},)


def _check_size(pixels: torch.Tensor, vae) -> None:
    f = vae.downscale
    if pixels.ndim != 4 or pixels.shape[1] < f or pixels.shape[2] < f:
        raise NodeInputError("pixels", f"expected images (B, H, W, C) of at least {f}x{f}, got {tuple(pixels.shape)}")
