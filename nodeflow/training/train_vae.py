"""Stage 1: train the small AutoencoderKL on the shapes dataset.

Objective (Kingma & Welling 2014, "Auto-Encoding Variational Bayes"; Rombach et al. 2022, the
first stage of latent diffusion): reconstruction loss of a latent drawn from the posterior plus a
small KL term that keeps the latents near a unit Gaussian,

    L = mean |x - D(z)|^2 + l1 * mean |x - D(z)| + kl_weight * KL(q(z|x) || N(0, I)) / (H W),
    z ~ q(z|x) = N(mean, exp(logvar)).

The flat colored images need no perceptual or adversarial loss. The networks are convolutional, so
they train on random ``crop`` x ``crop`` windows of the images (4x cheaper at half the side) and
run on whole images. After training, the latent
scaling factor is measured as SD's was: 1 / std of posterior samples over many images.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import torch

from nodeflow.training.data import TensorBatch
from nodeflow.training.optim import adamw, warmup_cosine

StepCallback = Callable[[int, int, torch.Tensor], None]  # (step, total, loss)


@dataclass(frozen=True)
class VAETraining:
    """Settings of the VAE stage."""

    steps: int = 4000  # the CPU default: about 8 minutes on 2 cores
    batch_size: int = 8
    crop: int = 64  # whole images: 32-pixel crops left colour casts and frame artefacts
    lr: float = 1e-3
    warmup: int = 100
    l1_weight: float = 0.5
    kl_weight: float = 1e-5

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Posterior:
    """The VAE's diagonal Gaussian q(z | x)."""

    mean: torch.Tensor  # (B, 4, h, w)
    logvar: torch.Tensor  # (B, 4, h, w)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(self.mean.shape, generator=generator, device=self.mean.device)
        return self.mean + torch.exp(0.5 * self.logvar) * noise


def encode_posterior(vae: torch.nn.Module, images: torch.Tensor) -> Posterior:
    return Posterior(*vae.encode_dist(images))


def gaussian_kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) summed over the latent, per sample: (B,)."""
    return 0.5 * torch.sum(mean.pow(2) + logvar.exp() - 1.0 - logvar, dim=(1, 2, 3))


def vae_loss(vae: torch.nn.Module, images: torch.Tensor, settings: VAETraining) -> torch.Tensor:
    """The stage's loss on a batch of images (B, 3, H, W) in -1..1."""
    posterior = encode_posterior(vae, images)
    latents = posterior.sample()  # (B, 4, H/8, W/8)
    reconstruction = vae.decode(latents)  # (B, 3, H, W)
    error = reconstruction - images
    pixels = images.shape[2] * images.shape[3]
    kl = gaussian_kl(posterior.mean, posterior.logvar).mean() / pixels
    return error.pow(2).mean() + settings.l1_weight * error.abs().mean() + settings.kl_weight * kl


def random_crop(images: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """One random ``size`` x ``size`` window (multiple of 8 pixels) of a batch (B, C, H, W)."""
    height, width = images.shape[2:]
    if size >= min(height, width):
        return images
    top, left = (int(torch.randint(0, (extent - size) // 8 + 1, (1,), generator=generator)) * 8
                 for extent in (height, width))
    return images[:, :, top:top + size, left:left + size]


def train_vae(
    vae: torch.nn.Module,
    data: Iterator[TensorBatch],
    settings: VAETraining,
    device: torch.device,
    seed: int = 0,
    on_step: StepCallback | None = None,
) -> None:
    """Train ``vae`` in place for ``settings.steps`` steps on batches from ``data``."""
    vae.to(device).train()
    generator = torch.Generator().manual_seed(seed)
    optimizer = adamw(vae.parameters(), settings.lr)
    schedule = warmup_cosine(optimizer, settings.warmup, settings.steps)
    for step in range(settings.steps):
        images = random_crop(next(data).images, settings.crop, generator)  # (B, 3, c, c)
        images = images.to(device, non_blocking=True)
        loss = vae_loss(vae, images, settings)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if on_step is not None:
            on_step(step + 1, settings.steps, loss.detach())
    vae.eval()


@torch.no_grad()
def measure_scaling_factor(
    vae: torch.nn.Module, data: Iterator[TensorBatch], device: torch.device, batches: int = 8
) -> float:
    """1 / std of posterior samples, the factor that gives the diffusion model unit-variance
    latents (Rombach et al. 2022, section G: SD1's 0.18215 was measured the same way)."""
    vae.eval()
    samples = [encode_posterior(vae, next(data).images.to(device)).sample() for _ in range(batches)]
    return float(1.0 / torch.cat(samples).flatten().std())
