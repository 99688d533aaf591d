"""SDXL and SD2 images equal to ComfyUI's: ComfyUI API workflows run by nodeflow (as `nodeflow run`
does, through the executor) against tests/comfy_reference.py, an independent loop on diffusers'
networks that follows shared/reference/comfyui-conventions.md.

Scaled-down single files of each family with random weights (tests/family_files.py). Pass: at
most 2/255 per value and at most 1% of values differing (the issue's bound for ComfyUI images).
Further cases (samplers k-diffusion lacks, SamplerCustomAdvanced with Align Your Steps, RescaleCFG,
FreeU, FreeU_V2, PerturbedAttentionGuidance) render their reference through tests/comfy_reference_extras.py, and each shows
that a deliberately wrong variant of it is far off (WRONG), so that none can pass vacuously.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from tests.comfy_reference import Job, differing, schedule, sigma_table
from tests.comfy_reference_extras import render
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
                       "inputs": {"sampling": "v_prediction", "zsnr": False, "model": model}}
        model = ["10", 0]
    for index, (class_type, inputs) in enumerate(job.patches):  # RescaleCFG, FreeU ...
        graph[f"1{index + 1}"] = {"class_type": class_type, "inputs": {**dict(inputs), "model": model}}
        model = [f"1{index + 1}", 0]
    graph["3"]["inputs"]["model"] = model
    if job.custom_advanced:  # the same run through the custom-sampling nodes
        assert job.scheduler == "align_your_steps" and job.family == "sdxl"
        graph |= {
            "20": {"class_type": "RandomNoise", "inputs": {"noise_seed": job.seed}},
            "21": {"class_type": "CFGGuider", "inputs": {"model": model, "positive": ["6", 0], "negative": ["7", 0],
                                                         "cfg": job.cfg}},
            "22": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": job.sampler}},
            "23": {"class_type": "AlignYourStepsScheduler", "inputs": {"model_type": "SDXL", "steps": job.steps,
                                                                       "denoise": 1.0}},
            "3": {"class_type": "SamplerCustomAdvanced", "inputs": {
                "noise": ["20", 0], "guider": ["21", 0], "sampler": ["22", 0], "sigmas": ["23", 0],
                "latent_image": ["5", 0]}},
        }
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
    # issue 15's further cases (the reference in tests/comfy_reference_extras.py)
    "sdxl er_sde": Job("sdxl", "a photo of a cat, sharp", "blurry", seed=13, sampler="er_sde"),
    "sdxl res_multistep karras": Job("sdxl", "a red house", "", width=96, height=64, seed=14,
                                     sampler="res_multistep", scheduler="karras"),
    "sd2 euler_cfg_pp": Job("sd2", "a blue car", "ugly", seed=15, sampler="euler_cfg_pp", cfg=8.0),
    "sdxl custom AYS euler": Job("sdxl", "a photo of a cat", "", seed=16, steps=10, sampler="euler",
                                 scheduler="align_your_steps", custom_advanced=True),
    "sdxl custom AYS dpmpp_2m": Job("sdxl", "a green tree", "blurry", seed=17, steps=10, sampler="dpmpp_2m",
                                    scheduler="align_your_steps", custom_advanced=True),
    "sd2 v RescaleCFG": Job("sd2", "a red house by the sea", "ugly", seed=10, parameterization="v", cfg=7.0,
                            patches=(("RescaleCFG", (("multiplier", 0.7),)),)),
    "sdxl FreeU": Job("sdxl", "a photo of a cat, sharp", "blurry", seed=18,
                      patches=(("FreeU", (("b1", 1.1), ("b2", 1.2), ("s1", 0.9), ("s2", 0.2))),)),
    "sdxl FreeU_V2": Job("sdxl", "a photo of a cat, sharp", "blurry", seed=18,
                         patches=(("FreeU_V2", (("b1", 1.3), ("b2", 1.4), ("s1", 0.9), ("s2", 0.2))),)),
    "sdxl PAG": Job("sdxl", "a photo of a cat, sharp", "blurry", seed=19, cfg=4.0,
                    patches=(("PerturbedAttentionGuidance", (("scale", 3.0),)),)),
}

# The reference would notice a wrong choice: the same job with one thing changed, rendered by the
# reference, is far off nodeflow's image (so a case cannot pass by the change having no effect).
# name -> [(what is wrong, job, comfy_reference_extras.render options)]
FREEU_V1_WITH_V2_NUMBERS = (("FreeU", (("b1", 1.3), ("b2", 1.4), ("s1", 0.9), ("s2", 0.2))),)
WRONG = {
    "sdxl er_sde": [("noise from seed, not seed + 1", JOBS["sdxl er_sde"], {"noise_seed_offset": 0})],
    "sdxl res_multistep karras": [("euler", replace(JOBS["sdxl res_multistep karras"], sampler="euler"), {})],
    "sd2 euler_cfg_pp": [("euler", replace(JOBS["sd2 euler_cfg_pp"], sampler="euler"), {})],
    "sdxl custom AYS euler": [("karras", replace(JOBS["sdxl custom AYS euler"], scheduler="karras",
                                                 custom_advanced=False), {})],
    "sdxl custom AYS dpmpp_2m": [("normal", replace(JOBS["sdxl custom AYS dpmpp_2m"], scheduler="normal",
                                                    custom_advanced=False), {})],
    "sd2 v RescaleCFG": [("multiplier 0", replace(JOBS["sd2 v RescaleCFG"],
                                                  patches=(("RescaleCFG", (("multiplier", 0.0),)),)), {})],
    "sdxl FreeU": [("FreeU off", replace(JOBS["sdxl FreeU"], patches=()), {}),
                   ("diffusers' scales by up block", JOBS["sdxl FreeU"], {"by_up_block": True})],
    "sdxl PAG": [("PAG off", replace(JOBS["sdxl PAG"], patches=()), {})],
    "sdxl FreeU_V2": [("FreeU (V1) with V2's numbers", replace(JOBS["sdxl FreeU_V2"],
                                                               patches=FREEU_V1_WITH_V2_NUMBERS), {})],
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
    for what, wrong_job, options in WRONG.get(name, []):
        wrong_largest, wrong_fraction = differing(ours, render(path, ldm, sources, wrong_job, **options))
        print(f"{name}, {what}: largest difference {wrong_largest}/255, {wrong_fraction:.2%} of values differ")
        # outside the bound, and by far in the fraction (25 times its 1%); the tiny random models are
        # not very sensitive (their prompts move pixels by ~16/255 at most)
        assert wrong_largest > 2 and wrong_fraction >= 0.25, (what, wrong_largest, wrong_fraction)


@pytest.mark.parametrize("name", ["sdxl karras non-square", "sd2 v-prediction"])
def test_image_equals_comfyuis_with_every_convolution_on_the_gemm_path(tmp_path, monkeypatch, name):
    """The CPU's unfold + GEMM convolution (nodeflow.models.conv), which full-size U-Nets take at
    their deepest levels, forced onto every 3x3 convolution of the tiny models: the images stay
    within the bound."""
    from nodeflow.models import conv

    monkeypatch.setattr(conv, "GEMM_MIN_WEIGHTS", 0)
    monkeypatch.setattr(conv, "GEMM_MAX_POSITIONS", 2**62)
    calls = []
    gemm_conv2d = conv.gemm_conv2d
    monkeypatch.setattr(conv, "gemm_conv2d", lambda *a: calls.append(a) or gemm_conv2d(*a))
    job = JOBS[name]
    path, sources = write_family_checkpoint(tmp_path / "models" / "checkpoints" / "model.safetensors", job.family)
    ours = nodeflow_image(tmp_path, job)
    assert len(calls) > 10 * job.steps  # the U-Net's ResBlocks, Downsamples and Upsamples at every step
    expected = render(path, original_config(tiny_unet(job.family), TINY_VAE, SCALE[job.family]), sources, job)
    largest, fraction = differing(ours, expected)
    print(f"{name}, GEMM convolutions: largest difference {largest}/255, {fraction:.2%} of values differ")
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


# ComfyUI's AlignYourStepsScheduler levels for SDXL (comfy_extras/nodes_align_your_steps.py, as numbers)
COMFY_AYS_SDXL = [14.6146412293, 6.3184485287, 3.7681790315, 2.1811480769, 1.3405244945, 0.8620721141,
                  0.5550693289, 0.3798540708, 0.2332364134, 0.1114188177, 0.0291671582]


def test_reference_ays_schedule():
    """The reference's AYS schedule (the sigma table at diffusers' AYS SDXL timesteps, then 0) is
    ComfyUI's to float32 precision, and the published sigmas diffusers carries to their rounding
    (which is coarse: 0.113 for 0.1114; an image with those is 1/255 off on the fixture)."""
    from diffusers.schedulers import AysSchedules

    from tests.comfy_reference_extras import align_your_steps_sdxl

    sigmas = align_your_steps_sdxl(sigma_table())
    assert torch.allclose(sigmas[:-1], torch.tensor(COMFY_AYS_SDXL[:-1]), rtol=1e-6, atol=0)
    assert float(sigmas[-1]) == 0.0
    published = torch.tensor(AysSchedules["StableDiffusionXLSigmas"])
    assert torch.allclose(sigmas, published, rtol=0.015, atol=0)


def test_reference_samplers_reduce_to_known_ones():
    """The samplers written for the reference, on a toy denoiser with known answers (data N(0, 1):
    D(x, s) = x / (1 + s^2); the probability-flow ODE from s0 to s gives x sqrt(1 + s^2) /
    sqrt(1 + s0^2), and the marginal at s is N(0, 1 + s^2)): euler_cfg_pp without guidance is
    k-diffusion's euler; res_multistep is second order (4 times closer per doubling of steps, as
    DPM-Solver++(2M), where euler gains 2); ER-SDE with its noise keeps the marginal's spread."""
    from tests.comfy_reference_extras import sample_er_sde, sample_euler_cfg_pp, sample_res_multistep
    from tests.kdiffusion_ref import load_sampling

    class Toy:
        uncond_denoised = None

        def __call__(self, x, sigma):
            self.uncond_denoised = x / (1 + sigma[:, None, None, None] ** 2)
            return self.uncond_denoised

    generator = torch.Generator().manual_seed(0)
    x = torch.randn([1, 4, 8, 8], generator=generator, dtype=torch.float64) * 14.6146
    euler_errors, res_errors = [], []
    for steps in (16, 32):
        sigmas = schedule("karras", steps, sigma_table()).double()[:-1]  # to the smallest positive sigma
        exact = x * (1 + sigmas[-1] ** 2) ** 0.5 / (1 + sigmas[0] ** 2) ** 0.5
        euler = load_sampling().sample_euler(Toy(), x, sigmas, disable=True)
        assert torch.allclose(sample_euler_cfg_pp(Toy(), x, sigmas), euler, rtol=1e-9, atol=1e-12)
        euler_errors.append(float((euler - exact).abs().max()))
        res_errors.append(float((sample_res_multistep(Toy(), x, sigmas) - exact).abs().max()))
    assert euler_errors[0] / euler_errors[1] == pytest.approx(2, rel=0.1), euler_errors
    assert res_errors[0] / res_errors[1] > 3.5, res_errors

    sigmas = schedule("karras", 16, sigma_table())[:-1]
    x = torch.randn([1, 4, 128, 128], generator=generator) * (1 + sigmas[0] ** 2) ** 0.5
    spread = float(sample_er_sde(Toy(), x, sigmas, lambda: torch.randn(x.shape, generator=generator)).std())
    assert spread == pytest.approx(float((1 + sigmas[-1] ** 2) ** 0.5), rel=0.03)  # 0.66 without the noise
