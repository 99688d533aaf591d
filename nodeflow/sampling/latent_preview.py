"""Cheap live previews: a latent to a small RGB image by a fixed linear projection.

Each RGB value is a linear combination of the latent channels, rgb = latent @ F (+ bias), mapped
from -1..1 to 0..1. F for SD1.x latents (in the model's scaled space, i.e. after process_in) is
the 4 x 3 matrix ComfyUI and A1111 use for their "latent2rgb" previews, fitted by least squares
between latents and their decoded images:

    channel 0:  0.3512  0.2297  0.3227
    channel 1:  0.3250  0.4974  0.2350
    channel 2: -0.2829  0.1762  0.2721
    channel 3: -0.2120 -0.2616 -0.7177

SDXL's latents (another VAE) have their own factors and a bias (``SDXL_RGB_FACTORS``,
``SDXL_RGB_BIAS``, ComfyUI's).

The preview is 1/8 of the image size (one pixel per latent pixel): no VAE decode needed.

A linear map renders the latents of a small VAE trained from scratch (the embedded models') badly:
their colours are not linear in the latent (a green star on purple previewed as brown on grey).
Checkpoints whose VAE is that small (under ``DECODED_PREVIEW_MAX_PARAMETERS``; SD's has 84 M)
preview through the VAE itself instead (``VaePreview``: a full-size image, about 15 ms a step at
64 px), as ComfyUI's TAESD previews do with a separate tiny decoder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from nodeflow.image.vae import VAE

#: VAEs up to this many parameters preview by decoding (the embedded models' has 1.0 M).
DECODED_PREVIEW_MAX_PARAMETERS = 4_000_000

#: SD1.x latent -> RGB factors (rows: latent channels; columns: R, G, B).
SD1_RGB_FACTORS: tuple[tuple[float, float, float], ...] = (
    (0.3512, 0.2297, 0.3227), (0.3250, 0.4974, 0.2350),
    (-0.2829, 0.1762, 0.2721), (-0.2120, -0.2616, -0.7177))
#: SDXL latent -> RGB factors and bias.
SDXL_RGB_FACTORS: tuple[tuple[float, float, float], ...] = (
    (0.3651, 0.4232, 0.4341), (-0.2533, -0.0042, 0.1068),
    (0.1076, 0.1111, -0.0362), (-0.3165, -0.2492, -0.2188))
SDXL_RGB_BIAS: tuple[float, float, float] = (0.1084, -0.0175, -0.0011)


def latent_preview(latent: torch.Tensor, factors: Sequence[Sequence[float]] = SD1_RGB_FACTORS,
                   bias: Sequence[float] | None = None, max_images: int = 1) -> torch.Tensor:
    """An IMAGE (N, h, w, 3) in 0..1 from a scaled latent (B, C, h, w); N = min(B, max_images)."""
    matrix = torch.tensor(factors, dtype=torch.float32)  # (C, 3)
    channels = min(latent.shape[1], matrix.shape[0])
    samples = latent[:max_images, :channels].detach().float().cpu()  # (N, C, h, w)
    rgb = torch.einsum("bchw,cr->bhwr", samples, matrix[:channels])  # (N, h, w, 3)
    if bias is not None:
        rgb = rgb + torch.tensor(bias, dtype=torch.float32)
    return ((rgb + 1.0) / 2.0).clamp(0.0, 1.0)


@dataclass(frozen=True, eq=False)
class VaePreview:
    """A preview decoder: a scaled latent (B, C, h, w) -> IMAGE (N, H, W, 3) by the VAE itself.
    ``process_out`` undoes the model's latent scaling (LatentFormat.process_out)."""

    vae: VAE
    process_out: Callable[[torch.Tensor], torch.Tensor]
    max_images: int = 1

    def __call__(self, latent: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(self.process_out(latent[:self.max_images].detach().float()), auto_tile=False)


def small_enough_to_preview(vae: VAE) -> bool:
    """Whether ``vae`` is small enough that decoding is a cheap preview."""
    return sum(p.numel() for p in vae.model.parameters()) <= DECODED_PREVIEW_MAX_PARAMETERS


def progress_reporter(ctx, latent_format):
    """A sampler callback ``(step, total, denoised)`` that reports each step's progress to the
    run context ``ctx`` (``ctx.progress(done, total, preview)``), with a latent preview when
    ``ctx.wants_preview(done, total)``: the latent format's ``preview_decoder`` when it has one
    (a tiny VAE), else the cheap 4 x 3 projection."""

    def report(step: int, total: int, denoised: torch.Tensor) -> None:
        done = step + 1
        preview = None
        if ctx.wants_preview(done, total):
            decoder = getattr(latent_format, "preview_decoder", None)
            preview = decoder(denoised) if decoder is not None else latent_preview(
                denoised, latent_format.rgb_factors, getattr(latent_format, "rgb_bias", None))
        ctx.progress(done, total, preview)

    return report
