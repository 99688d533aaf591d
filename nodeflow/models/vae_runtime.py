"""The VAE socket value: pixels (IMAGE, B x H x W x C in 0..1) <-> latents (B x 4 x H/8 x W/8).

Latents are the VAE's own (unscaled); the MODEL's latent format scales them inside the sampler.
Encoding takes the posterior mean (no sampling), from 2v - 1; decoding returns
clamp((y + 1) / 2, 0, 1). Tiled variants process overlapping tiles and blend them with linear
ramps, for images larger than memory allows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nodeflow.models.vae import AutoencoderKL


@dataclass(frozen=True, eq=False)
class VAE:
    model: AutoencoderKL
    scaling_factor: float
    device: torch.device
    dtype: torch.dtype
    name: str = ""

    @property
    def downscale(self) -> int:
        return self.model.config.downscale

    @torch.no_grad()
    def encode(self, image: torch.Tensor, batch_size: int = 4) -> torch.Tensor:
        """IMAGE (B, H, W, C) 0..1 -> latent (B, 4, H/f, W/f) float32; H, W cropped to multiples of f."""
        f = self.downscale
        height, width = image.shape[1] // f * f, image.shape[2] // f * f
        pixels = image[:, :height, :width, :3].movedim(-1, 1) * 2 - 1  # (B, 3, H, W)
        outputs = [self.model.encode(chunk.to(self.device, self.dtype)).float().cpu()
                   for chunk in pixels.split(batch_size)]
        return torch.cat(outputs)

    @torch.no_grad()
    def decode(self, latent: torch.Tensor, batch_size: int = 4) -> torch.Tensor:
        """latent (B, 4, h, w) -> IMAGE (B, h f, w f, 3) in 0..1, float32 on the CPU."""
        outputs = [self.model.decode(chunk.to(self.device, self.dtype)).float().cpu()
                   for chunk in latent.split(batch_size)]
        pixels = torch.cat(outputs)  # (B, 3, H, W)
        return ((pixels + 1) / 2).clamp(0, 1).movedim(1, -1)

    @torch.no_grad()
    def decode_tiled(self, latent: torch.Tensor, tile: int = 64, overlap: int = 16) -> torch.Tensor:
        """Decode in overlapping latent tiles of ``tile`` (latent pixels), blended linearly."""
        f = self.downscale
        return _tiled(latent, tile, overlap, f, lambda t: self.decode(t).movedim(-1, 1)).movedim(1, -1)

    @torch.no_grad()
    def encode_tiled(self, image: torch.Tensor, tile: int = 512, overlap: int = 64) -> torch.Tensor:
        """Encode in overlapping pixel tiles of ``tile``, blended linearly."""
        f = self.downscale
        pixels = image[:, :image.shape[1] // f * f, :image.shape[2] // f * f, :3].movedim(-1, 1)
        return _tiled(pixels, tile, overlap, 1 / f, lambda t: self.encode(t.movedim(1, -1)))


def _tiled(x: torch.Tensor, tile: int, overlap: int, scale: float, fn) -> torch.Tensor:
    """Apply ``fn`` (B, C, h, w) -> (B, C', h s, w s) over overlapping tiles and blend."""
    batch, _, height, width = x.shape
    tile_h, tile_w = min(tile, height), min(tile, width)
    step_h, step_w = max(tile_h - overlap, 1), max(tile_w - overlap, 1)
    output = weights = None
    for top in _starts(height, tile_h, step_h):
        for left in _starts(width, tile_w, step_w):
            part = fn(x[:, :, top:top + tile_h, left:left + tile_w])
            if output is None:
                output = part.new_zeros(batch, part.shape[1], round(height * scale), round(width * scale))
                weights = part.new_zeros(1, 1, output.shape[2], output.shape[3])
            ramp = _ramp(part.shape[-2], part.shape[-1], round(overlap * scale), part)
            y, x0 = round(top * scale), round(left * scale)
            output[:, :, y:y + part.shape[-2], x0:x0 + part.shape[-1]] += part * ramp
            weights[:, :, y:y + part.shape[-2], x0:x0 + part.shape[-1]] += ramp
    return output / weights


def _starts(size: int, tile: int, step: int) -> list[int]:
    starts = list(range(0, max(size - tile, 0) + 1, step))
    if starts[-1] + tile < size:
        starts.append(size - tile)
    return starts


def _ramp(h: int, w: int, overlap: int, like: torch.Tensor) -> torch.Tensor:
    def axis(n: int) -> torch.Tensor:
        ramp = torch.ones(n)
        edge = min(overlap, n // 2)
        if edge > 0:
            values = torch.linspace(1 / (edge + 1), 1, edge)
            ramp[:edge] = values
            ramp[n - edge:] = values.flip(0)
        return ramp

    return (axis(h)[:, None] * axis(w)[None, :]).to(like)[None, None]
