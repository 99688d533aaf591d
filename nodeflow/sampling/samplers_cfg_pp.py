"""CFG++ samplers (Chung et al. 2024, "CFG++: Manifold-constrained Classifier Free Guidance"):
the step is taken from the guided estimate D but renoised along the unconditional estimate U,
x_next = D + sigma_next (x - U) / sigma for Euler, which keeps small guidance scales on the data
manifold. ComfyUI's euler_cfg_pp, euler_ancestral_cfg_pp, dpmpp_2s_ancestral_cfg_pp and
dpmpp_2m_cfg_pp, for variance-exploding (eps and v) models.

U comes from the guidance: the sampler is handed an ``UncondRecord`` that the CFG denoiser fills
at every call (computing the unconditional prediction even at cfg 1, as ComfyUI does for these
samplers). Without a record (a bare denoiser) U is D: the samplers are then their plain versions.
"""

from __future__ import annotations

import torch

from nodeflow.sampling.noise import NoiseSource
from nodeflow.sampling.samplers_common import (Callback, Denoiser, ancestral_step, derivative, report, sigma_batch,
                                               sigma_of, t_of)


class UncondRecord:
    """The unconditional clean-latent estimate of the denoiser's last call (``value``)."""

    def __init__(self) -> None:
        self.value: torch.Tensor | None = None


def _evaluate(denoise: Denoiser, x: torch.Tensor, sigma, uncond: UncondRecord | None):
    """(D, U) at ``sigma``."""
    denoised = denoise(x, sigma_batch(x, sigma))
    return denoised, (uncond.value if uncond is not None and uncond.value is not None else denoised)


def _wants_uncond(function):
    function.wants_uncond = True
    return function


@_wants_uncond
@torch.no_grad()
def sample_euler_ancestral_cfg_pp(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                                  noise: NoiseSource | None = None, callback: Callback = None,
                                  uncond: UncondRecord | None = None, eta: float = 1.0,
                                  s_noise: float = 1.0) -> torch.Tensor:
    """x_next = D + sigma_down (x - U) / sigma + noise * sigma_up (the ancestral step of
    ``ancestral_step``); the step to 0 returns D."""
    total = len(sigmas) - 1
    for i in range(total):
        denoised, unconditional = _evaluate(denoise, x, sigmas[i], uncond)
        report(callback, i, total, x, denoised)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        x = denoised + derivative(x, sigmas[i], unconditional) * sigma_down
        if eta > 0 and s_noise > 0:
            x = x + noise.step(x) * s_noise * sigma_up
    return x


@_wants_uncond
@torch.no_grad()
def sample_euler_cfg_pp(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                        noise: NoiseSource | None = None, callback: Callback = None,
                        uncond: UncondRecord | None = None) -> torch.Tensor:
    """Euler CFG++: x_next = D + sigma_next (x - U) / sigma."""
    return sample_euler_ancestral_cfg_pp(denoise, x, sigmas, noise=noise, callback=callback, uncond=uncond,
                                         eta=0.0, s_noise=0.0)


@_wants_uncond
@torch.no_grad()
def sample_dpmpp_2s_ancestral_cfg_pp(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                                     noise: NoiseSource | None = None, callback: Callback = None,
                                     uncond: UncondRecord | None = None, eta: float = 1.0,
                                     s_noise: float = 1.0) -> torch.Tensor:
    """DPM-Solver++(2S) ancestral on U (the midpoint model call's U for the second stage), with
    the guidance D - U of the step's first call added after the noise."""
    total = len(sigmas) - 1
    for i in range(total):
        denoised, unconditional = _evaluate(denoise, x, sigmas[i], uncond)
        report(callback, i, total, x, denoised)
        guidance = denoised - unconditional
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        if sigma_down == 0:
            x = x + derivative(x, sigmas[i], unconditional) * (sigma_down - sigmas[i])
        else:
            t, t_next = t_of(sigmas[i]), t_of(sigma_down)
            h = t_next - t
            s = t + h / 2
            x_2 = (sigma_of(s) / sigma_of(t)) * x - (-h / 2).expm1() * unconditional
            _, unconditional_2 = _evaluate(denoise, x_2, sigma_of(s), uncond)
            x = (sigma_of(t_next) / sigma_of(t)) * x - (-h).expm1() * unconditional_2
        if sigmas[i + 1] > 0:
            x = x + noise.step(x) * s_noise * sigma_up
        x = x + guidance
    return x


@_wants_uncond
@torch.no_grad()
def sample_dpmpp_2m_cfg_pp(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                           noise: NoiseSource | None = None, callback: Callback = None,
                           uncond: UncondRecord | None = None) -> torch.Tensor:
    """DPM-Solver++(2M) CFG++: x_next = D - e^-h U + e^-h x, plus the second-order correction
    -(e^-h - 1) (D - U_prev) / (2 r) once a previous step exists (r = h_prev / h)."""
    total = len(sigmas) - 1
    previous_uncond = None
    for i in range(total):
        denoised, unconditional = _evaluate(denoise, x, sigmas[i], uncond)
        report(callback, i, total, x, denoised)
        t, t_next = t_of(sigmas[i]), t_of(sigmas[i + 1])
        h = t_next - t
        mix = -torch.exp(-h) * unconditional
        if previous_uncond is not None and sigmas[i + 1] != 0:
            r = (t - t_of(sigmas[i - 1])) / h
            mix = mix - torch.expm1(-h) * (1 / (2 * r)) * (denoised - previous_uncond)
        x = denoised + mix + torch.exp(-h) * x
        previous_uncond = unconditional
    return x


# ---- res_multistep and gradient estimation (plain and CFG++ forms share one loop each)

def _res_multistep(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, noise, callback, uncond, eta: float,
                   s_noise: float, cfg_pp: bool) -> torch.Tensor:
    """RES multistep (Zhang et al. 2023, "Improved order analysis and design of exponential
    integrator for diffusion models sampling", second-order multistep, arXiv 2308.02157): an
    exponential-integrator step with phi-function weights b1, b2 on the current and previous
    estimates, in log-sigma time, to sigma_down (eta > 0: ancestral noise of std sigma_up)."""
    def phi1(t):
        return torch.expm1(t) / t

    def phi2(t):
        return (phi1(t) - 1.0) / t

    total = len(sigmas) - 1
    old_denoised = old_sigma_down = None
    for i in range(total):
        denoised, unconditional = _evaluate(denoise, x, sigmas[i], uncond if cfg_pp else None)
        report(callback, i, total, x, denoised)
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        if sigma_down == 0 or old_denoised is None:
            if cfg_pp:
                x = denoised + derivative(x, sigmas[i], unconditional) * sigma_down
            else:
                x = x + derivative(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        else:
            t, t_old, t_next, t_prev = t_of(sigmas[i]), t_of(old_sigma_down), t_of(sigma_down), t_of(sigmas[i - 1])
            h = t_next - t
            c2 = (t_prev - t_old) / h
            b1 = torch.nan_to_num(phi1(-h) - phi2(-h) / c2, nan=0.0)
            b2 = torch.nan_to_num(phi2(-h) / c2, nan=0.0)
            current = unconditional if cfg_pp else denoised
            if cfg_pp:
                x = x + (denoised - unconditional)
            x = sigma_of(h) * x + h * (b1 * current + b2 * old_denoised)
        if sigmas[i + 1] > 0 and eta > 0:
            x = x + noise.step(x) * s_noise * sigma_up
        old_denoised = unconditional if cfg_pp else denoised
        old_sigma_down = sigma_down
    return x


@torch.no_grad()
def sample_res_multistep(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                         noise: NoiseSource | None = None, callback: Callback = None) -> torch.Tensor:
    """RES multistep, deterministic (eta 0)."""
    return _res_multistep(denoise, x, sigmas, noise, callback, None, 0.0, 1.0, cfg_pp=False)


@_wants_uncond
@torch.no_grad()
def sample_res_multistep_cfg_pp(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                                noise: NoiseSource | None = None, callback: Callback = None,
                                uncond: UncondRecord | None = None) -> torch.Tensor:
    """RES multistep on U with the guidance D - U added before each step (CFG++)."""
    return _res_multistep(denoise, x, sigmas, noise, callback, uncond, 0.0, 1.0, cfg_pp=True)


@torch.no_grad()
def sample_res_multistep_ancestral(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                                   noise: NoiseSource | None = None, callback: Callback = None,
                                   eta: float = 1.0, s_noise: float = 1.0) -> torch.Tensor:
    """RES multistep with ancestral noise."""
    return _res_multistep(denoise, x, sigmas, noise, callback, None, eta, s_noise, cfg_pp=False)


@_wants_uncond
@torch.no_grad()
def sample_res_multistep_ancestral_cfg_pp(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                                          noise: NoiseSource | None = None, callback: Callback = None,
                                          uncond: UncondRecord | None = None, eta: float = 1.0,
                                          s_noise: float = 1.0) -> torch.Tensor:
    """RES multistep ancestral, CFG++."""
    return _res_multistep(denoise, x, sigmas, noise, callback, uncond, eta, s_noise, cfg_pp=True)


def _gradient_estimation(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, callback, uncond,
                         gamma: float, cfg_pp: bool) -> torch.Tensor:
    """Gradient estimation (Permenter & Yuan 2024, "Interpreting and Improving Diffusion Models from
    an Optimization Perspective"): an Euler step plus (gamma - 1) times the change of the
    derivative since the previous step; the step to 0 returns D."""
    total = len(sigmas) - 1
    old_d = None
    for i in range(total):
        denoised, unconditional = _evaluate(denoise, x, sigmas[i], uncond if cfg_pp else None)
        d = derivative(x, sigmas[i], unconditional if cfg_pp else denoised)
        report(callback, i, total, x, denoised)
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            x = denoised + d * sigmas[i + 1] if cfg_pp else x + d * dt
            if i >= 1:
                x = x + (gamma - 1) * (d - old_d) * dt
        old_d = d
    return x


@torch.no_grad()
def sample_gradient_estimation(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                               noise: NoiseSource | None = None, callback: Callback = None,
                               ge_gamma: float = 2.0) -> torch.Tensor:
    return _gradient_estimation(denoise, x, sigmas, callback, None, ge_gamma, cfg_pp=False)


@_wants_uncond
@torch.no_grad()
def sample_gradient_estimation_cfg_pp(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                                      noise: NoiseSource | None = None, callback: Callback = None,
                                      uncond: UncondRecord | None = None, ge_gamma: float = 2.0) -> torch.Tensor:
    return _gradient_estimation(denoise, x, sigmas, callback, uncond, ge_gamma, cfg_pp=True)
