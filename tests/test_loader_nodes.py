"""UNETLoader, CLIPLoader and DualCLIPLoader: ComfyUI's declarations; the parts of a checkpoint
loaded from separate files give the image of the whole checkpoint, pixel for pixel; both key
layouts of a text encoder encode alike; wrong files are refused on one line naming them.

Files are cut out of the scaled-down checkpoints of tests/family_files.py and tests/factories.py
(SD1.x): the U-Net bare or under ``model.diffusion_model.``, CLIP-L in transformers' layout, the
OpenCLIP towers (SD2's ViT-H, SDXL's CLIP-G) in OpenCLIP's, the VAE bare.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from nodeflow.engine.executor import Executor
from nodeflow.engine.registry import Registry
from nodeflow.errors import ModelFileError, NodeInputError
from nodeflow.formats.comfy import from_comfy_api
from nodeflow.loading.diffusion_model import load_diffusion_model
from nodeflow.loading.text_encoder_files import load_clip, load_sdxl_clip, read_text_encoder
from nodeflow.runtime.paths import KIND_FOLDERS, Paths
from nodeflow.spec import ModelFile
from nodeflow.text.families import DualTextEncoder
from nodeflow_nodes import loaders
from tests.factories import tiny_state_dict
from tests.family_files import TINY_L, family_state_dict, open_clip_layout, random_text_model

U, V = "model.diffusion_model.", "first_stage_model."
#: Where each family's towers are in its checkpoint, and the file each becomes.
TOWERS = {"sd1": {"cond_stage_model.transformer.": "clip_l"},
          "sd2": {"cond_stage_model.model.": "clip_h"},
          "sdxl": {"conditioner.embedders.0.transformer.": "clip_l", "conditioner.embedders.1.model.": "clip_g"}}


# ---------------------------------------------------------------- declarations

def declaration(node_id: str) -> tuple:
    spec = Registry.load().get(node_id)
    inputs = [(i.name, i.type, i.default, i.optional) for i in spec.inputs]
    return spec.category, inputs, [o.type for o in spec.outputs]


# ComfyUI's nodes.py (UNETLoader, CLIPLoader, DualCLIPLoader): ids, inputs in order, defaults,
# required / optional, output types. The file lists are computed (models folders).
COMFY = {
    "UNETLoader": ("advanced/loaders", [("unet_name", "CHOICE", None, False),
                                        ("weight_dtype", "CHOICE", "default", False)], ["MODEL"]),
    "CLIPLoader": ("advanced/loaders", [("clip_name", "CHOICE", None, False), ("type", "CHOICE", "stable_diffusion", False),
                                        ("device", "CHOICE", "default", True)], ["CLIP"]),
    "DualCLIPLoader": ("advanced/loaders", [("clip_name1", "CHOICE", None, False), ("clip_name2", "CHOICE", None, False),
                                            ("type", "CHOICE", "sdxl", False), ("device", "CHOICE", "default", True)],
                       ["CLIP"]),
}
CHOICES = {
    ("UNETLoader", "weight_dtype"): ["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"],
    ("CLIPLoader", "type"): ["stable_diffusion", "stable_cascade", "sd3", "stable_audio", "mochi", "ltxv", "pixart",
                             "cosmos", "lumina2", "wan", "hidream", "chroma", "ace", "omnigen2", "qwen_image",
                             "hunyuan_image", "flux2", "ovis", "longcat_image", "cogvideox", "lens", "pixeldit",
                             "ideogram4", "boogu", "krea2", "joyimage", "mage", "minimax", "yue2"],
    ("CLIPLoader", "device"): ["default", "cpu"],
    ("DualCLIPLoader", "type"): ["sdxl", "sd3", "flux", "hunyuan_video", "hidream", "hunyuan_image", "hunyuan_video_15",
                                 "kandinsky5", "kandinsky5_image", "ltxv", "newbie", "ace"],
    ("DualCLIPLoader", "device"): ["default", "cpu"],
}


@pytest.mark.parametrize("node_id", list(COMFY))
def test_node_declarations_follow_comfyui(node_id):
    assert declaration(node_id) == COMFY[node_id]
    spec = Registry.load().get(node_id)
    for (owner, name), choices in CHOICES.items():
        if owner == node_id:
            assert spec.input(name).choices() == choices


def test_model_folders_as_comfyui_names_them(tmp_path):
    """diffusion_models (and the older unet), text_encoders (and clip): files of both folders are
    offered, the first folder's first; the loaders' inputs list them."""
    assert KIND_FOLDERS["diffusion_models"] == ("diffusion_models", "unet")
    assert KIND_FOLDERS["text_encoders"] == ("text_encoders", "clip")
    for folder, name in [("diffusion_models", "a.safetensors"), ("unet", "b.safetensors"),
                         ("text_encoders", "l.safetensors"), ("clip", "sub/g.safetensors")]:
        (tmp_path / folder / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / folder / name).write_bytes(b"x")
    paths = Paths(models_dirs=(tmp_path,), assets_dir=tmp_path / "no-assets")
    registry = Registry.load(paths)
    assert registry.get("UNETLoader").input("unet_name").choices(paths) == ["a.safetensors", "b.safetensors"]
    for node_id, name in [("CLIPLoader", "clip_name"), ("DualCLIPLoader", "clip_name1"), ("DualCLIPLoader", "clip_name2")]:
        assert registry.get(node_id).input(name).choices(paths) == ["l.safetensors", "sub/g.safetensors"]


def test_fingerprints_see_every_file(tmp_path):
    """The cache signature changes when any of DualCLIPLoader's two files changes; a single-input
    ModelFile fingerprints as before (one file: path, size, mtime)."""
    for name in ("l.safetensors", "g.safetensors"):
        (tmp_path / "text_encoders").mkdir(exist_ok=True)
        (tmp_path / "text_encoders" / name).write_bytes(b"x")
    paths = Paths(models_dirs=(tmp_path,), assets_dir=tmp_path / "no-assets")
    inputs = {"clip_name1": "l.safetensors", "clip_name2": "g.safetensors", "type": "sdxl"}
    fingerprint = Registry.load(paths).get("DualCLIPLoader").fingerprint
    assert isinstance(fingerprint, ModelFile) and fingerprint.input_names == ("clip_name1", "clip_name2")
    before = fingerprint(inputs, paths)
    (tmp_path / "text_encoders" / "g.safetensors").write_bytes(b"xy")
    assert fingerprint(inputs, paths) != before
    single = ModelFile("text_encoders", "clip_name1")(inputs, paths)
    stat = (tmp_path / "text_encoders" / "l.safetensors").stat()
    assert single == f"{(tmp_path / 'text_encoders' / 'l.safetensors').resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


# ---------------------------------------------------------------- files cut out of a checkpoint

def checkpoint_tensors(family: str) -> dict[str, torch.Tensor]:
    if family == "sd1":
        return tiny_state_dict(seed=3)  # fp16, 8 heads (SD1's default), CLIP-L 32 wide
    return family_state_dict(family, seed=3)[0]


def take(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v.contiguous() for k, v in sd.items() if k.startswith(prefix)}


def split_checkpoint(models: Path, family: str, unet_prefixed: bool = False) -> dict[str, str]:
    """The whole checkpoint in checkpoints/, and its parts as separate files in ComfyUI's folders
    (the U-Net in unet/, the older name); returns their names."""
    sd = checkpoint_tensors(family)
    for folder in ("checkpoints", "unet", "text_encoders", "vae"):
        (models / folder).mkdir(parents=True, exist_ok=True)
    save_file(sd, str(models / "checkpoints" / "whole.safetensors"))
    unet = {U + k: v for k, v in take(sd, U).items()} if unet_prefixed else take(sd, U)
    save_file(unet, str(models / "unet" / "unet.safetensors"))
    save_file(take(sd, V), str(models / "vae" / "vae.safetensors"))
    names = {}
    for prefix, tower in TOWERS[family].items():
        save_file(take(sd, prefix), str(models / "text_encoders" / f"{tower}.safetensors"))
        names[tower] = f"{tower}.safetensors"
    return names


def txt2img(loaders_: dict) -> dict:
    """ComfyUI API workflow: the loaders given ("model", "clip", "vae": (node, output)) feeding
    CLIPTextEncode x2 -> KSampler (2 steps) -> VAEDecode -> SaveImage, 64 x 48 pixels."""
    graph = {
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 48, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red circle", "clip": loaders_["clip"]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": loaders_["clip"]}},
        "3": {"class_type": "KSampler", "inputs": {
            "seed": 7, "steps": 2, "cfg": 5.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0,
            "model": loaders_["model"], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": loaders_["vae"]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x", "images": ["8", 0]}},
    }
    return graph | loaders_["nodes"]


def run(paths: Paths, graph: dict) -> np.ndarray:
    registry = Registry.load(paths)
    result = Executor(registry, paths).run(from_comfy_api(graph, registry))
    [saved] = result.outputs["9"][0]["images"]
    return np.asarray(Image.open(saved))


def whole_checkpoint() -> dict:
    return {"nodes": {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "whole.safetensors"}}},
            "model": ["4", 0], "clip": ["4", 1], "vae": ["4", 2]}


def separate_files(clip_node: dict) -> dict:
    return {"nodes": {"10": {"class_type": "UNETLoader", "inputs": {"unet_name": "unet.safetensors",
                                                                    "weight_dtype": "default"}},
                      "11": clip_node,
                      "12": {"class_type": "VAELoader", "inputs": {"vae_name": "vae.safetensors"}}},
            "model": ["10", 0], "clip": ["11", 0], "vae": ["12", 0]}


def folders(tmp_path: Path) -> Paths:
    return Paths(models_dirs=(tmp_path / "models",), output_dir=tmp_path / "out", input_dir=tmp_path / "in",
                 temp_dir=tmp_path / "tmp", assets_dir=tmp_path / "no-assets")


@pytest.mark.parametrize("order, unet_prefixed", [(("clip_l", "clip_g"), False), (("clip_g", "clip_l"), True)])
def test_sdxl_from_separate_files_draws_the_checkpoints_image(tmp_path, order, unet_prefixed):
    """UNETLoader + DualCLIPLoader (CLIP-L in transformers' layout, CLIP-G in OpenCLIP's, in either
    order) + VAELoader, cut from one SDXL checkpoint: the same pixels as CheckpointLoaderSimple."""
    names = split_checkpoint(tmp_path / "models", "sdxl", unet_prefixed)
    paths = folders(tmp_path)
    expected = run(paths, txt2img(whole_checkpoint()))
    dual = {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": names[order[0]], "clip_name2": names[order[1]],
                                                       "type": "sdxl"}}
    image = run(paths, txt2img(separate_files(dual)))
    assert expected.shape == (48, 64, 3) and expected.std() > 0
    assert np.array_equal(image, expected)


def test_provenance_names_the_part_files(tmp_path):
    """The run's provenance (written into saved images) lists the U-Net, text-encoder and VAE
    files by their folders' kinds."""
    from nodeflow.engine.provenance import Provenance

    names = split_checkpoint(tmp_path / "models", "sdxl")
    paths = folders(tmp_path)
    registry = Registry.load(paths)
    dual = {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": names["clip_l"], "clip_name2": names["clip_g"],
                                                       "type": "sdxl"}}
    workflow = from_comfy_api(txt2img(separate_files(dual)), registry)
    used = {(use.kind, use.name) for use in Provenance.of(workflow, registry, paths).model_files}
    assert {("diffusion_models", "unet.safetensors"), ("text_encoders", "clip_l.safetensors"),
            ("text_encoders", "clip_g.safetensors"), ("vae", "vae.safetensors")} <= used


@pytest.mark.parametrize("family", ["sd1", "sd2"])
def test_sd1_and_sd2_from_separate_files_draw_the_checkpoints_image(tmp_path, family):
    """CLIPLoader (type stable_diffusion) gives SD1's CLIP from a CLIP-L file and SD2's from an
    OpenCLIP ViT-H file; with UNETLoader and VAELoader, the whole checkpoint's pixels. The SD2
    U-Net file, 64 wide with no text encoder beside it, is told from SD1 by its linear projections."""
    names = split_checkpoint(tmp_path / "models", family)
    paths = folders(tmp_path)
    expected = run(paths, txt2img(whole_checkpoint()))
    [clip_file] = names.values()
    single = {"class_type": "CLIPLoader", "inputs": {"clip_name": clip_file, "type": "stable_diffusion"}}
    assert np.array_equal(run(paths, txt2img(separate_files(single))), expected)
    model = load_diffusion_model(tmp_path / "models" / "unet" / "unet.safetensors")
    assert model.unet.config.head_channels == (64 if family == "sd2" else None)


def test_unet_file_markers_and_families(tmp_path):
    """The file's v_pred / ztsnr markers are read as in checkpoints; SDXL's ADM kind and latent
    scale come with the family."""
    sd = take(family_state_dict("sdxl")[0], U) | {"v_pred": torch.tensor([]), "ztsnr": torch.tensor([])}
    save_file(sd, str(tmp_path / "v.safetensors"))
    model = load_diffusion_model(tmp_path / "v.safetensors")
    assert (model.sampling.parameterization, model.sampling.zsnr) == ("v", True)
    assert model.adm == "sdxl" and model.latent_format.scale_factor == 0.13025 and model.unet.config.adm_in_channels


def test_fp8_weight_dtypes_round_the_weights_as_comfyui_stores_them(tmp_path):
    sd = take(tiny_state_dict(seed=1), U)
    save_file(sd, str(tmp_path / "u.safetensors"))
    default = load_diffusion_model(tmp_path / "u.safetensors")
    for choice, storage in [("fp8_e4m3fn", torch.float8_e4m3fn), ("fp8_e4m3fn_fast", torch.float8_e4m3fn),
                            ("fp8_e5m2", torch.float8_e5m2)]:
        rounded = load_diffusion_model(tmp_path / "u.safetensors", weight_dtype=choice)
        for (name, value), (_, original) in zip(rounded.unet.state_dict().items(), default.unet.state_dict().items()):
            assert value.dtype == torch.float32
            assert torch.equal(value, original.to(storage).float()), name
        assert not torch.equal(rounded.unet.out[2].weight, default.unet.out[2].weight)
    assert torch.equal(default.unet.out[2].weight, sd["out.2.weight"].float())  # the default: as stored


def test_diffusers_layout_unet_file_matches_diffusers(tmp_path):
    """An SD1 U-Net saved by diffusers (UNet2DConditionModel keys) loads by UNETLoader and computes
    what diffusers computes (fp32, relative 1e-4)."""
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    reference = diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=32).eval()
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()},
              str(tmp_path / "diffusion_pytorch_model.safetensors"))
    model = load_diffusion_model(tmp_path / "diffusion_pytorch_model.safetensors")
    x, context = torch.randn(2, 4, 8, 8), torch.randn(2, 77, 32)
    t = torch.tensor([999.0, 10.0])
    with torch.no_grad():
        ours = model.unet(x, t, context)
        expected = reference(x, t, encoder_hidden_states=context).sample
    assert float((ours - expected).abs().max() / expected.abs().max()) < 1e-4


# ---------------------------------------------------------------- text encoders

@torch.no_grad()
def test_clip_l_in_both_layouts_encodes_alike(tmp_path):
    """A CLIP-L with a projection (as ComfyUI's clip_l.safetensors) saved in transformers' layout
    and in OpenCLIP's: the same CLIP, bit for bit, and SD1's encoding is transformers' own
    last_hidden_state of the model they were saved from."""
    model = random_text_model(TINY_L | {"projection_dim": 48}, seed=9, projection=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "hf.safetensors"))
    save_file(open_clip_layout(model), str(tmp_path / "oc.safetensors"))
    hf, oc = load_clip(tmp_path / "hf.safetensors"), load_clip(tmp_path / "oc.safetensors")
    assert read_text_encoder(tmp_path / "oc.safetensors").tower == "clip_l"
    for prompt in ("a red circle", "(blue:1.3) square, " * 30):
        a, b = hf.encode(prompt), oc.encode(prompt)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    tokens = [49406, *hf.tokenizer.encode("a red circle"), 49407]
    ids = torch.tensor([tokens + [49407] * (77 - len(tokens))])  # SD1's window: padded with the end token
    expected = model(input_ids=ids).last_hidden_state  # transformers' own CLIP (quick_gelu, final norm)
    assert float((hf.encode("a red circle")[0] - expected).abs().max()) < 1e-5


def test_text_encoder_prefix_of_a_checkpoint_is_dropped(tmp_path):
    """A tower cut out of a checkpoint with its prefix still on reads like the bare one."""
    sd = family_state_dict("sdxl", seed=2)[0]
    prefix = "conditioner.embedders.1.model."
    save_file({k: v.contiguous() for k, v in sd.items() if k.startswith(prefix)}, str(tmp_path / "g.safetensors"))
    save_file(take(sd, prefix), str(tmp_path / "bare.safetensors"))
    a, b = read_text_encoder(tmp_path / "g.safetensors"), read_text_encoder(tmp_path / "bare.safetensors")
    assert a.sd.keys() == b.sd.keys() and a.width == 128


def test_sdxl_clip_from_files_is_the_checkpoints(tmp_path):
    sd = family_state_dict("sdxl", seed=4)[0]
    for prefix, tower in TOWERS["sdxl"].items():
        save_file(take(sd, prefix), str(tmp_path / f"{tower}.safetensors"))
    clip = load_sdxl_clip(tmp_path / "clip_g.safetensors", tmp_path / "clip_l.safetensors")
    assert isinstance(clip, DualTextEncoder) and clip.width == 64 + 128


# ---------------------------------------------------------------- wrong files

def context(tmp_path: Path):
    return SimpleNamespace(paths=folders(tmp_path), device="cpu", dtype="auto")


def one_line(error: Exception, *needles: str) -> None:
    message = str(error)
    assert "\n" not in message and "Traceback" not in message, message
    for needle in needles:
        assert needle in message, message


def test_wrong_files_are_refused_on_one_line(tmp_path):
    models = tmp_path / "models"
    split_checkpoint(models, "sdxl")
    other_l = take(family_state_dict("sdxl", seed=5)[0], "conditioner.embedders.0.transformer.")  # another CLIP-L
    save_file(other_l, str(models / "text_encoders" / "l2.safetensors"))
    (models / "diffusion_models").mkdir()
    (models / "vae" / "vae.safetensors").rename(models / "diffusion_models" / "vae.safetensors")
    (models / "checkpoints" / "whole.safetensors").rename(models / "text_encoders" / "sdxl.safetensors")
    ctx = context(tmp_path)
    with pytest.raises(ModelFileError) as raised:  # a VAE given to UNETLoader
        loaders.unet_loader("vae.safetensors", "default", ctx)
    one_line(raised.value, "vae.safetensors", "a standalone VAE (use VAELoader)", "not a diffusion model (U-Net) file")
    with pytest.raises(ModelFileError) as raised:  # a whole SDXL checkpoint given to CLIPLoader
        loaders.clip_loader("sdxl.safetensors", "stable_diffusion", ctx)
    one_line(raised.value, "sdxl.safetensors", "an SDXL checkpoint (use CheckpointLoaderSimple)",
             "not a CLIP text encoder file")
    with pytest.raises(ModelFileError) as raised:  # two CLIP-L files
        loaders.dual_clip_loader("clip_l.safetensors", "l2.safetensors", "sdxl", ctx)
    one_line(raised.value, "clip_l.safetensors", "l2.safetensors", "both are a CLIP-L", "one CLIP-L and one CLIP-G")
    with pytest.raises(NodeInputError) as raised:  # a family nodeflow does not run
        loaders.clip_loader("clip_l.safetensors", "sd3", ctx)
    assert raised.value.input_name == "type"
    one_line(raised.value, "'sd3'", "nodeflow runs SD1.x, SD2.x and SDXL", "stable_diffusion")
    with pytest.raises(NodeInputError) as raised:
        loaders.dual_clip_loader("clip_l.safetensors", "clip_g.safetensors", "flux", ctx)
    one_line(raised.value, "'flux'", "use 'sdxl'")


def test_wrong_towers_are_named(tmp_path):
    """Real widths name the tower: a ViT-H beside a CLIP-L is not SDXL's CLIP-G; a U-Net given
    to CLIPLoader and a text encoder given to UNETLoader say which loader they need."""
    from tests.family_files import VIT_H, clip_config
    from transformers import CLIPTextModelWithProjection

    with torch.device("meta"):
        vit_h = CLIPTextModelWithProjection(clip_config(VIT_H | {"num_hidden_layers": 1}))
    save_file({k: torch.zeros(v.shape) for k, v in vit_h.state_dict().items()}, str(tmp_path / "h.safetensors"))
    sd = tiny_state_dict(seed=6)
    save_file(take(sd, "cond_stage_model.transformer."), str(tmp_path / "l.safetensors"))
    save_file(take(sd, U), str(tmp_path / "unet.safetensors"))
    with pytest.raises(ModelFileError) as raised:
        load_sdxl_clip(tmp_path / "l.safetensors", tmp_path / "h.safetensors")
    one_line(raised.value, "h.safetensors: this is an OpenCLIP ViT-H/14 text encoder (SD2.x's), 1024 wide, "
                           "not the CLIP-G that SDXL needs beside l.safetensors")
    with pytest.raises(ModelFileError) as raised:
        load_clip(tmp_path / "unet.safetensors")
    one_line(raised.value, "unet.safetensors: this is the diffusion model (U-Net) of an SD1.x model (use UNETLoader)")
    with pytest.raises(ModelFileError) as raised:
        load_diffusion_model(tmp_path / "l.safetensors")
    one_line(raised.value, "l.safetensors: this is a CLIP text encoder (use CLIPLoader or DualCLIPLoader)")


def test_cli_reports_a_wrong_file_on_one_line(tmp_path, capsys):
    """Through ``nodeflow run``: exit 2, one line naming the node, the file and what was expected."""
    import json

    from nodeflow import cli

    models = tmp_path / "models"
    split_checkpoint(models, "sd1")
    (models / "diffusion_models").mkdir()
    (models / "vae" / "vae.safetensors").rename(models / "diffusion_models" / "vae.safetensors")
    graph = txt2img(separate_files({"class_type": "CLIPLoader",
                                    "inputs": {"clip_name": "clip_l.safetensors", "type": "stable_diffusion"}}))
    graph["10"]["inputs"]["unet_name"] = "vae.safetensors"
    graph["12"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "whole.safetensors"}}
    graph["8"]["inputs"]["vae"] = ["12", 2]
    (tmp_path / "w.json").write_text(json.dumps(graph))
    code = cli.main(["run", str(tmp_path / "w.json"), "--models-dir", str(models), "--output-dir", str(tmp_path / "o"),
                     "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err
    [line] = [line for line in err.splitlines() if "vae.safetensors" in line]
    assert "UNETLoader" in line and "a standalone VAE (use VAELoader), not a diffusion model (U-Net) file" in line
