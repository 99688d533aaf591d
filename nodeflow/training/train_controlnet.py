"""Stage 3: a ControlNet for the embedded model, conditioned on the shape's mask.

As Zhang et al. 2023 train it: the U-Net, text encoder and VAE stay frozen; the ControlNet is a
copy of the U-Net's encoder (time embedding, input blocks, middle block: initialised from the
trained U-Net) plus a hint encoder and zero-initialised 1x1 convolutions, so training starts
from "no effect". The objective is the same epsilon MSE as stage 2, with the ControlNet's
residuals added to the frozen U-Net. The control image is the shape's mask as a white-on-black
RGB image, so the ControlNet workflow places the shape where the control image says.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from nodeflow.models.controlnet import ControlNetConfig, ControlNetModel
from nodeflow.training.data import TensorBatch
from nodeflow.training.optim import EMA, adamw, warmup_cosine
from nodeflow.training.train_text_unet import encode_text, scaled_linear_alphas_cumprod
from nodeflow.training.train_vae import encode_posterior

StepCallback = Callable[[int, int, torch.Tensor], None]


@dataclass(frozen=True)
class ControlNetTraining:
    steps: int = 3600  # the CPU default: about 15 minutes on 2 cores
    batch_size: int = 32
    lr: float = 2e-4
    warmup: int = 100
    caption_dropout: float = 0.1
    ema_decay: float = 0.998

    def to_dict(self) -> dict:
        return asdict(self)


def control_image(masks: torch.Tensor) -> torch.Tensor:
    """The hint from the dataset's masks (B, 1, H, W): white shape on black, 3 channels, 0..1."""
    return masks.expand(-1, 3, -1, -1).clamp(0, 1)


def controlnet_from_unet(unet: torch.nn.Module) -> ControlNetModel:
    """A ControlNet whose encoder copies the trained U-Net's, with zero convs set to zero."""
    controlnet = ControlNetModel(ControlNetConfig(unet.config))
    own = controlnet.state_dict()
    copied = {k: v for k, v in unet.state_dict().items() if k in own and own[k].shape == v.shape}
    controlnet.load_state_dict(copied, strict=False)
    with torch.no_grad():
        for conv in list(controlnet.zero_convs) + [controlnet.middle_block_out]:
            conv[0].weight.zero_()
            conv[0].bias.zero_()
        last = controlnet.input_hint_block[-1]
        last.weight.zero_()
        last.bias.zero_()
    return controlnet


def controlnet_loss(controlnet, unet, text_encoder, vae, batch: TensorBatch, tokens: torch.Tensor,
                    scale: float, alphas_cumprod: torch.Tensor, generator: torch.Generator,
                    caption_dropout: float) -> torch.Tensor:
    device = alphas_cumprod.device
    with torch.no_grad():
        latents = encode_posterior(vae, batch.images.to(device)).sample(generator) * scale  # (B, 4, h, w)
        ids = batch.caption_ids.to(device)
        dropped = torch.rand(ids.shape, device=device, generator=generator) < caption_dropout
        context = encode_text(text_encoder, tokens[torch.where(dropped, torch.zeros_like(ids), ids)])
    t = torch.randint(0, len(alphas_cumprod), (latents.shape[0],), device=device, generator=generator)
    noise = torch.randn(latents.shape, device=device, generator=generator)
    abar = alphas_cumprod[t].float()[:, None, None, None]
    noisy = abar.sqrt() * latents + (1 - abar).sqrt() * noise
    residuals = controlnet(noisy, control_image(batch.masks.to(device)), t.float(), context)
    return F.mse_loss(unet(noisy, t.float(), context, control=residuals), noise)


def train_controlnet(unet, text_encoder, vae, data: Iterator[TensorBatch], tokens: torch.Tensor, scale: float,
                     settings: ControlNetTraining, device: torch.device, seed: int,
                     on_step: StepCallback | None = None) -> ControlNetModel:
    """Train and return the EMA ControlNet (the other models stay frozen)."""
    for module in (unet, text_encoder, vae):
        module.to(device).eval().requires_grad_(False)
    controlnet = controlnet_from_unet(unet).to(device).train()
    generator = torch.Generator(device=device).manual_seed(seed)
    alphas_cumprod = scaled_linear_alphas_cumprod().to(device)
    optimizer = adamw(controlnet.parameters(), settings.lr)
    schedule = warmup_cosine(optimizer, settings.warmup, settings.steps)
    ema = EMA(controlnet, settings.ema_decay)
    tokens = tokens.to(device)
    for step in range(1, settings.steps + 1):
        loss = controlnet_loss(controlnet, unet, text_encoder, vae, next(data), tokens, scale, alphas_cumprod,
                               generator, settings.caption_dropout)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(controlnet.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        ema.update()
        if on_step is not None:
            on_step(step, settings.steps, loss.detach())
    return ema.module.eval()
