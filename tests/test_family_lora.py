"""LoRA on SDXL (issue 14): kohya layouts for the U-Net and both text encoders.

A tiny SDXL checkpoint (tests/family_files.py) and a LoRA over every linear and convolution layer
of its U-Net (kohya names of the original module paths, ``lora_unet_input_blocks_4_1_...``, as
kohya's SDXL trainer writes them; or of diffusers' paths, ``lora_unet_down_blocks_1_...``) and of
the encoder layers of CLIP-L (``lora_te1_text_model_...``) and CLIP-G (``lora_te2_...``, in
transformers' names, as kohya's trainer names its CLIPTextModelWithProjection).

What LoraLoader gives must equal the weights merged directly: the U-Net with each update added to
its weights (ours, or diffusers' UNet2DConditionModel converted by diffusers' single-file reader for
the diffusers-named LoRA), the text towers merged in transformers' models and written back into a
checkpoint in the original (OpenCLIP) layout, which the loader reads as usual. A LoRA of another
family is refused naming the file and the layer.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file

from nodeflow.errors import ModelFileError
from nodeflow.loading.checkpoint import checkpoint_from_state_dict, load_checkpoint
from nodeflow.loading.lora import PatchedModule
from nodeflow.runtime.paths import Paths
from nodeflow_nodes.lora import lora_loader, lora_loader_model_only
from tests.family_files import (family_state_dict, open_clip_layout, prefixed, tiny_unet, transformers_layout,
                                write_family_checkpoint)
from tests.test_family_controlnet import inputs
from tests.test_lora import apply_directly, random_lora
from tests.test_unet_parity import random_unet, relative_error, tiny_config

diffusers = pytest.importorskip("diffusers")

PROMPT = "a red circle on a blue background"


def linear_layers(module: torch.nn.Module, prefixes: tuple[str, ...]) -> dict:
    return {n: m for n, m in module.named_modules()
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)) and n.startswith(prefixes)}


def text_layers(tower: torch.nn.Module) -> dict:
    """The encoder layers kohya trains (attention projections and MLPs) under kohya's names, which
    start with ``text_model.`` (transformers' CLIPTextModel may name its modules without it)."""
    return {("" if n.startswith("text_model.") else "text_model.") + n: m for n, m in tower.named_modules()
            if ".encoder.layers." in "." + n and n.endswith(("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"))}


def merge_text(tower: torch.nn.Module, lora: dict, strength: float, prefix: str) -> torch.nn.Module:
    """A copy of ``tower`` with the LoRA's ``prefix`` layers added to its weights."""
    merged = copy.deepcopy(tower)
    if not hasattr(merged, "text_model"):  # modules named without text_model.
        lora = {k.replace(prefix + "text_model_", prefix): v for k, v in lora.items()}
    apply_directly(merged, lora, strength, prefix=prefix)
    return merged


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory):
    root = tmp_path_factory.mktemp("sdxl-lora")
    path, sources = write_family_checkpoint(root / "models" / "checkpoints" / "tiny-xl.safetensors", "sdxl")
    (root / "models" / "loras").mkdir()
    ctx = SimpleNamespace(paths=Paths(models_dirs=(root / "models",)), device="cpu", dtype="auto")
    return load_checkpoint(path), sources, root, ctx


def save_lora(root, name: str, lora: dict) -> str:
    save_file({k: v.contiguous() for k, v in lora.items()}, str(root / "models" / "loras" / name))
    return name


def unet_call(unet, config, batch: int = 2):
    x, _, t, context, y, extra = inputs(config, batch)
    return (x, t, context, y), extra


def test_kohya_sdxl_lora_equals_merged_weights(sdxl):
    """U-Net (original names, label_emb included) and both text towers, through LoraLoader."""
    loaded, sources, root, ctx = sdxl
    unet = loaded.model.unet
    lora = random_lora(linear_layers(unet, ("input_blocks", "middle_block", "output_blocks", "label_emb")), seed=1)
    lora |= random_lora(text_layers(sources["clip_l"]), seed=2, prefix="lora_te1_")
    lora |= random_lora(text_layers(sources["clip_g"]), seed=3, prefix="lora_te2_")
    assert "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_up.weight" not in lora  # tiny: 2 levels
    assert "lora_unet_input_blocks_3_1_transformer_blocks_1_attn2_to_k.lora_up.weight" in lora
    name = save_lora(root, "xl-kohya.safetensors", lora)
    model, clip = lora_loader(loaded.model, loaded.clip, name, 0.8, 0.6, ctx)
    assert isinstance(model.unet, PatchedModule) and model.unet.base is unet
    unet_patches = len(model.unet.patches)
    text_patches = len(clip.model.patches)
    assert unet_patches + text_patches == len(lora) // 3  # every layer matched
    assert text_patches == 6 * (3 + 4)  # q, k, v, out, fc1, fc2 of CLIP-L's 3 layers and CLIP-G's 4
    assert {p.parameter.split(".")[0] for p in clip.model.patches} == {"clip_l", "clip_g"}

    # the directly merged weights, written back as a checkpoint
    merged_unet = copy.deepcopy(unet)
    apply_directly(merged_unet, lora, 0.8)
    merged_l = merge_text(sources["clip_l"], lora, 0.6, "lora_te1_")
    merged_g = merge_text(sources["clip_g"], lora, 0.6, "lora_te2_")
    sd, _ = family_state_dict("sdxl")
    sd |= prefixed("model.diffusion_model.", merged_unet.state_dict())
    sd |= prefixed("conditioner.embedders.0.transformer.", transformers_layout(merged_l))
    sd |= prefixed("conditioner.embedders.1.model.", open_clip_layout(merged_g))
    merged = checkpoint_from_state_dict(sd, root / "merged.safetensors")

    (x, t, context, y), _ = unet_call(unet, unet.config)
    with torch.no_grad():
        got, expected = model.unet(x, t, context, y=y), merged.model.unet(x, t, context, y=y)
        base = unet(x, t, context, y=y)
    assert relative_error(got, expected) < 1e-4 and relative_error(base, expected) > 1e-2
    cond, pooled = clip.encode(PROMPT)
    cond_m, pooled_m = merged.clip.encode(PROMPT)
    cond_0, pooled_0 = loaded.clip.encode(PROMPT)
    assert relative_error(cond, cond_m) < 1e-4 and relative_error(pooled, pooled_m) < 1e-4
    width_l = sources["clip_l"].config.hidden_size  # each tower changed: CLIP-L's part and CLIP-G's
    assert relative_error(cond[..., :width_l], cond_0[..., :width_l]) > 1e-3
    assert relative_error(cond[..., width_l:], cond_0[..., width_l:]) > 1e-3
    assert relative_error(pooled, pooled_0) > 1e-3
    with torch.no_grad():  # the loaded model never changed
        assert torch.equal(unet(x, t, context, y=y), base)


def test_diffusers_named_sdxl_lora_equals_editing_diffusers_weights(sdxl):
    """kohya names of diffusers' module paths (down_blocks / mid_block / up_blocks, add_embedding),
    against diffusers' own U-Net (read from our weights by diffusers' single-file converter)
    with the same update added to its weights."""
    from diffusers.loaders import single_file_utils as sfu

    from tests.test_unet_families import PREFIX, diffusers_config

    loaded, _, root, ctx = sdxl
    unet = loaded.model.unet
    checkpoint = {PREFIX + k: v for k, v in unet.state_dict().items()}
    # diffusers keys SDXL's "text_time" embedding on the real context widths; the tiny one (192) would
    # get a class embedding of the same MLP: state SDXL's, as diffusers' published SDXL config does
    config = diffusers_config(unet.config, checkpoint)
    config.pop("class_embed_type", None)
    config |= {"addition_embed_type": "text_time", "addition_time_embed_dim": 256,
               "projection_class_embeddings_input_dim": unet.config.adm_in_channels}
    reference = diffusers.UNet2DConditionModel(**config)
    reference.load_state_dict(sfu.convert_ldm_unet_checkpoint(checkpoint, config), strict=True)
    reference.eval()
    targets = linear_layers(reference, ("down_blocks", "mid_block", "up_blocks", "add_embedding"))
    assert {"add_embedding.linear_1", "add_embedding.linear_2", "down_blocks.0.downsamplers.0.conv",
            "up_blocks.0.upsamplers.0.conv", "mid_block.attentions.0.transformer_blocks.1.attn2.to_k"} <= set(targets)
    lora = random_lora(targets, seed=4)
    name = save_lora(root, "xl-diffusers.safetensors", lora)
    (model,) = lora_loader_model_only(loaded.model, name, 0.7, ctx)
    assert len(model.unet.patches) == len(targets)
    edited = copy.deepcopy(reference)
    apply_directly(edited, lora, 0.7)
    (x, t, context, y), extra = unet_call(unet, unet.config)
    with torch.no_grad():
        got = model.unet(x, t, context, y=y)
        expected = edited(x, t, encoder_hidden_states=context, **extra).sample
    assert relative_error(got, expected) < 1e-4


def test_sd1_lora_on_sdxl_is_refused_naming_file_and_layer(sdxl):
    loaded, _, root, ctx = sdxl
    sd1 = random_unet(tiny_config())
    lora = random_lora(linear_layers(sd1, ("input_blocks", "middle_block", "output_blocks")), seed=5)
    lora |= random_lora({"text_model.encoder.layers.0.self_attn.q_proj": torch.nn.Linear(48, 48)}, seed=6,
                        prefix="lora_te_")
    name = save_lora(root, "sd1-style.safetensors", lora)
    with pytest.raises(ModelFileError) as raised:
        lora_loader(loaded.model, loaded.clip, name, 1.0, 1.0, ctx)
    message = str(raised.value)
    assert "sd1-style.safetensors: layer lora_unet_" in message and "this SDXL model's weight" in message
    assert "another model family" in message and "\n" not in message


def test_tiny_sdxl_unet_is_sdxl_shaped():
    """The fixture's U-Net has what matters here: no attention at the top level, two transformer
    blocks below, linear projections and an ADM input."""
    config = tiny_unet("sdxl")
    assert config.transformer_depth == (0, 2) and config.use_linear_in_transformer and config.adm_in_channels


def test_peft_named_text_encoder_loras_equal_kohyas(sdxl):
    """diffusers/PEFT files name SDXL's towers ``text_encoder.`` and ``text_encoder_2.`` (module
    paths, ``lora_A``/``lora_B``): the same layers as kohya's te1/te2, per diffusers' own converter."""
    from diffusers.utils.state_dict_utils import convert_state_dict_to_kohya

    loaded, sources, root, ctx = sdxl
    kohya, peft = {}, {}
    for tower, kohya_prefix, peft_prefix, seed in (("clip_l", "lora_te1_", "text_encoder.", 4),
                                                   ("clip_g", "lora_te2_", "text_encoder_2.", 5)):
        paths = text_layers(sources[tower])
        lora = {k: v for k, v in random_lora(paths, seed=seed, prefix=kohya_prefix).items() if not k.endswith("alpha")}
        kohya |= lora
        for path in paths:
            key = kohya_prefix + path.replace(".", "_")
            peft[f"{peft_prefix}{path}.lora_A.weight"] = lora[key + ".lora_down.weight"]
            peft[f"{peft_prefix}{path}.lora_B.weight"] = lora[key + ".lora_up.weight"]
    assert {k for k in convert_state_dict_to_kohya(peft) if not k.endswith(".alpha")} == set(kohya)
    encoded = {}
    for name, lora in (("kohya", kohya), ("peft", peft)):
        _, clip = lora_loader(loaded.model, loaded.clip, save_lora(root, f"te-{name}.safetensors", lora), 0.0, 0.9, ctx)
        assert len(clip.model.patches) == len(kohya) // 2
        encoded[name] = clip.encode(PROMPT)
    assert torch.equal(encoded["peft"][0], encoded["kohya"][0]) and torch.equal(encoded["peft"][1], encoded["kohya"][1])
    assert relative_error(encoded["peft"][0], loaded.clip.encode(PROMPT)[0]) > 1e-3


def test_sd2_lora_on_unet_and_open_clip_text_tower(tmp_path):
    """SD2.x: kohya names of the original U-Net (linear proj_in/proj_out, 64-channel heads) and of the
    ViT-H text tower as transformers names it (``lora_te_text_model_encoder_layers_*``, what kohya's
    trainer writes for SD2): LoraLoader equals the weights merged directly."""
    path, sources = write_family_checkpoint(tmp_path / "models" / "checkpoints" / "sd2.safetensors", "sd2")
    loaded = load_checkpoint(path)
    unet = loaded.model.unet
    lora = random_lora(linear_layers(unet, ("input_blocks", "middle_block", "output_blocks")), seed=6)
    assert any("proj_in" in k for k in lora) and unet.input_blocks[1][1].proj_in.weight.ndim == 2  # linear
    lora |= random_lora(text_layers(sources["clip_h"]), seed=7, prefix="lora_te_")
    (tmp_path / "models" / "loras").mkdir()
    name = save_lora(tmp_path, "sd2.safetensors", lora)
    ctx = SimpleNamespace(paths=Paths(models_dirs=(tmp_path / "models",)), device="cpu", dtype="auto")
    model, clip = lora_loader(loaded.model, loaded.clip, name, 0.7, 0.9, ctx)
    assert len(model.unet.patches) + len(clip.model.patches) == len(lora) // 3
    merged_unet = copy.deepcopy(unet)
    apply_directly(merged_unet, lora, 0.7)
    merged_text = copy.deepcopy(loaded.clip.model)
    apply_directly(merged_text, lora, 0.9, prefix="lora_te_")
    (x, t, context, _), _ = unet_call(unet, unet.config)
    with torch.no_grad():
        assert relative_error(model.unet(x, t, context), merged_unet(x, t, context)) < 1e-4
    merged_clip = loaded.clip.clone_with(model=merged_text)
    assert relative_error(clip.encode(PROMPT)[0], merged_clip.encode(PROMPT)[0]) < 1e-4
    assert relative_error(clip.encode(PROMPT)[0], loaded.clip.encode(PROMPT)[0]) > 1e-3
