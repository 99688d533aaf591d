"""Model merging (issue 16): ModelMergeSimple / Add / Subtract / Blocks / SD1 / SD2 / SDXL and the
CLIP merges, with ComfyUI's formulas (add_patches: w = strength_model w1 + strength_patch w2).

Expected weights are computed here from the loaded models' own tensors, independently of the merge
code; a merged model must also *run* with them (its output equals a copy of the model with the
expected weights loaded). The inputs never change, creating a merge allocates no tensors (measured
with torch's profiler), and merges compose with LoRAs in either order.
"""

from __future__ import annotations

import copy
import re
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from nodeflow.loading.checkpoint import load_checkpoint
from nodeflow.loading.merge import MergePatch, block_ratio, effective_weight, merge_clips
from nodeflow.runtime.paths import Paths
from nodeflow_nodes.lora import lora_loader
from nodeflow_nodes.model_merging import (SD1_BLOCKS, SDXL_BLOCKS, clip_merge_add, clip_merge_simple,
                                          clip_merge_subtract, model_merge_add, model_merge_blocks, model_merge_sd1,
                                          model_merge_sd2, model_merge_simple, model_merge_subtract, model_merge_sdxl)
from tests.factories import write_tiny_checkpoint, write_tiny_lora
from tests.family_files import write_family_checkpoint

PROMPT = "a red circle on a blue background"


# ----- helpers shared with tests/test_model_save.py ----------------------------------------------

@pytest.fixture(scope="session")
def sd1_pair(tmp_path_factory):
    """Two tiny SD1.x checkpoints with different random weights, loaded, and their folder."""
    root = tmp_path_factory.mktemp("sd1-pair")
    a = write_tiny_checkpoint(root / "models" / "checkpoints" / "a.safetensors", seed=1)
    b = write_tiny_checkpoint(root / "models" / "checkpoints" / "b.safetensors", seed=2)
    return load_checkpoint(a), load_checkpoint(b), root


@pytest.fixture(scope="session")
def sdxl_pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("sdxl-pair")
    a, _ = write_family_checkpoint(root / "models" / "checkpoints" / "xa.safetensors", "sdxl", seed=1)
    b, _ = write_family_checkpoint(root / "models" / "checkpoints" / "xb.safetensors", "sdxl", seed=7)
    return load_checkpoint(a), load_checkpoint(b), root


def weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A module's own parameters (unpatched), detached clones."""
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def run_weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The weights a (possibly patched) module runs with."""
    return {name: effective_weight(module, name) for name, _ in getattr(module, "base", module).named_parameters()}


def assert_weights(got: dict, expected: dict, atol: float = 1e-6) -> None:
    assert got.keys() == expected.keys()
    bad = [k for k in expected if not torch.allclose(got[k].float(), expected[k].float(), atol=atol, rtol=1e-5)]
    assert not bad, f"{len(bad)} weights differ from the formula, e.g. {bad[:3]}"


def unet_output(unet: torch.nn.Module, seed: int = 0, y: torch.Tensor | None = None) -> torch.Tensor:
    config = unet.config
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(1, config.in_channels, 8, 8, generator=generator)
    context = torch.randn(1, 77, config.context_dim, generator=generator)
    extra = {}
    if config.adm_in_channels:
        extra["y"] = torch.randn(1, config.adm_in_channels, generator=generator)
    with torch.no_grad():
        return unet(x, torch.tensor([500.0]), context, **extra)


def with_weights(module: torch.nn.Module, tensors: dict) -> torch.nn.Module:
    """A deep copy of ``module`` holding ``tensors`` (the reference a merged model must match)."""
    result = copy.deepcopy(module)
    with torch.no_grad():
        for name, parameter in result.named_parameters():
            parameter.copy_(tensors[name])
    return result


def sample_image(model, clip, vae, seed: int = 3, steps: int = 3) -> torch.Tensor:
    """IMAGE of a few euler steps with ``PROMPT`` (64 x 64 pixels)."""
    from nodeflow.sampling.ksampler import sample

    cond, pooled = clip.encode(PROMPT)
    uncond, upooled = clip.encode("")
    out = sample(model, seed=seed, steps=steps, cfg=5.0, sampler_name="euler", scheduler="normal",
                 positive=[(cond, {"pooled_output": pooled})], negative=[(uncond, {"pooled_output": upooled})],
                 latent={"samples": torch.zeros(1, 4, 8, 8)})
    return vae.decode(out["samples"])


# ----- the formulas --------------------------------------------------------------------------

@pytest.mark.parametrize("ratio", [0.0, 0.3, 1.0])
def test_simple_merge_is_ratio_of_model1_plus_the_rest_of_model2(sd1_pair, ratio):
    a, b, _ = sd1_pair
    wa, wb = weights(a.model.unet), weights(b.model.unet)
    merged, = model_merge_simple(a.model, b.model, ratio)
    got = run_weights(merged.unet)
    assert_weights(got, {k: wa[k] * ratio + wb[k] * (1 - ratio) for k in wa})
    if ratio == 1.0:  # ComfyUI: all of model1, bit for bit
        assert all(torch.equal(got[k], wa[k]) for k in wa)
    # the merged model runs with those weights
    reference = with_weights(a.model.unet, {k: wa[k] * ratio + wb[k] * (1 - ratio) for k in wa})
    assert torch.allclose(unet_output(merged.unet), unet_output(reference), atol=1e-5)


def test_add_and_subtract(sd1_pair):
    a, b, _ = sd1_pair
    wa, wb = weights(a.model.unet), weights(b.model.unet)
    added, = model_merge_add(a.model, b.model)
    assert_weights(run_weights(added.unet), {k: wa[k] + wb[k] for k in wa})
    subtracted, = model_merge_subtract(a.model, b.model, 0.7)  # ComfyUI: multiplier (model1 - model2)
    assert_weights(run_weights(subtracted.unet), {k: 0.7 * (wa[k] - wb[k]) for k in wa})
    # 'add difference': a + (b - a) is b
    difference, = model_merge_subtract(b.model, a.model, 1.0)
    restored, = model_merge_add(a.model, difference)
    assert_weights(run_weights(restored.unet), wb, atol=1e-5)


def expected_block(key: str) -> str:
    """Which ModelMergeSD1 input a U-Net key belongs to, read off the key itself."""
    match = re.match(r"(input_blocks|middle_block|output_blocks)\.(\d+)\.", key)
    if match:
        return f"{match.group(1)}.{match.group(2)}."
    return key.split(".", 1)[0] + "."  # time_embed., label_emb., out.


def test_blocks_merge_gives_each_block_its_ratio(sd1_pair):
    a, b, _ = sd1_pair
    wa, wb = weights(a.model.unet), weights(b.model.unet)
    merged, = model_merge_blocks(a.model, b.model, input=0.2, middle=0.5, out=0.9)
    group = {"input_blocks": 0.2, "middle_block": 0.5, "output_blocks": 0.9, "out": 0.9, "time_embed": 0.2}
    ratio = {k: group[k.split(".")[0]] for k in wa}  # the time embedding takes the first input's ratio
    assert set(ratio.values()) == {0.2, 0.5, 0.9}
    assert_weights(run_weights(merged.unet), {k: wa[k] * ratio[k] + wb[k] * (1 - ratio[k]) for k in wa})


def test_sd1_and_sd2_block_ratios_go_to_their_own_keys_only(sd1_pair):
    a, b, _ = sd1_pair
    wa, wb = weights(a.model.unet), weights(b.model.unet)
    ratios = {name: round(0.02 + index / 40, 3) for index, name in enumerate(SD1_BLOCKS)}
    for node in (model_merge_sd1, model_merge_sd2):
        merged, = node(a.model, b.model, **ratios)
        ratio = {k: ratios[expected_block(k)] for k in wa}
        assert len(set(ratio.values())) >= 10  # the tiny U-Net has ten blocks of its own
        assert_weights(run_weights(merged.unet), {k: wa[k] * ratio[k] + wb[k] * (1 - ratio[k]) for k in wa})


def test_the_longest_block_name_wins():
    ratios = {name: float(index) for index, name in enumerate(SD1_BLOCKS)}
    assert block_ratio("input_blocks.11.0.in_layers.0.weight", ratios) == ratios["input_blocks.11."]
    assert block_ratio("input_blocks.1.1.proj_in.weight", ratios) == ratios["input_blocks.1."]
    blocks = {"input": 0.1, "middle": 0.2, "out": 0.3}
    assert block_ratio("output_blocks.2.0.skip_connection.weight", blocks) == 0.3
    assert block_ratio("label_emb.0.0.weight", blocks) == 0.1  # no name matches: the first


def test_sdxl_block_ratios(sdxl_pair):
    a, b, _ = sdxl_pair
    wa, wb = weights(a.model.unet), weights(b.model.unet)
    ratios = {name: round(0.03 + index / 30, 3) for index, name in enumerate(SDXL_BLOCKS)}
    merged, = model_merge_sdxl(a.model, b.model, **ratios)
    ratio = {k: ratios[expected_block(k).rstrip(".") if k.startswith(("input_", "middle_", "output_"))
                       else expected_block(k)] for k in wa}
    assert any(k.startswith("label_emb.") for k in wa) and len(set(ratio.values())) >= 10
    expected = {k: wa[k] * ratio[k] + wb[k] * (1 - ratio[k]) for k in wa}
    assert_weights(run_weights(merged.unet), expected)
    reference = with_weights(a.model.unet, expected)
    assert torch.allclose(unet_output(merged.unet), unet_output(reference), atol=1e-5)


def test_mismatched_shapes_keep_model1_scaled_as_comfyui(tmp_path, sd1_pair):
    """A 9-channel inpainting U-Net merged with a 4-channel one: ComfyUI scales model1's input
    convolution by the ratio and logs that model2's part was not merged."""
    _, b, _ = sd1_pair
    inpaint = load_checkpoint(write_tiny_checkpoint(tmp_path / "inpaint.safetensors", seed=5, inpainting=True))
    wa, wb = weights(inpaint.model.unet), weights(b.model.unet)
    merged, = model_merge_simple(inpaint.model, b.model, 0.6)
    key = "input_blocks.0.0.weight"
    assert wa[key].shape[1] == 9 and wb[key].shape[1] == 4
    expected = {k: wa[k] * 0.6 + (wb[k] * 0.4 if k != key else 0) for k in wa}
    assert_weights(run_weights(merged.unet), expected)


def test_merges_nest(sd1_pair):
    a, b, _ = sd1_pair
    wa, wb = weights(a.model.unet), weights(b.model.unet)
    inner, = model_merge_simple(b.model, a.model, 0.5)
    outer, = model_merge_simple(a.model, inner, 0.5)
    assert_weights(run_weights(outer.unet), {k: 0.75 * wa[k] + 0.25 * wb[k] for k in wa})


# ----- CLIP ----------------------------------------------------------------------------------

def test_clip_merges_follow_the_formulas_and_encode_with_the_merged_weights(sd1_pair):
    a, b, _ = sd1_pair
    wa, wb = weights(a.clip.model), weights(b.clip.model)
    merged, = clip_merge_simple(a.clip, b.clip, 0.25)
    expected = {k: 0.25 * wa[k] + 0.75 * wb[k] for k in wa}
    assert_weights(run_weights(merged.model), expected)
    assert_weights(run_weights(clip_merge_add(a.clip, b.clip)[0].model), {k: wa[k] + wb[k] for k in wa})
    assert_weights(run_weights(clip_merge_subtract(a.clip, b.clip, -2.0)[0].model),
                   {k: -2.0 * (wa[k] - wb[k]) for k in wa})
    reference = a.clip.clone_with(model=with_weights(a.clip.model, expected))
    for layer in (None, -2):  # the last layer, and clip skip (through the final layer norm)
        got = merged.clone_with(layer_idx=layer).encode(PROMPT)[0]
        want = reference.clone_with(layer_idx=layer).encode(PROMPT)[0]
        assert torch.allclose(got, want, atol=1e-5)
        assert not torch.allclose(got, a.clip.clone_with(layer_idx=layer).encode(PROMPT)[0], atol=1e-3)


def test_sd2_clip_merge_uses_the_merged_final_norm(tmp_path):
    """SD2 encodes with the penultimate layer through the final LayerNorm, which the text
    encoder calls outside the model's forward: the merged norm must be the one used."""
    a = load_checkpoint(write_family_checkpoint(tmp_path / "a.safetensors", "sd2", seed=1)[0])
    b = load_checkpoint(write_family_checkpoint(tmp_path / "b.safetensors", "sd2", seed=9)[0])
    merged, = clip_merge_simple(a.clip, b.clip, 0.5)
    wa, wb = weights(a.clip.model), weights(b.clip.model)
    expected = {k: 0.5 * wa[k] + 0.5 * wb[k] for k in wa}
    reference = a.clip.clone_with(model=with_weights(a.clip.model, expected))
    got, pooled = merged.encode(PROMPT)
    want, want_pooled = reference.encode(PROMPT)
    assert merged.layer_idx == -2 and merged.final_norm
    assert torch.allclose(got, want, atol=1e-5) and torch.allclose(pooled, want_pooled, atol=1e-5)


def test_sdxl_clip_merge_merges_tower_with_tower(sdxl_pair, tmp_path):
    a, b, _ = sdxl_pair
    wa, wb = weights(a.clip.model), weights(b.clip.model)
    assert any(k.startswith("clip_l.") for k in wa) and any(k.startswith("clip_g.") for k in wa)
    merged, = clip_merge_simple(a.clip, b.clip, 0.4)
    assert_weights(run_weights(merged.model), {k: 0.4 * wa[k] + 0.6 * wb[k] for k in wa})
    # the refiner's CLIP-G (a single encoder, named without clip_g.) merges into SDXL's CLIP-G only
    refiner = load_checkpoint(write_family_checkpoint(tmp_path / "r.safetensors", "sdxl-refiner", seed=4)[0])
    wr = {"clip_g." + k: v for k, v in weights(refiner.clip.model).items()}
    with_refiner = merge_clips(a.clip, refiner.clip, lambda key: (0.5, 0.5))
    expected = {k: (0.5 * wa[k] + 0.5 * wr[k]) if k.startswith("clip_g.") else wa[k] for k in wa}
    assert_weights(run_weights(with_refiner.model), expected)


# ----- never changing the inputs, never copying them -------------------------------------------

def test_inputs_never_change_and_sample_as_before(sd1_pair):
    a, b, _ = sd1_pair
    before_a, before_b = weights(a.model.unet), weights(b.model.unet)
    image_a, image_b = sample_image(a.model, a.clip, a.vae), sample_image(b.model, b.clip, b.vae)
    merged, = model_merge_simple(a.model, b.model, 0.5)
    merged_clip, = clip_merge_simple(a.clip, b.clip, 0.5)
    image_merged = sample_image(merged, merged_clip, a.vae)  # computes the merged weights
    assert not torch.allclose(image_merged, image_a, atol=1e-3)
    assert torch.equal(sample_image(a.model, a.clip, a.vae), image_a)
    assert torch.equal(sample_image(b.model, b.clip, b.vae), image_b)
    assert all(torch.equal(p, before_a[k]) for k, p in a.model.unet.named_parameters())
    assert all(torch.equal(p, before_b[k]) for k, p in b.model.unet.named_parameters())
    assert a.model.unet is not merged.unet and merged.unet.base is a.model.unet


def allocated_bytes(function) -> tuple[object, int]:
    """(function(), bytes of CPU tensor memory allocated while it ran), by torch's profiler."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        result = function()
    return result, sum(max(event.self_cpu_memory_usage, 0) for event in profiler.key_averages())


def test_making_a_merge_copies_no_weights(sd1_pair):
    a, b, _ = sd1_pair
    size = sum(p.numel() * p.element_size() for p in a.model.unet.parameters())
    (merged,), made = allocated_bytes(lambda: model_merge_simple(a.model, b.model, 0.5))
    assert made < 1024, f"making the merge allocated {made} bytes (the U-Net has {size})"
    patches = merged.unet.patches
    assert len(patches) == len(list(a.model.unet.parameters()))
    assert all(isinstance(p, MergePatch) and p.source is b.model.unet for p in patches)
    # the measurement sees real work: running the merged model computes a merged U-Net
    _, ran = allocated_bytes(lambda: unet_output(merged.unet))
    assert ran >= size


# ----- with LoRAs ----------------------------------------------------------------------------

def lora_deltas(path, unet: torch.nn.Module, strength: float) -> dict[str, torch.Tensor]:
    """{parameter: strength * alpha / rank * up @ down} of a kohya LoRA file, for its layers in
    ``unet`` (named by their module paths with dots as underscores)."""
    lora = load_file(str(path))
    modules = {name.replace(".", "_"): name for name, _ in unet.named_modules()}
    deltas = {}
    for key in lora:
        if key.endswith(".lora_up.weight"):
            layer = key[len("lora_unet_"):-len(".lora_up.weight")]
            up, down = lora[key].float(), lora[key.replace("lora_up", "lora_down")].float()
            alpha = float(lora[key.replace("lora_up.weight", "alpha")])
            weight = unet.get_parameter(modules[layer] + ".weight")
            product = (up.flatten(1) @ down.flatten(1)).reshape(weight.shape)
            deltas[modules[layer] + ".weight"] = strength * alpha / down.shape[0] * product
    return deltas


def test_merge_then_lora_and_lora_then_merge(sd1_pair):
    a, b, root = sd1_pair
    path = write_tiny_lora(root / "models" / "loras" / "tiny.safetensors", seed=3)
    ctx = SimpleNamespace(paths=Paths(models_dirs=(root / "models",)), device="cpu", dtype="auto")
    wa, wb = weights(a.model.unet), weights(b.model.unet)
    delta = lora_deltas(path, a.model.unet, 0.8)
    assert len(delta) >= 4
    d = lambda k: delta.get(k, 0)  # noqa: E731

    merged, = model_merge_simple(a.model, b.model, 0.3)
    merged_then_lora, _ = lora_loader(merged, a.clip, "tiny.safetensors", 0.8, 0.0, ctx)
    assert_weights(run_weights(merged_then_lora.unet), {k: 0.3 * wa[k] + 0.7 * wb[k] + d(k) for k in wa}, atol=1e-5)

    lora_a, _ = lora_loader(a.model, a.clip, "tiny.safetensors", 0.8, 0.0, ctx)
    lora_then_merge, = model_merge_simple(lora_a, b.model, 0.3)
    assert_weights(run_weights(lora_then_merge.unet), {k: 0.3 * (wa[k] + d(k)) + 0.7 * wb[k] for k in wa}, atol=1e-5)

    lora_b, _ = lora_loader(b.model, b.clip, "tiny.safetensors", 0.8, 0.0, ctx)  # model2's LoRA counts too
    with_lora_b, = model_merge_simple(a.model, lora_b, 0.3)
    assert_weights(run_weights(with_lora_b.unet), {k: 0.3 * wa[k] + 0.7 * (wb[k] + d(k)) for k in wa}, atol=1e-5)
    reference = with_weights(a.model.unet, {k: 0.3 * wa[k] + 0.7 * (wb[k] + d(k)) for k in wa})
    assert torch.allclose(unet_output(with_lora_b.unet), unet_output(reference), atol=1e-5)
