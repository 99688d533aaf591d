"""Multistep solvers of the probability-flow ODE: they reuse the model evaluations of earlier
steps (one evaluation per step) to reach higher order."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from nodeflow.sampling.noise import NoiseSource
from nodeflow.sampling.samplers_common import (Callback, Denoiser, derivative, report, sigma_batch,
                                               sigma_of, t_of)


def _lms_coefficient(order: int, t: list[float], i: int, j: int) -> float:
    """Integral over [t_i, t_{i+1}] of the Lagrange basis polynomial of node t_{i-j} built on
    t_i, ..., t_{i-order+1} (exact polynomial integration)."""
    poly = [1.0]  # coefficients, lowest degree first
    for k in range(order):
        if k == j:
            continue
        denominator = t[i - j] - t[i - k]
        factor = [-t[i - k] / denominator, 1.0 / denominator]
        poly = [sum(poly[a] * factor[n - a] for a in range(len(poly)) if 0 <= n - a < 2)
                for n in range(len(poly) + 1)]

    def antiderivative(tau: float) -> float:
        return sum(c * tau ** (n + 1) / (n + 1) for n, c in enumerate(poly))

    return antiderivative(t[i + 1]) - antiderivative(t[i])


@torch.no_grad()
def sample_lms(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
               noise: NoiseSource | None = None, callback: Callback = None, order: int = 4) -> torch.Tensor:
    """Linear multistep (Adams-Bashforth in sigma with the exact Lagrange weights for uneven
    steps, k-diffusion's LMS after Karras et al. 2022) of up to ``order``; the step to 0 returns
    the denoised estimate (ComfyUI)."""
    t = sigmas.double().cpu().tolist()
    history: list[torch.Tensor] = []
    total = len(sigmas) - 1
    for i in range(total):
        denoised = denoise(x, sigma_batch(x, sigmas[i]))
        report(callback, i, total, x, denoised)
        history = (history + [derivative(x, sigmas[i], denoised)])[-order:]
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        current = min(i + 1, order)
        coefficients = [_lms_coefficient(current, t, i, j) for j in range(current)]
        x = x + sum(c * d for c, d in zip(coefficients, reversed(history)))
    return x


@torch.no_grad()
def sample_dpmpp_2m(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                    noise: NoiseSource | None = None, callback: Callback = None) -> torch.Tensor:
    """DPM-Solver++(2M): second-order multistep in the data prediction (Lu et al. 2022b, alg. 2)."""
    total = len(sigmas) - 1
    previous = None
    for i in range(total):
        denoised = denoise(x, sigma_batch(x, sigmas[i]))
        report(callback, i, total, x, denoised)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            t, t_next = t_of(sigmas[i]), t_of(sigmas[i + 1])
            h = t_next - t
            if previous is None:
                estimate = denoised
            else:
                ratio = (t - t_of(sigmas[i - 1])) / h
                estimate = (1 + 1 / (2 * ratio)) * denoised - (1 / (2 * ratio)) * previous
            x = (sigma_of(t_next) / sigma_of(t)) * x - (-h).expm1() * estimate
        previous = denoised
    return x


#: iPNDM's fixed Adams-Bashforth weights per order (current derivative first)
IPNDM_WEIGHTS = {1: [1.0], 2: [3 / 2, -1 / 2], 3: [23 / 12, -16 / 12, 5 / 12], 4: [55 / 24, -59 / 24, 37 / 24, -9 / 24]}


def _adams_bashforth(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, callback: Callback, max_order: int,
                     weights: Callable[[int, list], list[float]]) -> torch.Tensor:
    """Pseudo linear multistep on the ODE derivative: x_next = x + h_0 sum_k w_k d_k over the
    current and up to max_order - 1 earlier derivatives, ``weights(order, steps)`` giving w for the
    step sizes [h_0, h_1, ...] (this step's first); the step to 0 returns the denoised estimate."""
    total = len(sigmas) - 1
    history: list[torch.Tensor] = []
    for i in range(total):
        denoised = denoise(x, sigma_batch(x, sigmas[i]))
        report(callback, i, total, x, denoised)
        d = derivative(x, sigmas[i], denoised)
        order = min(max_order, i + 1)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            steps = [sigmas[i + 1] - sigmas[i]] + [sigmas[i - k] - sigmas[i - k - 1] for k in range(order - 1)]
            x = x + steps[0] * sum(w * h for w, h in zip(weights(order, steps), [d] + history[::-1]))
        history = (history + [d])[-(max_order - 1):]
    return x


@torch.no_grad()
def sample_ipndm(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                 noise: NoiseSource | None = None, callback: Callback = None,
                 max_order: int = 4) -> torch.Tensor:
    """Improved pseudo linear multistep (iPNDM; Zhang & Chen 2023, "DEIS"): Adams-Bashforth
    with fixed coefficients of up to fourth order on the ODE derivative."""
    return _adams_bashforth(denoise, x, sigmas, callback, max_order, lambda order, steps: IPNDM_WEIGHTS[order])


def _ipndm_v_weights(order: int, h: list[float]) -> list[float]:
    """iPNDM-v's weights for step sizes h[0] (this step), h[1], h[2], h[3] (the previous ones):
    variable-step Adams-Bashforth coefficients of up to fourth order, as the diff-solvers code
    that ComfyUI's ipndm_v follows."""
    if order == 1:
        return [1.0]
    h0, h1 = h[0], h[1]
    base = [(2 + h0 / h1) / 2, -(h0 / h1) / 2]
    if order == 2:
        return base
    h2 = h[2]
    temp1 = (1 - h0 / (3 * (h0 + h1)) * (h0 * (h0 + h1)) / (h1 * (h1 + h2))) / 2
    if order == 3:
        return [base[0] + temp1, base[1] - (1 + h1 / h2) * temp1, temp1 * h1 / h2]
    h3 = h[3]
    ratio = h1 * (h1 + h2) / (h2 * (h2 + h3))
    temp2 = ((1 - h0 / (3 * (h0 + h1))) / 2 + (1 - h0 / (2 * (h0 + h1))) * h0 / (6 * (h0 + h1 + h2))) \
        * (h0 * (h0 + h1) * (h0 + h1 + h2)) / (h1 * (h1 + h2) * (h1 + h2 + h3))
    return [base[0] + temp1 + temp2,
            base[1] - (1 + h1 / h2) * temp1 - (1 + h1 / h2 + ratio) * temp2,
            temp1 * h1 / h2 + (h1 / h2 + ratio * (1 + h2 / h3)) * temp2,
            -temp2 * ratio * h1 / h2]


@torch.no_grad()
def sample_ipndm_v(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                   noise: NoiseSource | None = None, callback: Callback = None,
                   max_order: int = 4) -> torch.Tensor:
    """iPNDM with variable step sizes (iPNDM-v; Zhou et al. 2024, "Fast ODE-based sampling for
    diffusion models in around 5 steps"): Adams-Bashforth weights recomputed from the actual
    sigma steps."""
    return _adams_bashforth(denoise, x, sigmas, callback, max_order, _ipndm_v_weights)


def _deis_times(sigmas: torch.Tensor, eps_s: float = 1e-3, edm_min: float = 0.002, edm_max: float = 80.0):
    """DEIS's VP time of each sigma: the linear-beta VP SDE fitted to EDM's range (sigma 0.002 at
    t = eps_s, 80 at t = 1), as in the DEIS/GITS reference code ComfyUI uses. Returns (t, beta_0,
    beta_1) in float64."""
    beta_d = 2 * (math.log(edm_min**2 + 1) / eps_s - math.log(edm_max**2 + 1)) / (eps_s - 1)
    beta_min = math.log(edm_max**2 + 1) - 0.5 * beta_d
    s = sigmas.double().cpu()
    t = ((beta_min**2 + 2 * beta_d * torch.log(s**2 + 1)).sqrt() - beta_min) / beta_d
    return t, beta_min, beta_d + beta_min


def deis_coefficients(sigmas: torch.Tensor, max_order: int = 3, points: int = 10000) -> list[list[float]]:
    """DEIS "tAB" weights (Zhang & Chen 2023, "Fast Sampling of Diffusion Models with Exponential
    Integrator", eq. 15): c_ij = integral over [t_i, t_{i+1}] of dsigma/dtau times the Lagrange
    basis polynomial of node t_{i-j}, by the same left-weighted sum over ``points`` samples as the
    reference code. Step i uses order min(i + 1, max_order); the step to 0 is Euler (no weights)."""
    t, beta_0, beta_1 = _deis_times(sigmas)
    weights: list[list[float]] = []
    for i in range(len(sigmas) - 1):
        order = min(i + 1, max_order)
        if order == 1 or sigmas[i + 1] <= 0:
            weights.append([])
            continue
        taus = torch.linspace(float(t[i]), float(t[i + 1]), points, dtype=torch.float64)
        dtau = (t[i + 1] - t[i]) / points
        alpha = torch.exp(-0.5 * taus**2 * (beta_1 - beta_0) - taus * beta_0)
        d_log_alpha = -taus * (beta_1 - beta_0) - beta_0
        dsigma_dtau = -0.5 * d_log_alpha / torch.sqrt(alpha * (1 - alpha))  # (points,)
        nodes = [float(t[i - k]) for k in range(order)]
        row = []
        for j in range(order):
            basis = torch.ones_like(taus)
            for k in range(order):
                if k != j:
                    basis = basis * (taus - nodes[k]) / (nodes[j] - nodes[k])
            row.append(float((dsigma_dtau * basis).sum() * dtau))
        weights.append(row)
    return weights


@torch.no_grad()
def sample_deis(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                noise: NoiseSource | None = None, callback: Callback = None, max_order: int = 3) -> torch.Tensor:
    """DEIS, tAB variant (Zhang & Chen 2023): Adams-Bashforth on eps = dx/dsigma with
    weights integrated exactly in DEIS's VP time (``deis_coefficients``); Euler to start and on
    the step to 0."""
    weights = deis_coefficients(sigmas, max_order)
    total = len(sigmas) - 1
    history: list[torch.Tensor] = []  # earlier slopes, oldest first
    for i in range(total):
        denoised = denoise(x, sigma_batch(x, sigmas[i]))
        report(callback, i, total, x, denoised)
        d = derivative(x, sigmas[i], denoised)
        if weights[i]:
            x = x + sum(w * slope for w, slope in zip(weights[i], [d] + history[::-1]))
        else:
            x = x + (sigmas[i + 1] - sigmas[i]) * d
        history = (history + [d])[-(max_order - 1):] if max_order > 1 else []
    return x
