"""Optimisation helpers shared by the training stages: AdamW with warm-up and cosine decay, and
an exponential moving average of the weights."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable

import torch


def adamw(params: Iterable[torch.nn.Parameter], lr: float) -> torch.optim.AdamW:
    """AdamW (Loshchilov & Hutter 2019) with the betas usual for diffusion models."""
    return torch.optim.AdamW(list(params), lr=lr, betas=(0.9, 0.99), weight_decay=0.0)


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup: int, total: int,
                  floor: float = 0.1) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup`` steps, then a cosine decay to ``floor`` times the rate."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class EMA:
    """Exponential moving average of a module's parameters (Polyak averaging).

    ``decay`` warms up as ``min(decay, (1 + n) / (10 + n))`` so early averages are not dominated
    by the random initialisation.
    """

    def __init__(self, module: torch.nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(module).eval().requires_grad_(False)
        self.decay = decay
        self.updates = 0
        self._source = [p for p in module.parameters()]
        self._target = [p for p in self.module.parameters()]

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self._target, [p.detach() for p in self._source], 1 - decay)
