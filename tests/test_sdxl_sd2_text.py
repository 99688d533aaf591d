"""SD2.x and SDXL text encoding: OpenCLIP towers read from the original layout, and ComfyUI's
conventions for them (shared/reference/comfyui-conventions.md 14-16, 18, 21).

Two independent readers of one file, written test-side (tests/family_files.py) from random
transformers models: diffusers' single-file utilities (convert_open_clip_checkpoint,
create_diffusers_clip_model_from_ldm) must give back exactly the source models — so the test
writer's key names are the real layout's — and nodeflow's loader (load_checkpoint) must encode
as diffusers' pipelines do with those models, fp32, relative error under 1e-4:

- SDXL: CLIP-L's and CLIP-G's penultimate hidden states (no final LayerNorm), concatenated L then
  G; the pooled output is CLIP-G's ``text_embeds`` (final state at the first end token, x @ P);
  CLIP-L padded with 49407, CLIP-G with 0 (StableDiffusionXLPipeline.encode_prompt's tokenizers);
- SD2: diffusers' SD2 text encoder is OpenCLIP ViT-H without its last block (its reader drops
  ``resblocks.23``), whose last_hidden_state is the penultimate layer through the final norm;
  padded with 0;
- the SDXL refiner: CLIP-G alone, as in SDXL.
"""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import save_file

from nodeflow.loading.checkpoint import load_checkpoint
from nodeflow.text.families import DualTextEncoder
from nodeflow.text.prompt_weights import PromptError
from nodeflow.text.tokenizer import default_tokenizer_dir
from tests.family_files import (TINY_G, TINY_H, TINY_L, VIT_BIGG, VIT_H, VIT_L, clip_config, open_clip_layout,
                                prefixed, random_text_model, transformers_layout, write_family_checkpoint)

transformers = pytest.importorskip("transformers")
diffusers = pytest.importorskip("diffusers")
from diffusers.loaders import single_file_utils as sfu  # noqa: E402

PROMPT = "a photo of an astronaut riding a horse, café"
G_PREFIX, L_PREFIX, H_PREFIX = "conditioner.embedders.1.model.", "conditioner.embedders.0.transformer.", "cond_stage_model.model."
REFINER_PREFIX = "conditioner.embedders.0.model."


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max() / b.float().abs().max())


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("families")
    return {family: write_family_checkpoint(folder / f"{family}.safetensors", family)
            for family in ("sd2", "sdxl", "sdxl-refiner")}


@pytest.fixture(scope="module")
def loaded(files):
    return {family: load_checkpoint(path) for family, (path, _) in files.items()}


def reference_ids(prompt: str, pad: str) -> torch.Tensor:
    """Token ids as diffusers' pipelines make them: transformers' CLIPTokenizer padded to 77 with
    ``pad`` ("<|endoftext|>" for CLIP-L, "!" = 0 for the OpenCLIP towers)."""
    folder = default_tokenizer_dir()
    tokenizer = transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), pad_token=pad)
    return tokenizer(prompt, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids


def unwrapped(model: torch.nn.Module, converted: dict) -> dict:
    """diffusers' keys carry ``text_model.``; transformers >= 5.6 flattened CLIPTextModel (as
    create_diffusers_clip_model_from_ldm also handles)."""
    if hasattr(model, "text_model"):
        return converted
    return {k.removeprefix("text_model."): v for k, v in converted.items()}


def read_open_clip_strictly(checkpoint: dict, prefix: str, sizes: dict, cls=None):
    """diffusers' conversion of an OpenCLIP tower, loaded strictly into a fresh transformers model."""
    cls = cls or transformers.CLIPTextModelWithProjection
    with torch.device("meta"):
        template = cls(clip_config(sizes))
    converted = unwrapped(template, sfu.convert_open_clip_checkpoint(template, checkpoint, prefix=prefix))
    model = cls(clip_config(sizes)).eval()
    missing, unexpected = model.load_state_dict(converted, strict=False)
    assert not unexpected and all(k.endswith("position_ids") for k in missing), (missing, unexpected)
    return model


def assert_same_weights(model: torch.nn.Module, source: torch.nn.Module):
    """Every tensor of ``model`` equals the source's of the same name (``text_model.`` aside)."""
    expected = {k.removeprefix("text_model."): v for k, v in source.state_dict().items()}
    for key, value in model.state_dict().items():
        assert torch.equal(value, expected[key.removeprefix("text_model.")]), key


@pytest.fixture(scope="module")
def references(files, tmp_path_factory):
    """The towers as diffusers' single-file reader builds them from the files (checked equal to the
    sources, so a wrong key name in the test writer cannot hide)."""
    folder = tmp_path_factory.mktemp("configs")
    sd2 = sfu.load_single_file_checkpoint(str(files["sd2"][0]))
    xl = sfu.load_single_file_checkpoint(str(files["sdxl"][0]))
    refiner = sfu.load_single_file_checkpoint(str(files["sdxl-refiner"][0]))
    # SD2: diffusers drops resblocks.23 and text_projection by name: a 23-layer CLIPTextModel
    h23 = read_open_clip_strictly(sd2, H_PREFIX, {**TINY_H, "num_hidden_layers": 23}, transformers.CLIPTextModel)
    assert_same_weights(h23, files["sd2"][1]["clip_h"])
    g = read_open_clip_strictly(xl, G_PREFIX, TINY_G)
    assert_same_weights(g, files["sdxl"][1]["clip_g"])
    g_refiner = read_open_clip_strictly(refiner, REFINER_PREFIX, TINY_G)
    assert_same_weights(g_refiner, files["sdxl-refiner"][1]["clip_g"])
    # the public entry point too (it loads non-strictly: compare every weight)
    for name, cls, sizes in (("l", transformers.CLIPTextModel, TINY_L),
                             ("g", transformers.CLIPTextModelWithProjection, TINY_G)):
        clip_config(sizes).save_pretrained(folder / name)
        built = sfu.create_diffusers_clip_model_from_ldm(cls, xl, config=str(folder / name), local_files_only=True,
                                                         torch_dtype=torch.float32)
        assert_same_weights(built, files["sdxl"][1][f"clip_{name}"])
    return {"h23": h23, "g": g, "g_refiner": g_refiner, "l": files["sdxl"][1]["clip_l"]}


@torch.no_grad()
def sdxl_reference(references, prompt: str):
    """StableDiffusionXLPipeline.encode_prompt's computation (one window, no weights)."""
    out_l = references["l"](input_ids=reference_ids(prompt, "<|endoftext|>"), output_hidden_states=True)
    out_g = references["g"](input_ids=reference_ids(prompt, "!"), output_hidden_states=True)
    return torch.cat([out_l.hidden_states[-2], out_g.hidden_states[-2]], dim=-1), out_g.text_embeds


def test_sdxl_matches_diffusers(loaded, references):
    clip = loaded["sdxl"].clip
    assert isinstance(clip, DualTextEncoder) and clip.width == 64 + 128
    cond, pooled = clip.encode(PROMPT)
    expected_cond, expected_pooled = sdxl_reference(references, PROMPT)
    assert cond.shape == (1, 77, 192) and pooled.shape == (1, 96)
    assert relative_error(cond, expected_cond) < 1e-4 and relative_error(pooled, expected_pooled) < 1e-4
    # convention 14: L first, then G on the feature axis
    assert relative_error(cond[..., :64], expected_cond[..., :64]) < 1e-4


@torch.no_grad()
def test_sd2_matches_diffusers(loaded, references, files):
    clip = loaded["sd2"].clip
    cond, pooled = clip.encode(PROMPT)
    ids = reference_ids(PROMPT, "!")
    assert relative_error(cond, references["h23"](input_ids=ids).last_hidden_state) < 1e-4
    # the projected pooled output of the whole (24-layer) tower
    assert relative_error(pooled, files["sd2"][1]["clip_h"](input_ids=ids).text_embeds) < 1e-4


@torch.no_grad()
def test_refiner_matches_diffusers(loaded, references):
    cond, pooled = loaded["sdxl-refiner"].clip.encode(PROMPT)
    out = references["g_refiner"](input_ids=reference_ids(PROMPT, "!"), output_hidden_states=True)
    assert relative_error(cond, out.hidden_states[-2]) < 1e-4 and relative_error(pooled, out.text_embeds) < 1e-4


def test_pad_tokens_are_per_encoder(loaded):
    """Convention 16 (and 21): CLIP-L pads with 49407, OpenCLIP towers with 0."""
    windows = loaded["sdxl"].clip.windows("a cat")
    assert [t for t, _ in windows["clip_l"][0][4:]] == [49407] * 73
    assert [t for t, _ in windows["clip_g"][0][:4]] == [49406, 320, 2368, 49407]
    assert [t for t, _ in windows["clip_g"][0][4:]] == [0] * 73
    assert [t for t, _ in loaded["sd2"].clip.windows("a cat")[0][4:]] == [0] * 73
    assert [t for t, _ in loaded["sdxl-refiner"].clip.windows("a cat")[0][4:]] == [0] * 73


@torch.no_grad()
def test_the_pad_token_changes_the_result(loaded, references):
    cond, _ = loaded["sdxl"].clip.encode("a cat")
    padded_with_end = references["g"](input_ids=reference_ids("a cat", "<|endoftext|>"), output_hidden_states=True)
    g = cond[..., 64:]
    assert relative_error(g[:, :4], padded_with_end.hidden_states[-2][:, :4]) < 1e-4  # causal: same prefix
    assert relative_error(g[:, 4:], padded_with_end.hidden_states[-2][:, 4:]) > 1e-2


@torch.no_grad()
def test_sdxl_layers_skip_the_final_norm_and_sd2_keeps_it(loaded, references, files):
    """Convention 14 (SDXL: penultimate, no final LayerNorm) against 21 (SD2: with it)."""
    g = references["g"]
    out = g(input_ids=reference_ids(PROMPT, "!"), output_hidden_states=True)
    ours = loaded["sdxl"].clip.encode(PROMPT)[0][..., 64:]
    normed = g.text_model.final_layer_norm(out.hidden_states[-2])
    assert relative_error(ours, out.hidden_states[-2]) < 1e-4 and relative_error(ours, normed) > 1e-2
    h = files["sd2"][1]["clip_h"]
    out = h(input_ids=reference_ids(PROMPT, "!"), output_hidden_states=True)
    ours = loaded["sd2"].clip.encode(PROMPT)[0]
    assert relative_error(ours, h.text_model.final_layer_norm(out.hidden_states[-2])) < 1e-4
    assert relative_error(ours, out.hidden_states[-2]) > 1e-2


@torch.no_grad()
def test_pooled_is_the_first_end_token_times_the_stored_projection(loaded, files):
    """Convention 15: last layer, final norm, first 49407, then x @ P with P as the file stores it
    (D, P) — read from the file's own tensor, not from a model."""
    from safetensors.torch import load_file

    path, sources = files["sdxl"]
    projection = load_file(str(path))[G_PREFIX + "text_projection"]  # (128, 96)
    g = sources["clip_g"]
    ids = reference_ids("a red cat", "!")  # [49406, a, red, cat, 49407, 0 ...]: first end token at 4
    last = g(input_ids=ids, output_hidden_states=True).last_hidden_state  # normalised last layer
    _, pooled = loaded["sdxl"].clip.encode("a red cat")
    assert relative_error(pooled, last[:, 4] @ projection) < 1e-4
    assert relative_error(pooled, last[:, 5] @ projection) > 1e-2
    # long prompts: the first window's
    cond, pooled_long = loaded["sdxl"].clip.encode("a red cat " + "dog " * 80)
    assert cond.shape == (1, 154, 192)
    first = reference_ids("a red cat " + "dog " * 72, "!")
    expected = g(input_ids=first).text_embeds
    assert relative_error(pooled_long, expected) < 1e-4


@torch.no_grad()
def test_clip_set_last_layer_sets_both_towers(loaded, references):
    """ComfyUI's SDXLClipModel passes stop_at_clip_layer to both towers: within a tower's depth its
    layer without the final norm (-1: the last layer, unnormalised); beyond it, that tower's
    normalised last layer. Through the CLIPSetLastLayer node, which reads the depth from
    clip.model.config (CLIP-G's, the deeper)."""
    from nodeflow_nodes.loaders import clip_set_last_layer

    clip = loaded["sdxl"].clip
    assert clip.model.config.num_hidden_layers == TINY_G["num_hidden_layers"]
    out_l = references["l"](input_ids=reference_ids(PROMPT, "<|endoftext|>"), output_hidden_states=True)
    out_g = references["g"](input_ids=reference_ids(PROMPT, "!"), output_hidden_states=True)
    (last,) = clip_set_last_layer(clip, -1)
    cond = last.encode(PROMPT)[0]
    assert last.model is clip.model and clip.layer_idx == -2
    assert relative_error(cond[..., :64], out_l.hidden_states[-1]) < 1e-4
    assert relative_error(cond[..., 64:], out_g.hidden_states[-1]) < 1e-4
    (deep,) = clip_set_last_layer(clip, -4)  # CLIP-L has 3 layers, CLIP-G 4
    cond = deep.encode(PROMPT)[0]
    assert relative_error(cond[..., :64], out_l.last_hidden_state) < 1e-4
    assert relative_error(cond[..., 64:], out_g.hidden_states[1]) < 1e-4
    # SD2: -1 is the last layer through the final norm, like SD1
    sd2 = loaded["sd2"].clip
    assert sd2.layer_idx == -2
    (sd2_last,) = clip_set_last_layer(sd2, -1)
    torch.testing.assert_close(sd2_last.encode(PROMPT)[0], sd2.clone_with(layer_idx=None).encode(PROMPT)[0])


@torch.no_grad()
def test_weights_and_the_empty_prompt_per_tower(loaded, references):
    """Convention 18 and ComfyUI's weighting, each tower relative to its own empty prompt (padded
    with its own pad token)."""
    clip = loaded["sdxl"].clip
    weighted, pooled = clip.encode("a (red:1.5) cat")
    plain, plain_pooled = sdxl_reference(references, "a red cat")
    empty, _ = sdxl_reference(references, "")
    expected = plain.clone()
    expected[0, 2] = empty[0, 2] + (plain[0, 2] - empty[0, 2]) * 1.5
    assert relative_error(weighted, expected) < 1e-4 and relative_error(pooled, plain_pooled) < 1e-4
    assert relative_error(clip.encode("")[0], empty) < 1e-4


def word_vectors(model, text: str) -> torch.Tensor:
    from nodeflow.text.tokenizer import load_tokenizer

    ids = torch.tensor(load_tokenizer().encode(text))
    return model.get_input_embeddings().weight[ids].detach().clone()


def test_textual_inversion_with_clip_l_and_clip_g_vectors(loaded, files, tmp_path):
    from nodeflow.loading.embeddings import EmbeddingFinder

    sources = files["sdxl"][1]
    save_file({"clip_l": word_vectors(sources["clip_l"], "red circle"),
               "clip_g": word_vectors(sources["clip_g"], "red circle")}, str(tmp_path / "rc.safetensors"))
    save_file({"emb_params": torch.zeros(2, 64)}, str(tmp_path / "sd1style.safetensors"))
    finder = EmbeddingFinder([tmp_path])
    clip = loaded["sdxl"].clip
    cond, pooled = clip.encode("a embedding:rc on a (embedding:rc:1.2) background", finder)
    expected, expected_pooled = clip.encode("a red circle on a (red circle:1.2) background")
    assert relative_error(cond, expected) < 1e-5 and relative_error(pooled, expected_pooled) < 1e-5
    with pytest.raises(PromptError, match="64 wide, but this text encoder's tokens are 128"):
        clip.encode("a embedding:sd1style", finder)  # an SD1-style file: CLIP-G cannot use it


def test_sdxl_text_encoder_lora_te1_te2(loaded, tmp_path):
    """kohya SDXL LoRAs: lora_te1_* patches CLIP-L, lora_te2_* CLIP-G; equal to merged weights."""
    import copy

    from nodeflow.engine.context import RunContext
    from nodeflow.runtime.paths import Paths
    from nodeflow_nodes.lora import lora_loader
    from tests.test_lora import apply_directly, random_lora

    clip = loaded["sdxl"].clip
    towers = clip.model
    l_layers = {"text_model." + n: m for n, m in towers.clip_l.named_modules() if n.endswith("q_proj")}
    g_layers = {n: m for n, m in towers.clip_g.named_modules() if n.endswith("fc1")}
    lora = random_lora(l_layers, seed=1, prefix="lora_te1_") | random_lora(g_layers, seed=2, prefix="lora_te2_")
    (tmp_path / "loras").mkdir()
    save_file({k: v.contiguous() for k, v in lora.items()}, str(tmp_path / "loras" / "xl.safetensors"))
    _, patched = lora_loader(None, clip, "xl.safetensors", 0.0, 0.8, RunContext(paths=Paths(models_dirs=(tmp_path,))))
    assert len(patched.model.patches) == len(l_layers) + len(g_layers) and patched.model.base is towers
    merged = copy.deepcopy(towers)
    apply_directly(merged.clip_l, {k.replace("lora_te1_text_model_", "lora_te1_"): v for k, v in lora.items()},
                   0.8, prefix="lora_te1_")
    apply_directly(merged.clip_g, lora, 0.8, prefix="lora_te2_")
    expected = clip.clone_with(model=merged).encode(PROMPT)
    result = patched.encode(PROMPT)
    assert relative_error(result[0], expected[0]) < 1e-5 and relative_error(result[1], expected[1]) < 1e-5
    assert relative_error(result[0], clip.encode(PROMPT)[0]) > 1e-3  # it did change


@pytest.mark.parametrize("family, towers", [("sd2", {"clip_h": VIT_H}),
                                            ("sdxl", {"clip_l": VIT_L, "clip_g": VIT_BIGG}),
                                            ("sdxl-refiner", {"clip_g": VIT_BIGG})])
def test_full_size_towers_map_every_key_on_meta(family, towers):
    """The real towers' key sets and shapes (ViT-H/14 24 x 1024, bigG/14 32 x 1280 with a 1280
    projection, ViT-L/14 12 x 768), no weights: written in the original layout, read by diffusers'
    converter strictly into meta models, and by our loader, whose configs must be the real ones."""
    from nodeflow.loading.families import FAMILIES, build_clip, take_text_parts
    from nodeflow.text.tokenizer import load_tokenizer

    sd, expected_models = {}, {}
    for tower, sizes in towers.items():
        prefix = FAMILIES[family].towers[tower][0]
        cls = transformers.CLIPTextModelWithProjection if "projection_dim" in sizes else transformers.CLIPTextModel
        with torch.device("meta"):
            model = expected_models[tower] = cls(clip_config(sizes))
        if tower == "clip_l":
            sd |= {prefix + ("" if k.startswith("text_model.") else "text_model.") + k: v
                   for k, v in model.state_dict().items()}
            continue
        sd |= {prefix + k: v for k, v in open_clip_layout(model).items()}
        # diffusers' SD2 reader drops the last block and the projection by name: 23 layers, no projection
        target_cls, target_sizes = cls, sizes
        if family == "sd2":
            target_cls, target_sizes = transformers.CLIPTextModel, {**sizes, "num_hidden_layers": 23}
        with torch.device("meta"):
            target = target_cls(clip_config(target_sizes))
        converted = unwrapped(target, sfu.convert_open_clip_checkpoint(target, sd, prefix=prefix))
        missing, unexpected = target.load_state_dict(converted, strict=False, assign=True)
        assert not unexpected and all(k.endswith("position_ids") for k in missing), (missing, unexpected)
        assert all(value.shape == converted[key].shape for key, value in target.state_dict().items() if key in converted)
    clip = build_clip(family, take_text_parts(FAMILIES[family], sd), load_tokenizer(), torch.device("meta"),
                      torch.float32)
    assert not sd  # every text key was taken
    for tower, sizes in towers.items():
        model = clip.tower(tower).model if isinstance(clip, DualTextEncoder) else clip.model
        config = model.config
        assert (config.hidden_size, config.num_hidden_layers, config.intermediate_size, config.num_attention_heads,
                config.hidden_act) == (sizes["hidden_size"], sizes["num_hidden_layers"], sizes["intermediate_size"],
                                       sizes["hidden_size"] // 64, sizes["hidden_act"])
        if "projection_dim" in sizes:
            assert config.projection_dim == sizes["projection_dim"]
        ours = {k: v.shape for k, v in (model.owner.get_submodule(model.name) if hasattr(model, "owner")
                                        else model).state_dict().items()}
        assert ours == {k: v.shape for k, v in expected_models[tower].state_dict().items()}


@torch.no_grad()
def test_encode_sdxl_gives_each_tower_its_prompt(loaded, references):
    """CLIPTextEncodeSDXL: text_g through CLIP-G (and the pooled output), text_l through CLIP-L;
    the shorter prompt's windows are completed with the empty prompt's (ComfyUI's node)."""
    clip = loaded["sdxl"].clip
    cond, pooled = clip.encode_sdxl("a castle", "oil painting")
    out_l = references["l"](input_ids=reference_ids("oil painting", "<|endoftext|>"), output_hidden_states=True)
    out_g = references["g"](input_ids=reference_ids("a castle", "!"), output_hidden_states=True)
    assert relative_error(cond[..., :64], out_l.hidden_states[-2]) < 1e-4
    assert relative_error(cond[..., 64:], out_g.hidden_states[-2]) < 1e-4
    assert relative_error(pooled, out_g.text_embeds) < 1e-4
    long_g, _ = clip.encode_sdxl("castle " * 100, "oil painting")
    assert long_g.shape == (1, 154, 192)
    empty_l = references["l"](input_ids=reference_ids("", "<|endoftext|>"), output_hidden_states=True)
    assert relative_error(long_g[:, 77:, :64], empty_l.hidden_states[-2]) < 1e-4
    long_l, _ = clip.encode_sdxl("castle", "oil " * 100)
    empty_g = references["g"](input_ids=reference_ids("", "!"), output_hidden_states=True)
    assert long_l.shape == (1, 154, 192) and relative_error(long_l[:, 77:, 64:], empty_g.hidden_states[-2]) < 1e-4
    # the same prompt for both is CLIPTextEncode's encoding
    assert torch.equal(clip.encode_sdxl(PROMPT, PROMPT)[0], clip.encode(PROMPT)[0])


def test_the_sdxl_nodes_take_our_text_encoders(loaded):
    """The sampling side's nodes (nodes/conditioning.py) on the CLIPs the loader makes."""
    from types import SimpleNamespace

    from nodeflow.runtime.paths import Paths
    from nodeflow_nodes import conditioning as nodes

    ctx = SimpleNamespace(paths=Paths(models_dirs=()))
    ((cond, options),), = nodes.clip_text_encode_sdxl(loaded["sdxl"].clip, 1024, 768, 0, 0, 1024, 768,
                                                      "a castle", "oil painting", ctx)
    assert cond.shape == (1, 77, 192) and options["pooled_output"].shape == (1, 96) and options["height"] == 768
    ((cond, options),), = nodes.clip_text_encode_sdxl_refiner(2.5, 1024, 1024, "blurry", loaded["sdxl-refiner"].clip, ctx)
    assert cond.shape == (1, 77, 128) and options["pooled_output"].shape == (1, 96)
    ((cond, options),), = nodes.clip_text_encode("a castle", loaded["sd2"].clip, ctx)
    assert cond.shape == (1, 77, 64) and options["pooled_output"].shape == (1, 48)


def test_the_refiner_takes_clip_g_vectors(loaded, files, tmp_path):
    """The refiner's only encoder is CLIP-G: it reads ``clip_g`` from SDXL embedding files (as
    ComfyUI's SDXL tokenizer's CLIP-G half does), not the ``clip_l`` an SD1 encoder would."""
    from nodeflow.loading.embeddings import EmbeddingFinder

    g = files["sdxl-refiner"][1]["clip_g"]
    save_file({"clip_l": torch.zeros(2, 64), "clip_g": word_vectors(g, "red circle")}, str(tmp_path / "rc.safetensors"))
    clip = loaded["sdxl-refiner"].clip
    cond, _ = clip.encode("a embedding:rc", EmbeddingFinder([tmp_path]))
    assert relative_error(cond, clip.encode("a red circle")[0]) < 1e-5


def test_text_projection_stored_as_a_linear_weight_reads_the_same(files):
    """Some converted files store the projection as ``text_projection.weight`` (P, D); ComfyUI's
    clip_text_transformers_convert accepts both forms."""
    from nodeflow.loading.open_clip import open_clip_to_transformers

    layout = open_clip_layout(files["sdxl"][1]["clip_g"])
    linear = {k: v for k, v in layout.items() if k != "text_projection"}
    linear["text_projection.weight"] = layout["text_projection"].t().contiguous()
    expected = open_clip_to_transformers(layout)
    converted = open_clip_to_transformers(linear)
    assert converted.keys() == expected.keys()
    assert all(torch.equal(converted[k], expected[k]) for k in expected)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("NODEFLOW_FULL_SIZE"),
                    reason="full-size random text towers (about 7 GB, a minute): set NODEFLOW_FULL_SIZE=1")
@torch.no_grad()
@pytest.mark.parametrize("family", ["sd2", "sdxl"])
def test_full_size_towers_with_random_weights_match_diffusers(family):
    """The real ViT-H/14 (SD2) and ViT-L/14 + bigG/14 (SDXL) with random weights, in the original
    layout: diffusers' converter reads them back exactly, and our encodings equal its models'."""
    from nodeflow.loading.families import FAMILIES, build_clip, take_text_parts
    from nodeflow.text.tokenizer import load_tokenizer

    if family == "sd2":
        h = random_text_model(VIT_H, 20)
        sd = prefixed(H_PREFIX, open_clip_layout(h))
        reference = read_open_clip_strictly(sd, H_PREFIX, {**VIT_H, "num_hidden_layers": 23}, transformers.CLIPTextModel)
        assert_same_weights(reference, h)
        clip = build_clip("sd2", take_text_parts(FAMILIES["sd2"], dict(sd)), load_tokenizer(), torch.device("cpu"),
                          torch.float32)
        cond, pooled = clip.encode(PROMPT)
        ids = reference_ids(PROMPT, "!")
        assert relative_error(cond, reference(input_ids=ids).last_hidden_state) < 1e-4
        assert relative_error(pooled, h(input_ids=ids).text_embeds) < 1e-4
        return
    l, g = random_text_model(VIT_L, 21), random_text_model(VIT_BIGG, 22)
    sd = prefixed(L_PREFIX, transformers_layout(l)) | prefixed(G_PREFIX, open_clip_layout(g))
    reference_g = read_open_clip_strictly(sd, G_PREFIX, VIT_BIGG)
    assert_same_weights(reference_g, g)
    clip = build_clip("sdxl", take_text_parts(FAMILIES["sdxl"], dict(sd)), load_tokenizer(), torch.device("cpu"),
                      torch.float32)
    del sd
    cond, pooled = clip.encode(PROMPT)
    expected, expected_pooled = sdxl_reference({"l": l, "g": reference_g}, PROMPT)
    assert cond.shape == (1, 77, 2048) and pooled.shape == (1, 1280)
    assert relative_error(cond, expected) < 1e-4 and relative_error(pooled, expected_pooled) < 1e-4
