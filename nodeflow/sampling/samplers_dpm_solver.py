"""DPM-Solver (Lu et al. 2022, "DPM-Solver: A Fast ODE Solver for Diffusion Probabilistic Model
Sampling in Around 10 Steps"): exponential integrators in t = -log(sigma) on the noise
prediction eps = (x - D) / sigma, as ComfyUI's ``dpm_fast`` and ``dpm_adaptive`` run them.

Both ignore the schedule's inner sigmas: they integrate from sigmas[0] down to the last non-zero
sigma (so the result keeps that much noise, as in ComfyUI).
"""

from __future__ import annotations

import math

import torch

from nodeflow.sampling.noise import NoiseSource
from nodeflow.sampling.samplers_common import (Callback, Denoiser, ancestral_step, report, sigma_batch,
                                               sigma_of, t_of)


class _EpsCache:
    """eps at the points of one step, each evaluated once: eps(x, t) = (x - D(x; sigma(t))) / sigma(t)."""

    def __init__(self, denoise: Denoiser) -> None:
        self.denoise, self.values = denoise, {}

    def eps(self, key: str, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if key not in self.values:
            sigma = sigma_of(t)
            self.values[key] = (x - self.denoise(x, sigma_batch(x, sigma))) / sigma
        return self.values[key]


def _step_1(cache: _EpsCache, x, t, t_next):
    """DPM-Solver-1 (= DDIM): x - sigma(t') (e^h - 1) eps."""
    return x - sigma_of(t_next) * (t_next - t).expm1() * cache.eps("eps", x, t)


def _step_2(cache: _EpsCache, x, t, t_next, r1: float = 1 / 2):
    """DPM-Solver-2 (algorithm 4 of the paper), intermediate point at t + r1 h."""
    h = t_next - t
    eps = cache.eps("eps", x, t)
    s1 = t + r1 * h
    u1 = x - sigma_of(s1) * (r1 * h).expm1() * eps
    eps_r1 = cache.eps("eps_r1", u1, s1)
    return x - sigma_of(t_next) * h.expm1() * eps - sigma_of(t_next) / (2 * r1) * h.expm1() * (eps_r1 - eps)


def _step_3(cache: _EpsCache, x, t, t_next, r1: float = 1 / 3, r2: float = 2 / 3):
    """DPM-Solver-3 (algorithm 5 of the paper), intermediate points at t + h/3 and t + 2h/3."""
    h = t_next - t
    eps = cache.eps("eps", x, t)
    s1, s2 = t + r1 * h, t + r2 * h
    u1 = x - sigma_of(s1) * (r1 * h).expm1() * eps
    eps_r1 = cache.eps("eps_r1", u1, s1)
    u2 = (x - sigma_of(s2) * (r2 * h).expm1() * eps
          - sigma_of(s2) * (r2 / r1) * ((r2 * h).expm1() / (r2 * h) - 1) * (eps_r1 - eps))
    eps_r2 = cache.eps("eps_r2", u2, s2)
    return x - sigma_of(t_next) * h.expm1() * eps - sigma_of(t_next) / r2 * (h.expm1() / h - 1) * (eps_r2 - eps)


def _end_points(sigmas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(t_start, t_end): from sigmas[0] to the last non-zero sigma."""
    sigma_min = sigmas[-1] if sigmas[-1] != 0 else sigmas[-2]
    if sigma_min <= 0 or sigmas[0] <= 0:
        raise ValueError(f"dpm_fast/dpm_adaptive need positive sigmas, got {sigmas.tolist()}")
    return t_of(sigmas[0].float().cpu()), t_of(sigma_min.float().cpu())


def _ancestral_target(t, t_next, t_end, eta: float):
    """(t_next', sigma_up): where the deterministic step goes and how much noise follows."""
    if not eta:
        return t_next, 0.0
    sigma_down, _ = ancestral_step(sigma_of(t), sigma_of(t_next), eta)
    t_down = torch.minimum(t_end, t_of(sigma_down))
    return t_down, (sigma_of(t_next) ** 2 - sigma_of(t_down) ** 2) ** 0.5


@torch.no_grad()
def sample_dpm_fast(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                    noise: NoiseSource | None = None, callback: Callback = None,
                    eta: float = 0.0, s_noise: float = 1.0) -> torch.Tensor:
    """DPM-Solver-fast (Lu et al. 2022, section 3.4): len(sigmas) - 1 model evaluations spent on
    steps uniform in t = -log(sigma), third order but a last 2nd/1st order step."""
    if len(sigmas) <= 1:
        return x
    t_start, t_end = _end_points(sigmas)
    nfe = len(sigmas) - 1
    m = nfe // 3 + 1
    ts = torch.linspace(float(t_start), float(t_end), m + 1)
    orders = [3] * (m - 2) + [2, 1] if nfe % 3 == 0 else [3] * (m - 1) + [nfe % 3]
    steps = {1: _step_1, 2: _step_2, 3: _step_3}
    for i, order in enumerate(orders):
        t, t_next = ts[i], ts[i + 1]
        t_next_, sigma_up = _ancestral_target(t, t_next, t_end, eta)
        cache = _EpsCache(denoise)
        denoised = x - sigma_of(t) * cache.eps("eps", x, t)
        report(callback, i, len(orders), x, denoised)
        x = steps[order](cache, x, t, t_next_)
        if eta:
            x = x + noise.step(x) * s_noise * sigma_up
    return x


class _StepSizeController:
    """PID step-size control (Söderlind 2003), the "I" controller by default, with the
    arctan limiter 1 + atan(f - 1); a step is accepted when the factor is >= accept_safety."""

    def __init__(self, h: float, pcoeff: float, icoeff: float, dcoeff: float, order: float,
                 accept_safety: float, eps: float = 1e-8) -> None:
        self.h, self.accept_safety, self.eps = h, accept_safety, eps
        self.b1 = (pcoeff + icoeff + dcoeff) / order
        self.b2 = -(pcoeff + 2 * dcoeff) / order
        self.b3 = dcoeff / order
        self.inverse_errors: list[float] = []

    def propose(self, error: float) -> bool:
        inverse = 1 / (float(error) + self.eps)
        if not self.inverse_errors:
            self.inverse_errors = [inverse] * 3
        self.inverse_errors[0] = inverse
        e0, e1, e2 = self.inverse_errors
        factor = 1 + math.atan(e0**self.b1 * e1**self.b2 * e2**self.b3 - 1)
        accept = factor >= self.accept_safety
        if accept:
            self.inverse_errors = [e0, e0, e1]
        self.h *= factor
        return accept


@torch.no_grad()
def sample_dpm_adaptive(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                        noise: NoiseSource | None = None, callback: Callback = None,
                        order: int = 3, rtol: float = 0.05, atol: float = 0.0078, h_init: float = 0.05,
                        pcoeff: float = 0.0, icoeff: float = 1.0, dcoeff: float = 0.0,
                        accept_safety: float = 0.81, eta: float = 0.0, s_noise: float = 1.0) -> torch.Tensor:
    """DPM-Solver-12 / -23 with adaptive step size (Lu et al. 2022, algorithm 6 / appendix C):
    the difference between a lower- and a higher-order step estimates the local error."""
    if len(sigmas) <= 1:
        return x
    if order not in (2, 3):
        raise ValueError(f"dpm_adaptive: order must be 2 or 3, got {order}")
    t_start, t_end = _end_points(sigmas)
    nominal = len(sigmas) - 1
    atol_t, rtol_t = torch.tensor(atol), torch.tensor(rtol)
    controller = _StepSizeController(abs(h_init), pcoeff, icoeff, dcoeff, 1.5 if eta else order,
                                     accept_safety)
    s, x_prev, attempt = t_start, x, 0
    while s < t_end - 1e-5:
        t = torch.minimum(t_end, s + controller.h)
        t_, sigma_up = _ancestral_target(s, t, t_end, eta)
        cache = _EpsCache(denoise)
        denoised = x - sigma_of(s) * cache.eps("eps", x, s)
        if order == 2:
            x_low, x_high = _step_1(cache, x, s, t_), _step_2(cache, x, s, t_)
        else:
            x_low, x_high = _step_2(cache, x, s, t_, r1=1 / 3), _step_3(cache, x, s, t_)
        delta = torch.maximum(atol_t, rtol_t * torch.maximum(x_low.abs(), x_prev.abs()))
        error = torch.linalg.norm((x_low - x_high) / delta) / x.numel() ** 0.5
        if controller.propose(error):
            x_prev = x_low
            x = x_high + (noise.step(x) * s_noise * sigma_up if eta else 0)
            s = t
        report(callback, attempt, max(nominal, attempt + 1), x, denoised)
        attempt += 1
    return x
