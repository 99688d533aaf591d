"""LoRA: kohya names in diffusers' and the original layout map onto our layers; patching equals
editing diffusers' weights directly; the base model never changes; LoRAs stack."""

import pytest
import torch
from safetensors.torch import save_file

from nodeflow.engine.context import RunContext
from nodeflow.loading.lora import PatchedModule, lora_patches
from nodeflow.runtime.paths import Paths
from nodeflow.sampling.model import DiffusionModel, LatentFormat
from nodeflow.sampling.model_sampling import ModelSampling
from tests.test_unet_parity import diffusers_unet, random_unet, relative_error, tiny_config


def random_lora(modules: dict, seed: int, prefix: str = "lora_unet_", rank: int = 2) -> dict:
    generator = torch.Generator().manual_seed(seed)
    lora = {}
    for name, module in modules.items():
        weight = module.weight
        key = prefix + name.replace(".", "_")
        if weight.ndim == 4:
            down = torch.randn(rank, weight.shape[1], *weight.shape[2:], generator=generator) * 0.1
            up = torch.randn(weight.shape[0], rank, 1, 1, generator=generator) * 0.1
        else:
            down = torch.randn(rank, weight.shape[1], generator=generator) * 0.1
            up = torch.randn(weight.shape[0], rank, generator=generator) * 0.1
        lora[key + ".lora_down.weight"], lora[key + ".lora_up.weight"] = down, up
        lora[key + ".alpha"] = torch.tensor(1.0)
    return lora


def apply_directly(module, lora: dict, strength: float, prefix: str = "lora_unet_"):
    with torch.no_grad():
        for name, child in module.named_modules():
            key = prefix + name.replace(".", "_")
            if key + ".lora_up.weight" in lora:
                up, down = lora[key + ".lora_up.weight"], lora[key + ".lora_down.weight"]
                scale = float(lora[key + ".alpha"]) / down.shape[0]
                child.weight += (up.flatten(1) @ down.flatten(1)).reshape(child.weight.shape) * scale * strength


@pytest.fixture(scope="module")
def models():
    config = tiny_config()
    ours = random_unet(config)
    reference = diffusers_unet(config, ours.state_dict())
    return config, ours, reference


def layers(module, prefixes):
    return {n: m for n, m in module.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))
            and n.startswith(prefixes)}


def test_diffusers_named_lora_equals_editing_diffusers_weights(models):
    config, ours, reference = models
    targets = layers(reference, ("down_blocks", "mid_block", "up_blocks"))
    lora = random_lora(targets, seed=1)
    unet_patches, _, unmatched = lora_patches(lora, ours, None, 0.8, 0.0)
    assert unmatched == [] and len(unet_patches) == len(targets)
    patched = PatchedModule(ours, tuple(unet_patches))
    import copy

    edited = copy.deepcopy(reference)
    apply_directly(edited, lora, 0.8)
    x, t, context = torch.randn(1, 4, 16, 16), torch.tensor([321.0]), torch.randn(1, 77, config.context_dim)
    before = ours(x, t, context)
    with torch.no_grad():
        got = patched(x, t, context)
        expected = edited(x, t, encoder_hidden_states=context).sample
    assert relative_error(got, expected) < 1e-4
    assert torch.equal(ours(x, t, context), before)  # the base model is untouched


def test_original_named_lora_and_stacking(models):
    config, ours, _ = models
    targets = layers(ours, ("input_blocks.1.1", "middle_block"))
    first, second = random_lora(targets, seed=2), random_lora(targets, seed=3)
    p1, _, _ = lora_patches(first, ours, None, 1.0, 0.0)
    p2, _, _ = lora_patches(second, ours, None, 0.5, 0.0)
    import copy

    edited = copy.deepcopy(ours)
    apply_directly(edited, first, 1.0)
    apply_directly(edited, second, 0.5)
    x, t, context = torch.randn(1, 4, 16, 16), torch.tensor([50.0]), torch.randn(1, 77, config.context_dim)
    with torch.no_grad():
        assert relative_error(PatchedModule(ours, tuple(p1 + p2))(x, t, context), edited(x, t, context)) < 1e-5


def test_lora_nodes_patch_copies(models, tmp_path):
    from nodeflow_nodes.lora import lora_loader
    from tests.test_text_encoder import original_layout, tiny_clip
    from nodeflow.text.text_encoder import text_encoder_from_state_dict
    from nodeflow.text.tokenizer import load_tokenizer

    config, ours, _ = models
    model = DiffusionModel(ours, ModelSampling.sd1(), LatentFormat(), torch.device("cpu"), torch.float32)
    clip = text_encoder_from_state_dict(original_layout(tiny_clip()), load_tokenizer())
    lora = random_lora(layers(ours, ("input_blocks.1.1",)), seed=4)
    text_layers = {n: m for n, m in clip.model.named_modules() if n.endswith("q_proj")}
    lora |= random_lora({("text_model." + n if not n.startswith("text_model.") else n): m
                         for n, m in text_layers.items()}, seed=5, prefix="lora_te_")
    (tmp_path / "loras").mkdir()
    save_file({k: v.contiguous() for k, v in lora.items()}, str(tmp_path / "loras" / "style.safetensors"))
    ctx = RunContext(paths=Paths(models_dirs=(tmp_path,)))
    new_model, new_clip = lora_loader(model, clip, "style.safetensors", 1.0, 1.0, ctx)
    assert new_model.unet is not ours and isinstance(new_model.unet, PatchedModule)
    assert not torch.allclose(new_clip.encode("a cat")[0], clip.encode("a cat")[0])
    stacked, _ = lora_loader(new_model, new_clip, "style.safetensors", 1.0, 1.0, ctx)
    assert stacked.unet.base is ours and len(stacked.unet.patches) == 2 * len(new_model.unet.patches)
    same = lora_loader(model, clip, "style.safetensors", 0.0, 0.0, ctx)
    assert same[0] is model and same[1] is clip


def test_text_encoder_lora_equals_merged_weights_and_model_only_leaves_clip_alone(models, tmp_path):
    import copy

    from nodeflow_nodes.lora import lora_loader, lora_loader_model_only
    from nodeflow.text.text_encoder import text_encoder_from_state_dict
    from nodeflow.text.tokenizer import load_tokenizer
    from tests.test_text_encoder import original_layout, tiny_clip

    config, ours, _ = models
    model = DiffusionModel(ours, ModelSampling.sd1(), LatentFormat(), torch.device("cpu"), torch.float32)
    base = tiny_clip()
    clip = text_encoder_from_state_dict(original_layout(base), load_tokenizer())
    names = {n: m for n, m in clip.model.named_modules() if n.endswith(("q_proj", "fc1"))}
    kohya = {("text_model." + n if not n.startswith("text_model.") else n): m for n, m in names.items()}
    lora = random_lora(kohya, seed=6, prefix="lora_te_") | random_lora(layers(ours, ("input_blocks.1.1",)), seed=7)
    (tmp_path / "loras").mkdir()
    save_file({k: v.contiguous() for k, v in lora.items()}, str(tmp_path / "loras" / "te.safetensors"))
    ctx = RunContext(paths=Paths(models_dirs=(tmp_path,)))
    _, patched = lora_loader(model, clip, "te.safetensors", 1.0, 0.7, ctx)
    merged_model = copy.deepcopy(base)
    apply_directly(merged_model, {k.replace("lora_te_text_model_", "lora_te_"): v for k, v in lora.items()},
                   0.7, prefix="lora_te_")
    merged = text_encoder_from_state_dict(original_layout(merged_model), load_tokenizer())
    torch.testing.assert_close(patched.encode("a red circle")[0], merged.encode("a red circle")[0],
                               rtol=1e-5, atol=1e-5)
    (model_only,) = lora_loader_model_only(model, "te.safetensors", 1.0, ctx)
    assert isinstance(model_only.unet, PatchedModule) and model_only.unet.base is ours
    x, t, context = torch.randn(1, 4, 8, 8), torch.tensor([500.0]), torch.randn(1, 77, config.context_dim)
    reference = copy.deepcopy(ours)
    apply_directly(reference, lora, 1.0)
    torch.testing.assert_close(model_only.unet(x, t, context), reference(x, t, context), rtol=1e-5, atol=1e-5)
