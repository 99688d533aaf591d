"""The MODEL socket value: a U-Net with its schedule, latent format, device and dtype.

Immutable: ``clone_with`` returns a new wrapper sharing the weights (a LoRA node adds patches
that way), so a cached model never changes under another node.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from nodeflow.sampling.control_hooks import chain_residuals
from nodeflow.sampling.latent_preview import SD1_RGB_FACTORS
from nodeflow.sampling.model_sampling import ModelSampling


@dataclass(frozen=True)
class LatentFormat:
    """How the VAE's latents are scaled for the diffusion model (SD1.x: 0.18215)."""

    scale_factor: float = 0.18215
    channels: int = 4
    #: latent -> RGB preview factors (channels x 3), see nodeflow.sampling.latent_preview
    rgb_factors: tuple[tuple[float, float, float], ...] = SD1_RGB_FACTORS

    def process_in(self, latent: torch.Tensor) -> torch.Tensor:
        return latent * self.scale_factor

    def process_out(self, latent: torch.Tensor) -> torch.Tensor:
        return latent / self.scale_factor


@dataclass(frozen=True, eq=False)
class DiffusionModel:
    """A denoiser ready for the samplers."""

    unet: torch.nn.Module
    sampling: ModelSampling
    latent_format: LatentFormat
    device: torch.device
    dtype: torch.dtype
    patches: tuple = ()
    name: str = ""

    def clone_with(self, **changes) -> DiffusionModel:
        return replace(self, **changes)

    @property
    def in_channels(self) -> int:
        return self.unet.config.in_channels

    @torch.no_grad()
    def predict_denoised(self, x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor,
                         control=None, concat: torch.Tensor | None = None, halves: int = 1) -> torch.Tensor:
        """D(x; sigma): the clean-latent estimate for x (B, C, h, w) at sigma (B,), float32.

        The U-Net runs in the model's dtype on its device on c_in(sigma) x = x / sqrt(sigma^2 + 1)
        and the nearest training timestep; its output is turned back into D in float32 on x's
        device (eps or v, see ModelSampling). ``control`` is the last ``ControlHook`` of a chain
        (ControlNets); ``concat`` holds extra input channels (the inpainting model's mask and
        masked latent). ``halves``: how many equal parts the batch is made of (conditional,
        unconditional ...), so ControlNets give each part its own control images.
        """
        scaled = self.sampling.calculate_input(sigma, x).to(self.device, self.dtype)  # (B, C, h, w)
        context = context.to(self.device, self.dtype)
        timesteps = self.sampling.timestep(sigma).to(self.device)  # (B,)
        residuals = None
        if control is not None:  # ControlNets see the scaled latent only, not the concat channels
            residuals = chain_residuals(control, scaled, timesteps, context, sigma, self, halves)
        model_input = scaled
        if concat is not None:
            model_input = torch.cat([scaled, concat.to(scaled)], dim=1)  # (B, C + c, h, w)
        output = self.unet(model_input, timesteps, context, control=residuals)
        return self.sampling.calculate_denoised(sigma, output.float().to(x.device), x)
