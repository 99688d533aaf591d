"""LyCORIS (LoCon, LoHa, LoKr, Tucker, full, DoRA) and PEFT/diffusers LoRA files.

The reference is LyCORIS itself (`lycoris-lora`, the trainer that writes these files): its modules
wrap layers of diffusers' UNet2DConditionModel (the same weights as our U-Net), their state dicts
are saved under kohya names, and the wrapped diffusers model's output is what our patched U-Net
must give (fp32, relative 1e-4), at a strength that is not 1. PEFT names are checked through
diffusers' own converter to kohya names.
"""

from __future__ import annotations

import copy

import pytest
import torch

from nodeflow.errors import ModelFileError
from nodeflow.loading.lora import PatchedModule, lora_patches
from tests.test_lora import layers, random_lora
from tests.test_unet_parity import diffusers_unet, random_unet, relative_error, tiny_config

lycoris_modules = pytest.importorskip("lycoris.modules")

STRENGTH = 0.7


@pytest.fixture(scope="module")
def models():
    config = tiny_config()
    ours = random_unet(config)
    return config, ours, diffusers_unet(config, ours.state_dict())


def targets(reference) -> dict:
    """Linear layers, 1x1 and 3x3 convolutions of diffusers' U-Net."""
    chosen = {}
    for name, module in reference.named_modules():
        if name.endswith(("attn1.to_q", "attn2.to_v", "ff.net.0.proj", "proj_in", "resnets.0.conv1",
                          "resnets.1.conv2", "conv_shortcut")):
            chosen[name] = module
    assert {type(m) for m in chosen.values()} == {torch.nn.Linear, torch.nn.Conv2d}
    assert {m.kernel_size for m in chosen.values() if isinstance(m, torch.nn.Conv2d)} == {(1, 1), (3, 3)}
    return chosen


VARIANTS = {
    "locon": ("LoConModule", dict(lora_dim=2, alpha=1)),
    "locon tucker": ("LoConModule", dict(lora_dim=2, alpha=1, use_tucker=True)),
    "loha": ("LohaModule", dict(lora_dim=2, alpha=1)),
    "loha tucker": ("LohaModule", dict(lora_dim=2, alpha=1, use_tucker=True)),
    "lokr": ("LokrModule", dict(lora_dim=2, alpha=1, factor=4)),
    "lokr tucker": ("LokrModule", dict(lora_dim=2, alpha=1, factor=4, use_tucker=True)),
    "lokr full matrices": ("LokrModule", dict(lora_dim=10_000, alpha=1, factor=-1)),
    "dora": ("LoConModule", dict(lora_dim=2, alpha=1, weight_decompose=True)),
    "full": ("FullModule", {}),
}


def lycoris_file(reference, variant: str, seed: int):
    """(kohya-named state dict, the LyCORIS modules applied to ``reference``'s layers)."""
    cls_name, options = VARIANTS[variant]
    cls = getattr(lycoris_modules, cls_name)
    generator = torch.Generator().manual_seed(seed)
    wrapped, state = [], {}
    for name, module in targets(reference).items():
        lora_name = "lora_unet_" + name.replace(".", "_")
        if cls_name == "FullModule":  # a diff per weight and bias, as LyCORIS' loader takes them
            diff = {"diff": torch.randn(module.weight.shape, generator=generator) * 0.02}
            if module.bias is not None:
                diff["diff_b"] = torch.randn(module.bias.shape, generator=generator) * 0.02
            with torch.no_grad():
                wrapper = cls.make_module_from_state_dict(lora_name, module, diff["diff"], diff.get("diff_b"))
            wrapper.multiplier = STRENGTH
            wrapped.append(wrapper)
            state |= {f"{lora_name}.{k}": v for k, v in diff.items()}
            continue
        wrapper = cls(lora_name, module, STRENGTH, **options)
        with torch.no_grad():
            for key, value in wrapper.state_dict().items():
                if key != "alpha" and value.is_floating_point():
                    noise = torch.randn(value.shape, generator=generator) * 0.2
                    target = wrapper.get_parameter(key)
                    target.copy_(target + noise if key == "dora_scale" else noise)
        wrapped.append(wrapper)
        state |= {f"{lora_name}.{k}": v.detach().clone().contiguous() for k, v in wrapper.state_dict().items()}
    return state, wrapped


@pytest.mark.parametrize("variant", VARIANTS)
def test_lycoris_layers_equal_lycoris(models, variant):
    config, ours, reference = models
    reference = copy.deepcopy(reference)
    state, wrapped = lycoris_file(reference, variant, seed=len(variant))
    suffixes = {k.split(".", 1)[1] for k in state}
    unet_patches, _, unmatched = lora_patches(state, ours, None, STRENGTH, 0.0, "style.safetensors")
    assert unmatched == [] and {p.kind for p in unet_patches} == {
        "locon": {"lora"}, "dora": {"lora"}, "loha": {"loha"}, "lokr": {"lokr"}, "full": {"full"}}[variant.split()[0]]
    x, t, context = torch.randn(1, 4, 16, 16), torch.tensor([321.0]), torch.randn(1, 77, config.context_dim)
    with torch.no_grad():
        before = reference(x, t, encoder_hidden_states=context).sample
        for wrapper in wrapped:
            wrapper.apply_to()
        expected = reference(x, t, encoder_hidden_states=context).sample
        got = PatchedModule(ours, tuple(unet_patches))(x, t, context)
    assert relative_error(expected, before) > 1e-3, "the layers change the output"
    assert relative_error(got, expected) < 1e-4, (variant, sorted(suffixes))


def test_layer_of_another_shape_is_refused_by_name(models):
    _, ours, reference = models
    state, _ = lycoris_file(copy.deepcopy(reference), "loha", seed=1)
    key = next(k for k in state if k.endswith("hada_w1_a"))
    state[key] = torch.zeros(state[key].shape[0] + 3, state[key].shape[1])
    with pytest.raises(ModelFileError, match=r"style\.safetensors: layer lora_unet_.* another model family"):
        lora_patches(state, ours, None, 1.0, 0.0, "style.safetensors", "sd1")


def peft_names(kohya: dict, paths: dict) -> dict:
    """The kohya LoRA under PEFT names (``unet.<module path>.lora_A/B.weight``)."""
    out = {}
    for path in paths:
        key = "lora_unet_" + path.replace(".", "_")
        out[f"unet.{path}.lora_A.weight"] = kohya[key + ".lora_down.weight"]
        out[f"unet.{path}.lora_B.weight"] = kohya[key + ".lora_up.weight"]
    return out


def test_peft_and_old_diffusers_names_equal_kohyas(models):
    from diffusers.utils.state_dict_utils import convert_state_dict_to_kohya

    config, ours, reference = models
    paths = layers(reference, ("down_blocks", "mid_block", "up_blocks"))
    kohya = {k: v for k, v in random_lora(paths, seed=9).items() if not k.endswith(".alpha")}  # PEFT: no alpha
    peft = peft_names(kohya, paths)
    converted = convert_state_dict_to_kohya(peft)  # diffusers' own PEFT -> kohya renaming
    assert {k for k in converted if not k.endswith(".alpha")} == set(kohya)
    # diffusers' pre-PEFT attention-processor names
    old = {}
    for path in paths:
        if path.endswith(("attn1.to_q", "attn2.to_k", "attn1.to_out.0")):
            attn, proj = path.removesuffix(".0").rsplit(".", 1)
            key = "lora_unet_" + path.replace(".", "_")
            old[f"unet.{attn}.processor.{proj}_lora.down.weight"] = kohya[key + ".lora_down.weight"]
            old[f"unet.{attn}.processor.{proj}_lora.up.weight"] = kohya[key + ".lora_up.weight"]
    x, t, context = torch.randn(1, 4, 16, 16), torch.tensor([99.0]), torch.randn(1, 77, config.context_dim)
    outputs = {}
    for name, lora in (("kohya", kohya), ("peft", peft), ("converted", converted), ("old", old),
                       ("old as kohya", {k: v for k, v in kohya.items() if any(p in k for p in ("attn1_to_q", "attn2_to_k", "attn1_to_out_0"))})):
        patches, _, unmatched = lora_patches(lora, ours, None, 0.9, 0.0)
        assert unmatched == [], name
        with torch.no_grad():
            outputs[name] = PatchedModule(ours, tuple(patches))(x, t, context)
    assert torch.allclose(outputs["peft"], outputs["kohya"], rtol=0, atol=0)
    assert relative_error(outputs["converted"], outputs["kohya"]) < 1e-6
    assert torch.equal(outputs["old"], outputs["old as kohya"])
