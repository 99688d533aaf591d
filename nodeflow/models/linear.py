"""A linear layer that runs on oneDNN's matrix product on the CPU.

torch's CPU ``F.linear`` calls the BLAS it was built with (MKL in the x86 wheels). MKL is known to
take slower paths on CPUs that are not Intel's; oneDNN, in the same wheel, runs its AVX-512
kernels there. On this project's AMD EPYC, oneDNN's matrix product
(``torch.ops.mkldnn._linear_pointwise``) is 1.1-3.8x faster than MKL's for the U-Net's and text
encoder's shapes (100-190 against 30-150 GFLOP/s), in float32 with the same rounding quality
(about 1e-6 relative; bench_linear.py). So ``Linear`` takes that path for float32 CPU inputs
with gradients off (no_grad or inference_mode, as sampling, text encoding and the VAE run) when
the product is large enough to pay for oneDNN's call overhead. Anything else (a GPU, another
dtype, training, torch.compile, torch.func transforms, a torch without oneDNN,
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


def uses_onednn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> bool:
    """Whether ``linear`` takes oneDNN's kernel: gradients off, float32 CPU tensors of matching
    sizes (a plain 1-D bias or none), at least ONEDNN_MIN_WORK multiply-adds, not being traced by
    torch.compile (whose CPU backend lowers this kernel only with its own prepacked weights)."""
    if torch.is_grad_enabled() or torch.compiler.is_compiling() or _wrapped(x):
        return False
    if not (_plain_float32(x) and _plain_float32(weight) and weight.dim() == 2 and x.dim() >= 2):
        return False
    if x.shape[-1] != weight.shape[1] or x.numel() * weight.shape[0] < ONEDNN_MIN_WORK:
        return False
    if bias is not None and not (_plain_float32(bias) and bias.dim() == 1 and bias.is_contiguous()
                                 and bias.shape[0] == weight.shape[0]):
        return False
    return onednn_linear_available()


def onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x weight^T + bias by oneDNN: only where :func:`uses_onednn` said so."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear(x, weight, bias)``, through oneDNN where :func:`uses_onednn` says so."""
    if uses_onednn(x, weight, bias):
        return onednn_linear(x, weight, bias)
    return F.linear(x, weight, bias)


def _plain_float32(tensor: torch.Tensor) -> bool:
    return tensor.dtype == torch.float32 and tensor.device.type == "cpu"


def _wrapped(x: torch.Tensor) -> bool:
    """A tensor of torch.func's transforms (jvp, vmap ...): oneDNN's kernel has no rule for them."""
    return torch._C._functorch.is_functorch_wrapped_tensor(x)


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, same state-dict keys) computed by :func:`linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
