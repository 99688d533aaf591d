"""nodeflow.models.linear: oneDNN's product for large float32 CPU linears, nn.Linear's otherwise."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nodeflow.models import linear
from nodeflow.models.linear import Linear, uses_onednn

needs_onednn = pytest.mark.skipif(not linear.onednn_linear_available(), reason="this torch has no oneDNN linear")


def onednn_calls(function) -> int:
    """How many times ``function()`` ran oneDNN's linear kernel."""
    with torch.profiler.profile() as profile:
        function()
    return sum(event.count for event in profile.key_averages() if event.key == "mkldnn::_linear_pointwise")


def relative_error(out: torch.Tensor, layer: nn.Linear, x: torch.Tensor) -> float:
    bias = None if layer.bias is None else layer.bias.double()
    reference = F.linear(x.double(), layer.weight.double(), bias)
    return ((out.double() - reference).abs().max() / reference.abs().max()).item()


@needs_onednn
@pytest.mark.parametrize("shape, bias", [((2, 64, 1280), True), ((2, 64, 1280), False), ((128, 1280), True),
                                         ((2, 3, 40, 1280), True)])
def test_a_large_product_runs_on_onednn_and_equals_the_float64_product(shape, bias):
    torch.manual_seed(0)
    layer = Linear(1280, 2560, bias=bias)
    x = torch.randn(shape)
    with torch.inference_mode():
        assert uses_onednn(x, layer.weight, layer.bias)
        assert onednn_calls(lambda: layer(x)) == 1
        out = layer(x)
    assert out.shape == (*shape[:-1], 2560)
    assert relative_error(out, layer, x) < 1e-5


@needs_onednn
def test_a_strided_input_gives_the_same_result():
    torch.manual_seed(0)
    layer = Linear(1280, 1280)
    x = torch.randn(2, 1280, 64).transpose(1, 2)  # (2, 64, 1280), not contiguous
    with torch.inference_mode():
        out = layer(x)
    assert relative_error(out, layer, x) < 1e-5


@pytest.mark.parametrize("case", ["small", "float64", "disabled", "strided bias", "broadcast bias",
                                  "compiling"])
def test_other_calls_are_nn_linears_own(case):
    torch.manual_seed(0)
    layer = Linear(1280, 1280)
    x, weight, bias = torch.randn(2, 64, 1280), layer.weight.detach(), layer.bias.detach()
    if case == "small":  # under ONEDNN_MIN_WORK: the BLAS is faster than oneDNN's call overhead
        x = torch.randn(2, 1280)
    elif case == "float64":
        x, weight, bias = x.double(), weight.double(), bias.double()
    elif case == "strided bias":  # oneDNN would read it as if contiguous
        bias = torch.randn(2 * 1280)[::2]
    elif case == "broadcast bias":  # F.linear broadcasts it; oneDNN refuses it
        bias = torch.randn(1)
    call = lambda x: linear.linear(x, weight, bias)  # noqa: E731
    if case == "compiling":  # traced by torch.compile, whose CPU backend cannot lower oneDNN's kernel
        call = torch.compile(call, backend="eager", fullgraph=True)
    with torch.backends.mkldnn.flags(enabled=case != "disabled"), torch.no_grad():
        assert case == "compiling" or not uses_onednn(x, weight, bias)
        assert onednn_calls(lambda: call(x)) == 0
        out = call(x)
    assert torch.allclose(out, F.linear(x, weight, bias), rtol=1e-5, atol=1e-5)


def test_with_gradients_on_training_keeps_autograd():
    """nodeflow.training trains with gradients: every product is nn.Linear's, with its backward."""
    layer = Linear(1280, 1280)
    x = torch.randn(2, 64, 1280, requires_grad=True)
    assert torch.is_grad_enabled() and not uses_onednn(x, layer.weight, layer.bias)
    assert onednn_calls(lambda: layer(x)) == 0
    layer(x).sum().backward()
    assert x.grad is not None and layer.weight.grad is not None and layer.bias.grad is not None


def test_a_wrong_input_width_is_torchs_own_error():
    """The error users know ("mat1 and mat2 shapes cannot be multiplied"), not oneDNN's."""
    layer = Linear(768, 1280)
    with torch.no_grad(), pytest.raises(RuntimeError, match="cannot be multiplied"):
        layer(torch.randn(2, 77, 1024))


@needs_onednn
def test_compiled_and_transformed_calls_give_the_same_result():
    """torch.compile traces nn.Linear's product (its CPU backend takes oneDNN's kernel only with
    prepacked weights); torch.func's jvp gets the right tangent."""
    torch.manual_seed(0)
    layer = Linear(1280, 1280).requires_grad_(False)
    x, tangent = torch.randn(2, 64, 1280), torch.randn(2, 64, 1280)
    with torch.no_grad():
        compiled = torch.compile(layer, backend="eager", fullgraph=True)(x)
        _, derivative = torch.func.jvp(layer, (x,), (tangent,))
        assert uses_onednn(x, layer.weight, layer.bias)  # outside those, oneDNN's
    assert relative_error(compiled, layer, x) < 1e-5
    assert torch.allclose(derivative, F.linear(tangent, layer.weight), rtol=1e-4, atol=1e-4)


def test_it_is_an_nn_linear_with_the_same_keys():
    layer = Linear(8, 4)
    assert isinstance(layer, nn.Linear)
    assert list(layer.state_dict()) == list(nn.Linear(8, 4).state_dict())


@needs_onednn
def test_the_transformer_blocks_layers_use_it():
    """SD1.5's attention and feed-forward linears at a 256 px latent take oneDNN's product."""
    from nodeflow.models.attention import BasicTransformerBlock

    block = BasicTransformerBlock(1280, 8, 160, 768).eval()
    x, context = torch.randn(2, 64, 1280), torch.randn(2, 77, 768)
    with torch.inference_mode():
        calls = onednn_calls(lambda: block(x, context))
    assert calls == 10  # q, k, v and out of both attentions, the feed-forward's two layers
