"""Smoke test of the training command: every stage runs a few steps in seconds on a scaled-down
architecture, and what it writes loads through the same code as users' files (checkpoint,
ControlNet, LoRA)."""

from dataclasses import replace

import pytest
import torch

from nodeflow.training import run
from nodeflow.training.architecture import Architecture

SMALL = Architecture(vae_channels=32, vae_channel_mult=(1, 1, 1, 1), unet_channels=32, unet_channel_mult=(1, 2),
                     unet_attention_levels=(1,), unet_num_heads=2, text_hidden=32, text_layers=1,
                     text_intermediate=64)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("training")
    settings = replace(run.DEFAULTS, architecture=SMALL,
                       vae=replace(run.DEFAULTS.vae, steps=2, batch_size=4),
                       diffusion=replace(run.DEFAULTS.diffusion, steps=3, batch_size=4, pool_size=16,
                                         warmup=1, snapshot_every=2))
    return run.train(settings, out, torch.device("cpu")), out


def test_stages_1_and_2_write_a_checkpoint_that_loads_like_a_users(checkpoint):
    import json

    from nodeflow.loading.checkpoint import load_checkpoint

    path, out = checkpoint
    loaded = load_checkpoint(path)
    assert loaded.kind == "sd1"
    assert loaded.model.unet.config.model_channels == 32 and loaded.clip.width == 32
    settings = json.loads(loaded.metadata["nodeflow.training"])
    assert settings["completed_unet_steps"] == 3 and settings["seed"] == 0
    assert (out / run.GRID_NAME).is_file() and (out / "training" / "samples-000002.png").is_file()
    cond, _ = loaded.clip.encode("a red circle on a blue background")
    assert torch.isfinite(loaded.model.unet(torch.randn(1, 4, 8, 8), torch.tensor([10.0]), cond)).all()


def test_stage_3_writes_a_controlnet_that_loads(checkpoint, tmp_path):
    from nodeflow.loading.controlnet import load_controlnet

    path, _ = checkpoint
    written = run.train_controlnet_stage(path, tmp_path, torch.device("cpu"), steps=2, batch_size=2)
    controlnet = load_controlnet(written)
    assert next(controlnet.parameters()).shape[0] > 0


def test_stage_4_writes_a_lora_every_layer_of_which_matches_the_model(checkpoint, tmp_path):
    from safetensors.torch import load_file

    from nodeflow.loading.checkpoint import load_checkpoint
    from nodeflow.loading.lora import lora_patches
    from nodeflow.training import train_lora

    path, _ = checkpoint
    settings = train_lora.LoRATraining(steps=2, batch_size=2, pool_size=8, warmup=1)
    written = run.train_lora_stage(path, tmp_path, torch.device("cpu"), settings)
    loaded = load_checkpoint(path)
    unet_patches, _, unmatched = lora_patches(load_file(written), loaded.model.unet, None, 1.0, 1.0)
    assert unet_patches and not unmatched
    assert len(unet_patches) == len(train_lora.target_layers(loaded.model.unet))


def test_sdxl_sibling_stage_writes_an_sdxl_file_conditioned_as_nodeflow_encodes(checkpoint, tmp_path):
    """The SDXL sibling loads as an SDXL checkpoint (family from its shapes), and what training
    conditions the U-Net on (both towers' penultimate states, CLIP-G's pooled output, the 64 px
    size embeddings) is what CLIPTextEncode and the sampler give for the same prompt."""
    from nodeflow.loading.checkpoint import load_checkpoint
    from nodeflow.sampling.adm import embed_numbers
    from nodeflow.training import sdxl

    path, _ = checkpoint
    small = sdxl.SDXLArchitecture(unet_channels=64, unet_channel_mult=(1, 2), unet_transformer_depth=(0, 1),
                                  unet_middle_transformer_depth=1, text_layers=2, text_intermediate=64)
    settings = replace(run.DEFAULTS.diffusion, steps=2, batch_size=4, pool_size=16, warmup=1, snapshot_every=2)
    written = run.train_sdxl_stage(path, tmp_path, torch.device("cpu"), settings, arch=small)
    loaded = load_checkpoint(written)
    assert loaded.kind == "sdxl" and loaded.model.latent_format.scale_factor == load_checkpoint(path).vae.scaling_factor
    assert loaded.model.unet.config.transformer_depth == (0, 1)
    ids = sdxl.tokenize(["a red circle on a blue background"])
    assert ids[0, 0, -1] == 49407 and ids[0, 1, -1] == 0 and (ids[0, 1] == 49407).sum() == 1
    towers = sdxl.Towers(loaded.clip.tower("clip_l").model, loaded.clip.tower("clip_g").model)
    with torch.no_grad():
        trained = sdxl.condition(towers, ids)
    context, pooled = loaded.clip.encode("a red circle on a blue background")
    assert torch.allclose(trained["context"], context, atol=1e-5)
    assert torch.allclose(trained["y"], torch.cat([pooled, embed_numbers([64, 64, 0, 0, 64, 64])], -1), atol=1e-5)
