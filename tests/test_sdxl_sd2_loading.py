"""Loading SD2.x and SDXL single files: family, U-Net heads, latent scale, parameterisation and
noise schedule, the text encoders; families nodeflow does not run refused by name.

Scaled-down files (tests/family_files.py) are loaded by load_checkpoint and, independently, by
diffusers' single-file utilities from an original (LDM/sgm) config that states the heads as
``num_head_channels: 64``: the U-Nets must agree (fp32, relative 1e-4; SDXL's ADM input through
diffusers' class-embedding MLP, which is ``label_emb``'s). The real configurations (SD2, SDXL base
and refiner, with their VAE and text towers) are checked on the meta device: every key name and
shape of the original layout maps, in our loader and in diffusers' converters.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from nodeflow.errors import ModelFileError
from nodeflow.loading.checkpoint import checkpoint_from_state_dict, load_checkpoint
from nodeflow.loading.detect import detect_kind
from nodeflow.models.attention import CrossAttention
from nodeflow.models.unet import UNetConfig, UNetModel
from nodeflow.models.vae import AutoencoderKL, VAEConfig
from nodeflow.sampling.model_sampling import ModelSampling
from nodeflow.text.families import DualTextEncoder
from nodeflow.text.text_encoder import TextEncoder
from tests.comfy_reference import diffusers_unet
from tests.family_files import (TINY_VAE, VIT_BIGG, VIT_H, VIT_L, clip_config, family_state_dict, open_clip_layout,
                                original_config, prefixed, tiny_unet, transformers_layout,
                                write_family_checkpoint)

diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")
from diffusers.loaders import single_file_utils as sfu  # noqa: E402

U = "model.diffusion_model."


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max() / b.float().abs().max())


def heads_per_width(unet: torch.nn.Module) -> dict[int, set[int]]:
    """{query width: heads} over the U-Net's attention layers."""
    found: dict[int, set[int]] = {}
    for module in unet.modules():
        if isinstance(module, CrossAttention):
            found.setdefault(module.to_q.in_features, set()).add(module.heads)
    return found


@pytest.mark.parametrize("family, in_channels, kind, clip_type, scale", [
    ("sd2", 4, "sd2", TextEncoder, 0.18215),
    ("sd2", 9, "sd2-inpaint", TextEncoder, 0.18215),
    ("sdxl", 4, "sdxl", DualTextEncoder, 0.13025),
    ("sdxl", 9, "sdxl-inpaint", DualTextEncoder, 0.13025),
    ("sdxl-refiner", 4, "sdxl-refiner", TextEncoder, 0.13025),
])
@torch.no_grad()
def test_family_loads_and_matches_diffusers(tmp_path, family, in_channels, kind, clip_type, scale):
    path, sources = write_family_checkpoint(tmp_path / "model.safetensors", family, in_channels=in_channels)
    loaded = load_checkpoint(path)
    unet = loaded.model.unet
    assert loaded.kind == kind and type(loaded.clip) is clip_type
    assert unet.config == tiny_unet(family, in_channels)  # incl. head_channels=64 and adm_in_channels
    assert heads_per_width(unet) == ({64: {1}, 128: {2}} if family == "sd2" else {128: {2}})  # channels / 64
    assert loaded.model.latent_format.scale_factor == loaded.vae.scaling_factor == scale
    assert loaded.model.adm == {"sdxl": "sdxl", "sdxl-refiner": "sdxl-refiner"}.get(family)  # the ADM vector's kind
    assert loaded.model.sampling.parameterization == "eps"
    assert loaded.model.dtype == loaded.clip.dtype == loaded.vae.dtype == torch.float32
    # the ADM width the sampling side builds y for: pooled (the CLIP's) + 256 per size embedding
    _, pooled = loaded.clip.encode("a cat")
    if unet.config.adm_in_channels:
        sizes = 6 if family == "sdxl" else 5
        assert unet.config.adm_in_channels == pooled.shape[-1] + 256 * sizes
    # the U-Net against diffusers' own reader of the same file
    checkpoint = sfu.load_single_file_checkpoint(str(path))
    reference = diffusers_unet(checkpoint, original_config(unet.config, TINY_VAE, scale))
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(2, in_channels, 8, 8, generator=generator)
    t = torch.tensor([999.0, 20.0])
    context = torch.randn(2, 77, unet.config.context_dim, generator=generator)
    y = torch.randn(2, unet.config.adm_in_channels, generator=generator) if unet.config.adm_in_channels else None
    ours = unet(x, t, context, y=y)
    expected = reference(x, t, encoder_hidden_states=context, class_labels=y).sample
    assert relative_error(ours, expected) < 1e-4


def test_sd2_in_the_sgm_layout_loads(tmp_path):
    """SD2 saved by the sgm code: the OpenCLIP tower under conditioner.embedders.0.model. (the
    refiner's prefix) without an ADM input (ComfyUI's SD20 reads both prefixes)."""
    sd, _ = family_state_dict("sd2")
    save_file(sd, str(tmp_path / "ldm.safetensors"))
    sgm = {k.replace("cond_stage_model.model.", "conditioner.embedders.0.model."): v for k, v in sd.items()}
    save_file(sgm, str(tmp_path / "sgm.safetensors"))
    ldm_loaded, sgm_loaded = load_checkpoint(tmp_path / "ldm.safetensors"), load_checkpoint(tmp_path / "sgm.safetensors")
    assert sgm_loaded.kind == "sd2" and type(sgm_loaded.clip) is TextEncoder
    assert torch.equal(sgm_loaded.clip.encode("a cat")[0], ldm_loaded.clip.encode("a cat")[0])


@pytest.mark.parametrize("family, markers, kind, parameterization, zsnr", [
    ("sd2", (), "sd2", "eps", False),
    ("sd2", ("v_pred",), "sd2-v", "v", False),
    ("sdxl", (), "sdxl", "eps", False),
    ("sdxl", ("v_pred",), "sdxl", "v", False),
    ("sdxl", ("v_pred", "ztsnr"), "sdxl", "v", True),
    ("sdxl", ("ztsnr",), "sdxl", "eps", False),  # ComfyUI reads ztsnr only with v_pred
])
def test_parameterisation_markers(tmp_path, family, markers, kind, parameterization, zsnr):
    path, _ = write_family_checkpoint(tmp_path / "m.safetensors", family, markers=markers)
    loaded = load_checkpoint(path)
    sampling = loaded.model.sampling
    assert loaded.kind == kind and sampling.parameterization == parameterization and sampling.zsnr == zsnr
    sd1 = ModelSampling.sd1()
    if not zsnr:
        assert torch.equal(sampling.sigmas, sd1.sigmas) and torch.equal(sampling.log_sigmas, sd1.log_sigmas)
        return
    # an independent rescale: diffusers' rescale_zero_terminal_snr on the betas (Lin et al. 2024)
    from diffusers.schedulers.scheduling_ddim import rescale_zero_terminal_snr

    betas = rescale_zero_terminal_snr(torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2)
    alphas_cumprod = torch.cumprod(1 - betas, dim=0)
    expected = ((1 - alphas_cumprod[:-1]) / alphas_cumprod[:-1]) ** 0.5  # its last is infinite (abar = 0)
    assert relative_error(sampling.sigmas[:-1], expected) < 1e-6
    assert abs(float(sampling.sigmas[0] / sd1.sigmas[0]) - 1) < 1e-6  # the first step is kept
    assert abs(float(sampling.sigma_max) - 4518.8) < 0.1  # ComfyUI's finite last step, abar = 4.8973e-08
    assert relative_error(sampling.log_sigmas, sampling.sigmas.double().log()) < 1e-6


def test_sd2_v_prediction_guess_follows_comfyui():
    """ComfyUI's SD20.model_type: a 4-channel SD2 U-Net whose output_blocks.11.1 norm1 bias has a
    population std above 0.09 is SD2-768-v; inpainting models never are."""
    base = {U + "input_blocks.0.0.weight": torch.empty(320, 4, 3, 3),
            U + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": torch.empty(320, 1024)}
    key = U + "output_blocks.11.1.transformer_blocks.0.norm1.bias"
    wide = torch.linspace(-0.2, 0.2, 320)  # std 0.116
    narrow = wide / 4
    assert detect_kind(base | {key: wide}) == "sd2-v"
    assert detect_kind(base | {key: narrow}) == "sd2"
    nine = dict(base, **{U + "input_blocks.0.0.weight": torch.empty(320, 9, 3, 3)})
    assert detect_kind(nine | {key: wide}) == "sd2-inpaint"


FAMILY_FILES = {
    "Stable Diffusion 3": {U + "joint_blocks.0.context_block.attn.qkv.weight": torch.zeros(3),
                           U + "x_embedder.proj.weight": torch.zeros(1)},
    "FLUX.1": {"double_blocks.0.img_attn.norm.key_norm.scale": torch.zeros(1), "img_in.weight": torch.zeros(1)},
    "FLUX.1 ": {U + "double_blocks.0.img_attn.norm.key_norm.scale": torch.zeros(1)},
    "Stable Cascade": {"clip_txt_mapper.weight": torch.zeros(1), "clf.1.weight": torch.zeros(1)},
    "Stable Cascade ": {"down_blocks.0.0.channelwise.0.weight": torch.zeros(1)},
    "Stable Video Diffusion": {U + "input_blocks.0.0.weight": torch.zeros(320, 8, 3, 3),
                               U + "input_blocks.1.1.time_stack.0.attn1.to_q.weight": torch.zeros(1)},
    "HunyuanVideo": {U + "txt_in.individual_token_refiner.blocks.0.norm1.weight": torch.zeros(1),
                     U + "double_blocks.0.img_attn.norm.key_norm.scale": torch.zeros(1)},
    "Wan": {U + "head.modulation": torch.zeros(1)},
    "LTX-Video": {U + "adaln_single.emb.timestep_embedder.linear_1.bias": torch.zeros(1)},
    "Playground v2.5": {U + "input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3),
                        U + "label_emb.0.0.weight": torch.zeros(1280, 2816), "edm_mean": torch.zeros(1),
                        "edm_std": torch.zeros(1)},
}


@pytest.mark.parametrize("family", FAMILY_FILES)
def test_other_families_are_refused_by_name_on_one_line(tmp_path, family):
    path = tmp_path / "other.safetensors"
    save_file(FAMILY_FILES[family], str(path))
    with pytest.raises(ModelFileError) as raised:
        load_checkpoint(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: this is ") and family.strip() in message and "\n" not in message
    assert message.endswith("a model family nodeflow does not run (nodeflow runs SD1.x, SD2.x and SDXL)")


def test_broken_text_towers_are_named(tmp_path):
    sd, _ = family_state_dict("sdxl")
    extra = dict(sd, **{"conditioner.embedders.1.model.transformer.resblocks.0.attn.surprise": torch.zeros(1)})
    save_file(extra, str(tmp_path / "extra.safetensors"))
    with pytest.raises(ModelFileError, match=r"extra\.safetensors: the text encoder does not match its configuration: .*"
                                             r"unknown OpenCLIP text-tower key 'transformer\.resblocks\.0\.attn\.surprise'"):
        load_checkpoint(tmp_path / "extra.safetensors")
    no_l = {k: v for k, v in sd.items() if not k.startswith("conditioner.embedders.0.")}
    save_file(no_l, str(tmp_path / "no_l.safetensors"))
    with pytest.raises(ModelFileError, match=r"no_l\.safetensors: no clip_l text encoder "
                                             r"\(conditioner\.embedders\.0\.transformer\.\*\) in this SDXL checkpoint"):
        load_checkpoint(tmp_path / "no_l.safetensors")
    short = {k: v for k, v in sd.items() if not k.endswith("resblocks.3.ln_2.weight")}  # a tensor missing
    save_file(short, str(tmp_path / "short.safetensors"))
    with pytest.raises(ModelFileError, match=r"short\.safetensors: the text encoder does not match its "
                                             r"configuration: Missing key.*layers\.3\.layer_norm2\.weight"):
        load_checkpoint(tmp_path / "short.safetensors")


REAL = {
    "sd2": (UNetConfig(model_channels=320, channel_mult=(1, 2, 4, 4), transformer_depth=(1, 1, 1, 0),
                       middle_transformer_depth=1, context_dim=1024, num_heads=None, head_channels=64,
                       use_linear_in_transformer=True), 0.18215, {"cond_stage_model.model.": VIT_H}),
    "sdxl": (UNetConfig(model_channels=320, channel_mult=(1, 2, 4), transformer_depth=(0, 2, 10),
                        middle_transformer_depth=10, context_dim=2048, num_heads=None, head_channels=64,
                        use_linear_in_transformer=True, adm_in_channels=2816), 0.13025,
             {"conditioner.embedders.0.transformer.": VIT_L, "conditioner.embedders.1.model.": VIT_BIGG}),
    "sdxl-refiner": (UNetConfig(model_channels=384, channel_mult=(1, 2, 4, 4), transformer_depth=(0, 4, 4, 0),
                                middle_transformer_depth=4, context_dim=1280, num_heads=None, head_channels=64,
                                use_linear_in_transformer=True, adm_in_channels=2560), 0.13025,
                     {"conditioner.embedders.0.model.": VIT_BIGG}),
}


@pytest.mark.parametrize("family", REAL)
def test_real_configurations_map_every_key_on_meta(family):
    """The real SD2 (v2-inference), SDXL base and refiner layouts, shapes only."""
    unet_config, scale, towers = REAL[family]
    with torch.device("meta"):
        unet, vae = UNetModel(unet_config), AutoencoderKL(VAEConfig())
        sd = prefixed(U, unet.state_dict()) | prefixed("first_stage_model.", vae.state_dict())
        for prefix, sizes in towers.items():
            if "projection_dim" in sizes:
                model = transformers.CLIPTextModelWithProjection(clip_config(sizes))
                sd |= prefixed(prefix, open_clip_layout(model))
            else:
                sd |= prefixed(prefix, transformers_layout(transformers.CLIPTextModel(clip_config(sizes))))
    # diffusers' converters read the same key set strictly (U-Net and VAE; text: tests/test_sdxl_sd2_text.py)
    ldm = original_config(unet_config, VAEConfig(), scale)
    if family == "sdxl":
        ldm["model"]["params"]["network_config"]["params"]["attention_resolutions"] = [4, 2]  # sd_xl_base.yaml
    reference = diffusers_unet(sd, ldm)
    assert sum(p.numel() for p in reference.parameters()) == sum(v.numel() for k, v in sd.items() if k.startswith(U))
    vae_config = sfu.create_vae_diffusers_config_from_ldm(ldm, sd)
    assert vae_config["scaling_factor"] == scale
    with torch.device("meta"):
        reference_vae = diffusers.AutoencoderKL(**vae_config)
    reference_vae.load_state_dict(sfu.convert_ldm_vae_checkpoint(sd, vae_config), strict=True, assign=True)
    # ours
    loaded = checkpoint_from_state_dict(dict(sd), Path(f"{family}.safetensors"), device="meta")
    assert loaded.kind == family and loaded.model.unet.config == unet_config
    widths = {unet_config.model_channels * m for m, d in zip(unet_config.channel_mult, unet_config.transformer_depth) if d}
    assert heads_per_width(loaded.model.unet) == {w: {w // 64} for w in widths}  # 5, 10, 20 heads
    assert loaded.model.latent_format.scale_factor == loaded.vae.scaling_factor == scale
    assert loaded.clip.width == {"sd2": 1024, "sdxl": 768 + 1280, "sdxl-refiner": 1280}[family]


@pytest.mark.parametrize("family", ["sd2", "sdxl", "sdxl-refiner"])
def test_txt2img_runs_on_each_family(tmp_path, family):
    """The txt2img workflow (CheckpointLoaderSimple, CLIPTextEncode x2, KSampler, VAEDecode,
    SaveImage) on a scaled-down checkpoint of each family: the CLIP's pooled output reaches the
    sampler's ADM vector for SDXL, and a 64 x 64 image comes out."""
    import numpy as np
    from PIL import Image

    from nodeflow.cli import apply_override
    from nodeflow.engine.executor import Executor
    from nodeflow.engine.registry import Registry
    from nodeflow.formats import load_workflow
    from nodeflow.runtime.paths import Paths
    from tests.project import ROOT

    write_family_checkpoint(tmp_path / "models" / "checkpoints" / "tiny.safetensors", family)
    paths = Paths(models_dirs=(tmp_path / "models",), output_dir=tmp_path / "out", input_dir=tmp_path / "in",
                  temp_dir=tmp_path / "tmp", assets_dir=tmp_path / "no-assets")
    workflow = load_workflow(ROOT / "workflows" / "txt2img.json")
    for override in ("4.ckpt_name=tiny.safetensors", "3.steps=2"):
        apply_override(workflow, override)
    result = Executor(Registry.load(paths), paths).run(workflow)
    [saved] = result.outputs["9"][0]["images"]
    pixels = np.asarray(Image.open(saved))
    assert pixels.shape == (64, 64, 3) and pixels.std() > 0
