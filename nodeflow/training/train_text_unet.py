"""Stage 2: train the U-Net and the CLIP text encoder jointly on latents of the frozen VAE.

The objective of Ho et al. 2020 ("Denoising Diffusion Probabilistic Models", eq. 14) as Stable
Diffusion trains it: for a latent z0 = scale * E(x), a timestep t ~ U{0..999} and noise
eps ~ N(0, I),

    z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps,      L = || eps - eps_theta(z_t, t, c) ||^2,

with SD's ``scaled_linear`` schedule: beta_t = (linspace(sqrt(0.00085), sqrt(0.012), 1000)_t)^2,
abar_t = prod_{s <= t} (1 - beta_s). The caption c is replaced by the empty caption with
probability ``caption_dropout`` so that one model gives both the conditional and the
unconditional prediction, as classifier-free guidance needs (Ho & Salimans 2022).
The weights used for sampling are an exponential moving average of the trained ones.

The VAE is frozen in this stage, so a pool of images is encoded once (posterior mean and standard
deviation); each step draws a batch from the pool and a fresh posterior sample, which saves the
encoder's cost at every step (the main cost on a CPU).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from nodeflow.sampling.model_sampling import make_betas
from nodeflow.training.data import TensorBatch
from nodeflow.training.optim import EMA, adamw, warmup_cosine
from nodeflow.training.train_vae import encode_posterior

StepCallback = Callable[[int, int, torch.Tensor], None]  # (step, total, loss)
SnapshotCallback = Callable[[int, torch.nn.Module, torch.nn.Module], None]  # (step, unet, text)


@dataclass(frozen=True)
class DiffusionTraining:
    """Settings of the U-Net + text encoder stage."""

    steps: int = 10000  # the CPU default: about 42 minutes on 2 cores (the shipped model: see the README)
    batch_size: int = 64
    pool_size: int = 24576
    lr: float = 5e-4
    warmup: int = 200
    caption_dropout: float = 0.1
    ema_decay: float = 0.999
    snapshot_every: int = 1000

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LatentPool:
    """Posterior parameters of encoded dataset images, with their captions."""

    mean: torch.Tensor  # (P, 4, h, w)
    std: torch.Tensor  # (P, 4, h, w)
    caption_ids: torch.Tensor  # (P,) int64 indices into data.ALL_CAPTIONS

    def __len__(self) -> int:
        return len(self.caption_ids)


@torch.no_grad()
def encode_pool(vae: torch.nn.Module, data: Iterator[TensorBatch], size: int,
                device: torch.device) -> LatentPool:
    """Encode at least ``size`` images from ``data`` with the frozen VAE."""
    means, stds, ids = [], [], []
    while sum(len(i) for i in ids) < size:
        batch = next(data)
        posterior = encode_posterior(vae, batch.images.to(device))
        means.append(posterior.mean)
        stds.append(torch.exp(0.5 * posterior.logvar))
        ids.append(batch.caption_ids.to(device))
    return LatentPool(torch.cat(means)[:size], torch.cat(stds)[:size], torch.cat(ids)[:size])


def scaled_linear_alphas_cumprod(
    steps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012
) -> torch.Tensor:
    """abar_t of SD's ``scaled_linear`` schedule, float64, shape (steps,)."""
    betas = make_betas("scaled_linear", steps, beta_start, beta_end)
    return torch.cumprod(1.0 - betas, dim=0)


def encode_text(text_encoder: torch.nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    """Last hidden state after the final layer norm, as SD1 conditions: (B, 77, D)."""
    return text_encoder(input_ids=input_ids).last_hidden_state


def sd1_condition(text_encoder: torch.nn.Module, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """The U-Net's conditioning inputs for token ids (B, 77): SD1's context."""
    return {"context": encode_text(text_encoder, input_ids)}


#: (text encoder, token ids) -> the U-Net's keyword inputs (context, and y for SDXL)
Condition = Callable[[torch.nn.Module, torch.Tensor], dict]


def diffusion_loss(
    unet: torch.nn.Module,
    text_encoder: torch.nn.Module,
    latents: torch.Tensor,
    input_ids: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    generator: torch.Generator | None = None,
    condition: Condition = sd1_condition,
) -> torch.Tensor:
    """Epsilon-prediction MSE on a batch of scaled latents (B, 4, h, w) and token ids (B, 77)
    (or whatever ``condition`` turns into the U-Net's inputs)."""
    batch = latents.shape[0]
    t = torch.randint(0, len(alphas_cumprod), (batch,), device=latents.device, generator=generator)
    noise = torch.randn(latents.shape, device=latents.device, generator=generator)
    abar = alphas_cumprod[t].to(latents.dtype)[:, None, None, None]  # (B, 1, 1, 1)
    noisy = abar.sqrt() * latents + (1 - abar).sqrt() * noise  # (B, 4, h, w)
    predicted = unet(noisy, t.to(latents.dtype), **condition(text_encoder, input_ids))  # (B, 4, h, w)
    return F.mse_loss(predicted, noise)


def train_text_unet(
    unet: torch.nn.Module,
    text_encoder: torch.nn.Module,
    pool: LatentPool,
    caption_tokens: torch.Tensor,
    settings: DiffusionTraining,
    scaling_factor: float,
    device: torch.device,
    seed: int,
    on_step: StepCallback | None = None,
    on_snapshot: SnapshotCallback | None = None,
    condition: Condition = sd1_condition,
) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Train ``unet`` and ``text_encoder`` in place on latents drawn from ``pool`` (scaled by
    ``scaling_factor``); return their EMA copies.

    ``caption_tokens`` (C, 77) (or (C, towers, 77)) holds the token ids of ``data.ALL_CAPTIONS`` (row 0: the empty
    caption). ``on_snapshot`` receives the EMA models every ``settings.snapshot_every`` steps
    and at the end, so an interrupted run still leaves usable weights.
    """
    generator = torch.Generator(device=device).manual_seed(seed)
    unet.to(device).train()
    text_encoder.to(device).train()
    tokens = caption_tokens.to(device)
    alphas_cumprod = scaled_linear_alphas_cumprod().to(device)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    optimizer = adamw(params, settings.lr)
    schedule = warmup_cosine(optimizer, settings.warmup, settings.steps)
    ema_unet, ema_text = EMA(unet, settings.ema_decay), EMA(text_encoder, settings.ema_decay)

    for step in range(1, settings.steps + 1):
        with torch.no_grad():
            rows = torch.randint(0, len(pool), (settings.batch_size,), device=device,
                                 generator=generator)
            mean, std = pool.mean[rows], pool.std[rows]  # (B, 4, h, w)
            noise = torch.randn(mean.shape, device=device, generator=generator)
            latents = (mean + std * noise) * scaling_factor  # a posterior sample, scaled
            ids = pool.caption_ids[rows]
            dropped = torch.rand(ids.shape, device=device, generator=generator) < settings.caption_dropout
            ids = torch.where(dropped, torch.zeros_like(ids), ids)  # row 0: the empty caption
        loss = diffusion_loss(unet, text_encoder, latents, tokens[ids], alphas_cumprod, generator, condition)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        ema_unet.update()
        ema_text.update()
        if on_step is not None:
            on_step(step, settings.steps, loss.detach())
        if on_snapshot is not None and (step % settings.snapshot_every == 0 or step == settings.steps):
            on_snapshot(step, ema_unet.module, ema_text.module)
    return ema_unet.module, ema_text.module
