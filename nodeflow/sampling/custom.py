"""The values of ComfyUI's custom sampling: a SAMPLER (a sampler with its options), a NOISE (the
initial noise and the seed of the samplers' own noise), a GUIDER (the model and the guidance over
its conditioning: CFG, DualCFG, perpendicular negative) and SIGMAS (a 1-D float tensor, the schedule). SamplerCustom and
SamplerCustomAdvanced put them together through the KSampler's own sampling loop
(nodeflow.sampling.ksampler.run_sampler), so a custom graph equal to a KSampler gives its image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from nodeflow.sampling.guidance import CFGDenoiser
from nodeflow.sampling.model import DiffusionModel
from nodeflow.sampling.noise import initial_noise
from nodeflow.sampling.perp_neg import PerpNegDenoiser
from nodeflow.sampling.samplers import get_sampler


@dataclass(frozen=True)
class SamplerChoice:
    """A SAMPLER: the sampler called ``name`` with keyword ``options`` (eta, s_noise, order ...)."""

    name: str
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def wants_uncond(self) -> bool:
        """Whether the sampler reads the guidance's unconditional estimate (CFG++)."""
        return getattr(get_sampler(self.name), "wants_uncond", False)

    @property
    def wants_model_sampling(self) -> bool:
        """Whether the sampler reads the model's sampling (SA-Solver's default SDE interval)."""
        return getattr(get_sampler(self.name), "wants_model_sampling", False)

    def __call__(self, denoise, x: torch.Tensor, sigmas: torch.Tensor, **kwargs) -> torch.Tensor:
        return get_sampler(self.name)(denoise, x, sigmas, **kwargs, **dict(self.options))  # sigmas as given


@dataclass(frozen=True)
class Noise:
    """A NOISE: RandomNoise(seed) or DisableNoise (zeros, seed 0)."""

    seed: int = 0
    enabled: bool = True

    def generate(self, latent: dict) -> torch.Tensor:
        samples = latent["samples"]
        if not self.enabled:
            return torch.zeros(samples.shape)
        return initial_noise(samples.shape, self.seed, latent.get("batch_index"))


@dataclass(frozen=True, eq=False)
class Guider:
    """A GUIDER: CFG over ``conds`` (positive, negative), or one list with cfg 1 (BasicGuider), or
    DualCFGGuider's three lists (cond1, cond2, negative) with ``cfg`` and ``cfg2``."""

    model: DiffusionModel
    conds: tuple[list, ...]
    cfg: float = 1.0
    cfg2: float = 1.0
    style: str = "cfg"  # cfg | dual-regular | dual-nested | perp-neg (conds: positive, negative, empty; cfg2: neg_scale)

    def denoiser(self, max_batch: int | None = None):
        if self.style == "cfg":
            negative = self.conds[1] if len(self.conds) > 1 else []
            return CFGDenoiser(self.model, self.conds[0], negative, self.cfg if negative else 1.0, None, max_batch)
        if self.style == "perp-neg":
            return PerpNegDenoiser(self.model, *self.conds, self.cfg, self.cfg2, max_batch)
        return DualCFGDenoiser(self, max_batch)


class DualCFGDenoiser:
    """DualCFGGuider: predictions for (negative, cond2, cond1) combined as ComfyUI's regular style
    guide(cond2 vs neg, cfg2) + (cond1 - cond2) * cfg1, or its nested style
    neg + cfg2 * (guide(cond1 vs cond2, cfg1) - neg), where guide is the model's CFG combination
    (uncond + (cond - uncond) cfg, or its patches: RescaleCFG, CFGZeroStar, PAG ...). A post-guidance
    function that predicts again gets the two lists of its guide call (regular: cond2 and the
    negative; nested: cond1 and cond2), each as its own CFGDenoiser resolved it."""

    def __init__(self, guider: Guider, max_batch: int | None) -> None:
        cond1, cond2, negative = guider.conds
        self.model = guider.model
        self.cfg1, self.cfg2, self.nested = guider.cfg, guider.cfg2, guider.style == "dual-nested"
        # cond2 is treated as a negative prompt (the refiner's low aesthetic score), as in ComfyUI
        self.uncond_record = None  # a CFG++ sampler's: here the negative prediction, as ComfyUI's post-CFG sees it
        self.first = CFGDenoiser(guider.model, cond1, cond2, 2.0, None, max_batch)
        self.second = CFGDenoiser(guider.model, cond2, negative, 2.0, None, max_batch)
        self.run_state = self.second.run_state = self.first.run_state  # one run: the patches' state is shared

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        lists = self.first.entries(*x.shape[-2:])
        negative_list = self.second.entries(*x.shape[-2:])[1]
        cond1, cond2 = self.first.predict(x, sigma, lists)
        negative = self.second.predict(x, sigma, [negative_list])[0]
        if self.uncond_record is not None:
            self.uncond_record.value = negative
        first, second = self.first.predictor(sigma, lists), self.second.predictor(sigma, [negative_list])
        if self.nested:
            guided = self.model.guide(x, sigma, cond1, cond2, self.cfg1, predict=first, run_state=self.run_state)
            return negative + self.cfg2 * (guided - negative)

        def predict(which: int, x: torch.Tensor, model: DiffusionModel) -> torch.Tensor:  # cond2, negative
            return first(1, x, model) if which == 0 else second(0, x, model)

        guided = self.model.guide(x, sigma, cond2, negative, self.cfg2, predict=predict, run_state=self.run_state)
        return guided + (cond1 - cond2) * self.cfg1


def check_sigmas(sigmas: torch.Tensor) -> str | None:
    """Why ``sigmas`` cannot be sampled (None when it can): a 1-D float list of finite,
    non-negative values."""
    if not isinstance(sigmas, torch.Tensor) or sigmas.ndim != 1:
        return "sigmas must be a 1-D list of noise levels"
    if not torch.isfinite(sigmas).all() or (sigmas < 0).any():
        return "sigmas must be finite and not negative"
    return None

