"""Per-step model residuals attached to conditioning (ControlNet and the like).

A ``ControlHook`` lives in a conditioning entry's options under ``"control"``; hooks chain
through ``previous`` (each ControlNetApply adds one). At each model evaluation the guidance asks
every hook of the chain for residuals and adds them up; a hook outside its
[start_percent, end_percent] range of the schedule contributes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import torch

from nodeflow.models.unet import ControlResiduals


class ControlHook(Protocol):
    previous: ControlHook | None
    strength: float
    start_percent: float
    end_percent: float

    def residuals(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor,
                  sigma: torch.Tensor, model, halves: int = 1) -> ControlResiduals | None:
        """Residuals for the model input ``x`` (already scaled for the U-Net; ``halves`` equal
        parts of the batch: conditional, unconditional ...), or None. For SDXL models the hook is
        also given ``y=`` (B, adm), the batch's ADM vectors, as a keyword."""


def in_range(hook: ControlHook, sigma: float, model) -> bool:
    """Whether ``sigma`` lies within the hook's part of the schedule."""
    start = model.sampling.percent_to_sigma(hook.start_percent)
    end = model.sampling.percent_to_sigma(hook.end_percent)
    return end <= sigma <= start


def chain_residuals(hook: ControlHook | None, x: torch.Tensor, timesteps: torch.Tensor,
                    context: torch.Tensor, sigma: torch.Tensor, model, halves: int = 1,
                    y: torch.Tensor | None = None) -> ControlResiduals | None:
    """The sum of the residuals of ``hook`` and every hook before it (each zero outside its
    percent range, judged on the batch's largest sigma). ``y``: the ADM vectors of an SDXL batch,
    passed on to each hook (hooks of other models are called without it)."""
    extra = {} if y is None else {"y": y}
    found = []
    while hook is not None:
        if in_range(hook, float(sigma.max()), model):
            found.append(hook.residuals(x, timesteps, context, sigma, model, halves, **extra))
        hook = hook.previous
    return sum_residuals(found)


def sum_residuals(items: Iterable[ControlResiduals | None]) -> ControlResiduals | None:
    """The sum of the residuals given (None ones skipped); None when there are none."""
    total = None
    for item in items:
        if item is not None:
            total = item if total is None else total + item
    return total
