"""The VAE socket value: pixels (IMAGE, B x H x W x C in 0..1) <-> latents (B x 4 x H/8 x W/8).

Latents are the VAE's own (unscaled); the MODEL's latent format scales them inside the sampler.
Encoding takes the posterior mean (no sampling), from 2v - 1; decoding returns
clamp((y + 1) / 2, 0, 1). An image whose size is not a multiple of 8 is cropped to one, centred
(as ComfyUI does). Tiled variants process overlapping tiles and blend them with linear ramps,
for images larger than memory allows; ``encode``/``decode`` fall back to them by themselves when
the untiled pass runs out of device memory.

An ``offloaded`` VAE (``--vram low``, nodeflow.runtime.vram) keeps its weights in CPU memory and
copies the whole model to ``device`` for each encode or decode (tiles included), dropping the
copy after it (nodeflow.models.streaming.on_device); ``device`` is still where it computes.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from nodeflow.models.streaming import on_device
from nodeflow.models.vae import AutoencoderKL
from nodeflow.runtime.devices import available_memory, is_out_of_memory
from nodeflow.runtime.threads import cpu_threads, network_work, threads_for

logger = logging.getLogger(__name__)


def crop_to_multiple(image: torch.Tensor, factor: int) -> torch.Tensor:
    """IMAGE (B, H, W, C) centre-cropped to H, W multiples of ``factor`` (ComfyUI's rule)."""
    height, width = image.shape[1] // factor * factor, image.shape[2] // factor * factor
    top, left = (image.shape[1] % factor) // 2, (image.shape[2] % factor) // 2
    return image[:, top:top + height, left:left + width]


@dataclass(frozen=True, eq=False)
class VAE:
    model: AutoencoderKL
    scaling_factor: float
    device: torch.device
    dtype: torch.dtype
    name: str = ""
    #: the weights stay where they are stored (the CPU) and are copied to ``device`` for each pass
    offloaded: bool = False

    def _weights_placed(self):
        """A context in which the model's weights are on ``device`` (copies, when offloaded)."""
        return on_device(self.model, self.device) if self.offloaded else nullcontext()

    @property
    def downscale(self) -> int:
        return self.model.config.downscale

    @torch.no_grad()
    def encode(self, image: torch.Tensor, batch_size: int = 4, auto_tile: bool = True) -> torch.Tensor:
        """IMAGE (B, H, W, C) 0..1 -> latent (B, 4, H/f, W/f) float32 on the CPU (posterior mean
        of 2 image - 1); H, W centre-cropped to multiples of f. Out of memory: tiled instead."""
        with self._weights_placed():
            return self._encode(image, batch_size, auto_tile)

    def _encode(self, image: torch.Tensor, batch_size: int, auto_tile: bool) -> torch.Tensor:
        pixels = crop_to_multiple(image, self.downscale)[..., :3].movedim(-1, 1) * 2 - 1  # (B, 3, H, W)
        if auto_tile and not self.fits(min(batch_size, pixels.shape[0]), *pixels.shape[-2:]):
            logger.info("VAE encode of %s would not fit in memory; encoding in tiles", tuple(image.shape))
            return self._encode_tiled(image)
        try:
            with cpu_threads(self._threads(pixels.shape[0] * pixels[0, 0].numel() // self.downscale ** 2)):
                outputs = [self.model.encode(chunk.to(self.device, self.dtype)).float().cpu()
                           for chunk in pixels.split(batch_size)]
        except (torch.OutOfMemoryError, RuntimeError) as error:
            if not (auto_tile and is_out_of_memory(error)):
                raise
            logger.warning("VAE encode of %s ran out of memory; encoding in tiles", tuple(image.shape))
            return self._encode_tiled(image)
        return torch.cat(outputs)

    @torch.no_grad()
    def decode(self, latent: torch.Tensor, batch_size: int = 4, auto_tile: bool = True) -> torch.Tensor:
        """latent (B, 4, h, w) -> IMAGE (B, h f, w f, 3) in 0..1, float32 on the CPU.
        Out of memory: decoded in tiles instead."""
        with self._weights_placed():
            return self._decode(latent, batch_size, auto_tile)

    def _decode(self, latent: torch.Tensor, batch_size: int, auto_tile: bool) -> torch.Tensor:
        f = self.downscale
        if auto_tile and not self.fits(min(batch_size, latent.shape[0]), latent.shape[-2] * f, latent.shape[-1] * f):
            logger.info("VAE decode of %s would not fit in memory; decoding in tiles", tuple(latent.shape))
            return self._decode_tiled(latent)
        try:
            with cpu_threads(self._threads(latent.shape[0] * latent[0, 0].numel())):
                outputs = [self.model.decode(chunk.to(self.device, self.dtype)).float().cpu()
                           for chunk in latent.split(batch_size)]
        except (torch.OutOfMemoryError, RuntimeError) as error:
            if not (auto_tile and is_out_of_memory(error)):
                raise
            logger.warning("VAE decode of %s ran out of memory; decoding in tiles", tuple(latent.shape))
            return self._decode_tiled(latent)
        pixels = torch.cat(outputs)  # (B, 3, H, W)
        return ((pixels + 1) / 2).clamp(0, 1).movedim(1, -1)

    def _threads(self, latent_positions: int) -> int:
        """CPU threads for a pass over this many latent positions (nodeflow.runtime.threads);
        on a GPU the count is left as it is."""
        if self.device.type != "cpu":
            return torch.get_num_threads()
        return threads_for(network_work(self.model, latent_positions))

    def fits(self, batch: int, height: int, width: int) -> bool:
        """Whether an untiled pass over ``batch`` images of height x width pixels should fit in the
        free memory of the VAE's device: the estimate is ACTIVATIONS_PER_CHANNEL tensors of the
        full-resolution width (SD's VAE: 128 channels) per pixel. Unknown free memory: assume yes
        (an out-of-memory error still falls back to tiles)."""
        free = available_memory(self.device)
        config = getattr(self.model, "config", None)
        if free is None or not hasattr(config, "ch"):
            return True
        channels = config.ch * config.ch_mult[0]
        needed = batch * height * width * channels * self.dtype.itemsize * ACTIVATIONS_PER_CHANNEL
        return needed < free * 0.8

    @torch.no_grad()
    def decode_tiled(self, latent: torch.Tensor, tile: int = 64, overlap: int = 16) -> torch.Tensor:
        """Decode in overlapping latent tiles of ``tile`` (latent pixels), blended linearly."""
        with self._weights_placed():
            return self._decode_tiled(latent, tile, overlap)

    def _decode_tiled(self, latent: torch.Tensor, tile: int = 64, overlap: int = 16) -> torch.Tensor:
        f = self.downscale
        decode = lambda t: self._decode(t, 4, auto_tile=False).movedim(-1, 1)  # noqa: E731
        return _tiled(latent, tile, overlap, f, decode).movedim(1, -1)

    @torch.no_grad()
    def encode_tiled(self, image: torch.Tensor, tile: int = 512, overlap: int = 64) -> torch.Tensor:
        """Encode in overlapping pixel tiles of ``tile``, blended linearly."""
        with self._weights_placed():
            return self._encode_tiled(image, tile, overlap)

    def _encode_tiled(self, image: torch.Tensor, tile: int = 512, overlap: int = 64) -> torch.Tensor:
        f = self.downscale
        pixels = crop_to_multiple(image, f)[..., :3].movedim(-1, 1)  # (B, 3, H, W)
        tile, overlap = max(tile // f * f, f), overlap // f * f  # whole latent pixels per tile
        return _tiled(pixels, tile, overlap, 1 / f, lambda t: self._encode(t.movedim(1, -1), 4, auto_tile=False))


#: Full-resolution activation tensors alive at once in the VAE's widest block (input, norm,
#: activation, convolution outputs, the skip and the upsampled input: about 6), with margin.
ACTIVATIONS_PER_CHANNEL = 8


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
