"""Diffusers pipeline folders of SD2.x, SDXL and the SDXL refiner (issue 14) load through
CheckpointLoaderSimple and give the image of the single file they were made from.

The folders are written by diffusers itself: the single file's U-Net and VAE read by diffusers'
single-file converters and saved with ``save_pretrained``, the text towers saved by transformers
(SDXL: CLIPTextModel + CLIPTextModelWithProjection; SD2: a CLIPTextModel without the last ViT-H
layer, as diffusers' SD2 conversion stores it). Same tensors, so the same image (max 1/255:
the only difference is float32 rounding in the fused q/k/v path).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from nodeflow.loading.open_clip import open_clip_to_transformers, transformers_to_open_clip
from tests.comfy_reference import diffusers_unet, diffusers_vae
from tests.family_files import TINY_VAE, original_config, tiny_unet, write_family_checkpoint

diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")
SCALE = {"sd2": 0.18215, "sdxl": 0.13025, "sdxl-refiner": 0.13025}
PIPELINES = {"sd2": "StableDiffusionPipeline", "sdxl": "StableDiffusionXLPipeline",
             "sdxl-refiner": "StableDiffusionXLImg2ImgPipeline"}


def sd2_text_encoder_as_diffusers_stores_it(clip_h) -> torch.nn.Module:
    """ViT-H as a CLIPTextModel of 23 layers (the last one dropped, no projection)."""
    config = clip_h.config.to_dict() | {"num_hidden_layers": clip_h.config.num_hidden_layers - 1}
    model = transformers.CLIPTextModel(transformers.CLIPTextConfig(**config))
    missing, unexpected = model.load_state_dict(clip_h.text_model.state_dict(), strict=False)
    assert not missing and unexpected and all(".layers.23." in k for k in unexpected)
    return model


#: diffusers' SDXL pipelines hold the ADM MLP as ``add_embedding`` (text_time); its converter picks
#: that by the real context widths (2048, 1280) only, so it is asked for here for the scaled-down ones
SDXL_UNET = {"class_embed_type": None, "addition_embed_type": "text_time", "addition_time_embed_dim": 256}


def write_folder(root, family: str, checkpoint_path, sources) -> None:
    from diffusers.loaders import single_file_utils as sfu

    checkpoint = sfu.load_single_file_checkpoint(str(checkpoint_path))
    ldm = original_config(tiny_unet(family), TINY_VAE, SCALE[family])
    diffusers_unet(checkpoint, ldm, None if family == "sd2" else SDXL_UNET).save_pretrained(root / "unet")
    vae = diffusers_vae(checkpoint, ldm)
    vae.register_to_config(scaling_factor=SCALE[family])
    vae.save_pretrained(root / "vae")
    if family == "sd2":
        sd2_text_encoder_as_diffusers_stores_it(sources["clip_h"]).save_pretrained(root / "text_encoder")
    elif family == "sdxl":
        sources["clip_l"].save_pretrained(root / "text_encoder")
        sources["clip_g"].save_pretrained(root / "text_encoder_2")
    else:
        sources["clip_g"].save_pretrained(root / "text_encoder_2")
    (root / "model_index.json").write_text(json.dumps({"_class_name": PIPELINES[family]}))


def run_txt2img(models, ckpt_name: str, out) -> np.ndarray:
    from nodeflow.cli import apply_override
    from nodeflow.engine.executor import Executor
    from nodeflow.engine.registry import Registry
    from nodeflow.formats import load_workflow
    from nodeflow.runtime.paths import Paths
    from tests.project import ROOT

    paths = Paths(models_dirs=(models,), output_dir=out, input_dir=out, temp_dir=out / "tmp",
                  assets_dir=out / "no-assets")
    workflow = load_workflow(ROOT / "workflows" / "txt2img.json")
    for override in (f"4.ckpt_name={ckpt_name}", "3.steps=3", "3.seed=5"):
        apply_override(workflow, override)
    [saved] = Executor(Registry.load(paths), paths).run(workflow).outputs["9"][0]["images"]
    return np.asarray(Image.open(saved)).astype(int)


@pytest.mark.parametrize("family, kind", [("sd2", "sd2"), ("sdxl", "sdxl"), ("sdxl-refiner", "sdxl-refiner")])
def test_diffusers_folder_gives_the_single_files_image(tmp_path, family, kind):
    from nodeflow.loading.checkpoint import load_checkpoint

    models = tmp_path / "models"
    path, sources = write_family_checkpoint(models / "checkpoints" / "single.safetensors", family)
    write_folder(models / "checkpoints" / "folder", family, path, sources)
    loaded = load_checkpoint(models / "checkpoints" / "folder")
    assert loaded.kind == kind and loaded.model.latent_format.scale_factor == SCALE[family]
    single = run_txt2img(models, "single.safetensors", tmp_path / "a")
    folder = run_txt2img(models, "folder", tmp_path / "b")
    assert single.std() > 0 and np.abs(single - folder).max() <= 1


def test_open_clip_layout_round_trip_and_the_identity_layer():
    from tests.family_files import TINY_G, random_text_model

    model = random_text_model(TINY_G, seed=3)
    sd = {k: v for k, v in model.state_dict().items() if not k.endswith("position_ids")}
    back = open_clip_to_transformers(transformers_to_open_clip(sd))
    assert set(back) == set(sd) and all(torch.equal(back[k], sd[k]) for k in sd)
    padded = open_clip_to_transformers(transformers_to_open_clip(sd, extra_identity_layer=True))
    config = model.config.to_dict() | {"num_hidden_layers": model.config.num_hidden_layers + 1}
    deeper = transformers.CLIPTextModelWithProjection(transformers.CLIPTextConfig(**config))
    deeper.load_state_dict(padded, strict=False)
    ids = torch.tensor([[49406, 320, 1929, 49407] + [0] * 73])
    with torch.no_grad():
        a = model(input_ids=ids, output_hidden_states=True).hidden_states[-1]
        b = deeper(input_ids=ids, output_hidden_states=True).hidden_states
    assert torch.equal(b[-1], b[-2]) and torch.allclose(b[-2], a)  # the added block is the identity
