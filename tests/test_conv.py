"""The U-Net's convolution (nodeflow.models.conv): on the CPU, the deep levels' 3x3 convolutions
run as unfold + GEMM, which must agree with torch's convolution to float rounding, keep
nn.Conv2d's parameters, and be chosen only where it was measured to pay (tests/bench/bench_conv.py).
That whole images stay ComfyUI's with the GEMM path forced everywhere is in test_comfy_images.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nodeflow.models import conv, linear
from nodeflow.models.conv import Conv2d, gemm_conv2d, uses_gemm


@pytest.mark.parametrize("batch, cin, cout, height, width, kernel, stride, padding, bias", [
    (2, 8, 16, 4, 4, 3, 1, 1, True),
    (1, 5, 7, 6, 9, 3, 1, 1, False),  # non-square, no bias
    (3, 8, 8, 8, 8, 3, 2, 1, True),  # the Downsample's stride 2
    (2, 4, 6, 7, 5, 3, 2, 0, True),  # the VAE's unpadded stride 2, odd sizes
    (2, 6, 4, 5, 5, 5, 1, 2, True),  # a 5x5 kernel
])
def test_gemm_path_computes_the_convolution(batch, cin, cout, height, width, kernel, stride, padding, bias):
    torch.manual_seed(0)
    x = torch.randn(batch, cin, height, width)
    weight = torch.randn(cout, cin, kernel, kernel)
    b = torch.randn(cout) if bias else None
    exact = F.conv2d(x.double(), weight.double(), None if b is None else b.double(), stride=stride,
                     padding=padding)
    ours = gemm_conv2d(x, weight, b, (stride, stride), (padding, padding))
    assert ours.shape == exact.shape and ours.dtype == torch.float32
    assert (ours.double() - exact).abs().max() <= 1e-5 * exact.abs().max()


@pytest.mark.skipif(not linear.onednn_linear_available(), reason="this torch has no oneDNN linear")
@pytest.mark.parametrize("batch, cin, height, stride, bias", [(2, 1280, 4, 1, True), (2, 1280, 8, 2, True),
                                                               (1, 640, 8, 1, False)])
def test_gemm_path_on_onednns_product_computes_the_convolution(batch, cin, height, stride, bias):
    """SD1.5's deep shapes under no_grad take oneDNN's product (nodeflow.models.linear); the
    output is the convolution's, in its usual contiguous layout."""
    torch.manual_seed(0)
    x = torch.randn(batch, cin, height, height)
    weight = torch.randn(1280, cin, 3, 3) * 0.02
    b = torch.randn(1280) if bias else None
    exact = F.conv2d(x.double(), weight.double(), None if b is None else b.double(), stride=stride, padding=1)
    with torch.no_grad():
        rows = F.unfold(x, (3, 3), padding=1, stride=stride).transpose(1, 2)
        assert linear.uses_onednn(rows, weight.reshape(1280, -1), b)
        ours = gemm_conv2d(x, weight, b, (stride, stride), (1, 1))
    assert ours.shape == exact.shape and ours.is_contiguous()
    assert (ours.double() - exact).abs().max() <= 1e-5 * exact.abs().max()


def test_gemm_path_passes_gradients():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 5, 5, requires_grad=True)
    weight = torch.randn(6, 4, 3, 3, requires_grad=True)
    gemm_conv2d(x, weight, None, (1, 1), (1, 1)).square().sum().backward()
    x_grad, weight_grad = x.grad.clone(), weight.grad.clone()
    x.grad = weight.grad = None
    F.conv2d(x, weight, padding=1).square().sum().backward()
    assert torch.allclose(x_grad, x.grad, rtol=1e-4, atol=1e-4)
    assert torch.allclose(weight_grad, weight.grad, rtol=1e-4, atol=1e-4)


def _meta_conv(cin: int, cout: int, kernel: int = 3, **options) -> Conv2d:
    """A convolution with the shape of the real one and no memory behind its weights."""
    return Conv2d(cin, cout, kernel, padding=kernel // 2, device="meta", **options)


@pytest.mark.parametrize("layer, x_shape, dtype, expected", [
    (lambda: _meta_conv(1280, 1280), (2, 1280, 4, 4), torch.float32, True),  # SD1.5's deepest level, 256 px
    (lambda: _meta_conv(2560, 1280), (2, 2560, 8, 8), torch.float32, True),  # its output blocks, 512 px
    (lambda: _meta_conv(1280, 1280, stride=2), (2, 1280, 8, 8), torch.float32, True),  # Downsample to 4x4
    (lambda: _meta_conv(1280, 1280), (2, 1280, 16, 16), torch.float32, False),  # 512 positions
    (lambda: _meta_conv(4096, 4096, kernel=1), (2, 4096, 4, 4), torch.float32, False),  # 1x1: a GEMM already
    (lambda: _meta_conv(1280, 1280), (2, 1280, 4, 4), torch.bfloat16, False),  # float32 only
    (lambda: _meta_conv(2560, 2560, groups=2), (2, 2560, 4, 4), torch.float32, False),  # 29M weights: only groups
    (lambda: _meta_conv(1280, 1280, dilation=2), (2, 1280, 4, 4), torch.float32, False),
])
def test_gemm_path_only_where_it_pays(layer, x_shape, dtype, expected):
    layer = layer()
    assert expected or layer.weight.numel() >= conv.GEMM_MIN_WEIGHTS  # refused for its own reason, not size
    assert uses_gemm(torch.empty(x_shape, dtype=dtype), layer) is expected


def test_weights_that_fit_the_cache_stay_on_torchs_convolution():
    assert not uses_gemm(torch.empty(2, 640, 4, 4), _meta_conv(640, 640))  # 3.7M weights, 32 positions


def test_the_path_is_the_cpus_only():
    assert not uses_gemm(torch.empty(2, 1280, 4, 4, device="meta"), _meta_conv(1280, 1280))


def test_module_is_nn_conv2d_with_its_parameters(monkeypatch):
    torch.manual_seed(0)
    plain = nn.Conv2d(8, 8, 3, padding=1)
    ours = Conv2d(8, 8, 3, padding=1)
    ours.load_state_dict(plain.state_dict())
    assert isinstance(ours, nn.Conv2d) and list(ours.state_dict()) == ["weight", "bias"]
    x = torch.randn(2, 8, 4, 4)
    assert torch.equal(ours(x), plain(x))  # below the thresholds: torch's own convolution
    monkeypatch.setattr(conv, "GEMM_MIN_WEIGHTS", 0)
    calls = []
    monkeypatch.setattr(conv, "gemm_conv2d", lambda *a: calls.append(a) or gemm_conv2d(*a))
    forced = ours(x)
    assert len(calls) == 1 and torch.allclose(forced, plain(x), rtol=1e-5, atol=1e-5)
