"""Single-step solvers of the probability-flow ODE dx/dsigma = (x - D(x; sigma)) / sigma."""

from __future__ import annotations

import torch

from nodeflow.sampling.noise import NoiseSource
from nodeflow.sampling.samplers_common import Callback, Denoiser, derivative, report, sigma_batch


@torch.no_grad()
def sample_euler(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                 noise: NoiseSource | None = None, callback: Callback = None) -> torch.Tensor:
    """Euler's method on the probability-flow ODE (Karras et al. 2022, "Elucidating the Design
    Space of Diffusion-Based Generative Models", algorithm 2 without churn). ``sample_ddim`` is the
    same step (see there why)."""
    total = len(sigmas) - 1
    for i in range(total):
        denoised = denoise(x, sigma_batch(x, sigmas[i]))
        report(callback, i, total, x, denoised)
        x = x + derivative(x, sigmas[i], denoised) * (sigmas[i + 1] - sigmas[i])
    return x


@torch.no_grad()
def sample_ddim(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                noise: NoiseSource | None = None, callback: Callback = None) -> torch.Tensor:
    """Deterministic DDIM, eta = 0 (Song et al. 2021, "Denoising Diffusion Implicit Models",
    eq. 12), computed as the Euler step in the Karras sigma parameterisation, as ComfyUI and
    k-diffusion do for their ``ddim``.

    DDIM's update on z_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, given the model's x0 estimate
    D and the eps it implies, is z_s = sqrt(abar_s) D + sqrt(1 - abar_s) eps. Divide by sqrt(abar_s)
    and write sigma = sqrt((1 - abar) / abar), x = z / sqrt(abar): then x_s = D + sigma_s eps and
    eps = (x_t - D) / sigma_t, so x_s = x_t + (x_t - D) / sigma_t * (sigma_s - sigma_t): Euler's
    step on dx/dsigma = (x - D) / sigma, exactly (Song et al. 2021, section 4.3, eq. 14: DDIM is
    Euler's method on this ODE; Karras et al. 2022, section 3). With eta > 0 DDIM would add noise; ComfyUI's
    ``ddim`` has none.
    """
    return sample_euler(denoise, x, sigmas, noise=noise, callback=callback)


@torch.no_grad()
def sample_heun(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                noise: NoiseSource | None = None, callback: Callback = None) -> torch.Tensor:
    """Heun's second-order method (Karras et al. 2022, algorithm 1); Euler on the step to 0."""
    total = len(sigmas) - 1
    for i in range(total):
        denoised = denoise(x, sigma_batch(x, sigmas[i]))
        report(callback, i, total, x, denoised)
        d = derivative(x, sigmas[i], denoised)
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            x = x + d * dt
            continue
        x_2 = x + d * dt  # (B, C, h, w) Euler predictor
        d_2 = derivative(x_2, sigmas[i + 1], denoise(x_2, sigma_batch(x, sigmas[i + 1])))
        x = x + (d + d_2) / 2 * dt
    return x


@torch.no_grad()
def sample_heunpp2(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                   noise: NoiseSource | None = None, callback: Callback = None) -> torch.Tensor:
    """Heun++ (Carzit's sd-webui-samplers-scheduler, as in ComfyUI): the Euler step's slope is a
    weighted mean of the slopes at sigma_i, sigma_{i+1} and sigma_{i+2} (each reached by Euler),
    weights w2 = sigma_{i+1} / (3 sigma_0), w3 = sigma_{i+2} / (3 sigma_0), w1 = 1 - w2 - w3.
    Two slopes (weights over 2 sigma_0) on the second-to-last step; plain Euler on the last."""
    total = len(sigmas) - 1
    end = sigmas[-1]
    for i in range(total):
        denoised = denoise(x, sigma_batch(x, sigmas[i]))
        report(callback, i, total, x, denoised)
        d = derivative(x, sigmas[i], denoised)
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == end:
            x = x + d * dt
            continue
        x_2 = x + d * dt
        d_2 = derivative(x_2, sigmas[i + 1], denoise(x_2, sigma_batch(x, sigmas[i + 1])))
        if sigmas[i + 2] == end:
            w2 = sigmas[i + 1] / (2 * sigmas[0])
            x = x + (d * (1 - w2) + d_2 * w2) * dt
            continue
        x_3 = x_2 + d_2 * (sigmas[i + 2] - sigmas[i + 1])
        d_3 = derivative(x_3, sigmas[i + 2], denoise(x_3, sigma_batch(x, sigmas[i + 2])))
        w2, w3 = sigmas[i + 1] / (3 * sigmas[0]), sigmas[i + 2] / (3 * sigmas[0])
        x = x + ((1 - w2 - w3) * d + w2 * d_2 + w3 * d_3) * dt
    return x


@torch.no_grad()
def sample_dpm_2(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                 noise: NoiseSource | None = None, callback: Callback = None) -> torch.Tensor:
    """DPM2: the midpoint method with the midpoint taken in log-sigma (Karras et al. 2022,
    inspired by DPM-Solver-2 of Lu et al. 2022); Euler on the step to 0."""
    total = len(sigmas) - 1
    for i in range(total):
        denoised = denoise(x, sigma_batch(x, sigmas[i]))
        report(callback, i, total, x, denoised)
        d = derivative(x, sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = x + d * (sigmas[i + 1] - sigmas[i])
            continue
        sigma_mid = sigmas[i].log().lerp(sigmas[i + 1].log(), 0.5).exp()
        x_2 = x + d * (sigma_mid - sigmas[i])
        d_2 = derivative(x_2, sigma_mid, denoise(x_2, sigma_batch(x, sigma_mid)))
        x = x + d_2 * (sigmas[i + 1] - sigmas[i])
    return x
