"""A 2-D convolution that runs as one matrix product where that is faster on the CPU.

torch's CPU convolution (oneDNN) reorders the weights into its blocked layout on every call. When
the output has few positions (the U-Net's deepest levels at 256-512 px) and the weights are too
many to stay in the cache, that reorder costs more than the arithmetic: a 3x3 convolution of 1280
channels at 4x4 (batch 2) runs 2-3x faster as unfold + one batched GEMM (bench_conv.py). The GEMM
sums the same products in another order: results agree to float rounding (about 1e-6 relative).
The product itself is oneDNN's where it runs (nodeflow.models.linear: faster than the BLAS on
some CPUs), else one batched BLAS GEMM.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nodeflow.models.linear import onednn_linear, uses_onednn

#: the CPU takes the GEMM path for at most this many output positions (batch x height x width) ...
GEMM_MAX_POSITIONS = 128
#: ... and at least this many weights (32 MiB in float32: more than a CPU's last-level cache);
#: measured on a 2-core EPYC (bench_conv.py): 1280 channels at 4x4-8x8 gain 1.7-2.5x, 640
#: channels at 8x8 and anything at 256 positions or more do not
GEMM_MIN_WEIGHTS = 8 * 2**20


def uses_gemm(x: torch.Tensor, conv: nn.Conv2d) -> bool:
    """Whether ``conv`` on ``x`` takes the unfold + GEMM path: a float32 CPU tensor, a plain
    (ungrouped, undilated, zero-padded, k > 1) convolution, many weights and few output positions."""
    if x.device.type != "cpu" or x.dtype != torch.float32 or x.dim() != 4:
        return False
    if conv.groups != 1 or conv.dilation != (1, 1) or conv.padding_mode != "zeros":
        return False
    if conv.kernel_size == (1, 1) or isinstance(conv.padding, str):
        return False
    if conv.weight.numel() < GEMM_MIN_WEIGHTS:
        return False
    height, width = _output_size(x, conv.kernel_size, conv.stride, conv.padding)
    return x.shape[0] * height * width <= GEMM_MAX_POSITIONS


def _output_size(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int],
                 padding: tuple[int, int]) -> tuple[int, int]:
    """(height, width) of a convolution's output on ``x``."""
    height, width = ((size + 2 * pad - k) // step + 1
                     for size, pad, k, step in zip(x.shape[-2:], padding, kernel, stride))
    return height, width


def gemm_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                stride: tuple[int, int], padding: tuple[int, int]) -> torch.Tensor:
    """conv2d as im2col: (B, C_in k k, L) columns times the (C_out, C_in k k) weight matrix."""
    batch = x.shape[0]
    out_channels, _, kh, kw = weight.shape
    height, width = _output_size(x, (kh, kw), stride, padding)
    columns = F.unfold(x, (kh, kw), padding=padding, stride=stride)  # (B, C_in kh kw, L)
    matrix = weight.reshape(out_channels, -1)
    rows = columns.transpose(1, 2)  # (B, L, C_in kh kw)
    if uses_onednn(rows, matrix, bias):  # oneDNN's product, where it runs (nodeflow.models.linear)
        out = onednn_linear(rows, matrix, bias).transpose(1, 2).contiguous()  # (B, C_out, L)
    elif bias is None:
        out = torch.bmm(matrix.expand(batch, -1, -1), columns)
    else:
        out = torch.baddbmm(bias[:, None], matrix.expand(batch, -1, -1), columns)
    return out.reshape(batch, out_channels, height, width)


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters, same state-dict keys) that takes the GEMM path when
    :func:`uses_gemm` says it is faster."""

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if uses_gemm(x, self):
            return gemm_conv2d(x, weight, bias, self.stride, self.padding)
        return super()._conv_forward(x, weight, bias)
