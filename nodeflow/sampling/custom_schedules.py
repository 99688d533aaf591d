"""Schedules that custom-sampling graphs build from their own numbers (ComfyUI's scheduler nodes)
rather than from the model's noise table, and the sigma-list edits (split, flip, extend).

Every schedule is a float32 1-D tensor of decreasing sigmas; those of k-diffusion's family end in
0 (``get_sigmas_karras``, ``_exponential``, ``_polyexponential``, ``_vp``), as do the published
tables (Align Your Steps, GITS: their data at the end of this module); Laplace's n values do not,
as in ComfyUI.
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


def loglinear_interp(levels, count: int) -> np.ndarray:
    """``count`` values spread over the decreasing ``levels`` (float64): log-sigma interpolated
    linearly at evenly spaced positions, both ends kept (ComfyUI's loglinear_interp)."""
    levels = np.asarray(levels, dtype=np.float64)
    xs = np.linspace(0, 1, len(levels))
    return np.exp(np.interp(np.linspace(0, 1, count), xs, np.log(levels[::-1])))[::-1].copy()


def _kept_tail(levels: np.ndarray, steps: int, denoise: float) -> torch.Tensor:
    """The last round(steps * denoise) steps of ``levels`` (all of them for denoise >= 1; none,
    an empty tensor, for denoise <= 0), the last sigma set to 0, in float32."""
    if denoise <= 0.0:
        return torch.zeros(0)
    kept = steps if denoise >= 1.0 else round(steps * denoise)
    levels = np.array(levels[-(kept + 1):], dtype=np.float64)
    levels[-1] = 0
    return torch.tensor(levels, dtype=torch.float32)


def align_your_steps(model_type: str, steps: int, denoise: float) -> torch.Tensor:
    """The published 10-step schedule, log-linearly interpolated to ``steps``; ``denoise`` < 1
    keeps the last round(steps * denoise) steps; the last sigma is 0."""
    levels = np.array(ALIGN_YOUR_STEPS[model_type])
    if steps + 1 != len(levels):
        levels = loglinear_interp(levels, steps + 1)
    return _kept_tail(levels, steps, denoise)


GITS_MAX_TABLE_STEPS = 20  # the published table's longest schedules (GITS_SCHEDULES, at the end of this module)


def gits_table_levels(coeff: float, steps: int) -> list[float]:
    """GITS's published schedule for ``coeff`` and ``steps`` (2 .. 20): steps + 1 sigmas from SD's
    sigma_max to its sigma_min."""
    key = round(coeff, 2)
    if key not in GITS_SCHEDULES:
        raise ValueError(f"GITS has no schedule for coeff {coeff}: one of {', '.join(map(str, GITS_SCHEDULES))}")
    if not 2 <= steps <= GITS_MAX_TABLE_STEPS:
        raise ValueError(f"GITS's table has 2 to {GITS_MAX_TABLE_STEPS} steps, not {steps}")
    inner = [int(k) for k in GITS_SCHEDULES[key][steps - 2].split()]
    return [GITS_GRID[k] for k in [100, *inner, 0]]


def gits(coeff: float, steps: int, denoise: float) -> torch.Tensor:
    """GITS (Chen et al. 2024, "On the Trajectory Regularity of ODE-based Diffusion Sampling"):
    the searched schedule for SD's sigmas at ``coeff`` (0.80 .. 1.50 in steps of 0.05); above 20
    steps the 20-step one, log-linearly interpolated to ``steps``; ``denoise`` < 1 keeps the last
    round(steps * denoise) steps; the last sigma is 0 (ComfyUI's GITSScheduler)."""
    if denoise <= 0.0:
        return torch.zeros(0)
    if steps < 2:
        raise ValueError(f"GITS needs at least 2 steps, not {steps}")
    if steps <= GITS_MAX_TABLE_STEPS:
        levels = np.array(gits_table_levels(coeff, steps))
    else:
        levels = loglinear_interp(gits_table_levels(coeff, GITS_MAX_TABLE_STEPS), steps + 1)
    return _kept_tail(levels, steps, denoise)


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


# ---- data

#: GITS's noise levels on its grid of 101 points, by index k (100: SD's sigma_max, 0: its sigma_min);
#: each is SD's sigma at timestep 9.99 k to within 3e-6 (a time-uniform grid), the values as published.
GITS_GRID = {
    100: 14.61464119, 99: 13.76078796, 98: 12.96784878, 97: 12.2308979, 96: 11.54541874, 95: 10.90732002,
    94: 10.31284904, 93: 9.75859547, 92: 9.24142551, 91: 8.75849152, 90: 8.30717278, 89: 7.88507891, 88: 7.49001646,
    87: 7.11996698, 86: 6.77309084, 85: 6.44769001, 84: 6.14220476, 83: 5.85520077, 82: 5.58536053, 80: 5.09240818,
    79: 4.86714602, 78: 4.65472794, 77: 4.45427561, 76: 4.26497746, 74: 3.91689563, 73: 3.75677586, 72: 3.60512662,
    71: 3.46139455, 70: 3.32507086, 69: 3.1956799, 68: 3.07277966, 67: 2.95596409, 66: 2.84484982, 64: 2.6383388,
    63: 2.54230714, 62: 2.45070267, 61: 2.36326075, 60: 2.27973175, 59: 2.19988537, 58: 2.12350607, 57: 2.05039096,
    56: 1.98035145, 55: 1.91321158, 54: 1.84880662, 53: 1.78698075, 52: 1.72759056, 51: 1.67050016, 50: 1.61558151,
    49: 1.56271636, 48: 1.51179266, 47: 1.46270394, 46: 1.41535246, 45: 1.36964464, 44: 1.32549286, 43: 1.28281462,
    42: 1.24153244, 41: 1.20157266, 40: 1.162866, 39: 1.12534678, 38: 1.08895338, 37: 1.05362725, 36: 1.01931262,
    35: 0.98595673, 34: 0.95350921, 33: 0.92192322, 32: 0.89115214, 31: 0.86115354, 30: 0.83188516, 29: 0.803307,
    28: 0.77538133, 27: 0.74807048, 26: 0.72133851, 25: 0.69515091, 24: 0.66947293, 23: 0.64427125, 22: 0.61951244,
    21: 0.59516323, 20: 0.57119018, 19: 0.54755926, 18: 0.52423614, 17: 0.50118381, 16: 0.4783645, 15: 0.45573691,
    14: 0.43325692, 13: 0.41087446, 12: 0.38853383, 11: 0.36617002, 10: 0.34370604, 9: 0.32104823, 8: 0.29807833,
    7: 0.27464288, 6: 0.25053367, 5: 0.22545385, 4: 0.19894916, 3: 0.17026083, 2: 0.13792117, 1: 0.09824532,
    0: 0.02916753,
}

#: GITS's schedules (Chen et al. 2024) by coeff, for 2 to 20 steps: the inner grid indices of each schedule,
#: which starts at k = 100 and ends at k = 0 (ComfyUI's NOISE_LEVELS table of nodes_gits, re-encoded).
GITS_SCHEDULES = {
    0.80: (
        "88", "96 86", "96 88 68", "96 88 83 57", "97 91 88 83 57", "97 91 88 83 68 49", "98 96 91 88 83 68 49",
        "99 97 95 91 88 83 68 49", "99 98 97 95 91 88 83 68 49", "99 98 97 95 92 90 88 83 68 49",
        "99 98 97 95 92 90 88 84 79 68 49", "99 98 97 96 94 92 90 88 84 79 68 49",
        "99 98 97 96 95 94 92 90 88 84 79 68 49", "99 98 97 96 95 94 92 91 90 88 84 79 68 49",
        "99 98 97 96 95 94 92 91 90 88 84 79 69 56 31", "99 98 97 96 95 94 93 92 91 90 88 84 79 69 56 31",
        "99 98 97 96 95 94 93 92 91 90 88 86 83 78 68 54 30", "99 98 97 96 95 94 93 92 91 90 89 88 86 83 78 68 54 30",
        "99 98 97 96 95 94 93 92 91 90 89 88 86 83 79 73 66 53 29",
    ),
    0.85: (
        "88", "88 54", "96 86 49", "96 87 68 42", "96 88 80 66 34", "97 91 88 80 66 34", "97 91 88 82 69 54 29",
        "98 96 91 88 82 69 54 29", "98 96 91 88 84 78 68 54 29", "99 97 95 91 88 84 78 68 54 29",
        "99 97 95 92 90 88 84 78 68 54 29", "99 98 97 95 92 90 88 84 78 68 54 29",
        "99 98 97 96 94 92 90 88 84 78 68 54 29", "99 98 97 96 94 92 90 88 84 79 72 64 49 26",
        "99 98 97 96 94 92 90 88 86 83 78 71 62 49 26", "99 98 97 96 94 92 91 90 88 86 83 78 71 62 49 26",
        "99 98 97 96 95 94 92 91 90 88 86 83 78 71 62 49 26", "99 98 97 96 95 94 93 92 91 90 88 86 83 78 71 62 49 26",
        "99 98 97 96 95 94 93 92 91 90 89 88 86 83 78 71 62 49 26",
    ),
    0.90: (
        "86", "88 49", "88 68 34", "88 79 63 32", "96 88 79 63 32", "96 88 80 68 50 25", "97 91 87 79 68 50 25",
        "97 91 88 83 77 67 50 25", "97 91 88 83 77 69 59 42 20", "98 95 91 88 83 77 69 59 42 20",
        "98 96 92 90 88 83 77 69 59 42 20", "98 96 92 90 88 84 79 73 66 54 38 18",
        "99 97 95 92 90 88 84 79 73 66 54 38 18", "99 97 95 92 90 88 85 82 77 70 62 50 34 15",
        "99 98 97 95 92 90 88 85 82 77 70 62 50 34 15", "99 98 97 95 92 90 88 86 83 79 74 68 60 49 34 15",
        "99 98 97 96 94 92 90 88 86 83 79 74 68 60 49 34 15", "99 98 97 96 94 92 91 90 88 86 83 79 74 68 60 49 34 15",
        "99 98 97 96 94 92 91 90 88 86 83 80 77 72 67 59 48 32 14",
    ),
    0.95: (
        "86", "86 49", "88 66 32", "88 79 61 29", "88 79 67 49 23", "96 88 79 67 49 23", "96 88 79 68 55 38 17",
        "96 88 83 77 68 55 38 17", "97 91 88 83 77 68 55 38 17", "97 91 88 83 77 69 59 46 29 12",
        "97 91 88 83 78 71 64 54 42 26 10", "98 95 91 88 83 78 71 64 54 42 26 10",
        "98 95 91 88 84 79 73 67 59 49 37 23 9", "98 95 91 88 85 82 78 72 67 59 49 37 23 9",
        "98 96 92 90 88 85 82 78 72 67 59 49 37 23 9", "98 96 92 90 88 85 82 78 73 68 62 53 42 30 17 5",
        "98 96 92 90 88 86 83 80 77 72 67 61 52 42 30 17 5", "99 97 95 92 90 88 86 83 80 77 72 67 61 52 42 30 17 5",
        "99 97 95 92 90 88 86 83 80 77 73 68 62 55 47 37 26 14 4",
    ),
    1.00: (
        "49", "86 34", "86 61 29", "87 68 49 21", "88 79 66 46 20", "88 79 66 50 31 12", "96 88 79 66 50 31 12",
        "96 88 79 68 56 42 26 10", "96 88 83 77 68 56 42 26 10", "96 88 83 77 69 60 48 34 19 6",
        "96 88 83 77 69 61 50 38 26 13 3", "96 91 88 83 77 69 61 50 38 26 13 3",
        "96 91 88 83 78 72 66 58 49 38 26 13 3", "96 91 88 83 78 72 66 59 50 40 29 17 7 1",
        "96 91 88 83 78 73 68 62 54 45 36 26 15 6 1", "96 91 88 84 80 76 71 66 59 51 42 33 23 14 6 1",
        "96 91 88 84 80 76 72 67 62 55 48 39 30 21 12 5 1", "97 92 90 88 84 80 76 72 67 62 55 48 39 30 21 12 5 1",
        "97 92 90 88 86 83 80 76 72 67 62 55 48 39 30 21 12 5 1",
    ),
    1.05: (
        "34", "86 32", "86 57 26", "86 66 43 18", "86 68 50 29 10", "88 79 66 49 29 10", "88 79 66 50 34 18 5",
        "88 79 68 56 42 27 13 3", "88 79 69 60 48 34 21 10 2", "88 80 71 62 50 38 26 15 6 1",
        "96 88 80 71 62 50 38 26 15 6 1", "96 88 83 77 69 61 50 38 26 15 6 1", "96 88 83 77 69 62 52 42 31 21 12 5 1",
        "96 88 83 78 72 66 59 50 40 30 21 12 5 1", "96 88 83 78 72 66 59 51 43 34 26 18 10 4 1",
        "96 88 83 78 72 67 61 54 46 38 30 22 15 9 4 1", "96 88 83 78 72 67 62 55 48 41 34 27 20 14 8 4 1",
        "96 90 87 83 78 72 67 62 55 48 41 34 27 20 14 8 4 1", "96 90 87 83 78 72 67 62 56 50 44 38 31 25 19 13 8 4 1",
    ),
    1.10: (
        "32", "61 26", "83 50 20", "86 62 38 15", "86 67 49 29 10", "86 68 50 32 16 4", "86 68 54 38 23 10 2",
        "88 79 66 50 34 19 7 1", "88 79 67 55 42 29 16 6 1", "88 79 68 57 46 34 23 13 5 1",
        "88 79 69 60 50 39 29 19 11 5 1", "88 79 70 62 52 42 32 23 15 9 4 1", "88 80 72 66 57 48 38 29 21 14 8 4 1",
        "88 80 72 66 58 50 42 34 26 19 13 8 4 1", "88 83 77 69 62 54 46 38 30 23 17 11 6 3 1",
        "88 83 77 69 62 55 48 41 34 27 21 15 10 6 3 1", "88 83 77 71 66 59 52 45 38 31 25 19 14 10 6 3 1",
        "96 88 83 77 71 66 59 52 45 38 31 25 19 14 10 6 3 1", "96 88 83 77 71 66 59 52 45 38 32 26 21 16 12 8 5 3 1",
    ),
    1.15: (
        "30", "54 21", "83 49 18", "83 55 30 10", "83 62 42 21 6", "83 66 48 29 13 3", "83 66 49 32 17 6 1",
        "86 68 54 39 26 14 5 1", "86 68 55 42 29 18 10 4 1", "88 79 67 55 42 29 18 10 4 1",
        "88 79 68 57 45 34 25 16 9 4 1", "88 79 68 58 48 38 29 21 14 8 4 1", "88 79 68 58 48 38 29 21 15 10 6 3 1",
        "88 79 68 59 50 42 34 27 21 15 10 6 3 1", "88 79 69 62 53 44 36 29 23 17 12 8 5 3 1",
        "88 79 69 62 53 44 36 29 23 18 13 9 6 4 2 1", "88 79 69 62 54 46 39 32 26 21 16 12 9 6 4 2 1",
        "88 79 69 62 54 46 39 32 26 21 17 13 10 7 5 3 2 1", "88 79 69 62 54 46 39 32 26 21 17 13 10 8 6 4 3 2 1",
    ),
    1.20: (
        "29", "49 18", "61 33 11", "66 42 21 6", "83 57 34 15 3", "83 62 42 23 8 1", "83 62 45 29 15 6 1",
        "83 66 50 34 21 11 4 1", "83 66 51 38 27 17 9 4 1", "83 67 54 42 30 21 13 7 3 1",
        "83 68 56 45 34 25 17 11 6 3 1", "86 71 61 49 38 29 21 15 10 6 3 1", "86 71 62 50 40 31 23 17 12 8 5 3 1",
        "88 78 68 58 48 38 30 23 17 12 8 5 3 1", "88 78 68 58 48 38 30 23 17 13 9 6 4 2 1",
        "88 78 68 58 48 38 30 23 17 13 10 7 5 3 2 1", "88 78 68 59 50 41 33 26 20 15 11 8 6 4 3 2 1",
        "88 78 68 59 50 42 34 27 21 16 12 9 7 5 4 3 2 1", "88 78 68 59 50 42 34 27 21 17 13 10 8 6 5 4 3 2 1",
    ),
    1.25: (
        "26", "49 17", "57 29 9", "61 34 14 3", "66 42 21 7 1", "68 48 29 14 5 1", "83 61 42 26 13 5 1",
        "83 62 45 30 18 10 4 1", "83 66 50 35 23 14 7 3 1", "83 66 51 38 27 18 11 6 3 1",
        "83 66 52 40 29 21 15 10 6 3 1", "83 67 54 42 31 23 16 11 7 4 2 1", "83 67 54 43 33 25 18 13 9 6 4 2 1",
        "83 67 55 44 34 26 19 14 10 7 5 3 2 1", "83 67 55 44 34 26 20 15 11 8 6 4 3 2 1",
        "83 67 55 44 34 27 21 16 12 9 7 5 4 3 2 1", "83 68 57 46 37 29 22 17 13 10 8 6 5 4 3 2 1",
        "83 68 57 46 37 29 23 18 14 11 9 7 6 5 4 3 2 1", "83 68 57 47 38 30 24 19 15 12 10 8 7 6 5 4 3 2 1",
    ),
    1.30: (
        "26", "42 14", "49 21 5", "54 29 11 2", "61 36 18 6 1", "66 45 27 13 5 1", "68 49 32 19 10 4 1",
        "68 50 34 22 13 7 3 1", "83 62 45 30 19 11 6 3 1", "83 62 46 33 23 15 10 6 3 1",
        "83 64 49 36 26 17 11 7 4 2 1", "83 66 50 37 27 19 13 9 6 4 2 1", "83 66 50 38 28 20 14 10 7 5 3 2 1",
        "83 66 50 38 29 21 15 11 8 6 4 3 2 1", "83 66 50 38 29 21 16 12 9 7 5 4 3 2 1",
        "83 66 52 40 30 23 17 13 10 8 6 5 4 3 2 1", "83 66 52 40 30 23 18 14 11 9 7 6 5 4 3 2 1",
        "83 66 53 42 33 26 20 15 12 10 8 7 6 5 4 3 2 1", "83 66 53 42 33 26 20 16 13 11 9 8 7 6 5 4 3 2 1",
    ),
    1.35: (
        "25", "34 10", "49 20 4", "50 25 8 1", "54 30 14 5 1", "62 40 23 11 4 1", "66 45 29 17 9 4 1",
        "66 46 30 19 11 6 3 1", "66 49 34 23 15 9 5 3 1", "66 49 34 23 15 10 6 4 2 1", "68 50 36 26 18 12 8 5 3 2 1",
        "68 50 36 26 18 13 9 6 4 3 2 1", "68 50 37 27 19 14 10 7 5 4 3 2 1", "68 52 39 29 21 15 11 8 6 5 4 3 2 1",
        "68 52 39 29 21 16 12 9 7 6 5 4 3 2 1", "83 62 48 36 27 20 15 11 9 7 6 5 4 3 2 1",
        "83 64 50 38 29 22 17 13 10 8 7 6 5 4 3 2 1", "83 64 50 38 29 23 18 14 11 9 8 7 6 5 4 3 2 1",
        "83 64 50 38 29 23 18 15 12 10 9 8 7 6 5 4 3 2 1",
    ),
    1.40: (
        "21", "34 10", "38 14 2", "49 23 7 1", "50 29 14 5 1", "57 34 19 10 4 1", "62 42 26 14 7 3 1",
        "62 42 27 17 10 6 3 1", "62 43 29 18 11 7 4 2 1", "62 43 29 19 12 8 5 3 2 1", "66 46 31 21 14 9 6 4 3 2 1",
        "66 48 34 23 15 10 7 5 4 3 2 1", "66 48 34 23 16 11 8 6 5 4 3 2 1", "66 49 35 25 18 13 10 8 6 5 4 3 2 1",
        "66 49 36 26 19 14 11 9 7 6 5 4 3 2 1", "66 50 37 27 20 15 12 10 8 7 6 5 4 3 2 1",
        "66 50 38 29 22 17 13 11 9 8 7 6 5 4 3 2 1", "66 50 38 29 22 17 14 12 10 9 8 7 6 5 4 3 2 1",
        "66 50 38 29 23 18 15 13 11 10 9 8 7 6 5 4 3 2 1",
    ),
    1.45: (
        "21", "29 6", "34 10 1", "42 19 6 1", "49 26 11 4 1", "50 29 15 7 3 1", "55 34 20 11 6 3 1",
        "59 38 23 13 7 4 2 1", "62 42 27 17 10 6 4 2 1", "62 42 27 17 11 7 5 3 2 1", "62 43 29 19 13 9 6 4 3 2 1",
        "62 43 29 20 14 10 7 5 4 3 2 1", "62 43 30 21 15 11 8 6 5 4 3 2 1", "62 43 30 21 15 11 9 7 6 5 4 3 2 1",
        "66 48 34 25 18 13 10 8 7 6 5 4 3 2 1", "66 48 34 25 18 14 11 9 8 7 6 5 4 3 2 1",
        "66 49 35 26 19 15 12 10 9 8 7 6 5 4 3 2 1", "66 49 36 27 20 16 13 11 10 9 8 7 6 5 4 3 2 1",
        "66 49 36 27 21 17 14 12 11 10 9 8 7 6 5 4 3 2 1",
    ),
    1.50: (
        "19", "29 6", "31 9 1", "42 19 6 1", "49 26 11 4 1", "50 29 15 7 3 1", "50 30 18 10 6 3 1",
        "54 34 21 12 7 4 2 1", "54 34 21 13 8 5 3 2 1", "54 34 22 14 9 6 4 3 2 1", "59 39 26 17 11 7 5 4 3 2 1",
        "59 39 26 17 11 8 6 5 4 3 2 1", "61 42 29 20 14 10 8 6 5 4 3 2 1", "61 42 29 20 14 10 8 7 6 5 4 3 2 1",
        "61 42 29 21 15 11 9 8 7 6 5 4 3 2 1", "61 42 29 21 15 12 10 9 8 7 6 5 4 3 2 1",
        "62 44 31 23 17 13 11 10 9 8 7 6 5 4 3 2 1", "62 45 33 25 19 15 13 11 10 9 8 7 6 5 4 3 2 1",
        "62 46 34 26 20 16 14 12 11 10 9 8 7 6 5 4 3 2 1",
    ),
}
