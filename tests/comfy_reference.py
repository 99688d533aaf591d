"""Expected images for ComfyUI's basic graph, made without nodeflow: an independent loop on
diffusers' and transformers' networks that follows every convention in
shared/reference/comfyui-conventions.md (checked there against ComfyUI's own code to 1/255).

It reads the same single file as nodeflow, but through diffusers' single-file converters (U-Net,
VAE) and the transformers text models the file was written from (tests/family_files.py). The
tokenizer is transformers' CLIPTokenizer, the schedules and the model wrapper are written here
from the conventions, the samplers are k-diffusion's (those it lacks, the Align Your Steps schedule
and the model patches: tests/comfy_reference_extras.py). Nothing here imports nodeflow except the
location of the tokenizer files, so a mistake in nodeflow's loaders, text encoders, ADM vector,
noise, schedules or decoding shows as different pixels.

ComfyUI's own repository (1.2 GB with history) is too large for this environment's fetch tool,
so its code cannot run here; this loop is the next best thing the reference file vouches for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from tests.kdiffusion_ref import load_sampling

EOS, BOS = 49407, 49406


@dataclass(frozen=True)
class Job:
    """One run of ComfyUI's basic graph (CheckpointLoaderSimple -> CLIPTextEncode(SDXL) x2 ->
    EmptyLatentImage -> KSampler -> VAEDecode)."""
    family: str                      # sd2 | sdxl
    positive: str
    negative: str = ""
    width: int = 64
    height: int = 64
    seed: int = 0
    steps: int = 6
    cfg: float = 5.0
    sampler: str = "euler"           # a k-diffusion sampler name: euler, dpmpp_2m, euler_ancestral, dpmpp_2m_sde ...
                                     # or one written in comfy_reference_extras: er_sde, res_multistep, euler_cfg_pp
    scheduler: str = "normal"        # normal | karras | align_your_steps (extras; SDXL, 10 steps, custom_advanced)
    parameterization: str = "eps"    # eps | v
    sdxl_sizes: dict = field(default_factory=dict)  # CLIPTextEncodeSDXL's inputs; empty: plain CLIPTextEncode
    # model patch nodes between the loader and the sampler, in order: (class_type, ((input, value), ...)),
    # e.g. ("RescaleCFG", (("multiplier", 0.7),)); rendered by tests/comfy_reference_extras.py
    patches: tuple = ()
    # SamplerCustomAdvanced (RandomNoise + CFGGuider + KSamplerSelect + a scheduler node) instead of KSampler
    custom_advanced: bool = False


def tokenizer():
    import transformers

    from nodeflow.text.tokenizer import default_tokenizer_dir  # the asset files only
    folder = default_tokenizer_dir()
    return transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))


def token_ids(prompt: str, pad: int) -> torch.Tensor:
    """[BOS] + ids + [EOS], padded to 77 with ``pad`` (convention 1, 16)."""
    ids = tokenizer()(prompt, add_special_tokens=False).input_ids[:75]
    ids = [BOS, *ids, EOS]
    return torch.tensor([ids + [pad] * (77 - len(ids))])


# ---- text (conventions 14-16, 21)

@torch.no_grad()
def sdxl_text(sources: dict, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(context, pooled): CLIP-L and CLIP-G penultimate layers side by side; CLIP-G's projected EOS."""
    clip_l = sources["clip_l"](input_ids=token_ids(prompt, EOS), output_hidden_states=True)
    clip_g = sources["clip_g"](input_ids=token_ids(prompt, 0), output_hidden_states=True)
    context = torch.cat([clip_l.hidden_states[-2], clip_g.hidden_states[-2]], dim=-1)
    return context, clip_g.text_embeds


@torch.no_grad()
def sd2_text(sources: dict, prompt: str) -> torch.Tensor:
    model = sources["clip_h"]
    out = model(input_ids=token_ids(prompt, 0), output_hidden_states=True)
    return model.text_model.final_layer_norm(out.hidden_states[-2])


def size_embedding(values: list[int]) -> torch.Tensor:
    """Each size as a 256-wide sinusoidal [cos | sin] (diffusers' get_timestep_embedding)."""
    from diffusers.models.embeddings import get_timestep_embedding
    return get_timestep_embedding(torch.tensor(values, dtype=torch.float32), 256,
                                  flip_sin_to_cos=True, downscale_freq_shift=0).flatten()[None]


def sdxl_adm(pooled: torch.Tensor, job: Job) -> torch.Tensor:
    """Convention 17: [pooled, h, w, crop_h, crop_w, target_h, target_w]."""
    sizes = job.sdxl_sizes or {"height": job.height, "width": job.width, "crop_h": 0, "crop_w": 0,
                               "target_height": job.height, "target_width": job.width}
    order = ("height", "width", "crop_h", "crop_w", "target_height", "target_width")
    return torch.cat([pooled, size_embedding([sizes[k] for k in order])], dim=-1)


# ---- noise table and schedules (conventions 3, 4)

def sigma_table() -> torch.Tensor:
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1 - betas, dim=0)
    return ((1 - alphas_cumprod) / alphas_cumprod).sqrt().float()


def schedule(name: str, steps: int, table: torch.Tensor) -> torch.Tensor:
    log_sigmas = table.double().log().float()
    if name == "karras":
        return load_sampling().get_sigmas_karras(steps, float(table[0]), float(table[-1]), rho=7.0)
    t = torch.linspace(999, 0, steps)
    low, high, w = t.floor().long(), t.ceil().long(), t.frac()
    sigmas = ((1 - w) * log_sigmas[low] + w * log_sigmas[high]).exp()
    return torch.cat([sigmas, sigmas.new_zeros(1)])


# ---- the denoiser (conventions 5-7, 22)

class Denoiser:
    """ComfyUI's CFG denoiser. ``uncond_denoised``: the last call's unconditional prediction (what
    ComfyUI's post-CFG hook hands the CFG++ samplers); ``guide`` combines the two predictions
    (subclasses replace it as ComfyUI's sampler_cfg_function patches do)."""
    uncond_denoised: torch.Tensor | None = None

    def __init__(self, unet, table: torch.Tensor, parameterization: str, cond: dict, uncond: dict, cfg: float):
        self.unet, self.log_sigmas, self.v = unet, table.double().log().float(), parameterization == "v"
        self.cond, self.uncond, self.cfg = cond, uncond, cfg

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        return (self.log_sigmas[:, None] - sigma.log()[None]).abs().argmin(dim=0).float()

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        batch = {k: torch.cat([self.uncond[k], self.cond[k]]) for k in self.cond}
        s = torch.cat([sigma, sigma])
        c_in = (s ** 2 + 1) ** -0.5
        out = self.unet(torch.cat([x, x]) * c_in[:, None, None, None], self.timestep(s), **batch).sample
        s4 = s[:, None, None, None]
        x2 = torch.cat([x, x])
        denoised = x2 / (s4 ** 2 + 1) - out * s4 / (s4 ** 2 + 1) ** 0.5 if self.v else x2 - s4 * out
        uncond, cond = denoised.chunk(2)
        self.uncond_denoised = uncond
        return self.guide(x, sigma, uncond, cond, out)

    def guide(self, x, sigma, uncond, cond, raw):
        """Convention 7 (``raw``: the U-Net's outputs for uncond and cond, batched in that order)."""
        return uncond + (cond - uncond) * self.cfg


def run_sampler(job: Job, denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """k-diffusion's sampler with the noise ComfyUI gives it on the CPU: ancestral draws from a
    generator seeded with seed + 1, SDE samplers' Brownian tree (torchsde) with entropy = seed
    over [smallest positive sigma, largest sigma]."""
    kdiffusion = load_sampling()
    sampler = getattr(kdiffusion, f"sample_{job.sampler}")
    if job.sampler.endswith("ancestral"):
        generator = torch.Generator().manual_seed(job.seed + 1)
        return sampler(denoiser, x, sigmas, disable=True,
                       noise_sampler=lambda sigma, sigma_next: torch.randn(x.shape, generator=generator))
    if "sde" in job.sampler:
        tree = kdiffusion.BrownianTreeNoiseSampler(x, sigmas[sigmas > 0].min(), sigmas.max(), seed=job.seed)
        return sampler(denoiser, x, sigmas, disable=True, noise_sampler=tree)
    return sampler(denoiser, x, sigmas, disable=True)


# ---- networks from the file, through diffusers' converters

def _from_file(cls_name: str, part: str, checkpoint: dict, ldm: dict, config_changes: dict | None = None):
    """diffusers' ``cls_name`` for ``part`` (unet, vae) of the file: its config derived from the
    original (LDM/sgm) config, built on the meta device and loaded strictly from the converted keys."""
    import diffusers
    from diffusers.loaders import single_file_utils as sfu
    config = getattr(sfu, f"create_{part}_diffusers_config_from_ldm")(ldm, checkpoint) | (config_changes or {})
    with torch.device("meta"):
        model = getattr(diffusers, cls_name)(**config)
    converted = getattr(sfu, f"convert_ldm_{part}_checkpoint")(checkpoint, config)
    model.load_state_dict(converted, strict=True, assign=True)
    return model.eval()


def diffusers_unet(checkpoint: dict, ldm: dict, config_changes: dict | None = None):
    """UNet2DConditionModel from the file (``config_changes``: e.g. SDXL's text_time embedding)."""
    return _from_file("UNet2DConditionModel", "unet", checkpoint, ldm, config_changes)


def diffusers_vae(checkpoint: dict, ldm: dict):
    return _from_file("AutoencoderKL", "vae", checkpoint, ldm)


# ---- the whole graph

@torch.no_grad()
def render(path, ldm: dict, sources: dict, job: Job, *, sigmas: torch.Tensor | None = None, sample=run_sampler,
           denoiser=Denoiser, unet_hook=None) -> np.ndarray:
    """The H x W x 3 uint8 image ComfyUI's basic graph gives for ``job`` on the file at ``path``.
    Hooks (tests/comfy_reference_extras.py): ``sigmas`` instead of ``job.scheduler``'s schedule,
    ``sample(job, denoiser, x, sigmas)`` instead of k-diffusion's sampler, ``denoiser`` the
    Denoiser class (or factory with its arguments), ``unet_hook(unet)`` to patch diffusers' U-Net."""
    from diffusers.loaders import single_file_utils as sfu
    checkpoint = sfu.load_single_file_checkpoint(str(path))
    checkpoint = {k: v.float() for k, v in checkpoint.items()}
    if job.family == "sdxl":
        (context, pooled), (ucontext, upooled) = sdxl_text(sources, job.positive), sdxl_text(sources, job.negative)
        cond = {"encoder_hidden_states": context, "class_labels": sdxl_adm(pooled, job)}
        uncond = {"encoder_hidden_states": ucontext, "class_labels": sdxl_adm(upooled, job)}
        scale = 0.13025
    else:
        cond = {"encoder_hidden_states": sd2_text(sources, job.positive)}
        uncond = {"encoder_hidden_states": sd2_text(sources, job.negative)}
        scale = 0.18215
    table = sigma_table()
    sigmas = schedule(job.scheduler, job.steps, table) if sigmas is None else sigmas
    noise = torch.randn([1, 4, job.height // 8, job.width // 8], generator=torch.Generator().manual_seed(job.seed))
    assert float(sigmas[0]) > float(table[-1]) * (1 - 1e-5)  # convention 9's full-denoise start (or above)
    x = noise * (1 + sigmas[0] ** 2) ** 0.5  # convention 9: the empty latent is all zeros
    unet = diffusers_unet(checkpoint, ldm)
    if unet_hook is not None:
        unet_hook(unet)
    latent = sample(job, denoiser(unet, table, job.parameterization, cond, uncond, job.cfg), x, sigmas)
    decoded = diffusers_vae(checkpoint, ldm).decode(latent / scale).sample
    pixels = ((decoded + 1) / 2).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    return np.clip(255.0 * pixels, 0, 255).astype(np.uint8)  # convention 11: truncation


def differing(a: np.ndarray, b: np.ndarray) -> tuple[int, float]:
    """(largest difference out of 255, fraction of values that differ at all)."""
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return int(diff.max()), float((diff > 0).mean())

