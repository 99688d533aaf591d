"""UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of
Diffusion Models"), multistep, data prediction, B(h) = h ("bh1") or e^h - 1 ("bh2"), as ComfyUI
runs it: order min(3, steps - 1), lower orders to warm up and for the last steps, a corrector
(UniC) after every step but the last, and the schedule's final 0 replaced by sigma 0.001.

Written in the variance-exploding view: with lambda = -log(sigma) and h = lambda_t - lambda_s the
first-order part of a step is x_t = (sigma_t / sigma_s) x_s - (e^-h - 1) D_s (DPM-Solver++).
"""

from __future__ import annotations

import math

import torch

from nodeflow.sampling.noise import NoiseSource
from nodeflow.sampling.samplers_common import Callback, Denoiser, report, sigma_batch

FINAL_SIGMA = 0.001


def _coefficients(rks: list[float], hh: float, order: int, variant: str) -> tuple[float, torch.Tensor, torch.Tensor]:
    """B(h) and the right-hand side b_k = k! phi_{k+1}(hh) / B(h) with the Vandermonde rows R_k =
    r^(k-1) (the paper's eq. 8 / algorithm 2 conditions), in float64."""
    b_h = hh if variant == "bh1" else math.expm1(hh)
    r = torch.tensor(rks + [1.0], dtype=torch.float64)
    phi = math.expm1(hh) / hh - 1
    rows, rhs, factorial = [], [], 1
    for k in range(1, order + 1):
        rows.append(r ** (k - 1))
        rhs.append(phi * factorial / b_h)
        factorial *= k + 1
        phi = phi / hh - 1 / factorial
    return b_h, torch.stack(rows), torch.tensor(rhs, dtype=torch.float64)


def _update(denoise: Denoiser, x: torch.Tensor, history: list[tuple[float, torch.Tensor]], sigma_t: float,
            order: int, variant: str, use_corrector: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One UniP step to sigma_t (of ``order``) and, with ``use_corrector``, its UniC correction.
    Returns (x_t, D(x_t predicted)) — the model value at the predicted point is what the next
    step reuses."""
    sigma_s, model_s = history[-1]
    h = math.log(sigma_s) - math.log(sigma_t)
    hh = -h
    rks, differences = [], []
    for sigma_i, model_i in reversed(history[-order:-1]):
        rk = (math.log(sigma_s) - math.log(sigma_i)) / h
        rks.append(rk)
        differences.append((model_i - model_s) / rk)  # (B, C, h, w)
    b_h, rows, rhs = _coefficients(rks, hh, order, variant)
    x_first = (sigma_t / sigma_s) * x - math.expm1(hh) * model_s  # DPM-Solver++(1)
    x_t = x_first
    if differences:
        rhos_p = [0.5] if order == 2 else torch.linalg.solve(rows[:-1, :-1], rhs[:-1]).tolist()
        x_t = x_first - b_h * sum(rho * dif for rho, dif in zip(rhos_p, differences))
    if not use_corrector:
        return x_t, None
    rhos_c = [0.5] if order == 1 else torch.linalg.solve(rows, rhs).tolist()
    model_t = denoise(x_t, sigma_batch(x, sigma_t))
    correction = sum(rho * dif for rho, dif in zip(rhos_c[:-1], differences)) + rhos_c[-1] * (model_t - model_s)
    return x_first - b_h * correction, model_t


def _sample_unipc(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, callback: Callback,
                  variant: str) -> torch.Tensor:
    sigma_list = [float(s) for s in sigmas]
    if len(sigma_list) < 2:
        return x
    sigma_list[-1] = max(sigma_list[-1], FINAL_SIGMA)
    steps = len(sigma_list) - 1
    order = max(1, min(3, steps - 1))  # ComfyUI's min(3, steps - 1); one step: one first-order step
    denoised = denoise(x, sigma_batch(x, sigma_list[0]))
    report(callback, 0, steps, x, denoised)
    history = [(sigma_list[0], denoised)]
    for step in range(1, steps + 1):
        step_order = min(order, step, steps + 1 - step)
        x, model_x = _update(denoise, x, history, sigma_list[step], step_order, variant,
                             use_corrector=step < steps)
        if step < steps:
            history = (history + [(sigma_list[step], model_x)])[-order:]
            report(callback, step, steps, x, model_x)
    return x


@torch.no_grad()
def sample_uni_pc(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                  noise: NoiseSource | None = None, callback: Callback = None) -> torch.Tensor:
    """UniPC with B(h) = h (Zhao et al. 2023, "bh1")."""
    return _sample_unipc(denoise, x, sigmas, callback, "bh1")


@torch.no_grad()
def sample_uni_pc_bh2(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                      noise: NoiseSource | None = None, callback: Callback = None) -> torch.Tensor:
    """UniPC with B(h) = e^h - 1 (Zhao et al. 2023, "bh2")."""
    return _sample_unipc(denoise, x, sigmas, callback, "bh2")
