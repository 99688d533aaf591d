"""KSampler: from a LATENT, a model and conditioning to a denoised LATENT, as ComfyUI does it.

1. Sigmas from the scheduler; ``denoise`` < 1 builds the schedule for int(steps / denoise) steps
   and keeps the last steps + 1 (img2img); start/end steps cut it (KSamplerAdvanced), the end
   forced to 0 unless leftover noise is wanted.
2. Noise: one CPU ``randn`` seeded with the seed for the whole batch (zeros when add_noise is off).
3. Start: x = scaled latent + noise * sigma0 (noise * sqrt(1 + sigma0^2) at the top of the
   schedule); ancestral noise comes from a CPU generator seeded with seed + 1.
4. With a noise mask (inpainting) the unmasked region is reset at every step to the source
   latent noised to the current sigma, and the model's estimate there to the source. Inpainting
   models (9 input channels) also get the mask and the masked image's latent as extra channels.
5. The result is unscaled back into the VAE's space.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from nodeflow.models.streaming import streamed_bytes
from nodeflow.runtime.threads import SCORE_WORK, cpu_threads, network_work, threads_for
from nodeflow.sampling.conditioning import inpaint_concat
from nodeflow.sampling.guidance import CFGDenoiser
from nodeflow.sampling.memory import images_per_call
from nodeflow.sampling.model import DiffusionModel
from nodeflow.sampling.noise import NoiseSource, initial_noise
from nodeflow.sampling.samplers import DISCARD_PENULTIMATE, get_sampler
from nodeflow.sampling.samplers_cfg_pp import UncondRecord
from nodeflow.sampling.schedulers import compute_sigmas

StepCallback = Callable[[int, int, torch.Tensor], None]  # (step, total, denoised latent)


def schedule(model: DiffusionModel, sampler_name: str, scheduler: str, steps: int,
             denoise: float = 1.0) -> torch.Tensor:
    """The sigmas a KSampler visits for ``steps`` and ``denoise``."""
    if denoise <= 0.0:
        return torch.zeros(0)
    total = steps if denoise > 0.9999 else int(steps / denoise)
    discard = sampler_name in DISCARD_PENULTIMATE
    sigmas = compute_sigmas(model.sampling, scheduler, total + (1 if discard else 0))
    if discard:
        sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
    return sigmas[-(steps + 1):]


def cut_schedule(sigmas: torch.Tensor, start_step: int | None, end_step: int | None,
                 force_full_denoise: bool) -> torch.Tensor | None:
    """KSamplerAdvanced's start/end steps; None when nothing is left to do."""
    if end_step is not None and end_step < len(sigmas) - 1:
        sigmas = sigmas[:end_step + 1].clone()
        if force_full_denoise:
            sigmas[-1] = 0
    if start_step is not None:
        if start_step >= len(sigmas) - 1:
            return None
        sigmas = sigmas[start_step:]
    return sigmas


def prepare_mask(mask: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """A noise mask (H, W), (B, H, W) or (B, 1, H, W) resized (bilinear) to the latent (B, C, h, w)."""
    mask = mask.float().reshape(-1, 1, mask.shape[-2], mask.shape[-1])
    mask = F.interpolate(mask, size=tuple(shape[-2:]), mode="bilinear", align_corners=False)
    mask = mask.expand(-1, shape[1], -1, -1)
    repeats = math.ceil(shape[0] / mask.shape[0])
    return mask.repeat(repeats, 1, 1, 1)[:shape[0]]


def sample(model: DiffusionModel, *, seed: int, steps: int, cfg: float, sampler_name: str,
           scheduler: str, positive: list, negative: list, latent: dict, denoise: float = 1.0,
           add_noise: bool = True, start_step: int | None = None, end_step: int | None = None,
           force_full_denoise: bool = True, callback: StepCallback | None = None,
           check_cancel: Callable[[], None] | None = None, concat: torch.Tensor | None = None,
           max_batch: int | None = None) -> dict:
    """Run a sampler; returns a new LATENT dict (the input's extra keys kept).

    ``callback(step, total, denoised)`` follows every step (denoised: the model's clean-latent
    estimate in the model's scaled space); ``check_cancel()`` runs before every model evaluation
    and may raise to stop sampling. ``concat``: extra input channels (inpainting models);
    ``max_batch``: at most this many images per model call.
    """
    samples = latent["samples"]
    sigmas = schedule(model, sampler_name, scheduler, steps, denoise)
    sigmas = cut_schedule(sigmas, start_step, end_step, force_full_denoise) if len(sigmas) else None
    if sigmas is None or len(sigmas) < 2:
        return dict(latent)
    noise = initial_noise(samples.shape, seed, latent.get("batch_index")) if add_noise else torch.zeros(samples.shape)

    def guidance(batch_limit: int | None) -> CFGDenoiser:
        return CFGDenoiser(model, positive, negative, cfg, concat, batch_limit)

    output, _ = run_sampler(model, guidance, get_sampler(sampler_name), sigmas, latent, noise, seed,
                            callback=callback, check_cancel=check_cancel, max_batch=max_batch)
    return output


def run_sampler(model: DiffusionModel, guidance: Callable[[int | None], Callable], sampler: Callable,
                sigmas: torch.Tensor, latent: dict, noise: torch.Tensor, seed: int, *,
                callback: StepCallback | None = None, check_cancel: Callable[[], None] | None = None,
                max_batch: int | None = None) -> tuple[dict, dict]:
    """Run ``sampler`` over ``sigmas`` from ``latent`` with the initial ``noise`` (CPU, the
    latent's shape); ``guidance(max_batch)`` makes the denoiser (CFG over the conditioning lists).
    The samplers' own noise: ``NoiseSource(seed)`` (ancestral steps seeded with ``seed`` + 1,
    SDE samplers' Brownian tree with ``seed``, as ComfyUI's).

    Returns (output, denoised_output) LATENTs: the sampled latent, and the model's last clean
    estimate (SamplerCustom's two outputs), both with the input's extra keys."""
    if len(sigmas) < 2:
        return dict(latent), dict(latent)
    samples = latent["samples"].float().to(model.device)  # (B, C, h, w); sampling runs on the model's device
    sigmas = sigmas.float().to(samples.device)
    noise = noise.float().to(samples.device)  # drawn on the CPU (same image on any device), then moved
    source = model.latent_format.process_in(samples)  # (B, C, h, w)
    max_denoise = math.isclose(float(sigmas[0]), float(model.sampling.sigma_max), rel_tol=1e-5) \
        or float(sigmas[0]) > float(model.sampling.sigma_max)
    x = model.sampling.noise_scaling(sigmas[0], noise, source, max_denoise)
    channels = getattr(getattr(model.unet, "config", None), "model_channels", None)
    if channels is not None:  # a U-Net of ours (not a test's toy network): or refuse, with the figures
        max_batch = images_per_call(channels, model.dtype, samples.device, samples.shape, max_batch,
                                    weights_bytes=streamed_bytes(model.unet))
    denoiser = guidance(max_batch)
    extra = {}
    if getattr(sampler, "wants_uncond", False):  # CFG++ samplers read the unconditional estimate
        extra["uncond"] = UncondRecord()
        denoiser.uncond_record = extra["uncond"]
    if getattr(sampler, "wants_model_sampling", False):  # SA-Solver: its default SDE interval is the model's
        extra["model_sampling"] = model.sampling
    mask = latent.get("noise_mask")
    keep = None if mask is None else prepare_mask(mask.to(samples.device), samples.shape)  # (B, C, h, w)
    _give_inpaint_concat(denoiser, model, source, keep)
    _give_seed(denoiser, seed)
    denoise_fn = denoiser if keep is None else _masked(denoiser, model, keep, source, noise, sigmas)
    if check_cancel is not None:
        denoise_fn = _cancellable(denoise_fn, check_cancel)
    last = {}  # the latest step's clean estimate: every sampler reports at least one step

    def report(step: int, total: int, x: torch.Tensor, denoised: torch.Tensor) -> None:
        last["denoised"] = denoised
        if callback is not None:
            callback(step, total, denoised)

    with torch.inference_mode(), cpu_threads(_sampling_threads(model, samples)):
        x = sampler(denoise_fn, x, sigmas, noise=NoiseSource(seed), callback=report, **extra)
    if keep is not None:  # outside the mask: the source noised to the last sigma
        x = x * keep + model.sampling.noise_scaling(sigmas[-1], noise, source, False) * (1 - keep)
    device = latent["samples"].device
    output = dict(latent) | {"samples": _ordinary(model.latent_format.process_out(x).to(device))}
    denoised = _ordinary(model.latent_format.process_out(last["denoised"]).to(device))
    return output, dict(latent) | {"samples": denoised}


def _sampling_threads(model: DiffusionModel, samples: torch.Tensor) -> int:
    """CPU threads for sampling (nodeflow.runtime.threads): one for a small U-Net on a small
    latent, all of torch's otherwise; irrelevant on a GPU (the count is left as it is)."""
    if samples.device.type != "cpu":
        return torch.get_num_threads()
    batch, _, height, width = samples.shape
    scores = getattr(getattr(model.unet, "config", None), "attention_scores", None)
    attention = SCORE_WORK * batch * scores(height, width) if scores is not None else 0
    return threads_for(network_work(model.unet, batch * height * width) + attention)


def _ordinary(tensor: torch.Tensor) -> torch.Tensor:
    """A tensor made under inference mode as an ordinary one, so that later nodes may use it
    in any way (an inference tensor refuses in-place updates outside inference mode)."""
    return tensor.clone() if tensor.is_inference() else tensor


def _give_inpaint_concat(denoiser: Callable, model: DiffusionModel, source: torch.Tensor,
                         keep: torch.Tensor | None) -> None:
    """An inpainting model's mask and masked-latent channels (nodeflow.sampling.conditioning.
    inpaint_concat: from InpaintModelConditioning's options, else from the latent and its noise
    mask) for each CFGDenoiser that was given none: ``denoiser`` itself or those it holds
    (DualCFGGuider's), each from its own lists. Other models are left as they are."""
    parts = [denoiser, *getattr(denoiser, "__dict__", {}).values()]
    for part in parts:
        if isinstance(part, CFGDenoiser) and part.concat is None:
            part.concat = inpaint_concat(model, [part.positive, part.negative], source, keep)


def _give_seed(denoiser: Callable, seed: int) -> None:
    """The run's seed to each CFGDenoiser (``denoiser`` itself or those it holds), for the ADM
    vectors that draw noise from it (unCLIP's, nodeflow.sampling.unclip)."""
    for part in [denoiser, *getattr(denoiser, "__dict__", {}).values()]:
        if isinstance(part, CFGDenoiser):
            part.seed = seed


def _cancellable(denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 check_cancel: Callable[[], None]) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    def checked(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        check_cancel()
        return denoise(x, sigma)

    return checked


def _masked(denoiser: CFGDenoiser, model: DiffusionModel, keep: torch.Tensor, source: torch.Tensor,
            noise: torch.Tensor, sigmas: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Inpainting: outside the mask, x is the source noised to sigma and D is the source. A model
    patched with a mask function (DifferentialDiffusion) turns the mask into the one for this
    sigma first."""

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        mask = keep
        if model.denoise_mask_function is not None:
            mask = model.denoise_mask_function(model.sampling, sigma, keep, sigmas)
        noised_source = model.sampling.noise_scaling(sigma, noise, source, max_denoise=False)
        x = x * mask + noised_source * (1 - mask)
        return denoiser(x, sigma) * mask + source * (1 - mask)

    return denoise
