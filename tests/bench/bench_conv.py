"""The CPU's unfold + GEMM convolution (nodeflow.models.conv) against torch's own (oneDNN), per
SD1.5 3x3 convolution shape and in the whole SD1.5 U-Net, in the same process.

    python tests/bench/bench_conv.py [--size 256] [--repeats 5]

Per shape (batch 2, as CFG runs it, at the deep levels of a --size image): both times, the ratio
GEMM / torch and whether ``uses_gemm`` picks the GEMM. Whole U-Net (random weights, batch 2,
the --size image's latent): our U-Net with the choice as shipped against the same U-Net with the
GEMM path turned off, runs alternating; medians and the ratio (below 1: the choice pays).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from nodeflow.models import conv
from nodeflow.models.unet import UNetConfig, UNetModel


def timed(function, repeats: int) -> float:
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def shapes(latent: int) -> list[tuple[int, int, int, int]]:
    """(in channels, out channels, input side, stride) of SD1.5's deeper 3x3 convolutions."""
    deep, deeper = latent // 4, latent // 8
    return [(640, 640, latent // 2, 1), (640, 1280, deep, 1), (1280, 1280, deep, 1), (2560, 1280, deep, 1),
            (1280, 1280, deep, 2), (1280, 1280, deeper, 1), (2560, 1280, deeper, 1)]


def per_shape(latent: int, repeats: int) -> None:
    for cin, cout, side, stride in shapes(latent):
        layer = conv.Conv2d(cin, cout, 3, stride=stride, padding=1)
        x = torch.randn(2, cin, side, side)
        with torch.inference_mode():
            torch_time = timed(lambda: F.conv2d(x, layer.weight, layer.bias, stride, 1), repeats)
            gemm_time = timed(lambda: conv.gemm_conv2d(x, layer.weight, layer.bias, (stride, stride), (1, 1)),
                              repeats)
        print(f"3x3 {cin:>4}->{cout:<4} at {side:>2}x{side:<2} stride {stride}: torch {torch_time * 1e3:7.1f} ms, "
              f"GEMM {gemm_time * 1e3:7.1f} ms, ratio {gemm_time / torch_time:.2f}, "
              f"chosen: {'GEMM' if conv.uses_gemm(x, layer) else 'torch'}", flush=True)


def unet_medians(latent: int, repeats: int, module, attribute: str, values: dict[str, object]) -> dict[str, float]:
    """Median seconds of the SD1.5 U-Net (random weights, batch 2, a latent x latent latent) with
    ``module.attribute`` set to each of ``values`` (name -> value), runs alternating; the
    attribute is restored after."""
    torch.manual_seed(0)
    model = UNetModel(UNetConfig()).eval()
    x = torch.randn(2, 4, latent, latent)
    timesteps, context = torch.tensor([500.0, 500.0]), torch.randn(2, 77, 768)
    shipped = getattr(module, attribute)
    times: dict[str, list[float]] = {name: [] for name in values}
    try:
        with torch.inference_mode():
            model(x, timesteps, context)
            for _ in range(repeats):
                for name, value in values.items():
                    setattr(module, attribute, value)
                    start = time.perf_counter()
                    model(x, timesteps, context)
                    times[name].append(time.perf_counter() - start)
    finally:
        setattr(module, attribute, shipped)
    return {name: statistics.median(seconds) for name, seconds in times.items()}


def whole_unet(latent: int, repeats: int) -> None:
    medians = unet_medians(latent, repeats, conv, "GEMM_MAX_POSITIONS",
                           {"shipped": conv.GEMM_MAX_POSITIONS, "torch only": -1})
    ours, plain = medians["shipped"], medians["torch only"]
    print(f"SD1.5 U-Net batch 2, latent {latent}x{latent}: as shipped {ours:.2f} s, torch convolutions only "
          f"{plain:.2f} s (medians of {repeats}); ratio {ours / plain:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (latent = size / 8)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}")
    per_shape(args.size // 8, args.repeats)
    whole_unet(args.size // 8, args.repeats)


if __name__ == "__main__":
    main()
