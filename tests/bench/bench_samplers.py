"""Sampler overhead per step beyond the model call (goal: under 1% of an SD1.5 U-Net step on CPU).

    python tests/bench/bench_samplers.py

Each sampler runs 20 karras steps on a (1, 4, 64, 64) latent with a denoiser that costs nothing
(it returns x * 0.9); the time per step is the sampler's own arithmetic and noise.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main() -> None:
    import torch

    from nodeflow.sampling.noise import NoiseSource
    from nodeflow.sampling.samplers import SAMPLERS
    from nodeflow.sampling.schedulers import karras
    from nodeflow.sampling.model_sampling import ModelSampling

    sigmas = karras(ModelSampling.sd1(), 20)
    x0 = torch.randn(1, 4, 64, 64) * float(sigmas[0])
    worst = 0.0
    for name, sampler in SAMPLERS.items():
        calls = 0

        def denoise(x, sigma):
            nonlocal calls
            calls += 1
            return x * 0.9

        started = time.perf_counter()
        sampler(denoise, x0.clone(), sigmas, noise=NoiseSource(1))
        per_step = (time.perf_counter() - started) / 20
        worst = max(worst, per_step)
        print(f"{name:>20}: {per_step * 1000:7.2f} ms per step ({calls} model calls)")
    print(f"worst: {worst * 1000:.2f} ms per step; an SD1.5 U-Net step (batch 2, 64x64) takes ~55 s on one "
          f"core of this machine (bench_models.py), so the overhead is {worst / 55 * 100:.3f}% of it")


if __name__ == "__main__":
    main()
