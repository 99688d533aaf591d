"""Step schedules: which sigmas a sampler visits, under ComfyUI's names.

Each function takes the model's ``ModelSampling`` and a step count and returns float32 sigmas of
length steps + 1, decreasing, ending in 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from nodeflow.sampling import custom_schedules
from nodeflow.sampling.custom_schedules import append_zero
from nodeflow.sampling.model_sampling import ModelSampling


def normal(ms: ModelSampling, steps: int) -> torch.Tensor:
    """Timesteps evenly spaced from the last to the first, sigma interpolated in log-sigma."""
    start, end = ms.timestep(ms.sigma_max), ms.timestep(ms.sigma_min)
    timesteps = torch.linspace(float(start), float(end), steps)
    return append_zero(ms.sigma(timesteps))


def sgm_uniform(ms: ModelSampling, steps: int) -> torch.Tensor:
    """As ``normal`` but over steps + 1 points with the last dropped (SGM / SDXL-turbo style):
    k-diffusion's DiscreteSchedule.get_sigmas(steps + 1) without its sigma at t = 0."""
    start, end = ms.timestep(ms.sigma_max), ms.timestep(ms.sigma_min)
    timesteps = torch.linspace(float(start), float(end), steps + 1)[:-1]
    return append_zero(ms.sigma(timesteps))


def karras(ms: ModelSampling, steps: int, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. 2022, eq. 5, between the table's sigma_min and sigma_max."""
    return custom_schedules.karras(steps, float(ms.sigma_min), float(ms.sigma_max), rho)


def exponential(ms: ModelSampling, steps: int) -> torch.Tensor:
    """Evenly spaced in log-sigma between sigma_max and sigma_min."""
    return custom_schedules.exponential(steps, float(ms.sigma_min), float(ms.sigma_max))


def simple(ms: ModelSampling, steps: int) -> torch.Tensor:
    """Every (T / steps)-th entry of the sigma table, from the top: index T - 1 - floor(i T / steps).

    diffusers' "trailing" spacing takes T - 1 - round(i T / steps): the same sigmas exactly when
    steps divides T (1000); otherwise one index lower wherever the fraction is over a half.
    """
    stride = len(ms.sigmas) / steps
    return append_zero(torch.stack([ms.sigmas[-(1 + int(i * stride))] for i in range(steps)]))


def ddim_uniform(ms: ModelSampling, steps: int) -> torch.Tensor:
    """DDIM's uniform timesteps (Song et al. 2021): table entries 1, 1 + c, 1 + 2c, ... (c = T //
    steps) below T, reversed. That is more than ``steps`` of them unless T mod steps <= 1;
    diffusers' "leading" spacing with steps_offset=1 keeps only the last ``steps`` (the lowest)."""
    stride = max(len(ms.sigmas) // steps, 1)
    picked = [float(ms.sigmas[i]) for i in range(1, len(ms.sigmas), stride)]
    return torch.tensor(picked[::-1] + [0.0], dtype=torch.float32)


def beta(ms: ModelSampling, steps: int, alpha: float = 0.6, beta_: float = 0.6) -> torch.Tensor:
    """Timesteps at quantiles of a Beta(alpha, beta) distribution (Lee et al. 2024, "Beta
    Sampling is All You Need"), duplicates dropped."""
    total = len(ms.sigmas) - 1
    quantiles = 1 - torch.linspace(0, 1, steps + 1, dtype=torch.float64)[:-1]
    timesteps = torch.round(_beta_ppf(quantiles, alpha, beta_) * total).long().tolist()
    picked, last = [], None
    for t in timesteps:
        if t != last:
            picked.append(float(ms.sigmas[t]))
        last = t
    return torch.tensor(picked + [0.0], dtype=torch.float32)


def _beta_ppf(q: torch.Tensor, a: float, b: float, points: int = 200001) -> torch.Tensor:
    """Inverse CDF of Beta(a, b) by numerical integration of the density on a fine grid (enough
    here: the result is rounded to one of 1000 timesteps)."""
    u = torch.linspace(0, 1, points, dtype=torch.float64)
    x = (1 - torch.cos(math.pi * u)) / 2  # denser near 0 and 1, where the density is singular
    mid = (x[1:] + x[:-1]) / 2
    density = mid ** (a - 1) * (1 - mid) ** (b - 1)
    cdf = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(density * (x[1:] - x[:-1]), 0)])
    cdf = cdf / cdf[-1]
    index = torch.searchsorted(cdf, q.clamp(0, 1)).clamp(1, points - 1)
    c0, c1 = cdf[index - 1], cdf[index]
    w = ((q - c0) / (c1 - c0).clamp(min=1e-300)).clamp(0, 1)
    return x[index - 1] + w * (x[index] - x[index - 1])


def linear_quadratic(ms: ModelSampling, steps: int, threshold_noise: float = 0.025,
                     linear_steps: int | None = None) -> torch.Tensor:
    """Linear then quadratic in (1 - sigma / sigma_max) (the schedule of Mochi / LTX-Video)."""
    if steps == 1:
        schedule = [1.0, 0.0]
    else:
        linear_steps = steps // 2 if linear_steps is None else linear_steps
        linear = [i * threshold_noise / linear_steps for i in range(linear_steps)]
        step_diff = linear_steps - threshold_noise * steps
        quadratic_steps = steps - linear_steps
        quadratic_coef = step_diff / (linear_steps * quadratic_steps**2)
        linear_coef = threshold_noise / linear_steps - 2 * step_diff / quadratic_steps**2
        const = quadratic_coef * linear_steps**2
        quadratic = [quadratic_coef * i**2 + linear_coef * i + const for i in range(linear_steps, steps)]
        schedule = [1.0 - x for x in linear + quadratic + [1.0]]
    return torch.tensor(schedule, dtype=torch.float32) * float(ms.sigma_max)


def kl_optimal(ms: ModelSampling, steps: int) -> torch.Tensor:
    """Evenly spaced in arctan(sigma), in float32 as ComfyUI computes it (Sabour et al. 2024,
    "Align Your Steps", the KL-optimal schedule; A1111 PR 15608)."""
    t = torch.arange(steps, dtype=torch.float32) / max(steps - 1, 1)
    lo, hi = math.atan(float(ms.sigma_min)), math.atan(float(ms.sigma_max))
    return append_zero(torch.tan(t * lo + (1 - t) * hi))


#: Name -> scheduler, in the order of ComfyUI's SCHEDULER_HANDLERS (its KSampler list).
SCHEDULERS: dict[str, Callable[[ModelSampling, int], torch.Tensor]] = {
    "simple": simple,
    "sgm_uniform": sgm_uniform,
    "karras": karras,
    "exponential": exponential,
    "ddim_uniform": ddim_uniform,
    "beta": beta,
    "normal": normal,
    "linear_quadratic": linear_quadratic,
    "kl_optimal": kl_optimal,
}
SCHEDULER_NAMES: tuple[str, ...] = tuple(SCHEDULERS)


def compute_sigmas(ms: ModelSampling, scheduler: str, steps: int) -> torch.Tensor:
    """The sigmas (steps + 1 values, float32, ending in 0) of the scheduler called ``scheduler``."""
    try:
        return SCHEDULERS[scheduler](ms, steps)
    except KeyError:
        raise ValueError(f"unknown scheduler {scheduler!r}; one of {', '.join(SCHEDULERS)}") from None
