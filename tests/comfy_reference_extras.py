"""More of ComfyUI's graph for tests/comfy_reference.py (issue 15): the samplers k-diffusion lacks
(er_sde, res_multistep, euler_cfg_pp), the Align Your Steps schedule of SamplerCustomAdvanced, and
the model patches RescaleCFG, FreeU, FreeU_V2 and PerturbedAttentionGuidance. Nothing here imports
nodeflow.

The samplers are written here from the mathematics of ComfyUI's definitions (comfy/k_diffusion/
sampling.py: sample_er_sde, res_multistep, sample_euler_cfg_pp) for an epsilon or v model (VP:
alpha = 1, half log-SNR lambda = -log sigma), with the noise ComfyUI gives them on the CPU.
The patches lean on diffusers where it has the same mathematics:

- AlignYourStepsScheduler(SDXL, 10 steps): ComfyUI's table is the model's sigmas at the published
  AYS timesteps, which diffusers carries as ``AysSchedules["StableDiffusionXLTimesteps"]``; the last
  sigma is replaced by 0. (diffusers' ``StableDiffusionXLSigmas`` are the published values rounded
  for display, up to 1.4% off ComfyUI's: see ``test_reference_ays_schedule``.)
- RescaleCFG on a v model is diffusers' ``rescale_noise_cfg`` on the raw v outputs (CFG-combined v
  against the conditional v), turned back into a denoised estimate.
- PerturbedAttentionGuidance: the conditional prediction again with diffusers' attention processors of
  the mid block's self-attentions swapped for the identity product to_out(to_v(x)).
- FreeU / FreeU_V2: diffusers' ``enable_freeu`` hook in its up blocks, with the choice of scales
  made as ComfyUI makes it. ComfyUI picks by the width of the decoder's backbone features h
  (model_channels * 4 -> b1, s1; * 2 -> b2, s2; any other width: untouched); diffusers picks by up
  block (the first -> b1, s1; the second -> b2, s2). These differ: in a real SDXL U-Net
  (320, 640, 1280) the first resnet of up block 1 gets 1280-wide h (ComfyUI: b1, diffusers: b2)
  and the first of up block 2 640-wide h (ComfyUI: b2, diffusers: none); in the tiny fixture
  (64, 128: no 256-wide level) ComfyUI scales only 128-wide h, with b2 and s2, in both resnets of
  up block 0 and the first of up block 1, where diffusers would use b1 / s1 and b2 / s2. So the
  reference replaces diffusers' ``apply_freeu`` by a width-keyed one (keeping its Fourier filter).
"""

from __future__ import annotations

import contextlib
from functools import partial
from unittest import mock

import numpy as np
import torch

from tests import comfy_reference as base


# ---- samplers

def _ones(x: torch.Tensor) -> torch.Tensor:
    return x.new_ones([x.shape[0]])


@torch.no_grad()
def sample_euler_cfg_pp(denoiser, x, sigmas):
    """Euler (CFG++): the step's direction from the unconditional prediction, its start from the
    guided one: x' = D_cfg + sigma' (x - D_uncond) / sigma; the last step lands on D_cfg."""
    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
        denoised = denoiser(x, sigma * _ones(x))
        if sigma_next == 0:
            x = denoised
        else:
            x = denoised + sigma_next * (x - denoiser.uncond_denoised) / sigma
    return x


@torch.no_grad()
def sample_res_multistep(denoiser, x, sigmas):
    """RES second-order multistep (Zhang et al. 2023, eta 0): in time t = -log sigma, over a step
    of h = t' - t, x' = e^-h x + h (b1 D + b2 D_prev) with phi1(z) = (e^z - 1) / z,
    phi2(z) = (phi1(z) - 1) / z at z = -h, c = (t_prev - t) / h, b2 = phi2 / c, b1 = phi1 - b2.
    First step (no previous prediction) and the last (to sigma 0): Euler."""
    previous = None
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoiser(x, sigma * _ones(x))
        if previous is None or sigma_next == 0:
            x = x + (x - denoised) / sigma * (sigma_next - sigma)
        else:
            t, t_next, t_prev = -sigma.log(), -sigma_next.log(), -sigmas[i - 1].log()
            h = t_next - t
            c = (t_prev - t) / h
            phi1 = torch.expm1(-h) / -h
            phi2 = (phi1 - 1) / -h
            b2 = phi2 / c
            x = torch.exp(-h) * x + h * ((phi1 - b2) * denoised + b2 * previous)
        previous = denoised
    return x


def er_sde_scale(value: torch.Tensor) -> torch.Tensor:
    """ER-SDE's default noise scale function: l (e^(l^0.3) + 10)."""
    return value * (torch.exp(value ** 0.3) + 10.0)


@torch.no_grad()
def sample_er_sde(denoiser, x, sigmas, noise, max_stage: int = 3, points: int = 200):
    """ER-SDE-Solver-3 (Cui et al. 2023, "Elucidating the solution space of extended reverse-time
    SDEs"), VP form with lambda = sigma / alpha = sigma. With r = f(l') / f(l) (f: er_sde_scale):
    x' = r x + (1 - r) D [+ (l' - l + f(l') S0) D1] [+ ((l' - l)^2 / 2 + f(l') S1) D2]
    + sqrt(l'^2 - l^2 r^2) noise, D1 / D2 the first / second divided differences of the previous
    predictions in lambda (the second over half the two-step span), S0 and S1 the integrals of 1/f
    and (u - l)/f over [l', l] as a left Riemann sum of ``points`` points from l'. Stage k from
    step k on (up to ``max_stage``); the last step lands on D and draws no noise."""
    lambdas = sigmas
    old, old_d = None, None
    for i in range(len(sigmas) - 1):
        denoised = denoiser(x, sigmas[i] * _ones(x))
        stage = min(max_stage, i + 1)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            l_s, l_t = lambdas[i], lambdas[i + 1]
            r = er_sde_scale(l_t) / er_sde_scale(l_s)
            x = r * x + (1 - r) * denoised
            if stage >= 2:
                width = (l_s - l_t) / points
                at = l_t + width * torch.arange(points, dtype=torch.float32)
                f_at = er_sde_scale(at)
                d1 = (denoised - old) / (l_s - lambdas[i - 1])
                x = x + ((l_t - l_s) + er_sde_scale(l_t) * (1 / f_at).sum() * width) * d1
                if stage >= 3:
                    d2 = (d1 - old_d) / ((l_s - lambdas[i - 2]) / 2)
                    integral = ((at - l_s) / f_at).sum() * width
                    x = x + ((l_t - l_s) ** 2 / 2 + er_sde_scale(l_t) * integral) * d2
                old_d = d1
            x = x + noise() * (l_t ** 2 - l_s ** 2 * r ** 2).sqrt().nan_to_num(nan=0.0)
        old = denoised
    return x


def run_sampler(job, denoiser, x, sigmas, noise_seed_offset: int = 1):
    """The samplers written here, or comfy_reference's (k-diffusion's) for the others. ER-SDE's
    noise is ComfyUI's default noise sampler on the CPU: a generator seeded with seed + 1."""
    if job.sampler == "euler_cfg_pp":
        return sample_euler_cfg_pp(denoiser, x, sigmas)
    if job.sampler == "res_multistep":
        return sample_res_multistep(denoiser, x, sigmas)
    if job.sampler == "er_sde":
        generator = torch.Generator().manual_seed(job.seed + noise_seed_offset)
        return sample_er_sde(denoiser, x, sigmas, lambda: torch.randn(x.shape, generator=generator))
    return base.run_sampler(job, denoiser, x, sigmas)


# ---- schedules

def align_your_steps_sdxl(table: torch.Tensor) -> torch.Tensor:
    """AlignYourStepsScheduler(SDXL, 10 steps, denoise 1): the sigmas at AYS's SDXL timesteps, then 0."""
    from diffusers.schedulers import AysSchedules

    timesteps = AysSchedules["StableDiffusionXLTimesteps"]
    assert len(timesteps) == 10  # 10 steps: AYS's own levels, no interpolation
    return torch.cat([table[timesteps], table.new_zeros(1)])


# ---- model patches

class RescaledCFG(base.Denoiser):
    """RescaleCFG(multiplier) on a v model: diffusers' rescale_noise_cfg on the v outputs."""

    def __init__(self, *args, multiplier: float):
        super().__init__(*args)
        assert self.v, "the reference's RescaleCFG is for v-prediction models"
        self.multiplier = multiplier

    def guide(self, x, sigma, uncond, cond, raw):
        from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg

        v_uncond, v_cond = raw.chunk(2)
        v = rescale_noise_cfg(v_uncond + (v_cond - v_uncond) * self.cfg, v_cond, guidance_rescale=self.multiplier)
        s = sigma[:, None, None, None]
        return x / (s ** 2 + 1) - v * s / (s ** 2 + 1) ** 0.5


class IdentitySelfAttention:
    """PAG's perturbed self-attention as a diffusers attention processor: every token attends only
    to itself, so the block's output is to_out(to_v(x))."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        return attn.to_out[1](attn.to_out[0](attn.to_v(hidden_states)))


class PerturbedAttentionCFG(base.Denoiser):
    """PerturbedAttentionGuidance(scale): CFG plus scale x (cond - P), P the conditional prediction
    again with the self-attention of every transformer block in diffusers' mid block (ComfyUI's
    ("middle", 0)) replaced by IdentitySelfAttention, as ComfyUI's post-CFG function."""

    def __init__(self, *args, scale: float):
        super().__init__(*args)
        self.scale = scale

    def guide(self, x, sigma, uncond, cond, raw):
        return super().guide(x, sigma, uncond, cond, raw) + (cond - self.perturbed(x, sigma)) * self.scale

    @torch.no_grad()
    def perturbed(self, x, sigma):
        blocks = [block.attn1 for attention in self.unet.mid_block.attentions
                  for block in attention.transformer_blocks]
        original = [block.processor for block in blocks]
        for block in blocks:
            block.set_processor(IdentitySelfAttention())
        try:
            s = sigma[:, None, None, None]
            out = self.unet(x * (s ** 2 + 1) ** -0.5, self.timestep(sigma), **self.cond).sample
        finally:
            for block, processor in zip(blocks, original):
                block.set_processor(processor)
        return x / (s ** 2 + 1) - out * s / (s ** 2 + 1) ** 0.5 if self.v else x - s * out


def freeu_by_width(model_channels: int, version: int):
    """A replacement for diffusers' apply_freeu that scales as ComfyUI's FreeU / FreeU_V2 do: by
    the width of h (see the module docstring). Version 2 scales the backbone half of h by
    1 + (b - 1) m, m: h's channel mean, min-max normalised per image."""
    from diffusers.utils.torch_utils import fourier_filter

    def apply(resolution_idx, h, skip, **k):
        scales = {model_channels * 4: (k["b1"], k["s1"]), model_channels * 2: (k["b2"], k["s2"])}
        if h.shape[1] not in scales:
            return h, skip
        b, s = scales[h.shape[1]]
        half = h.shape[1] // 2
        if version == 2:
            mean = h.mean(1, keepdim=True)
            low = mean.amin(dim=(2, 3), keepdim=True)
            high = mean.amax(dim=(2, 3), keepdim=True)
            b = (b - 1) * (mean - low) / (high - low) + 1
        h[:, :half] = h[:, :half] * b
        return h, fourier_filter(skip, threshold=1, scale=s)

    return apply


# ---- the graph

@torch.no_grad()
def render(path, ldm: dict, sources: dict, job: base.Job, *, by_up_block: bool = False,
           noise_seed_offset: int = 1) -> np.ndarray:
    """comfy_reference.render with ``job``'s sampler, schedule and patches as described above.
    Deliberate mistakes, to show they are seen: ``by_up_block``, diffusers' own FreeU scale choice
    (by up block, not ComfyUI's by width); ``noise_seed_offset`` other than 1 for ER-SDE's noise."""
    kwargs = {"sample": partial(run_sampler, noise_seed_offset=noise_seed_offset)}
    if job.scheduler == "align_your_steps":
        assert job.family == "sdxl" and job.steps == 10 and job.custom_advanced
        kwargs["sigmas"] = align_your_steps_sdxl(base.sigma_table())
    freeu = None
    for name, inputs in job.patches:
        inputs = dict(inputs)
        if name == "RescaleCFG":
            kwargs["denoiser"] = partial(RescaledCFG, multiplier=inputs["multiplier"])
        elif name == "PerturbedAttentionGuidance":
            kwargs["denoiser"] = partial(PerturbedAttentionCFG, scale=inputs["scale"])
        elif name in ("FreeU", "FreeU_V2"):
            assert freeu is None, "one FreeU patch at a time"
            freeu = (name, inputs)
        else:
            raise ValueError(f"no reference for {name}")
    patched = contextlib.nullcontext()
    if freeu is not None:
        name, inputs = freeu
        channels = ldm["model"]["params"]["network_config"]["params"]["model_channels"]
        kwargs["unet_hook"] = lambda unet: unet.enable_freeu(**{k: inputs[k] for k in ("s1", "s2", "b1", "b2")})
        if not by_up_block:
            from diffusers.models.unets import unet_2d_blocks
            patched = mock.patch.object(unet_2d_blocks, "apply_freeu",
                                        freeu_by_width(channels, 2 if name == "FreeU_V2" else 1))
    with patched:
        return base.render(path, ldm, sources, job, **kwargs)
