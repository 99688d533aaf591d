"""A ComfyUI API export that uses every custom-sampling node id and model patch (issue 15)
validates and runs: every sampler node and schedule feeds a SamplerCustomAdvanced (or a
SamplerCustom) whose image is previewed, through every guider, over models patched by FreeU,
FreeU_V2, RescaleCFG, CFGZeroStar, CFGNorm, APG, PAG, SAG, deep shrink, HyperTile, ToMe and
DifferentialDiffusion, or sampled in continuous time."""

from __future__ import annotations

import json

import numpy as np

from nodeflow.engine.executor import Executor
from nodeflow.engine.registry import Registry
from nodeflow.engine.validate import validate
from nodeflow.formats import load_workflow
from nodeflow.runtime.paths import Paths
from tests.factories import write_tiny_checkpoint

SAMPLER_NODES = {
    "KSamplerSelect": {"sampler_name": "euler_cfg_pp"},
    "SamplerEulerAncestral": {"eta": 1.0, "s_noise": 1.0},
    "SamplerDPMPP_2S_Ancestral": {"eta": 1.0, "s_noise": 1.0},
    "SamplerDPMPP_SDE": {"eta": 1.0, "s_noise": 1.0, "r": 0.5, "noise_device": "gpu"},
    "SamplerDPMPP_2M_SDE": {"solver_type": "heun", "eta": 1.0, "s_noise": 1.0, "noise_device": "cpu"},
    "SamplerDPMPP_3M_SDE": {"eta": 1.0, "s_noise": 1.0, "noise_device": "gpu"},
    "SamplerLMS": {"order": 4},
    "SamplerEulerAncestralCFGPP": {"eta": 1.0, "s_noise": 1.0},
    "SamplerER_SDE": {"solver_type": "Reverse-time SDE", "max_stage": 3, "eta": 0.5, "s_noise": 1.0},
    "SamplerSEEDS2": {"solver_type": "phi_2", "eta": 1.0, "s_noise": 1.0, "r": 0.5},
    "SamplerSASolver": {"model": ["1", 0], "eta": 1.0, "sde_start_percent": 0.2, "sde_end_percent": 0.8,
                        "s_noise": 1.0, "predictor_order": 3, "corrector_order": 4, "use_pece": True,
                        "simple_order_2": False},
    "SamplerDPMAdaptative": {"order": 3, "rtol": 0.05, "atol": 0.0078, "h_init": 0.05, "pcoeff": 0.0, "icoeff": 1.0,
                             "dcoeff": 0.0, "accept_safety": 0.81, "eta": 0.0, "s_noise": 1.0},
}
STEPS = 4
SCHEDULE_NODES = {
    "BasicScheduler": {"model": ["m3", 0], "scheduler": "karras", "steps": STEPS, "denoise": 1.0},
    "KarrasScheduler": {"steps": STEPS, "sigma_max": 14.614642, "sigma_min": 0.0291675, "rho": 7.0},
    "ExponentialScheduler": {"steps": STEPS, "sigma_max": 14.614642, "sigma_min": 0.0291675},
    "PolyexponentialScheduler": {"steps": STEPS, "sigma_max": 14.614642, "sigma_min": 0.0291675, "rho": 1.0},
    "LaplaceScheduler": {"steps": STEPS, "sigma_max": 14.614642, "sigma_min": 0.0291675, "mu": 0.0, "beta": 0.5},
    "VPScheduler": {"steps": STEPS, "beta_d": 19.9, "beta_min": 0.1, "eps_s": 0.001},
    "GITSScheduler": {"coeff": 1.2, "steps": STEPS, "denoise": 1.0},
    "BetaSamplingScheduler": {"model": ["1", 0], "steps": STEPS, "alpha": 0.6, "beta": 0.6},
    "SDTurboScheduler": {"model": ["1", 0], "steps": 2, "denoise": 1.0},
    "AlignYourStepsScheduler": {"model_type": "SD1", "steps": STEPS, "denoise": 1.0},
    "ManualSigmas": {"sigmas": "14.6, 3, 0.5, 0"},
    "SplitSigmas": {"sigmas": ["s_KarrasScheduler", 0], "step": 1},
    "SplitSigmasDenoise": {"sigmas": ["s_KarrasScheduler", 0], "denoise": 0.5},
    "SetFirstSigma": {"sigmas": ["s_KarrasScheduler", 0], "sigma": ["pct", 0]},
    "ExtendIntermediateSigmas": {"sigmas": ["s_KarrasScheduler", 0], "steps": 2, "start_at_sigma": -1.0,
                                 "end_at_sigma": 12.0, "spacing": "cosine"},
}


def api_export() -> dict:
    graph = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny.safetensors"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red circle", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "m1": {"class_type": "FreeU", "inputs": {"model": ["1", 0], "b1": 1.1, "b2": 1.2, "s1": 0.9, "s2": 0.2}},
        "m2": {"class_type": "FreeU_V2", "inputs": {"model": ["m1", 0], "b1": 1.3, "b2": 1.4, "s1": 0.9, "s2": 0.2}},
        "m3a": {"class_type": "RescaleCFG", "inputs": {"model": ["m2", 0], "multiplier": 0.7}},
        "m3b": {"class_type": "CFGZeroStar", "inputs": {"model": ["m3a", 0]}},
        "m3": {"class_type": "CFGNorm", "inputs": {"model": ["m3b", 0], "strength": 1.0}},
        "m4": {"class_type": "APG", "inputs": {"model": ["m3", 0], "eta": 1.0, "norm_threshold": 5.0, "momentum": 0.5}},
        "m5": {"class_type": "PerturbedAttentionGuidance", "inputs": {"model": ["m4", 0], "scale": 3.0}},
        "m6": {"class_type": "SelfAttentionGuidance", "inputs": {"model": ["m5", 0], "scale": 0.5, "blur_sigma": 2.0}},
        "m7": {"class_type": "PatchModelAddDownscale", "inputs": {
            "model": ["m6", 0], "block_number": 3, "downscale_factor": 2.0, "start_percent": 0.0, "end_percent": 0.35,
            "downscale_after_skip": True, "downscale_method": "bicubic", "upscale_method": "bislerp"}},
        "m8": {"class_type": "HyperTile", "inputs": {"model": ["m7", 0], "tile_size": 16, "swap_size": 2, "max_depth": 0,
                                                    "scale_depth": False}},
        "m9": {"class_type": "TomePatchModel", "inputs": {"model": ["m8", 0], "ratio": 0.3}},
        "m10": {"class_type": "DifferentialDiffusion", "inputs": {"model": ["m9", 0], "strength": 1.0}},
        "e1": {"class_type": "ModelSamplingContinuousEDM", "inputs": {"model": ["1", 0], "sampling": "v_prediction",
                                                                     "sigma_max": 120.0, "sigma_min": 0.002}},
        "e2": {"class_type": "ModelSamplingContinuousV", "inputs": {"model": ["e1", 0], "sampling": "v_prediction",
                                                                   "sigma_max": 500.0, "sigma_min": 0.03}},
        "pct": {"class_type": "SamplingPercentToSigma",
                "inputs": {"model": ["1", 0], "sampling_percent": 0.1, "return_actual_sigma": False}},
        "n1": {"class_type": "RandomNoise", "inputs": {"noise_seed": 7}},
        "n0": {"class_type": "DisableNoise", "inputs": {}},
        "g1": {"class_type": "CFGGuider", "inputs": {"model": ["m10", 0], "positive": ["2", 0], "negative": ["3", 0],
                                                     "cfg": 5.0}},
        "g4": {"class_type": "CFGGuider", "inputs": {"model": ["e2", 0], "positive": ["2", 0], "negative": ["3", 0],
                                                     "cfg": 3.0}},
        "g5": {"class_type": "PerpNegGuider", "inputs": {"model": ["m4", 0], "positive": ["2", 0], "negative": ["3", 0],
                                                         "empty_conditioning": ["3", 0], "cfg": 6.0, "neg_scale": 1.0}},
        "g2": {"class_type": "BasicGuider", "inputs": {"model": ["1", 0], "conditioning": ["2", 0]}},
        "g3": {"class_type": "DualCFGGuider", "inputs": {"model": ["1", 0], "cond1": ["2", 0], "cond2": ["3", 0],
                                                         "negative": ["3", 0], "cfg_conds": 4.0,
                                                         "cfg_cond2_negative": 2.0, "style": "nested"}},
        "noisy": {"class_type": "AddNoise", "inputs": {"model": ["1", 0], "noise": ["n1", 0],
                                                       "sigmas": ["s_KarrasScheduler", 0], "latent_image": ["4", 0]}},
        "flip": {"class_type": "FlipSigmas", "inputs": {"sigmas": ["s_ManualSigmas", 0]}},
    }
    for name, inputs in SAMPLER_NODES.items():
        graph[f"k_{name}"] = {"class_type": name, "inputs": inputs}
    for name, inputs in SCHEDULE_NODES.items():
        graph[f"s_{name}"] = {"class_type": name, "inputs": inputs}
    samplers, guiders = list(SAMPLER_NODES), ["g1", "g2", "g3", "g4", "g5"]
    for index, schedule in enumerate(SCHEDULE_NODES):
        output = 1 if schedule.startswith("Split") else 0  # the low sigmas
        noise, latent = ("n0", "noisy") if index % 5 == 4 else ("n1", "4")
        graph[f"run{index}"] = {"class_type": "SamplerCustomAdvanced", "inputs": {
            "noise": [noise, 0], "guider": [guiders[index % len(guiders)], 0], "sampler": [f"k_{samplers[index % len(samplers)]}", 0],
            "sigmas": [f"s_{schedule}", output], "latent_image": [latent, 0]}}
    graph["run_custom"] = {"class_type": "SamplerCustom", "inputs": {
        "model": ["m3", 0], "add_noise": True, "noise_seed": 3, "cfg": 6.0, "positive": ["2", 0], "negative": ["3", 0],
        "sampler": ["k_KSamplerSelect", 0], "sigmas": ["s_BasicScheduler", 0], "latent_image": ["4", 0]}}
    graph["run_flip"] = {"class_type": "SamplerCustom", "inputs": {
        "model": ["1", 0], "add_noise": False, "noise_seed": 0, "cfg": 1.0, "positive": ["2", 0], "negative": ["3", 0],
        "sampler": ["k_SamplerLMS", 0], "sigmas": ["flip", 0], "latent_image": ["4", 0]}}
    for key in [k for k in graph if k.startswith("run")]:
        for output in (0, 1):
            graph[f"{key}_decode{output}"] = {"class_type": "VAEDecode", "inputs": {"samples": [key, output],
                                                                                   "vae": ["1", 2]}}
            graph[f"{key}_show{output}"] = {"class_type": "PreviewImage", "inputs": {"images": [f"{key}_decode{output}", 0]}}
    return graph


def test_every_custom_sampling_node_validates_and_runs(tmp_path):
    write_tiny_checkpoint(tmp_path / "models" / "checkpoints" / "tiny.safetensors")
    paths = Paths(models_dirs=(tmp_path / "models",), output_dir=tmp_path / "out", input_dir=tmp_path / "in",
                  temp_dir=tmp_path / "tmp", assets_dir=tmp_path / "no-assets")
    registry = Registry.load(paths)
    graph = api_export()
    used = {node["class_type"] for node in graph.values()}
    custom = {spec.id for spec in registry if spec.category.startswith("sampling/custom_sampling")}
    assert custom <= used, custom - used
    path = tmp_path / "export_api.json"
    path.write_text(json.dumps(graph))
    workflow = load_workflow(path, registry)
    assert validate(workflow, registry, paths) == []
    shown = []
    Executor(registry, paths).run(workflow, on_event=lambda e: shown.append(e) if type(e).__name__ == "ImagesShown" else None)
    runs = [k for k in graph if k.startswith("run") and "_" not in k.removeprefix("run_")]
    assert len(shown) == 2 * len(runs)
    assert all(np.isfinite(np.asarray(event.images)).all() for event in shown)
