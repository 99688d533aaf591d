"""CLIPVisionLoader and CLIPVisionEncode (issue 16).

The tower: a random, scaled-down transformers CLIPVisionModelWithProjection is the reference; its
weights are written in OpenAI's / OpenCLIP's original layout by a converter written here from
OpenCLIP's names (not nodeflow's table), loaded through the node, and the three outputs compared
with transformers' own (image_embeds, last_hidden_state, hidden_states[-2]). The full-size towers'
configurations (ViT-L/14, ViT-H/14, ViT-bigG/14) are read from their key sets on the meta device.
The preprocessing: exact where it is defined exactly (8-bit rounding, normalisation, the crop
window) and against PIL's bicubic resize (the filter CLIP was trained with) within a tolerance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from nodeflow.engine.context import RunContext
from nodeflow.errors import ModelFileError, NodeInputError
from nodeflow.image.clip_vision import CLIP_MEAN, CLIP_STD, clip_preprocess
from nodeflow.loading.clip_vision import load_clip_vision, original_to_transformers, vision_config
from nodeflow.runtime.paths import Paths
from nodeflow_nodes.clip_vision import clip_vision_encode, clip_vision_loader

SMALL = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=3, num_attention_heads=2, image_size=32,
             patch_size=8, projection_dim=48, hidden_act="gelu", layer_norm_eps=1e-5)


def reference_model(seed: int = 0) -> CLIPVisionModelWithProjection:
    torch.manual_seed(seed)
    model = CLIPVisionModelWithProjection(CLIPVisionConfig(**SMALL)).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():  # layer norms off 1/0, every weight random
            base = 1.0 if "norm" in name and name.endswith("weight") else 0.0
            parameter.copy_(base + torch.randn_like(parameter) * (0.1 if base else 0.05))
    return model


def to_original(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers' names -> OpenCLIP's ``visual.*`` (OpenCLIP's VisionTransformer attribute names:
    conv1, class_embedding, positional_embedding, ln_pre, transformer.resblocks[i] with ln_1, attn
    (nn.MultiheadAttention: in_proj_weight = [q; k; v]), ln_2, mlp.c_fc, mlp.c_proj; ln_post; proj = x @ proj)."""
    embeddings, encoder = "vision_model.embeddings.", "vision_model.encoder.layers."
    out = {
        "visual.conv1.weight": sd[embeddings + "patch_embedding.weight"],
        "visual.class_embedding": sd[embeddings + "class_embedding"],
        "visual.positional_embedding": sd[embeddings + "position_embedding.weight"],
        "visual.ln_pre.weight": sd["vision_model.pre_layrnorm.weight"],
        "visual.ln_pre.bias": sd["vision_model.pre_layrnorm.bias"],
        "visual.ln_post.weight": sd["vision_model.post_layernorm.weight"],
        "visual.ln_post.bias": sd["vision_model.post_layernorm.bias"],
        "visual.proj": sd["visual_projection.weight"].T.contiguous(),
    }
    layers = {int(key[len(encoder):].split(".")[0]) for key in sd if key.startswith(encoder)}
    for i in layers:
        theirs, ours = f"{encoder}{i}.", f"visual.transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[ours + f"attn.in_proj_{kind}"] = torch.cat([sd[theirs + f"self_attn.{p}_proj.{kind}"] for p in "qkv"])
            out[ours + f"attn.out_proj.{kind}"] = sd[theirs + f"self_attn.out_proj.{kind}"]
            out[ours + f"ln_1.{kind}"] = sd[theirs + f"layer_norm1.{kind}"]
            out[ours + f"ln_2.{kind}"] = sd[theirs + f"layer_norm2.{kind}"]
            out[ours + f"mlp.c_fc.{kind}"] = sd[theirs + f"mlp.fc1.{kind}"]
            out[ours + f"mlp.c_proj.{kind}"] = sd[theirs + f"mlp.fc2.{kind}"]
    return out


def text_tower_keys() -> dict[str, torch.Tensor]:
    """What a whole OpenCLIP file has beside the image tower (ignored by the loader)."""
    return {"transformer.resblocks.0.attn.in_proj_weight": torch.zeros(96, 32),
            "token_embedding.weight": torch.zeros(10, 32), "positional_embedding": torch.zeros(7, 32),
            "ln_final.weight": torch.ones(32), "text_projection": torch.zeros(32, 8), "logit_scale": torch.tensor(4.6)}


def image(batch=2, height=40, width=56, channels=3, seed=1) -> torch.Tensor:
    return torch.rand(batch, height, width, channels, generator=torch.Generator().manual_seed(seed))


def load_through_node(tmp_path: Path, name: str, tensors: dict[str, torch.Tensor]):
    folder = tmp_path / "clip_vision"
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, folder / name)
    return clip_vision_loader(name, RunContext(paths=Paths(models_dirs=(tmp_path,))))[0]


def reference_outputs(model, pixels: torch.Tensor):
    with torch.no_grad():
        out = model(pixel_values=pixels, output_hidden_states=True)
    return out.image_embeds, out.last_hidden_state, out.hidden_states[-2]


# --- the tower ------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["open_clip", "open_clip_whole_model", "transformers"])
def test_the_tower_equals_transformers_in_every_layout(tmp_path, layout):
    reference = reference_model()
    sd = reference.state_dict()
    tensors = {"open_clip": to_original(sd), "open_clip_whole_model": to_original(sd) | text_tower_keys(),
               "transformers": sd}[layout]
    clip_vision = load_through_node(tmp_path, f"{layout}.safetensors", tensors)
    assert clip_vision.model.config.hidden_act == "gelu" and clip_vision.image_size == 32
    picture = image()
    [output] = clip_vision_encode(clip_vision, picture, "center")
    expected = reference_outputs(reference, clip_preprocess(picture, 32, crop=True))
    for got, want in zip((output.image_embeds, output.last_hidden_state, output.penultimate_hidden_states), expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert output["image_embeds"].shape == (2, 48) and output.last_hidden_state.shape == (2, 17, 128)
    assert (output.last_hidden_state - output.penultimate_hidden_states).abs().max() > 1e-2


def test_crop_none_encodes_the_whole_image_squeezed(tmp_path):
    reference = reference_model()
    clip_vision = load_through_node(tmp_path, "t.safetensors", to_original(reference.state_dict()))
    picture = image(height=32, width=64)
    [center] = clip_vision_encode(clip_vision, picture, "center")
    [whole] = clip_vision_encode(clip_vision, picture, "none")
    expected = reference_outputs(reference, clip_preprocess(picture, 32, crop=False))[0]
    torch.testing.assert_close(whole.image_embeds, expected, rtol=1e-5, atol=1e-5)
    assert (center.image_embeds - whole.image_embeds).abs().max() > 1e-3
    with pytest.raises(NodeInputError, match="crop"):
        clip_vision_encode(clip_vision, picture, "left")


@pytest.mark.parametrize("width,layers,mlp,projection,heads,act", [
    (1024, 24, 4096, 768, 16, "quick_gelu"),  # OpenAI ViT-L/14
    (1280, 32, 5120, 1024, 16, "gelu"),  # OpenCLIP ViT-H/14
    (1664, 48, 8192, 1280, 16, "gelu"),  # OpenCLIP ViT-bigG/14
])
def test_full_size_towers_get_comfyuis_configurations(width, layers, mlp, projection, heads, act):
    config = CLIPVisionConfig(hidden_size=width, intermediate_size=mlp, num_hidden_layers=layers,
                              num_attention_heads=heads, image_size=224, patch_size=14, projection_dim=projection)
    with torch.device("meta"):
        sd = CLIPVisionModelWithProjection(config).state_dict()
    sd = {k: v for k, v in sd.items() if not k.endswith("position_ids")}
    for tensors in (sd, original_to_transformers(
            {k.removeprefix("visual."): v for k, v in to_original(sd).items()}, Path("x"))):
        found = vision_config(tensors, Path("x"))
        assert (found.hidden_size, found.num_hidden_layers, found.intermediate_size, found.projection_dim,
                found.num_attention_heads, found.hidden_act, found.image_size, found.patch_size) == \
            (width, layers, mlp, projection, heads, act, 224, 14)
        assert set(tensors) == set(sd)


def test_not_a_clip_vision_file_is_one_line_naming_it(tmp_path):
    save_file({"encoder.conv_in.weight": torch.zeros(4, 3, 3, 3)}, tmp_path / "vae.safetensors")
    with pytest.raises(ModelFileError, match=r"vae\.safetensors: not a CLIP vision model"):
        load_clip_vision(tmp_path / "vae.safetensors")
    tensors = to_original(reference_model().state_dict())
    tensors["visual.transformer.resblocks.0.attn.rogue"] = torch.zeros(1)
    save_file(tensors, tmp_path / "odd.safetensors")
    with pytest.raises(ModelFileError, match=r"odd\.safetensors: unknown key 'transformer.resblocks.0.attn.rogue'"):
        load_clip_vision(tmp_path / "odd.safetensors")


# --- the preprocessing -----------------------------------------------------------------------------

def normalised(x: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) in 0..1 -> 8-bit-rounded, CLIP-normalised (B, 3, H, W)."""
    x = (x * 255).round().clamp(0, 255) / 255
    return (x - torch.tensor(CLIP_MEAN)).div(torch.tensor(CLIP_STD)).movedim(-1, 1)


def test_an_image_of_the_towers_size_is_only_rounded_and_normalised():
    picture = image(height=32, width=32)
    torch.testing.assert_close(clip_preprocess(picture, 32), normalised(picture), rtol=0, atol=1e-6)


def test_center_crop_keeps_the_middle_of_the_longer_side():
    picture = image(height=32, width=80)  # the shorter side is already the size: only the crop acts
    torch.testing.assert_close(clip_preprocess(picture, 32), normalised(picture[:, :, 24:56]), rtol=0, atol=1e-5)
    tall = image(height=80, width=32)
    torch.testing.assert_close(clip_preprocess(tall, 32), normalised(tall[:, 24:56]), rtol=0, atol=1e-5)


def test_an_alpha_channel_is_dropped():
    picture = image(height=32, width=32, channels=4)
    torch.testing.assert_close(clip_preprocess(picture, 32), normalised(picture[..., :3]), rtol=0, atol=1e-6)


def smooth_image(height: int, width: int) -> torch.Tensor:
    y, x = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    return torch.stack([0.5 + 0.4 * torch.sin(6 * x + 2 * y), y, 0.5 + 0.4 * torch.cos(5 * y - 3 * x)], -1)[None]


def pil_reference(picture: torch.Tensor, size: int, crop: bool) -> torch.Tensor:
    """CLIP's own preprocessing: PIL bicubic resize of the 8-bit image, centre crop, normalise."""
    pixels = Image.fromarray((picture[0].numpy() * 255).round().astype(np.uint8))
    width, height = pixels.size
    if crop:
        scale = size / min(width, height)
        pixels = pixels.resize((round(width * scale), round(height * scale)), Image.BICUBIC)
        left, top = (pixels.width - size) // 2, (pixels.height - size) // 2
        pixels = pixels.crop((left, top, left + size, top + size))
    else:
        pixels = pixels.resize((size, size), Image.BICUBIC)
    return normalised(torch.from_numpy(np.array(pixels)).float()[None] / 255)


@pytest.mark.parametrize("height,width,crop", [(96, 160, True), (160, 96, True), (96, 160, False), (20, 28, True)])
def test_the_resize_is_clips_bicubic(height, width, crop):
    picture = smooth_image(height, width)
    got, expected = clip_preprocess(picture, 64, crop), pil_reference(picture, 64, crop)
    assert got.shape == expected.shape == (1, 3, 64, 64)
    # torch's antialiased bicubic (a = -0.75) and PIL's (a = -0.5) differ by at most one 8-bit level on
    # smooth images (measured: mean 0.18-0.26 levels; a mirrored image differs by ~50)
    difference = (got - expected) * torch.tensor(CLIP_STD).view(1, 3, 1, 1) * 255  # in 8-bit levels
    assert difference.abs().mean() < 0.4 and difference.abs().max() <= 1.01
