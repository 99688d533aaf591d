"""GLIGEN (GLIGENLoader, GLIGENTextBoxApply): random scaled-down GLIGEN files written from
diffusers' GLIGEN parts (its gated U-Net, UNet2DConditionModel(attention_type="gated"), and
GLIGENTextBoundingboxProjection), their keys renamed to the original release's layout by the table
below (written from the original repository's names, not from nodeflow's). Our position net, gated
blocks and patched U-Net must equal diffusers' on the same boxes; the node stores the boxes as
ComfyUI does; a whole graph runs on a tiny checkpoint.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from nodeflow.engine.context import RunContext
from nodeflow.engine.executor import Executor
from nodeflow.engine.registry import Registry
from nodeflow.errors import ModelFileError, NodeInputError
from nodeflow.formats import load_workflow
from nodeflow.loading.gligen import load_gligen
from nodeflow.runtime.paths import Paths
from nodeflow.sampling.gligen import gligen_patches
from nodeflow_nodes.gligen import gligen_loader, gligen_textbox_apply
from tests.factories import write_tiny_checkpoint
from tests.test_unet_parity import diffusers_unet, random_unet, relative_error, tiny_config

diffusers = pytest.importorskip("diffusers")
from diffusers.models.attention import GatedSelfAttentionDense  # noqa: E402
from diffusers.models.embeddings import GLIGENTextBoundingboxProjection  # noqa: E402

KEY_DIM = 768  # SD1.x's grounding tokens: the gated blocks have 8 heads
CONFIG = tiny_config(channel_mult=(1, 2), num_res_blocks=1, transformer_depth=(1, 1), context_dim=KEY_DIM)

#: the original GLIGEN repository's names inside one gated block ("fuser") and the position net,
#: from diffusers' names (the same sub-module names: the table states them, it does not assume them)
FUSER_NAMES = {
    "linear.weight": "linear.weight", "linear.bias": "linear.bias",
    "attn.to_q.weight": "attn.to_q.weight", "attn.to_k.weight": "attn.to_k.weight",
    "attn.to_v.weight": "attn.to_v.weight",
    "attn.to_out.0.weight": "attn.to_out.0.weight", "attn.to_out.0.bias": "attn.to_out.0.bias",
    "ff.net.0.proj.weight": "ff.net.0.proj.weight", "ff.net.0.proj.bias": "ff.net.0.proj.bias",
    "ff.net.2.weight": "ff.net.2.weight", "ff.net.2.bias": "ff.net.2.bias",
    "norm1.weight": "norm1.weight", "norm1.bias": "norm1.bias",
    "norm2.weight": "norm2.weight", "norm2.bias": "norm2.bias",
    "alpha_attn": "alpha_attn", "alpha_dense": "alpha_dense",
}
POSITION_NAMES = {f"linears.{i}.{p}": f"position_net.linears.{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")}
POSITION_NAMES |= {"null_positive_feature": "position_net.null_positive_feature",
                   "null_position_feature": "position_net.null_position_feature"}
#: diffusers' transformer blocks of CONFIG's U-Net -> the original's (one res block per level:
#: input blocks 1 and 3, output blocks 0 to 3)
BLOCKS = {
    "down_blocks.0.attentions.0": "input_blocks.1.1", "down_blocks.1.attentions.0": "input_blocks.3.1",
    "mid_block.attentions.0": "middle_block.1",
    "up_blocks.0.attentions.0": "output_blocks.0.1", "up_blocks.0.attentions.1": "output_blocks.1.1",
    "up_blocks.1.attentions.0": "output_blocks.2.1", "up_blocks.1.attentions.1": "output_blocks.3.1",
}



def randomize(module: torch.nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1 + 0.05)


def original_fuser(fuser: torch.nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}.transformer_blocks.0.fuser.{FUSER_NAMES[k]}": v.contiguous()
            for k, v in fuser.state_dict().items()}


def original_position_net(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {POSITION_NAMES[k]: v.contiguous() for k, v in net.state_dict().items()}


@pytest.fixture(scope="module")
def parity(tmp_path_factory):
    """Our random U-Net, diffusers' gated U-Net with the same weights plus random GLIGEN parts,
    and those parts as an original-layout GLIGEN file loaded by us."""
    ours = random_unet(CONFIG)
    plain = diffusers_unet(CONFIG, ours.state_dict())
    settings = {k: v for k, v in plain.config.items() if not k.startswith("_")}
    gated = diffusers.UNet2DConditionModel(**settings | {"attention_type": "gated"}).eval()
    missing, unexpected = gated.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(".fuser." in k or k.startswith("position_net.") for k in missing)
    randomize(gated.position_net, 1)
    sd = original_position_net(gated.position_net)
    for number, (name, prefix) in enumerate(BLOCKS.items()):
        fuser = gated.get_submodule(name).transformer_blocks[0].fuser
        randomize(fuser, 10 + number)
        sd |= original_fuser(fuser, "model.diffusion_model." + prefix)
    path = tmp_path_factory.mktemp("gligen") / "gligen_tiny.safetensors"
    save_file(sd, str(path))
    return ours, gated, load_gligen(path)


def boxes_and_phrases(count: int = 2, seed: int = 3):
    generator = torch.Generator().manual_seed(seed)
    phrases = torch.randn(count, KEY_DIM, generator=generator)
    boxes = torch.tensor([[0.1, 0.2, 0.6, 0.9], [0.5, 0.0, 1.0, 0.5]])[:count]
    return phrases, boxes


def padded(phrases: torch.Tensor, boxes: torch.Tensor) -> dict[str, torch.Tensor]:
    """diffusers' GLIGEN inputs: 30 slots, a mask of the used ones."""
    n = phrases.shape[0]
    masks = torch.zeros(1, 30)
    masks[0, :n] = 1
    all_boxes, embeddings = torch.zeros(1, 30, 4), torch.zeros(1, 30, phrases.shape[1])
    all_boxes[0, :n], embeddings[0, :n] = boxes, phrases
    return {"boxes": all_boxes, "masks": masks, "positive_embeddings": embeddings}


def test_grounding_tokens_and_a_gated_block_equal_diffusers(parity):
    _, gated, gligen = parity
    phrases, boxes = boxes_and_phrases()
    with torch.no_grad():
        expected = gated.position_net(**padded(phrases, boxes))
        tokens = gligen.grounding_tokens(phrases, boxes)
        assert tokens.shape == (1, 30, KEY_DIM)
        assert relative_error(tokens, expected) < 1e-4
        x = torch.randn(2, 64, 64)  # (B, N, C) tokens of the 64-channel level
        reference = gated.get_submodule("down_blocks.1.attentions.0").transformer_blocks[0].fuser
        got = gligen.fuser_at(("input", 3, 0))(x, tokens.expand(2, -1, -1))
        assert relative_error(got, reference(x, expected.expand(2, -1, -1))) < 1e-4
        assert not torch.allclose(got, x, atol=1e-3)  # the block does something
    assert gligen.locations == (("input", 1, 0), ("input", 3, 0), ("middle", 0, 0), ("output", 0, 0),
                                ("output", 1, 0), ("output", 2, 0), ("output", 3, 0))


def test_the_patched_unet_equals_diffusers_gated_unet(parity):
    ours, gated, gligen = parity
    phrases, _ = boxes_and_phrases()
    # boxes (pooled, h, w, y, x) in latent pixels of a 16 x 16 latent, as GLIGENTextBoxApply stores them
    latent_boxes = [(phrases[:1], 8, 4, 2, 6), (phrases[1:], 16, 8, 0, 8)]
    fractions = torch.tensor([[6 / 16, 2 / 16, 10 / 16, 10 / 16], [8 / 16, 0.0, 1.0, 1.0]])
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(2, 4, 16, 16, generator=generator)
    t = torch.tensor([999.0, 250.0])
    context = torch.randn(2, 12, KEY_DIM, generator=generator)
    gligen_inputs = {k: v.expand(2, *v.shape[1:]) for k, v in padded(phrases, fractions).items()}
    with torch.no_grad():
        expected = gated(x, t, encoder_hidden_states=context, cross_attention_kwargs={"gligen": gligen_inputs}).sample
        got = ours(x, t, context, patches=gligen_patches(("position", gligen, latent_boxes), tuple(x.shape)))
        plain = ours(x, t, context)
    assert relative_error(got, expected) < 1e-4
    assert relative_error(plain, expected) > 1e-2  # the boxes change the prediction


# ----- the nodes, on a tiny SD1 checkpoint ----------------------------------------------------

def write_tiny_gligen(path, text_dim: int = 32, seed: int = 0) -> None:
    """A GLIGEN file for write_tiny_checkpoint's U-Net (transformers at input block 1 and output
    blocks 2, 3 (32 channels), and the middle (64)), phrases of its CLIP's width, from diffusers' parts."""
    torch.manual_seed(seed)
    position_net = GLIGENTextBoundingboxProjection(positive_len=text_dim, out_dim=KEY_DIM, feature_type="text-only")
    randomize(position_net, seed)
    sd = original_position_net(position_net)
    for number, (prefix, channels) in enumerate({"input_blocks.1.1": 32, "middle_block.1": 64,
                                                 "output_blocks.2.1": 32, "output_blocks.3.1": 32}.items()):
        fuser = GatedSelfAttentionDense(channels, KEY_DIM, 8, channels // 8)
        randomize(fuser, seed + 1 + number)
        sd |= original_fuser(fuser, prefix)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(path))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("gligen_tiny")
    write_tiny_checkpoint(root / "models" / "checkpoints" / "tiny.safetensors")
    write_tiny_gligen(root / "models" / "gligen" / "boxes.safetensors")
    return Paths(models_dirs=(root / "models",), output_dir=root / "out", input_dir=root / "in",
                 temp_dir=root / "tmp", assets_dir=root / "no-assets")


def test_textbox_apply_stores_boxes_in_latent_pixels_as_comfyui(tiny):
    from nodeflow_nodes.loaders import checkpoint_loader_simple

    ctx = RunContext(paths=tiny)
    _, clip, _ = checkpoint_loader_simple("tiny.safetensors", ctx)
    (model,) = gligen_loader("boxes.safetensors", ctx)
    base = [(torch.zeros(1, 77, 32), {"strength": 0.5})]
    (once,) = gligen_textbox_apply(base, clip, model, "a cat", 100, 60, 17, 40, ctx)
    (twice,) = gligen_textbox_apply(once, clip, model, "a dog", 64, 64, 0, 8, ctx)
    kind, stored_model, boxes = twice[0][1]["gligen"]
    assert kind == "position" and stored_model is model and twice[0][1]["strength"] == 0.5
    _, cat = clip.encode("a cat")
    assert [box[1:] for box in boxes] == [(60 // 8, 100 // 8, 40 // 8, 17 // 8), (8, 8, 1, 0)]
    assert torch.equal(boxes[0][0], cat) and not torch.equal(boxes[1][0], cat)
    assert "gligen" not in base[0][1] and len(once[0][1]["gligen"][2]) == 1  # inputs never change


def test_phrases_of_another_width_are_refused_naming_the_input(tiny, tmp_path):
    from nodeflow_nodes.loaders import checkpoint_loader_simple

    ctx = RunContext(paths=tiny)
    _, clip, _ = checkpoint_loader_simple("tiny.safetensors", ctx)
    write_tiny_gligen(tmp_path / "gligen" / "wide.safetensors", text_dim=KEY_DIM)
    (model,) = gligen_loader("wide.safetensors", RunContext(paths=Paths(models_dirs=(tmp_path,))))
    with pytest.raises(NodeInputError, match="32 wide.*768") as error:
        gligen_textbox_apply([(torch.zeros(1, 77, 32), {})], clip, model, "a cat", 64, 64, 0, 0, ctx)
    assert error.value.input_name == "clip"


def api_workflow(with_box: bool) -> dict:
    """checkpoint -> CLIPTextEncode -> (GLIGENTextBoxApply) -> KSampler -> VAEDecode -> PreviewImage."""
    positive = ["6", 0] if with_box else ["2", 0]
    graph = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny.safetensors"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a garden", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "5": {"class_type": "GLIGENLoader", "inputs": {"gligen_name": "boxes.safetensors"}},
        "6": {"class_type": "GLIGENTextBoxApply",
              "inputs": {"conditioning_to": ["2", 0], "clip": ["1", 1], "gligen_textbox_model": ["5", 0],
                         "text": "a red ball", "width": 32, "height": 24, "x": 8, "y": 16}},
        "7": {"class_type": "KSampler",
              "inputs": {"model": ["1", 0], "seed": 3, "steps": 2, "cfg": 4.0, "sampler_name": "euler",
                         "scheduler": "normal", "positive": positive, "negative": ["3", 0],
                         "latent_image": ["4", 0], "denoise": 1.0}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["7", 0], "vae": ["1", 2]}},
        "9": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}},
    }
    if not with_box:
        del graph["5"], graph["6"]
    return graph


def run_graph(paths, tmp_path, with_box: bool):
    registry = Registry.load(paths)
    file = tmp_path / f"graph_{with_box}.json"
    file.write_text(json.dumps(api_workflow(with_box)))
    return Executor(registry, paths).run(load_workflow(file, registry))


def test_a_graph_with_a_text_box_runs(tiny, tmp_path):
    import numpy as np
    from PIL import Image

    def image(with_box: bool):
        [saved] = run_graph(tiny, tmp_path, with_box).outputs["9"][0]["images"]
        return np.asarray(Image.open(saved)).astype(np.int16)

    pixels, plain = image(True), image(False)
    assert pixels.shape == (64, 64, 3) and pixels.std() > 0
    assert np.abs(pixels - plain).max() > 0  # the box reaches the image


def test_only_the_entry_with_boxes_runs_the_gated_blocks(tiny):
    from nodeflow_nodes.latent import empty_latent_image
    from nodeflow_nodes.loaders import checkpoint_loader_simple
    from nodeflow_nodes.sampling import ksampler
    from nodeflow_nodes.conditioning import clip_text_encode

    ctx = RunContext(paths=tiny)
    model, clip, _ = checkpoint_loader_simple("tiny.safetensors", ctx)
    (gligen,) = gligen_loader("boxes.safetensors", ctx)
    (positive,) = clip_text_encode("a garden", clip, ctx)
    (negative,) = clip_text_encode("", clip, ctx)
    (boxed,) = gligen_textbox_apply(positive, clip, gligen, "a ball", 32, 32, 0, 0, ctx)
    latent = empty_latent_image(64, 64, 1)[0]
    seen = []
    handle = model.unet.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append((args[0].shape[0], kwargs.get("patches"))), with_kwargs=True)
    try:
        (with_box,) = ksampler(model, 1, 2, 4.0, "euler", "normal", boxed, negative, latent, 1.0, ctx)
    finally:
        handle.remove()
    gated = [patches is not None and len(patches.middle_patch) == 1 for _, patches in seen]
    assert gated == [True, False] * 2  # per step: the positive (with the box) alone, then the negative
    assert all(batch == 1 for batch, _ in seen)
    (without,) = ksampler(model, 1, 2, 4.0, "euler", "normal", positive, negative, latent, 1.0, ctx)
    assert relative_error(with_box["samples"], without["samples"]) > 1e-4  # float noise: ~1e-7


@pytest.mark.parametrize("tensors, message", [
    ({"encoder.conv_in.weight": torch.zeros(2, 2)}, "not a GLIGEN model"),
    ({"position_net.null_positive_feature": torch.zeros(4), "position_net.linears.4.weight": torch.zeros(8, 4),
      "input_blocks.1.1.transformer_blocks.0.fuser.linear.weight": torch.zeros(16, 8)},
     "does not match its configuration"),
])
def test_bad_files_are_refused_in_one_line_naming_them(tmp_path, tensors, message):
    save_file(tensors, tmp_path / "bad.safetensors")
    with pytest.raises(ModelFileError, match=message) as error:
        load_gligen(tmp_path / "bad.safetensors")
    assert "bad.safetensors" in str(error.value) and "\n" not in str(error.value)
