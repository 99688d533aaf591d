"""Sampler overhead per step beyond the model call, against k-diffusion's samplers where it has them.

    python tests/bench/bench_samplers.py [--repeat 3]

Each sampler runs 20 karras steps on a (1, 4, 64, 64) latent with a denoiser that costs nothing
(it returns x * 0.9); the time per step is the sampler's own arithmetic and noise. For the
samplers k-diffusion also has, its version runs on the same denoiser, interleaved with ours in
this process (best of ``--repeat`` each), and the ratio ours / k-diffusion is printed (below 1:
ours is faster). The goal: under 1% of an SD1.5 U-Net step on CPU, and no slower than k-diffusion.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

STEPS = 20


def best_time(run, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times) / STEPS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import warnings

    import torch

    from nodeflow.sampling.model_sampling import ModelSampling
    from nodeflow.sampling.noise import NoiseSource
    from nodeflow.sampling.samplers import SAMPLERS
    from nodeflow.sampling.schedulers import karras
    from tests.kdiffusion_ref import load_sampling

    warnings.filterwarnings("ignore", message="Should have t")  # torchsde's float32 end-point notes
    reference = load_sampling()
    sigmas = karras(ModelSampling.sd1(), STEPS)
    x0 = torch.randn(1, 4, 64, 64) * float(sigmas[0])
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads "
          f"{torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}")
    print(f"{'sampler':>30}  {'ours ms/step':>12}  {'k-diffusion':>11}  {'ratio':>6}")
    worst, ratios = 0.0, []
    for name, sampler in SAMPLERS.items():
        ours = best_time(lambda: sampler(lambda x, s: x * 0.9, x0.clone(), sigmas, noise=NoiseSource(1)), args.repeat)
        worst = max(worst, ours)
        theirs = getattr(reference, f"sample_{name}", None)
        line = f"{name:>30}  {ours * 1000:12.2f}"
        if theirs is not None and name not in ("dpm_fast", "dpm_adaptive"):  # those take other arguments
            kd = best_time(lambda: theirs(lambda x, s: x * 0.9, x0.clone(), sigmas, disable=True), args.repeat)
            ratios.append(ours / kd)
            line += f"  {kd * 1000:11.2f}  {ours / kd:6.2f}"
        print(line)
    ratios.sort()
    print(f"worst: {worst * 1000:.2f} ms per step; an SD1.5 U-Net step (batch 2, 64x64) takes ~55 s on one core of "
          f"this machine (bench_models.py): {worst / 55 * 100:.3f}% of it. Ratio to k-diffusion over "
          f"{len(ratios)} samplers: median {ratios[len(ratios) // 2]:.2f}, worst {ratios[-1]:.2f}")


if __name__ == "__main__":
    main()
