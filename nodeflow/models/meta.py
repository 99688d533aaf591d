"""Build a module from a state dict without initialising it: on the meta device (no memory, no
random init), then the tensors assigned, strictly."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn

M = TypeVar("M", bound=nn.Module)


def load_on_meta(build: Callable[[], M], state_dict: dict[str, torch.Tensor], *,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                 into: Callable[[M], nn.Module] | None = None) -> M:
    """``build()`` on the meta device, then the tensors of ``state_dict`` moved to ``device``
    (floating ones to ``dtype``; no copy beyond that) and assigned to it, or to ``into(module)``
    (the submodule the keys are relative to). Strict: a missing or unexpected key, or a shape
    that does not fit, is torch's RuntimeError naming them. Returns the module in eval mode,
    gradients off."""
    with torch.device("meta"):
        module = build()
    converted = {k: v.to(device=device, dtype=dtype if v.is_floating_point() else v.dtype)
                 for k, v in state_dict.items()}
    (into(module) if into else module).load_state_dict(converted, strict=True, assign=True)
    return module.eval().requires_grad_(False)
