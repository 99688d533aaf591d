"""Seeded noise: the initial latent noise, per-step ancestral noise and Brownian motion for SDE
samplers. Everything is drawn on the CPU in float32 and then moved, so a seed gives the same
image on any device (ComfyUI's convention for its CPU samplers and their ``_gpu`` names alike).

The Brownian motion is torchsde's ``BrownianTree`` (Li et al. 2020, "Scalable Gradients for
Stochastic Differential Equations": a Brownian interval tree whose every query is reproducible
from the seed), built as ComfyUI builds it for dpmpp_sde / 2m_sde / 3m_sde: W(sigma_min) = 0 on
[smallest positive sigma, largest sigma], entropy = the seed, increments divided by
sqrt(|dt|). Its draws come from torchsde's own splitting of the seed, which no other code
reproduces: depending on torchsde is what gives ComfyUI's SDE images for the same seed.
"""

from __future__ import annotations

import warnings

import torch

SEED_MASK = 2**64 - 1


def _generator(seed: int) -> torch.Generator:
    """A CPU generator; seeds are taken modulo 2^64 (torch accepts 0 .. 2^64 - 1)."""
    generator = torch.Generator(device="cpu")
    generator.manual_seed(int(seed) & SEED_MASK)
    return generator


def initial_noise(shape: tuple[int, ...] | torch.Size, seed: int,
                  batch_index: list[int] | None = None) -> torch.Tensor:
    """One ``torch.randn(shape)`` from a CPU generator seeded with ``seed`` (float32, CPU).

    With ``batch_index`` (latents taken from a larger batch), noise is drawn image by image up to
    the largest index and the images at those indices are returned, so image k of a batch gets
    the same noise whether it is generated alone or in the batch.
    """
    generator = _generator(seed)
    if batch_index is None:
        return torch.randn(tuple(shape), generator=generator, dtype=torch.float32)
    wanted = sorted(set(batch_index))
    single = (1, *tuple(shape)[1:])
    drawn = {}
    for index in range(wanted[-1] + 1):
        noise = torch.randn(single, generator=generator, dtype=torch.float32)
        if index in wanted:
            drawn[index] = noise
    return torch.cat([drawn[index] for index in batch_index])


class NoiseSource:
    """Noise for one sampling run with ``seed`` (the KSampler's, as ComfyUI passes it to its samplers).

    ``step(x)`` draws ancestral noise (``randn(x.shape)``) from a CPU generator seeded with
    ``seed`` + 1 (ComfyUI's default noise sampler on the CPU).
    ``brownian(x, sigmas, sigma, sigma_next)`` gives unit-variance Brownian increments for SDE
    samplers from torchsde's BrownianTree over the run's positive sigmas, entropy ``seed``.
    Seeds are taken modulo 2^64 (negative ones as two's complement, like torch).
    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed) & SEED_MASK
        self._generator = _generator(self.seed + 1)
        self._tree = None

    def step(self, x: torch.Tensor) -> torch.Tensor:
        """Standard normal noise shaped like ``x``, drawn on the CPU in float32, moved to x."""
        return torch.randn(x.shape, generator=self._generator, dtype=torch.float32).to(x.device, x.dtype)

    def brownian(self, x: torch.Tensor, sigmas: torch.Tensor, sigma, sigma_next) -> torch.Tensor:
        """(W(sigma_next) - W(sigma)) / sqrt(|sigma_next - sigma|), oriented from the larger to
        the smaller sigma as ComfyUI's BrownianTreeNoiseSampler: standard normal, independent
        across disjoint intervals, the same for the same seed and schedule."""
        import torchsde  # a run-time dependency of the SDE samplers only

        if self._tree is None:
            positive = sigmas[sigmas > 0].float().cpu()
            start, end = positive.min(), sigmas.float().cpu().max()
            self._tree = torchsde.BrownianTree(start, torch.zeros(x.shape, dtype=torch.float32), end,
                                               entropy=self.seed)
        t0 = torch.as_tensor(sigma, dtype=torch.float32).detach().cpu()
        t1 = torch.as_tensor(sigma_next, dtype=torch.float32).detach().cpu()
        low, high, sign = (t0, t1, 1) if t0 < t1 else (t1, t0, -1)
        with warnings.catch_warnings():  # torchsde compares float32 ends with their float64 copies
            warnings.filterwarnings("ignore", message="Should have t[ab]", category=UserWarning)
            increment = self._tree(low, high) * sign
        return (increment / (t1 - t0).abs().sqrt()).to(x.device, x.dtype)
