"""A linear layer that runs on oneDNN's matrix product on the CPU.

torch's CPU ``F.linear`` calls the BLAS it was built with (MKL in the x86 wheels). MKL is known to
take slower paths on CPUs that are not Intel's; oneDNN, in the same wheel, runs its AVX-512
kernels there. On this project's AMD EPYC, oneDNN's matrix product
(``torch.ops.mkldnn._linear_pointwise``, the kernel torch's own CPU compiler uses) is 1.1-3.8x
faster than MKL's for the U-Net's and text encoder's shapes (100-190 against 30-150 GFLOP/s), in
float32 with the same rounding quality (about 1e-6 relative; bench_linear.py). So ``Linear``
takes that path for float32 CPU inputs when no gradient is wanted and the product is large
enough to pay for oneDNN's call overhead. Anything else (a GPU, another dtype, training, a torch without oneDNN,
``torch.backends.mkldnn.enabled = False``) is ``nn.Linear``'s own computation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: oneDNN costs about 25 us more per call than the BLAS: it takes products of at least this many
#: multiply-adds (rows x inputs x outputs; 16M: about 0.2 ms of work), e.g. SD1.5's attention and
#: feed-forward layers, not its time embedding or a small model's layers (bench_linear.py)
ONEDNN_MIN_WORK = 2**24


def onednn_linear_available() -> bool:
    """Whether this torch has oneDNN's linear kernel and oneDNN is turned on."""
    return (torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
            and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


def uses_onednn(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether ``linear`` on ``x`` takes oneDNN's kernel: float32 CPU tensors, no gradient, a
    product of at least ONEDNN_MIN_WORK multiply-adds."""
    if x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32:
        return False
    if weight.device.type != "cpu" or x.dim() < 2 or x.numel() * weight.shape[0] < ONEDNN_MIN_WORK:
        return False
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return False
    return onednn_linear_available()


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear(x, weight, bias)``, through oneDNN where :func:`uses_onednn` says so."""
    if uses_onednn(x, weight) and (bias is None or bias.dtype == torch.float32):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    return F.linear(x, weight, bias)


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, same state-dict keys) computed by :func:`linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
