"""Model patches that change how the model is used rather than its weights (ComfyUI's "model
patches"): a guidance function replacing CFG's combination (RescaleCFG), functions applied after it
(CFGZeroStar, CFGNorm), and hooks into the U-Net's forward (nodeflow.models.unet_patches): output-block
patches on the decoder's features and skip connections (FreeU, FreeU_V2).

A patched MODEL is a copy (``DiffusionModel.clone_with``) holding the patch; the input model never
changes, and patches compose with each other and with LoRAs (which replace the U-Net, not these).

Guidance functions take (x, sigma (B,), cond, uncond, cfg) as clean-latent estimates and return
the guided estimate; post-guidance functions take (x, sigma, guided, cond, uncond, cfg, step) and
return the new guided estimate (``step``: a nodeflow.sampling.model.GuidanceStep, for those that
evaluate the model again: PAG, SAG in nodeflow.sampling.attention_guidance); output-block patches
take (h, skip, call) and return (h, skip), before they are joined.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

GuidanceFunction = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor]
OutputBlockPatch = Callable[..., tuple[torch.Tensor, torch.Tensor]]  # (h, skip, PatchCall) -> (h, skip)


def rescale_cfg(multiplier: float) -> GuidanceFunction:
    """RescaleCFG (Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps are Flawed",
    eq. 15-16): CFG in the v-prediction space, its result rescaled per image to the standard
    deviation of the conditional prediction, blended by ``multiplier`` with plain CFG. For an
    epsilon model's estimates D: v = (x / (s^2 + 1) - D) sqrt(s^2 + 1) / s and back
    D = x / (s^2 + 1) - v s / sqrt(s^2 + 1), as ComfyUI's RescaleCFG node."""

    def guide(x, sigma, cond, uncond, cfg):
        s = sigma.reshape(-1, *([1] * (x.ndim - 1)))
        x_scaled = x / (s * s + 1.0)
        v_cond = (x_scaled - cond) * (s**2 + 1.0) ** 0.5 / s
        v_uncond = (x_scaled - uncond) * (s**2 + 1.0) ** 0.5 / s
        v_cfg = v_uncond + cfg * (v_cond - v_uncond)
        dims = tuple(range(1, x.ndim))
        ratio = torch.std(v_cond, dim=dims, keepdim=True) / torch.std(v_cfg, dim=dims, keepdim=True)
        v_final = multiplier * (v_cfg * ratio) + (1.0 - multiplier) * v_cfg
        return x_scaled - v_final * s / (s * s + 1.0) ** 0.5

    return guide


def cfg_zero_star() -> Callable:
    """CFG-Zero* (Fan et al. 2025, "CFG-Zero*: Improved Classifier-Free Guidance for Flow
    Matching Models"): the unconditional estimate rescaled by s* = <e_c, e_u> / |e_u|^2 per image
    (e = x - D, the noise estimates), i.e. guided + U (s* - 1) + cfg U (1 - s*), as ComfyUI's
    post-CFG function."""

    def post(x, sigma, guided, cond, uncond, cfg, step=None):
        e_c, e_u = (x - cond).reshape(x.shape[0], -1), (x - uncond).reshape(x.shape[0], -1)
        scale = (e_c * e_u).sum(dim=1, keepdim=True) / ((e_u**2).sum(dim=1, keepdim=True) + 1e-8)
        scale = scale.reshape(-1, *([1] * (x.ndim - 1)))
        return guided + uncond * (scale - 1.0) + cfg * uncond * (1.0 - scale)

    return post


def cfg_norm(strength: float) -> Callable:
    """CFGNorm: the guided estimate scaled down, per pixel, to at most the conditional estimate's
    norm over channels, times ``strength``."""

    def post(x, sigma, guided, cond, uncond, cfg, step=None):
        scale = (torch.norm(cond, dim=1, keepdim=True) / (torch.norm(guided, dim=1, keepdim=True) + 1e-8))
        return guided * scale.clamp(min=0.0, max=1.0) * strength

    return post


def differential_diffusion(strength: float = 1.0) -> Callable:
    """Differential Diffusion (Levin & Fried 2024, "Differential Diffusion: Giving Each Pixel Its
    Strength"): a soft inpainting mask becomes, at each step, the pixels whose mask value reaches
    the fraction of the run's timesteps still ahead, so a pixel with mask m changes during the last
    m of the schedule; ``strength`` < 1 blends that binary mask with the soft one."""

    def mask_at(sampling, sigma, mask, sigmas):
        sigma_to = torch.maximum(sigmas[-1], sampling.sigma_min.to(sigmas))
        start, end = sampling.timestep(sigmas[0].reshape(1)), sampling.timestep(sigma_to.reshape(1))
        threshold = (sampling.timestep(sigma[:1]) - end) / (start - end)
        binary = (mask >= threshold.to(mask)).to(mask.dtype)
        if strength and strength < 1:
            return strength * binary + (1 - strength) * mask
        return binary

    return mask_at


def fourier_filter(x: torch.Tensor, threshold: int, scale: float) -> torch.Tensor:
    """FreeU's skip-feature filter: the 2 threshold x 2 threshold lowest spatial frequencies (around
    the centre of the shifted spectrum) multiplied by ``scale``, in float32."""
    spectrum = torch.fft.fftshift(torch.fft.fftn(x.float(), dim=(-2, -1)), dim=(-2, -1))
    height, width = spectrum.shape[-2:]
    mask = torch.ones(spectrum.shape, device=x.device)
    row, col = height // 2, width // 2
    mask[..., row - threshold:row + threshold, col - threshold:col + threshold] = scale
    spectrum = torch.fft.ifftshift(spectrum * mask, dim=(-2, -1))
    return torch.fft.ifftn(spectrum, dim=(-2, -1)).real.to(x.dtype)


def freeu(model_channels: int, b1: float, b2: float, s1: float, s2: float, version: int = 1) -> OutputBlockPatch:
    """FreeU (Si et al. 2024, "FreeU: Free Lunch in Diffusion U-Net"): in the decoder blocks whose
    features are 4 x (b1, s1) or 2 x (b2, s2) the model's base width, the first half of the
    backbone features is scaled by b and the skip features' low frequencies by s. Version 2 scales
    the backbone by 1 + (b - 1) x the channel-mean map normalised to 0..1 per image."""
    scales = {model_channels * 4: (b1, s1), model_channels * 2: (b2, s2)}

    def patch(h: torch.Tensor, skip: torch.Tensor, call=None) -> tuple[torch.Tensor, torch.Tensor]:
        scale = scales.get(int(h.shape[1]))
        if scale is None:
            return h, skip
        b, s = scale
        half = h.shape[1] // 2
        factor: torch.Tensor | float = b
        if version == 2:
            mean = h.mean(1, keepdim=True)  # (B, 1, h, w)
            flat = mean.reshape(mean.shape[0], -1)
            low = flat.min(dim=-1).values[:, None, None, None]
            high = flat.max(dim=-1).values[:, None, None, None]
            factor = (b - 1) * ((mean - low) / (high - low)) + 1
        h = torch.cat([h[:, :half] * factor, h[:, half:]], dim=1)
        return h, fourier_filter(skip, threshold=1, scale=s)

    return patch


def adaptive_projected_guidance(eta: float, norm_threshold: float, momentum: float) -> Callable:
    """APG (Sadat et al. 2025, "Eliminating Oversaturation and Artifacts of High Guidance Scales in
    Diffusion Models") as ComfyUI's pre-CFG function on the clean-latent estimates: the guidance
    g = cond - uncond, optionally a running average over the run's steps (g + momentum x the
    previous average; reset when sigma rises), scaled down to an L2 norm of at most
    ``norm_threshold`` per image (0: no limit), split into its parts parallel and orthogonal to
    cond, the parallel part weighted by ``eta``; cond becomes uncond + g' + (cond - uncond) / cfg,
    so that CFG then gives uncond + cfg g' + (cond - uncond). Its running average lives in the
    run's state (a new run starts afresh)."""

    def pre(x, sigma, cond, uncond, cfg, run_state):
        memory = run_state.setdefault(("apg", id(pre)), {"average": None, "sigma": None})
        now = float(sigma[0])
        if memory["sigma"] is not None and now > memory["sigma"]:
            memory["average"] = None
        memory["sigma"] = now
        guidance = cond - uncond
        if momentum != 0:
            average = guidance if memory["average"] is None else momentum * memory["average"] + guidance
            memory["average"] = guidance = average
        dims = tuple(range(1, cond.ndim))
        if norm_threshold > 0:
            norm = guidance.norm(p=2, dim=dims, keepdim=True)
            guidance = guidance * torch.minimum(torch.ones_like(norm), norm_threshold / norm)
        unit = torch.nn.functional.normalize(cond.double(), dim=dims)
        parallel = (guidance.double() * unit).sum(dim=dims, keepdim=True) * unit
        modified = (guidance.double() - parallel + eta * parallel).to(cond.dtype)
        return uncond + modified + (cond - uncond) / cfg, uncond

    return pre
