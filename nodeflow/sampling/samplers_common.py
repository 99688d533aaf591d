"""Shared pieces of the samplers: the denoiser contract, the ODE derivative, ancestral steps.

A sampler is ``sampler(denoise, x, sigmas, *, noise, callback) -> x`` (k-diffusion's contract):
``denoise(x, sigma)`` returns the model's estimate of the clean latent at noise level ``sigma``
(a (B,) tensor); ``x`` starts at ``sigmas[0]`` and the result is at ``sigmas[-1]``. The ODE view
(Karras et al. 2022, eq. 4 with sigma(t) = t): dx/dsigma = (x - D(x; sigma)) / sigma.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Callback = Callable[[int, int, torch.Tensor, torch.Tensor], None] | None


def sigma_batch(x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """``sigma`` repeated for every image of the batch: (B,)."""
    return sigma * x.new_ones([x.shape[0]])


def derivative(x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    """dx/dsigma of the probability-flow ODE: (x - D) / sigma."""
    return (x - denoised) / sigma


def ancestral_step(sigma: torch.Tensor, sigma_next: torch.Tensor,
                   eta: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(sigma_down, sigma_up): step deterministically to sigma_down, then add noise of std
    sigma_up so that the marginal is at sigma_next (the DDPM posterior variance for eta = 1,
    Song et al. 2021, "DDIM", eq. 16)."""
    if not eta:
        return sigma_next, torch.zeros_like(torch.as_tensor(sigma_next))
    sigma_up = torch.minimum(torch.as_tensor(sigma_next),
                             eta * (sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2) ** 0.5)
    return (sigma_next**2 - sigma_up**2) ** 0.5, sigma_up


def report(callback: Callback, step: int, total: int, x: torch.Tensor, denoised: torch.Tensor) -> None:
    if callback is not None:
        callback(step, total, x, denoised)


def t_of(sigma: torch.Tensor) -> torch.Tensor:
    """t = -log(sigma): the half log-SNR lambda of DPM-Solver (Lu et al. 2022) for VE sigmas."""
    return sigma.log().neg()


def sigma_of(t: torch.Tensor) -> torch.Tensor:
    return t.neg().exp()
