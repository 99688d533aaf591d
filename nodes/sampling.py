"""Sampler nodes: KSampler and KSamplerAdvanced (ComfyUI's inputs and semantics)."""

from __future__ import annotations

from nodeflow.spec import CONDITIONING, LATENT, MODEL, Choice, Float, Input, Int, Output, node
from nodeflow.sampling.samplers import SAMPLER_NAMES
from nodeflow.sampling.schedulers import SCHEDULER_NAMES


def _run(ctx, model, **settings) -> dict:
    """Sample with progress (and a latent preview every ``ctx.preview_every`` steps; the projection
    is cheap, a 4 x 3 matmul) reported to ``ctx`` and cancellation checked before every model
    evaluation."""
    from nodeflow.sampling.ksampler import sample
    from nodeflow.sampling.latent_preview import progress_reporter

    ctx.check_cancel()
    return sample(model, callback=progress_reporter(ctx, model.latent_format), check_cancel=ctx.check_cancel,
                  **settings)


COMMON_HEAD = [Input("model", MODEL)]


def _settings_inputs(seed_name: str) -> list:
    return [
        Int(seed_name, 0, seed=True, tooltip="The noise seed: the same seed gives the same image"),
        Int("steps", 20, min=1, max=10000),
        Float("cfg", 8.0, min=0.0, max=100.0, step=0.1,
              tooltip="Classifier-free guidance scale: how closely to follow the prompt"),
        Choice("sampler_name", list(SAMPLER_NAMES)),
        Choice("scheduler", list(SCHEDULER_NAMES)),
        Input("positive", CONDITIONING),
        Input("negative", CONDITIONING),
        Input("latent_image", LATENT),
    ]


@node("KSampler", display="KSampler", category="sampling",
      inputs=COMMON_HEAD + _settings_inputs("seed") + [
          Float("denoise", 1.0, min=0.0, max=1.0, step=0.01,
                tooltip="How much of the schedule to run: below 1 keeps part of the input latent (img2img)")],
      outputs=[Output(LATENT)])
def ksampler(model, seed: int, steps: int, cfg: float, sampler_name: str, scheduler: str,
             positive: list, negative: list, latent_image: dict, denoise: float, ctx):
    """Denoise a latent with the model, following the positive and away from the negative prompt."""
    return (_run(ctx, model, seed=seed, steps=steps, cfg=cfg, sampler_name=sampler_name,
                 scheduler=scheduler, positive=positive, negative=negative, latent=latent_image,
                 denoise=denoise),)


@node("KSamplerAdvanced", display="KSampler (Advanced)", category="sampling",
      inputs=[Input("model", MODEL), Choice("add_noise", ["enable", "disable"])]
      + _settings_inputs("noise_seed")
      + [Int("start_at_step", 0, min=0, max=10000), Int("end_at_step", 10000, min=0, max=10000),
         Choice("return_with_leftover_noise", ["disable", "enable"])],
      outputs=[Output(LATENT)])
def ksampler_advanced(model, add_noise: str, noise_seed: int, steps: int, cfg: float, sampler_name: str,
                      scheduler: str, positive: list, negative: list, latent_image: dict,
                      start_at_step: int, end_at_step: int, return_with_leftover_noise: str, ctx):
    """KSampler over a part of the schedule, optionally without adding noise or finishing it."""
    return (_run(ctx, model, seed=noise_seed, steps=steps, cfg=cfg, sampler_name=sampler_name,
                 scheduler=scheduler, positive=positive, negative=negative, latent=latent_image,
                 add_noise=add_noise == "enable", start_step=start_at_step, end_step=end_at_step,
                 force_full_denoise=return_with_leftover_noise != "enable"),)
