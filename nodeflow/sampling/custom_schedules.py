"""Schedules that custom-sampling graphs build from their own numbers (ComfyUI's scheduler nodes)
rather than from the model's noise table, and the sigma-list edits (split, flip, extend).

Every schedule is a float32 1-D tensor of decreasing sigmas; those of k-diffusion's family end in
0 (``get_sigmas_karras``, ``_exponential``, ``_polyexponential``, ``_vp``); Laplace's n values do
not, as in ComfyUI.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from nodeflow.sampling.model_sampling import ModelSampling


def append_zero(sigmas: torch.Tensor) -> torch.Tensor:
    """The sigmas in float32 with a final 0."""
    return torch.cat([sigmas.float(), sigmas.new_zeros(1, dtype=torch.float32)])


def karras(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. 2022, eq. 5: (max^(1/rho) + i/(n-1) (min^(1/rho) - max^(1/rho)))^rho, then 0."""
    ramp = torch.linspace(0, 1, steps)
    min_inv, max_inv = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return append_zero((max_inv + ramp * (min_inv - max_inv)) ** rho)


def exponential(steps: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """Evenly spaced in log-sigma from sigma_max to sigma_min, then 0."""
    return append_zero(torch.linspace(math.log(sigma_max), math.log(sigma_min), steps).exp())


def polyexponential(steps: int, sigma_min: float, sigma_max: float, rho: float = 1.0) -> torch.Tensor:
    """log sigma = min + (1 - i/(n-1))^rho (log max - log min), then 0 (rho 1: exponential)."""
    ramp = torch.linspace(1, 0, steps) ** rho
    return append_zero(torch.exp(ramp * (math.log(sigma_max) - math.log(sigma_min)) + math.log(sigma_min)))


def vp(steps: int, beta_d: float = 19.9, beta_min: float = 0.1, eps_s: float = 1e-3) -> torch.Tensor:
    """The continuous VP SDE's sigmas (Song et al. 2021): sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1)
    for t from 1 to eps_s, then 0."""
    t = torch.linspace(1, eps_s, steps)
    return append_zero(torch.sqrt(torch.special.expm1(beta_d * t**2 / 2 + beta_min * t)))


def laplace(steps: int, sigma_min: float, sigma_max: float, mu: float = 0.0, beta: float = 0.5) -> torch.Tensor:
    """Laplace-distributed log-sigmas (Tiankai et al. 2024), clamped to [sigma_min, sigma_max];
    ``steps`` values with no 0 appended (as ComfyUI's LaplaceScheduler)."""
    x = torch.linspace(0, 1, steps)
    log_sigma = mu - beta * torch.sign(0.5 - x) * torch.log(1 - 2 * torch.abs(0.5 - x) + 1e-5)
    return torch.exp(log_sigma).clamp(min=sigma_min, max=sigma_max)


def sd_turbo(ms: ModelSampling, steps: int, denoise: float) -> torch.Tensor:
    """SDTurboScheduler: timesteps 999, 899, ... 99, starting 10 - int(10 denoise) in, ``steps``
    of them, each's sigma from the model's table, then 0."""
    start = 10 - int(10 * denoise)
    timesteps = torch.flip(torch.arange(1, 11) * 100 - 1, (0,))[start:start + steps]
    return append_zero(ms.sigma(timesteps))


#: Align Your Steps' optimised 10-step schedules (Sabour et al. 2024, NVIDIA's published values).
ALIGN_YOUR_STEPS = {
    "SD1": [14.6146412293, 6.4745760956, 3.8636745985, 2.6946151520, 1.8841921177, 1.3943805092,
            0.9642583904, 0.6523686016, 0.3977456272, 0.1515232662, 0.0291671582],
    "SDXL": [14.6146412293, 6.3184485287, 3.7681790315, 2.1811480769, 1.3405244945, 0.8620721141,
             0.5550693289, 0.3798540708, 0.2332364134, 0.1114188177, 0.0291671582],
    "SVD": [700.00, 54.5, 15.886, 7.977, 4.248, 1.789, 0.981, 0.403, 0.173, 0.034, 0.002],
}


def align_your_steps(model_type: str, steps: int, denoise: float) -> torch.Tensor:
    """The published 10-step schedule, log-linearly interpolated to ``steps``; ``denoise`` < 1
    keeps the last round(steps * denoise) steps; the last sigma is 0."""
    if denoise <= 0.0:
        return torch.zeros(0)
    kept = steps if denoise >= 1.0 else round(steps * denoise)
    levels = np.array(ALIGN_YOUR_STEPS[model_type])
    if steps + 1 != len(levels):
        xs = np.linspace(0, 1, len(levels))
        levels = np.exp(np.interp(np.linspace(0, 1, steps + 1), xs, np.log(levels[::-1])))[::-1].copy()
    levels = levels[-(kept + 1):]
    levels[-1] = 0
    return torch.tensor(levels, dtype=torch.float32)


def split(sigmas: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """SplitSigmas: (sigmas[:step + 1], sigmas[step:]), sharing the sigma at ``step``."""
    return sigmas[:step + 1], sigmas[step:]


def split_denoise(sigmas: torch.Tensor, denoise: float) -> tuple[torch.Tensor, torch.Tensor]:
    """SplitSigmasDenoise: the last round(steps * denoise) steps are the low part."""
    steps = max(sigmas.shape[-1] - 1, 0)
    low_steps = round(steps * denoise)
    return sigmas[:-low_steps] if low_steps else sigmas[:0], sigmas[-(low_steps + 1):]


def flip(sigmas: torch.Tensor) -> torch.Tensor:
    """FlipSigmas: reversed (for unsampling), a leading 0 raised to 1e-4."""
    if len(sigmas) == 0:
        return sigmas
    flipped = sigmas.flip(0).clone()
    if flipped[0] == 0:
        flipped[0] = 0.0001
    return flipped


def set_first(sigmas: torch.Tensor, sigma: float) -> torch.Tensor:
    out = sigmas.clone()
    out[0] = sigma
    return out


SPACINGS = {"linear": lambda x: x, "cosine": lambda x: torch.sin(x * math.pi / 2),
            "sine": lambda x: 1 - torch.cos(x * math.pi / 2)}


def extend_intermediate(sigmas: torch.Tensor, steps: int, start_at_sigma: float, end_at_sigma: float,
                        spacing: str) -> torch.Tensor:
    """ExtendIntermediateSigmas: ``steps`` - 1 extra sigmas inside every step whose start lies in
    [end_at_sigma, start_at_sigma] (start < 0: no upper bound), spaced by ``spacing``."""
    upper = float("inf") if start_at_sigma < 0 else start_at_sigma
    fractions = SPACINGS[spacing](torch.linspace(0, 1, steps + 1)[1:-1])
    out: list[float] = []
    for current, following in zip(sigmas[:-1].tolist(), sigmas[1:].tolist()):
        out.append(current)
        if end_at_sigma <= current <= upper:
            out.extend((fractions * (following - current) + current).tolist())
    if len(sigmas):
        out.append(float(sigmas[-1]))
    return torch.tensor(out, dtype=torch.float32)
