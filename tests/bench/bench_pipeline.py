"""A whole txt2img run, ours against diffusers' StableDiffusionPipeline, from the same single file.

    python tests/bench/bench_pipeline.py [--size 256] [--steps 10] [--runs 3] [--tiny]

One SD1.5-architecture checkpoint with random weights (fp16, original layout, written by
nodeflow's exporter as in tests/test_single_file_parity.py; ``--tiny``: a scaled-down config
for a quick check). Ours: the default workflow's graph on that file (euler, normal schedule,
cfg 7), a new prompt and seed per run, so the text encoders, the sampler, VAEDecode and
SaveImage run each time and only the loader is cached. diffusers: StableDiffusionPipeline built
from the same file through diffusers' own single-file converters, EulerDiscreteScheduler, same
size, steps and guidance, output as PIL. Runs alternate (ours, theirs, ...); the medians and
the ratio ours / diffusers (goal <= 0.8) are printed, for the whole run and per sampler
step (the time between the first and the last step's end), with the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # tests.test_single_file_parity: the checkpoint writer and LDM config


def our_workflow(path: Path, size: int, steps: int):
    from nodeflow.formats import load_workflow

    workflow = load_workflow(ROOT / "workflows" / "txt2img.json")
    workflow.nodes["4"].inputs["ckpt_name"] = path.name
    workflow.nodes["5"].inputs.update(width=size, height=size)
    workflow.nodes["3"].inputs.update(steps=steps, cfg=7.0)
    return workflow


def diffusers_pipeline(path: Path, unet_config, vae_config, clip_sizes: dict, folder: Path):
    import diffusers
    import transformers
    from diffusers.loaders import single_file_utils as sfu

    from nodeflow.text.tokenizer import default_tokenizer_dir
    from tests.test_single_file_parity import clip_config, original_config

    checkpoint = sfu.load_single_file_checkpoint(str(path))
    ldm = original_config(unet_config, vae_config)

    def build(cls, config, converted):
        with torch.device("meta"):
            model = cls(**config)
        model.load_state_dict({k: v.float() for k, v in converted.items()}, strict=True, assign=True)
        return model.eval()

    config = sfu.create_unet_diffusers_config_from_ldm(ldm, checkpoint)
    unet = build(diffusers.UNet2DConditionModel, config, sfu.convert_ldm_unet_checkpoint(checkpoint, config))
    config = sfu.create_vae_diffusers_config_from_ldm(ldm, checkpoint)
    vae = build(diffusers.AutoencoderKL, config, sfu.convert_ldm_vae_checkpoint(checkpoint, config))
    clip_config(clip_sizes).save_pretrained(folder)
    text = sfu.create_diffusers_clip_model_from_ldm(transformers.CLIPTextModel, checkpoint, config=str(folder),
                                                    local_files_only=True, torch_dtype=torch.float32).eval()
    tokens = default_tokenizer_dir()
    tokenizer = transformers.CLIPTokenizer(str(tokens / "vocab.json"), str(tokens / "merges.txt"),
                                         model_max_length=77)
    scheduler = diffusers.EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                                 num_train_timesteps=1000, steps_offset=1)
    return diffusers.StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet,
                                             scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                             requires_safety_checker=False)


def per_step(stamps: list[float]) -> float:
    """Seconds per step from the times each step ended (the first step's start-up left out)."""
    return (stamps[-1] - stamps[0]) / (len(stamps) - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="a scaled-down config (seconds)")
    args = parser.parse_args()
    from nodeflow.engine.events import Progress
    from nodeflow.engine.executor import Executor
    from nodeflow.engine.registry import Registry
    from nodeflow.models.unet import UNetConfig
    from nodeflow.models.vae import VAEConfig
    from nodeflow.runtime.paths import Paths
    from tests.test_single_file_parity import TINY_CLIP, TINY_UNET, TINY_VAE, VIT_L, write_checkpoint

    configs = (TINY_UNET, TINY_VAE, TINY_CLIP) if args.tiny else (UNetConfig(), VAEConfig(), VIT_L)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        (folder / "models" / "checkpoints").mkdir(parents=True)
        path = write_checkpoint(folder / "models" / "checkpoints" / "sd15-random.safetensors", *configs)
        paths = Paths(models_dirs=(folder / "models",), output_dir=folder / "out", temp_dir=folder / "tmp")
        executor = Executor(Registry.load(paths), paths)
        workflow = our_workflow(path, args.size, args.steps)
        pipeline = diffusers_pipeline(path, *configs, folder / "clip")
        executor.run(workflow)  # loads the checkpoint once (cached after)
        times: dict[str, list[float]] = {"ours": [], "diffusers": []}
        steps: dict[str, list[float]] = {"ours": [], "diffusers": []}  # seconds per step after the first
        for run in range(args.runs):
            prompt = f"a photo of an astronaut riding a horse, take {run}"
            workflow.nodes["6"].inputs["text"], workflow.nodes["3"].inputs["seed"] = prompt, run
            stamps: list[float] = []
            started = time.perf_counter()
            executor.run(workflow, preview_every=0,  # the sampler's steps, timed as they end
                         on_event=lambda event: stamps.append(time.perf_counter()) if isinstance(event, Progress) else None)
            times["ours"].append(time.perf_counter() - started)
            steps["ours"].append(per_step(stamps))
            stamps = []
            started = time.perf_counter()
            with torch.no_grad():
                pipeline(prompt, height=args.size, width=args.size, num_inference_steps=args.steps,
                         guidance_scale=7.0, generator=torch.Generator().manual_seed(run),
                         callback_on_step_end=lambda pipe, i, t, kwargs: stamps.append(time.perf_counter()) or kwargs)
            times["diffusers"].append(time.perf_counter() - started)
            steps["diffusers"].append(per_step(stamps))
    ours, theirs = statistics.median(times["ours"]), statistics.median(times["diffusers"])
    our_step, their_step = statistics.median(steps["ours"]), statistics.median(steps["diffusers"])
    what = "scaled-down" if args.tiny else "SD1.5-size"
    print(f"txt2img {what}, {args.size}x{args.size}, {args.steps} euler steps, cfg 7: ours {ours:.2f} s, "
          f"diffusers {theirs:.2f} s (medians of {args.runs}); ratio {ours / theirs:.2f}")
    print(f"per sampler step: ours {our_step * 1000:.1f} ms, diffusers {their_step * 1000:.1f} ms; "
          f"ratio {our_step / their_step:.2f}")


if __name__ == "__main__":
    main()
