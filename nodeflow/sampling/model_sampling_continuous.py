"""Models trained in continuous time (ComfyUI's ModelSamplingContinuousEDM and
ModelSamplingContinuousV): the network is given a function of sigma itself instead of the index
of a training timestep.

- EDM time (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative
  Models", table 1: c_noise = ln(sigma) / 4): t = 0.25 ln sigma; Playground v2.5, CosXL and
  EDM-trained fine-tunes;
- V time (Salimans & Ho 2022, "Progressive Distillation", appendix D: the angle of the
  variance-preserving schedule): t = (2 / pi) atan sigma.

The sigma table (for the schedulers that read one: simple, ddim_uniform, sgm_uniform...) is 1000
values spaced evenly in log sigma from ``sigma_min`` to ``sigma_max``; a schedule's start
follows ComfyUI's percent_to_sigma: log-linear between the two.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from nodeflow.sampling.model_sampling import PARAMETERIZATIONS, BetaSchedule, ModelSampling

TABLE_SIZE = 1000
TIMES = ("edm", "v")


@dataclass(frozen=True)
class ContinuousModelSampling(ModelSampling):
    """A log-spaced sigma table with a continuous timestep: ``time`` "edm" (0.25 ln sigma) or "v"
    ((2 / pi) atan sigma)."""

    time: str = "edm"

    @classmethod
    def continuous(cls, time: str, parameterization: str, sigma_min: float, sigma_max: float,
                   sigma_data: float = 1.0, schedule: BetaSchedule | None = None) -> ContinuousModelSampling:
        """The sampling of ComfyUI's continuous nodes; ``schedule`` is the model's discrete training
        schedule, kept for a later ModelSamplingDiscrete."""
        if time not in TIMES:
            raise ValueError(f"unknown continuous time {time!r} ({', '.join(TIMES)})")
        if parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"unknown parameterization {parameterization!r} ({', '.join(PARAMETERIZATIONS)})")
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"sigma_min ({sigma_min}) must be above 0 and below sigma_max ({sigma_max})")
        sigmas = torch.linspace(math.log(sigma_min), math.log(sigma_max), TABLE_SIZE).exp()
        return cls(sigmas, sigmas.log(), parameterization, schedule=schedule, sigma_data=sigma_data, time=time)

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """The network's timestep for ``sigma``: 0.25 ln sigma (edm) or (2 / pi) atan sigma (v)."""
        if self.time == "v":
            return sigma.atan() / math.pi * 2
        return 0.25 * sigma.log()

    def fractional_timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        return self.timestep(sigma)

    def sigma(self, timestep: torch.Tensor) -> torch.Tensor:
        """The inverse of ``timestep``."""
        if self.time == "v":
            return (timestep * math.pi / 2).tan()
        return (timestep / 0.25).exp()

    def percent_to_sigma(self, percent: float) -> float:
        """Log-linear from sigma_max (0: the start) to sigma_min; 0 at 1."""
        if percent <= 0.0:
            return 999999999.9
        if percent >= 1.0:
            return 0.0
        low, high = math.log(float(self.sigma_min)), math.log(float(self.sigma_max))
        return math.exp((high - low) * (1.0 - percent) + low)
