"""Perpendicular negative guidance (Armandpour et al. 2023, "Re-imagine the Negative Prompt
Algorithm: Transform 2D Diffusion into 3D, alleviate Janus problem and Beyond"), as ComfyUI's
PerpNegGuider.

With the predictions of the positive, negative and empty prompts (one batched evaluation), the
positive and negative directions are taken from the empty one, p = P - E and n = N - E, and only
the part of n perpendicular to p (over the whole batch, as ComfyUI) is pushed away from:

    D = E + cfg (p - neg_scale (n - <n, p> / |p|^2 p))

so a negative prompt that overlaps the positive one no longer cancels it. The model's pre- and
post-guidance patches apply around this combination as around CFG. A neg_scale of 0 skips the
negative's evaluation (zeros, as ComfyUI), and with cfg 1 too, the empty prompt's.
"""

from __future__ import annotations

import math

import torch

from nodeflow.sampling.guidance import CFGDenoiser


def perp_neg(positive: torch.Tensor, negative: torch.Tensor, empty: torch.Tensor, neg_scale: float,
             cfg: float) -> torch.Tensor:
    """The combination above from the three clean-latent estimates (B, C, h, w)."""
    p, n = positive - empty, negative - empty
    perpendicular = n - (n * p).sum() / torch.norm(p) ** 2 * p
    return empty + cfg * (p - perpendicular * neg_scale)


class PerpNegDenoiser:
    """``denoise(x, sigma)`` for a PerpNegGuider: the three lists predicted in one batched pass
    (the empty prompt resolved as a negative one), combined by ``perp_neg``."""

    def __init__(self, model, positive: list, negative: list, empty: list, cfg: float, neg_scale: float,
                 max_batch: int | None) -> None:
        self.model, self.cfg, self.neg_scale = model, cfg, neg_scale
        self.uncond_record = None  # a CFG++ sampler's: the negative's prediction, as ComfyUI hands it
        self.pair = CFGDenoiser(model, positive, negative, cfg, None, max_batch)
        self.with_empty = CFGDenoiser(model, positive, empty, cfg, None, max_batch)
        self.run_state = self.with_empty.run_state = self.pair.run_state

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        positive, negative = self.pair.entries(*x.shape[-2:])
        empty = self.with_empty.entries(*x.shape[-2:])[1]
        skip_negative = math.isclose(self.neg_scale, 0.0)
        skip_empty = skip_negative and math.isclose(self.cfg, 1.0)
        lists = [positive, [] if skip_negative else negative, [] if skip_empty else empty]
        cond, uncond, nothing = self.pair.predict(x, sigma, lists)  # an empty list predicts zeros
        if self.uncond_record is not None:
            self.uncond_record.value = uncond
        cond, uncond = self.model.pre_guide(x, sigma, cond, uncond, self.cfg, self.run_state)
        guided = perp_neg(cond, uncond, nothing, self.neg_scale, self.cfg)
        return self.model.post_guide(x, sigma, guided, cond, uncond, self.cfg,
                                     self.pair.predictor(sigma, [positive, negative]), self.run_state)
