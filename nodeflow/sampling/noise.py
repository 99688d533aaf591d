"""Seeded noise: the initial latent noise, per-step ancestral noise and Brownian motion for SDE
samplers. Everything is drawn on the CPU in float32 and then moved, so a seed gives the same
image on any device (ComfyUI's convention).
"""

from __future__ import annotations

import math
from collections import OrderedDict

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


class BrownianTree:
    """A seeded Brownian motion W on [t0, t1], sampled on demand by Brownian-bridge bisection.

    Our own small replacement for torchsde's BrownianTree (not a runtime dependency; its draws
    cannot be reproduced anyway, so dpmpp_sde / 2m_sde / 3m_sde images differ from ComfyUI's in
    their noise, not in their method). W(t0) = 0, W(t1) ~ N(0, t1 - t0); the midpoint of a
    dyadic interval with known end values is their mean plus N(0, (r - l) / 4) (the Brownian
    bridge), each node drawn from its own generator seeded with (seed, node number), so a query
    returns the same value whatever the order of queries. Below ``depth`` levels the path is
    interpolated linearly (depth is chosen so that leaves are far smaller than any step).
    The last few hundred midpoints are cached: successive queries share most of their path.
    """

    def __init__(self, like: torch.Tensor, t0: float, t1: float, seed: int, depth: int = 16,
                 cache_size: int = 256) -> None:
        self.shape, self.t0, self.t1, self.seed, self.depth = like.shape, float(t0), float(t1), seed, depth
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()
        self._cache_size = cache_size
        self._w1 = self._normal(1) * (self.t1 - self.t0) ** 0.5

    def _normal(self, node: int) -> torch.Tensor:
        generator = _generator((self.seed * 0x9E3779B97F4A7C15 + node * 0xBF58476D1CE4E5B9) & SEED_MASK)
        return torch.randn(self.shape, generator=generator, dtype=torch.float32)

    def _midpoint(self, node: int, w_left: torch.Tensor, w_right: torch.Tensor, width: float) -> torch.Tensor:
        """W at the middle of the interval of ``node`` (its value depends on the node alone)."""
        if node in self._cache:
            self._cache.move_to_end(node)
            return self._cache[node]
        w_middle = (w_left + w_right) / 2 + self._normal(2 * node) * (width / 4) ** 0.5
        self._cache[node] = w_middle
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return w_middle

    def __call__(self, t: float) -> torch.Tensor:
        """W(t) (t clamped to [t0, t1]), float32 on the CPU."""
        t = min(max(float(t), self.t0), self.t1)
        left, right = self.t0, self.t1
        w_left, w_right = torch.zeros(self.shape), self._w1
        node = 1
        for _ in range(self.depth):
            middle = (left + right) / 2
            w_middle = self._midpoint(node, w_left, w_right, right - left)
            if t < middle:
                right, w_right, node = middle, w_middle, 2 * node
            else:
                left, w_left, node = middle, w_middle, 2 * node + 1
        if right == left:
            return w_left
        w = (t - left) / (right - left)
        return w_left + (w_right - w_left) * w


def tree_depth(sigmas: torch.Tensor, resolution: int = 64) -> int:
    """Levels needed for leaves ``resolution`` times smaller than the smallest gap between the
    run's positive sigmas (so linear interpolation inside a leaf never matters), 12 to 48."""
    positive = sigmas[sigmas > 0].double().unique()
    span = float(positive.max() - positive.min()) if len(positive) > 1 else 1.0
    gap = float(positive.diff().min()) if len(positive) > 1 else span
    return int(min(max(math.ceil(math.log2(span * resolution / max(gap, 1e-12))), 12), 48))


class NoiseSource:
    """Noise for one sampling run.

    ``step(x)`` draws ancestral noise (``randn(x.shape)``) from a CPU generator seeded with
    ``seed``: the KSampler passes its seed + 1, as ComfyUI seeds its ancestral noise on the CPU.
    ``brownian(x, sigmas, sigma, sigma_next)`` gives unit-variance Brownian increments for SDE
    samplers, from a ``BrownianTree`` over the run's positive sigmas seeded with ``seed`` too.
    Seeds are taken modulo 2^64 (negative ones as two's complement, like torch).
    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed) & SEED_MASK
        self._generator = _generator(self.seed)
        self._tree: BrownianTree | None = None

    def step(self, x: torch.Tensor) -> torch.Tensor:
        """Standard normal noise shaped like ``x``, drawn on the CPU in float32, moved to x."""
        return torch.randn(x.shape, generator=self._generator, dtype=torch.float32).to(x.device, x.dtype)

    def brownian(self, x: torch.Tensor, sigmas: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
        """(W(sigma) - W(sigma_next)) / sqrt(|sigma - sigma_next|): standard normal, and independent
        across disjoint intervals."""
        if self._tree is None:
            positive = sigmas[sigmas > 0]
            self._tree = BrownianTree(x, float(positive.min()), float(positive.max()), self.seed,
                                      depth=tree_depth(sigmas))
        low, high = sorted((float(sigma), float(sigma_next)))
        increment = (self._tree(high) - self._tree(low)) / max(high - low, 1e-12) ** 0.5
        return increment.to(x.device, x.dtype)
