"""StyleModelLoader and StyleModelApply (issue 16): the T2I-Adapter style model.

A file with the released model's key names and random weights (scaled down: width 64, 4 tokens, 2
blocks, 8 heads) is loaded through the node and checked against the model's formula written out
here with plain tensor operations (x = LN([h; E]); CLIP blocks; LN(x[-T:]) P); StyleModelApply
against a concatenation done here: strength, several images, the input list untouched.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from nodeflow.engine.context import RunContext
from nodeflow.errors import ModelFileError, NodeInputError
from nodeflow.image.clip_vision import ClipVisionOutput
from nodeflow.loading.style_model import load_style_model
from nodeflow.runtime.paths import Paths
from nodeflow_nodes.style_model import style_model_apply, style_model_loader

WIDTH, TOKENS, LAYERS, CONTEXT, HEADS = 64, 4, 2, 48, 8


def style_file(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    randn = lambda *shape, scale=0.1: torch.randn(*shape, generator=generator) * scale  # noqa: E731
    sd = {"style_embedding": randn(1, TOKENS, WIDTH, scale=1.0), "proj": randn(WIDTH, CONTEXT, scale=WIDTH ** -0.5)}
    for norm in ("ln_pre", "ln_post"):
        sd[f"{norm}.weight"], sd[f"{norm}.bias"] = 1 + randn(WIDTH), randn(WIDTH)
    for i in range(LAYERS):
        block = f"transformer_layes.{i}."
        sd |= {block + "attn.in_proj_weight": randn(3 * WIDTH, WIDTH), block + "attn.in_proj_bias": randn(3 * WIDTH),
               block + "attn.out_proj.weight": randn(WIDTH, WIDTH), block + "attn.out_proj.bias": randn(WIDTH),
               block + "ln_1.weight": 1 + randn(WIDTH), block + "ln_1.bias": randn(WIDTH),
               block + "ln_2.weight": 1 + randn(WIDTH), block + "ln_2.bias": randn(WIDTH),
               block + "mlp.c_fc.weight": randn(4 * WIDTH, WIDTH), block + "mlp.c_fc.bias": randn(4 * WIDTH),
               block + "mlp.c_proj.weight": randn(WIDTH, 4 * WIDTH), block + "mlp.c_proj.bias": randn(WIDTH)}
    return sd


def layer_norm(x, sd, name):
    return F.layer_norm(x, (x.shape[-1],), sd[f"{name}.weight"], sd[f"{name}.bias"], eps=1e-5)


def reference(hidden: torch.Tensor, sd: dict[str, torch.Tensor]) -> torch.Tensor:
    """The style model's formula, by hand: (B, N, W) -> (B, T, C)."""
    x = torch.cat([hidden, sd["style_embedding"].expand(hidden.shape[0], -1, -1)], dim=1)
    x = layer_norm(x, sd, "ln_pre")
    for i in range(LAYERS):
        block = f"transformer_layes.{i}."
        h = layer_norm(x, sd, block + "ln_1")
        q, k, v = (h @ sd[block + "attn.in_proj_weight"].T + sd[block + "attn.in_proj_bias"]).chunk(3, dim=-1)
        heads = lambda t: t.reshape(t.shape[0], t.shape[1], HEADS, -1).transpose(1, 2)  # noqa: E731
        q, k, v = heads(q), heads(k), heads(v)
        attended = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), -1) @ v
        attended = attended.transpose(1, 2).reshape(x.shape)
        x = x + attended @ sd[block + "attn.out_proj.weight"].T + sd[block + "attn.out_proj.bias"]
        h = layer_norm(x, sd, block + "ln_2") @ sd[block + "mlp.c_fc.weight"].T + sd[block + "mlp.c_fc.bias"]
        h = h * torch.sigmoid(1.702 * h)  # QuickGELU
        x = x + h @ sd[block + "mlp.c_proj.weight"].T + sd[block + "mlp.c_proj.bias"]
    return layer_norm(x[:, -TOKENS:], sd, "ln_post") @ sd["proj"]


def load_through_node(tmp_path, sd):
    folder = tmp_path / "style_models"
    folder.mkdir(parents=True, exist_ok=True)
    save_file(sd, folder / "style.safetensors")
    return style_model_loader("style.safetensors", RunContext(paths=Paths(models_dirs=(tmp_path,))))[0]


def vision_output(batch: int = 1, seed: int = 1) -> ClipVisionOutput:
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(batch, 17, WIDTH, generator=generator)
    return ClipVisionOutput(torch.randn(batch, 8, generator=generator), hidden, torch.randn(batch, 17, WIDTH))


def test_the_style_model_is_its_formula(tmp_path):
    sd = style_file()
    model = load_through_node(tmp_path, sd)
    assert (model.config.tokens, model.config.width, model.config.context_dim, model.config.layers) == \
        (TOKENS, WIDTH, CONTEXT, LAYERS)
    hidden = vision_output(batch=2).last_hidden_state
    with torch.no_grad():
        got = model(hidden)
    torch.testing.assert_close(got, reference(hidden, sd), rtol=1e-5, atol=1e-5)
    assert got.shape == (2, TOKENS, CONTEXT)


def test_apply_appends_the_scaled_tokens_to_every_entry(tmp_path):
    sd = style_file()
    model = load_through_node(tmp_path, sd)
    output = vision_output(batch=2)
    prompt = [(torch.randn(1, 77, CONTEXT), {"pooled_output": torch.zeros(1, 8)}),
              (torch.randn(1, 154, CONTEXT), {"strength": 0.5})]
    [styled] = style_model_apply(prompt, model, output, 0.7, "multiply")
    tokens = reference(output.last_hidden_state, sd).reshape(1, 2 * TOKENS, CONTEXT)  # image 0's, then image 1's
    assert len(styled) == 2
    for (cond, options), (original, original_options) in zip(styled, prompt):
        assert cond.shape == (1, original.shape[1] + 2 * TOKENS, CONTEXT)
        torch.testing.assert_close(cond[:, :original.shape[1]], original, rtol=0, atol=0)
        torch.testing.assert_close(cond[:, original.shape[1]:], tokens * 0.7, rtol=1e-5, atol=1e-5)
        assert options == original_options and options is not original_options
    assert prompt[0][0].shape == (1, 77, CONTEXT)  # the input list untouched


def test_attn_bias_appends_unscaled_tokens_as_comfyui_does_for_sd_models(tmp_path):
    sd = style_file()
    model = load_through_node(tmp_path, sd)
    output = vision_output()
    prompt = [(torch.randn(1, 77, CONTEXT), {})]
    [biased] = style_model_apply(prompt, model, output, 0.3, "attn_bias")
    torch.testing.assert_close(biased[0][0][:, 77:], reference(output.last_hidden_state, sd), rtol=1e-5, atol=1e-5)
    assert set(biased[0][1]) == set()
    with pytest.raises(NodeInputError, match="strength_type"):
        style_model_apply(prompt, model, output, 1.0, "add")


def test_an_encoding_of_another_width_is_refused_naming_the_input(tmp_path):
    model = load_through_node(tmp_path, style_file())
    wrong = ClipVisionOutput(torch.zeros(1, 8), torch.zeros(1, 17, 32), torch.zeros(1, 17, 32))
    with pytest.raises(NodeInputError, match="clip_vision_output.*width 32.*reads 64"):
        style_model_apply([(torch.zeros(1, 77, CONTEXT), {})], model, wrong, 1.0, "multiply")


@pytest.mark.parametrize("tensors,message", [
    ({"redux_down.weight": torch.zeros(2, 2)}, "FLUX Redux"),
    ({"encoder.conv_in.weight": torch.zeros(2, 2)}, "not a T2I-Adapter style model"),
    ({**style_file(), "transformer_layes.0.attn.extra": torch.zeros(1)}, "does not match its configuration"),
])
def test_other_files_are_refused_naming_them(tmp_path, tensors, message):
    save_file(tensors, tmp_path / "bad.safetensors")
    with pytest.raises(ModelFileError, match=message) as error:
        load_style_model(tmp_path / "bad.safetensors")
    assert "bad.safetensors" in str(error.value)
