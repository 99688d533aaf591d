"""HypernetworkLoader (issue 16): AUTOMATIC1111-format hypernetworks as attention patches.

The reference is written out here from the published formula (AUTOMATIC1111's
modules/hypernetworks/hypernetwork.py as ComfyUI's comfy_extras/nodes_hypernetwork.py reads it):
for an attention whose context c has width D, k_in = c + s MLP_k(c) and v_in = c + s MLP_v(c),
each MLP a chain of x W^T + b, the activation (on every linear but the last unless activate_output;
on all of them in files with layer norms, as ComfyUI counts) and layer norms. Files are written here
the way AUTOMATIC1111 numbers its Sequential (activation and dropout modules take indices too).
Checks: the MLPs against the formula for every activation, with and without layer norms; one
transformer block against an attention computed by hand; the whole U-Net against an unpatched U-Net
whose key and value projections absorb a linear hypernetwork (W_k (I + s A)); the node through a
.pt and a .safetensors file; bad files refused with one line naming the file.
"""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import save_file

from nodeflow.engine.context import RunContext
from nodeflow.errors import ModelFileError
from nodeflow.loading.hypernetwork import load_hypernetwork
from nodeflow.models.attention import BasicTransformerBlock
from nodeflow.models.hypernetwork import HypernetworkPatch
from nodeflow.models.unet_patches import PatchCall, UNetPatches
from nodeflow.runtime.paths import Paths
from nodeflow.sampling.model import DiffusionModel, LatentFormat
from nodeflow.sampling.model_sampling import ModelSampling
from nodeflow_nodes.hypernetwork import hypernetwork_loader
from tests.test_unet_parity import random_unet, tiny_config

ACTIVATION_FORMULAS = {
    "linear": lambda x: x,
    "relu": lambda x: x.clamp(min=0),
    "leakyrelu": lambda x: torch.where(x > 0, x, 0.01 * x),
    "elu": lambda x: torch.where(x > 0, x, torch.exp(x) - 1),
    "swish": lambda x: x * (x + 3).clamp(0, 6) / 6,  # AUTOMATIC1111's "swish" is Hardswish
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "softsign": lambda x: x / (1 + x.abs()),
    "mish": lambda x: x * torch.tanh(torch.log1p(torch.exp(x))),
}


# --- files written as AUTOMATIC1111 saves them -------------------------------------------------------

def a1111_module(width: int, structure: tuple[float, ...], activation: str, layer_norm: bool,
                 activate_output: bool, dropout: bool, generator: torch.Generator, zero_bias: bool = False) -> dict:
    """One HypernetworkModule's state dict: ``linear.N`` numbered by the place in its Sequential."""
    sd, index = {}, 0
    for i in range(len(structure) - 1):
        fan_in, fan_out = int(width * structure[i]), int(width * structure[i + 1])
        sd[f"linear.{index}.weight"] = torch.randn(fan_out, fan_in, generator=generator) / math.sqrt(fan_in)
        sd[f"linear.{index}.bias"] = (torch.zeros(fan_out) if zero_bias
                                      else torch.randn(fan_out, generator=generator) * 0.1)
        index += 1
        last = i >= len(structure) - 2
        if activation != "linear" and not (last and not activate_output):
            index += 1  # the activation module
        if layer_norm:
            sd[f"linear.{index}.weight"] = 1 + torch.randn(fan_out, generator=generator) * 0.1
            sd[f"linear.{index}.bias"] = torch.randn(fan_out, generator=generator) * 0.1
            index += 1
        if dropout and not last:
            index += 1  # the dropout module
    return sd


def a1111_file(widths=(32, 48), structure=(1, 2, 1), activation="relu", layer_norm=False,
               activate_output=False, dropout=False, seed=0, zero_bias=False) -> dict:
    generator = torch.Generator().manual_seed(seed)
    data = {width: [a1111_module(width, structure, activation, layer_norm, activate_output, dropout, generator,
                                 zero_bias) for _ in range(2)] for width in widths}
    data.update(activation_func=activation, is_layer_norm=layer_norm, activate_output=activate_output,
                use_dropout=dropout, last_layer_dropout=False, layer_structure=list(structure), step=100,
                name="test", sd_checkpoint="abcdef12", weight_initialization="Normal")
    return data


def save_pt(data: dict, folder, name="hn.pt"):
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(data, folder / name)
    return folder / name


# --- the reference --------------------------------------------------------------------------------

def reference_mlp(x: torch.Tensor, module: dict, activation: str, activate_output: bool) -> torch.Tensor:
    entries = sorted({int(key.split(".")[1]) for key in module})
    has_norms = any(module[f"linear.{n}.weight"].ndim == 1 for n in entries)
    linears = [n for n in entries if module[f"linear.{n}.weight"].ndim == 2]
    for n in entries:
        weight, bias = module[f"linear.{n}.weight"], module[f"linear.{n}.bias"]
        if weight.ndim == 1:
            mean = x.mean(-1, keepdim=True)
            variance = ((x - mean) ** 2).mean(-1, keepdim=True)
            x = (x - mean) / torch.sqrt(variance + 1e-5) * weight + bias
            continue
        x = x @ weight.T + bias
        if n != linears[-1] or activate_output or has_norms:
            x = ACTIVATION_FORMULAS[activation](x)
    return x


def reference_inputs(c: torch.Tensor, data: dict, strength: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(k_in, v_in) for context ``c``: c + s MLP(c), or c when the file has no pair for its width."""
    pair = data.get(c.shape[-1])
    if pair is None:
        return c, c
    options = (data["activation_func"], data["activate_output"])
    return (c + strength * reference_mlp(c, pair[0], *options), c + strength * reference_mlp(c, pair[1], *options))


def reference_attention(attn, x: torch.Tensor, k_in: torch.Tensor, v_in: torch.Tensor) -> torch.Tensor:
    q, k, v = x @ attn.to_q.weight.T, k_in @ attn.to_k.weight.T, v_in @ attn.to_v.weight.T
    heads = attn.heads
    split = lambda t: t.reshape(t.shape[0], t.shape[1], heads, -1).transpose(1, 2)  # noqa: E731
    q, k, v = split(q), split(k), split(v)
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    out = (weights @ v).transpose(1, 2).reshape(x.shape[0], x.shape[1], -1)
    return out @ attn.to_out[0].weight.T + attn.to_out[0].bias


# --- the MLPs and one block --------------------------------------------------------------------------

@pytest.mark.parametrize("activation", list(ACTIVATION_FORMULAS))
@pytest.mark.parametrize("layer_norm,activate_output,dropout", [(False, False, False), (True, False, True),
                                                              (False, True, False)])
def test_each_mlp_is_the_formula(tmp_path, activation, layer_norm, activate_output, dropout):
    data = a1111_file(widths=(32, 48), structure=(1, 2, 0.5, 1), activation=activation, layer_norm=layer_norm,
                      activate_output=activate_output, dropout=dropout)
    hypernetwork = load_hypernetwork(save_pt(data, tmp_path))
    c = torch.randn(2, 5, 48, generator=torch.Generator().manual_seed(1))
    value = torch.randn(2, 5, 48, generator=torch.Generator().manual_seed(2))
    k_in, v_in = hypernetwork.residuals(c, value, 0.7)
    expected_k = c + 0.7 * reference_mlp(c, data[48][0], activation, activate_output)
    expected_v = value + 0.7 * reference_mlp(value, data[48][1], activation, activate_output)
    torch.testing.assert_close(k_in, expected_k, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(v_in, expected_v, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(k_in, c, atol=1e-3)


def test_a_width_without_a_pair_is_left_as_it_is(tmp_path):
    hypernetwork = load_hypernetwork(save_pt(a1111_file(widths=(48,)), tmp_path))
    c = torch.randn(1, 3, 32)
    k_in, v_in = hypernetwork.residuals(c, c, 1.0)
    assert k_in is c and v_in is c


def test_a_transformer_block_attends_over_the_rewritten_keys_and_values(tmp_path):
    torch.manual_seed(0)
    block = BasicTransformerBlock(dim=32, heads=2, dim_head=16, context_dim=48).eval()
    data = a1111_file(widths=(32, 48), activation="tanh", layer_norm=True)
    patch = HypernetworkPatch(load_hypernetwork(save_pt(data, tmp_path)), 0.8)
    call = PatchCall(UNetPatches(attn1_patch=(patch,), attn2_patch=(patch,)), (1, 4, 4, 4))
    x, context = torch.randn(2, 16, 32), torch.randn(2, 7, 48)
    with torch.no_grad():
        got = block(x, context, call)
        n1 = block.norm1(x)
        h = x + reference_attention(block.attn1, n1, *reference_inputs(n1, data, 0.8))
        h = h + reference_attention(block.attn2, block.norm2(h), *reference_inputs(context, data, 0.8))
        expected = h + block.ff(block.norm3(h))
        unpatched = block(x, context)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert (got - unpatched).abs().max() > 1e-2


# --- the whole U-Net and the node -------------------------------------------------------------------

def unet_model() -> DiffusionModel:
    return DiffusionModel(random_unet(tiny_config()), ModelSampling.sd1(), LatentFormat(), torch.device("cpu"),
                          torch.float32)


def folded_model(data: dict, strength: float) -> DiffusionModel:
    """A fresh copy of the tiny U-Net whose to_k/to_v weights absorb a bias-free linear hypernetwork:
    W (c + s A c) = (W (I + s A)) c, A the product of the MLP's matrices."""
    model = unet_model()
    with torch.no_grad():
        for name, module in model.unet.named_modules():
            if not name.endswith(("attn1", "attn2")):
                continue
            width = module.to_k.in_features
            if width not in data:
                continue
            for projection, module_sd in zip((module.to_k, module.to_v), data[width]):
                matrix = torch.eye(width)
                for key in sorted(module_sd, key=lambda k: int(k.split(".")[1])):
                    if key.endswith("weight"):
                        matrix = module_sd[key] @ matrix
                projection.weight.copy_(projection.weight @ (torch.eye(width) + strength * matrix))
    return model


def predict(model: DiffusionModel) -> torch.Tensor:
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 16, 16, generator=generator)
    context = torch.randn(2, 5, tiny_config().context_dim, generator=generator)
    return model.predict_denoised(x, torch.tensor([2.0, 2.0]), context)


def run_node(model, tmp_path, name, strength):
    ctx = RunContext(paths=Paths(models_dirs=(tmp_path,)))
    return hypernetwork_loader(model, name, strength, ctx)[0]


@pytest.mark.parametrize("widths", [(32, 64, 48), (48,)], ids=["self-and-cross-attention", "cross-attention-only"])
def test_the_patched_unet_equals_one_with_the_hypernetwork_folded_into_its_projections(tmp_path, widths):
    data = a1111_file(widths=widths, structure=(1, 2, 1), activation="linear", zero_bias=True)
    save_pt(data, tmp_path / "hypernetworks")
    model = unet_model()
    patched = run_node(model, tmp_path, "hn.pt", 0.6)
    got, expected, plain = predict(patched), predict(folded_model(data, 0.6)), predict(model)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert (got - plain).abs().max() > 1e-3
    assert not model.unet_patches  # the input model is untouched


def test_strength_zero_leaves_the_prediction_unchanged(tmp_path):
    save_pt(a1111_file(widths=(32, 64, 48), activation="relu"), tmp_path / "hypernetworks")
    model = unet_model()
    torch.testing.assert_close(predict(run_node(model, tmp_path, "hn.pt", 0.0)), predict(model), rtol=0, atol=0)


def test_a_safetensors_file_gives_the_same_model_as_the_pt_file(tmp_path):
    data = a1111_file(widths=(32, 64, 48), activation="elu", layer_norm=True)
    save_pt(data, tmp_path / "hypernetworks")
    flat = {f"{width}.{which}.{key}": tensor for width in (32, 64, 48)
            for which in (0, 1) for key, tensor in data[width][which].items()}
    save_file(flat, tmp_path / "hypernetworks" / "hn.safetensors",
              metadata={"activation_func": "elu", "is_layer_norm": "true", "activate_output": "false"})
    model = unet_model()
    from_pt = predict(run_node(model, tmp_path, "hn.pt", 1.0))
    from_safetensors = predict(run_node(model, tmp_path, "hn.safetensors", 1.0))
    torch.testing.assert_close(from_safetensors, from_pt, rtol=0, atol=0)
    assert (from_pt - predict(model)).abs().max() > 1e-3


def test_novelai_layer_names_load(tmp_path):
    data = a1111_file(widths=(48,), structure=(1, 2, 1), activation="linear")
    for pair in data[48]:
        renamed = {key.replace("linear.0", "linear1").replace("linear.1", "linear2"): value
                   for key, value in pair.items()}
        pair.clear()
        pair.update(renamed)
    del data["activation_func"]
    c = torch.randn(1, 3, 48)
    k_in, _ = load_hypernetwork(save_pt(data, tmp_path)).residuals(c, c, 1.0)
    expected = c + (c @ data[48][0]["linear1.weight"].T + data[48][0]["linear1.bias"]) @ \
        data[48][0]["linear2.weight"].T + data[48][0]["linear2.bias"]
    torch.testing.assert_close(k_in, expected, rtol=1e-5, atol=1e-6)


# --- bad files -----------------------------------------------------------------------------------

class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_pickle_needing_code_is_refused_unexecuted(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({768: [{}, {}], "x": Payload()}, path)
    with pytest.raises(ModelFileError, match="evil.pt: refused"):
        load_hypernetwork(path)
    assert "must never run" not in capsys.readouterr().out


@pytest.mark.parametrize("change,message", [
    (lambda d: d.update(activation_func="gelu_new"), "unsupported hypernetwork activation_func 'gelu_new'"),
    (lambda d: d[48][0].update({"linear.0.weight": torch.zeros(96, 40)}), "width 48, keys: layer 0"),
    (lambda d: d[48][1].pop("linear.2.bias"), "layer 2 needs a weight and a bias"),
    (lambda d: d[48][1].update(extra=torch.zeros(1)), "unexpected entry 'extra'"),
    (lambda d: d.update({48: "nothing"}), "width 48 must hold two state dicts"),
    (lambda d: d.pop(48), "not a hypernetwork"),
])
def test_a_broken_file_is_one_line_naming_it(tmp_path, change, message):
    data = a1111_file(widths=(48,))
    change(data)
    with pytest.raises(ModelFileError, match=message) as error:
        load_hypernetwork(save_pt(data, tmp_path, "broken.pt"))
    assert "broken.pt" in str(error.value) and "\n" not in str(error.value)


def test_the_attention_hook_runs_attn2_patches_in_order_and_only_then():
    block = BasicTransformerBlock(dim=32, heads=2, dim_head=16, context_dim=48).eval()
    seen = []

    def first(n, context, value, call):
        seen.append(("first", context.shape[-1], call.heads, call.dim_head))
        return n, context * 2, value

    def second(n, context, value, call):
        seen.append(("second", context.shape[-1]))
        return n, context, value * 0

    x, context = torch.randn(1, 4, 32), torch.randn(1, 3, 48)
    with torch.no_grad():
        got = block(x, context, PatchCall(UNetPatches(attn2_patch=(first, second)), (1, 4, 2, 2)))
        h = x + block.attn1(block.norm1(x))
        h = h + block.attn2(block.norm2(h), context * 2, context * 0)
        expected = h + block.ff(block.norm3(h))
    assert seen == [("first", 48, 2, 16), ("second", 48)]
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
