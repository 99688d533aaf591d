"""SDXL and SD2 images equal to ComfyUI's: ComfyUI API workflows run by nodeflow (as `nodeflow run`
does, through the executor) against tests/comfy_reference.py, an independent loop on diffusers'
networks that follows shared/reference/comfyui-conventions.md.

Scaled-down single files of each family with random weights (tests/family_files.py). Pass: at
most 2/255 per value and at most 1% of values differing (the issue's bound for ComfyUI images).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tests.comfy_reference import Job, differing, render, schedule, sigma_table
from tests.family_files import TINY_VAE, original_config, tiny_unet, write_family_checkpoint

pytest.importorskip("diffusers")

SCALE = {"sdxl": 0.13025, "sd2": 0.18215}


def api_workflow(job: Job) -> dict:
    """ComfyUI's basic graph as its API export writes it (ids and inputs as ComfyUI names them)."""
    model = ["4", 0]
    graph = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "model.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": job.width, "height": job.height, "batch_size": 1}},
        "3": {"class_type": "KSampler", "inputs": {
            "seed": job.seed, "steps": job.steps, "cfg": job.cfg, "sampler_name": job.sampler,
            "scheduler": job.scheduler, "denoise": 1.0, "model": model, "positive": ["6", 0],
            "negative": ["7", 0], "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    }
    for node_id, text in (("6", job.positive), ("7", job.negative)):
        if job.sdxl_sizes:
            graph[node_id] = {"class_type": "CLIPTextEncodeSDXL", "inputs": {
                **job.sdxl_sizes, "text_g": text, "text_l": text, "clip": ["4", 1]}}
        else:
            graph[node_id] = {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["4", 1]}}
    if job.parameterization == "v":  # how users run a 768-v file that carries no marker
        graph["10"] = {"class_type": "ModelSamplingDiscrete",
                       "inputs": {"sampling": "v_prediction", "zsnr": False, "model": ["4", 0]}}
        graph["3"]["inputs"]["model"] = ["10", 0]
    return graph


def nodeflow_image(tmp_path, job: Job) -> np.ndarray:
    from nodeflow.engine.executor import Executor
    from nodeflow.engine.registry import Registry
    from nodeflow.formats import load_workflow
    from nodeflow.runtime.paths import Paths

    paths = Paths(models_dirs=(tmp_path / "models",), output_dir=tmp_path / "out", input_dir=tmp_path / "in",
                  temp_dir=tmp_path / "tmp", assets_dir=tmp_path / "no-assets")
    workflow_file = tmp_path / "workflow_api.json"
    workflow_file.write_text(json.dumps(api_workflow(job)))
    result = Executor(Registry.load(paths), paths).run(load_workflow(workflow_file))
    [saved] = result.outputs["9"][0]["images"]
    return np.asarray(Image.open(saved).convert("RGB"))


SDXL_SIZES = {"width": 1024, "height": 768, "crop_w": 16, "crop_h": 32, "target_width": 512, "target_height": 640}

JOBS = {
    "sdxl CLIPTextEncode": Job("sdxl", "a photo of a cat, sharp", "blurry", seed=7),
    "sdxl CLIPTextEncodeSDXL": Job("sdxl", "a photo of a cat", "", seed=8, sdxl_sizes=SDXL_SIZES),
    "sdxl karras non-square": Job("sdxl", "a red house", "", width=96, height=64, seed=9, sampler="dpmpp_2m",
                                  scheduler="karras", cfg=6.5),
    "sd2 v-prediction": Job("sd2", "a red house by the sea", "ugly", seed=10, parameterization="v"),
    "sdxl dpmpp_2m_sde karras": Job("sdxl", "a blue car", "", seed=11, sampler="dpmpp_2m_sde", scheduler="karras"),
    "sd2 euler_ancestral": Job("sd2", "a green tree", "", seed=12, sampler="euler_ancestral"),
}


@pytest.mark.parametrize("name", JOBS)
def test_image_equals_comfyuis(tmp_path, name):
    job = JOBS[name]
    path, sources = write_family_checkpoint(tmp_path / "models" / "checkpoints" / "model.safetensors", job.family)
    ours = nodeflow_image(tmp_path, job)
    ldm = original_config(tiny_unet(job.family), TINY_VAE, SCALE[job.family])
    expected = render(path, ldm, sources, job)
    assert ours.shape == expected.shape == (job.height, job.width, 3)
    assert expected.std() > 10  # an image with structure, not a flat or saturated one
    largest, fraction = differing(ours, expected)
    print(f"{name}: largest difference {largest}/255, {fraction:.2%} of values differ")
    assert largest <= 2 and fraction <= 0.01, (largest, fraction)


def test_reference_would_see_a_wrong_convention(tmp_path):
    """The comparison can fail: the same job with CLIP-G padded like CLIP-L (49407, the SD1 pad
    token) in the reference gives a visibly different image."""
    import tests.comfy_reference as reference

    job = JOBS["sdxl CLIPTextEncode"]
    path, sources = write_family_checkpoint(tmp_path / "models" / "checkpoints" / "model.safetensors", job.family)
    ours = nodeflow_image(tmp_path, job)
    ldm = original_config(tiny_unet(job.family), TINY_VAE, SCALE[job.family])
    padded_like_clip_l = reference.token_ids

    def wrong_pad(prompt, pad):
        return padded_like_clip_l(prompt, reference.EOS)

    mp = pytest.MonkeyPatch()
    mp.setattr(reference, "token_ids", wrong_pad)
    try:
        wrong = render(path, ldm, sources, job)
    finally:
        mp.undo()
    assert differing(ours, wrong)[0] > 10


def test_reference_schedules_follow_the_conventions():
    table = sigma_table()
    assert float(table[0]) == pytest.approx(0.02916716, rel=1e-6)
    assert float(table[-1]) == pytest.approx(14.6146412, rel=1e-6)
    karras = schedule("karras", 4, table)
    assert float(karras[0]) == pytest.approx(14.6146412, rel=1e-6) and float(karras[-1]) == 0.0
    normal = schedule("normal", 4, table)
    assert torch.allclose(normal[[0, -2]], table[[999, 0]], rtol=1e-6) and float(normal[-1]) == 0.0
