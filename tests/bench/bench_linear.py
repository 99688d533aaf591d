"""oneDNN's linear (nodeflow.models.linear) against torch's own F.linear (the BLAS), per shape
and in the whole SD1.5 U-Net, in the same process.

    python tests/bench/bench_linear.py [--size 256] [--repeats 5]

Per shape (the SD1.5 U-Net's attention and feed-forward layers at a --size image, batch 2 as
CFG runs them, the text encoder's, and small ones): both times, the ratio ours / torch and
whether ``uses_onednn`` picks oneDNN. Whole U-Net (random weights, batch 2, the --size image's
latent): as shipped against the same U-Net with oneDNN's product turned off (its linears and the
deep convolutions' GEMM then use the BLAS), runs alternating; medians and the ratio.
"""

from __future__ import annotations

import argparse
import os
import platform

import torch
import torch.nn.functional as F

from bench_conv import timed, unet_medians  # this script's folder is on the path
from nodeflow.models import linear


def shapes(latent: int) -> list[tuple[str, int, int, int]]:
    """(what, rows, inputs, outputs): batch 2 as CFG runs the U-Net."""
    found = []
    for level, channels in enumerate((320, 640, 1280)):
        tokens = 2 * (latent >> level) ** 2
        found += [(f"attention {channels}", tokens, channels, channels),
                  (f"GEGLU {channels}", tokens, channels, 8 * channels),
                  (f"feed-forward out {channels}", tokens, 4 * channels, channels)]
    return found + [("cross-attention k/v 1280", 154, 768, 1280), ("text encoder MLP", 77, 768, 3072),
                    ("time embedding", 2, 320, 1280), ("small model", 128, 128, 512)]


def per_shape(latent: int, repeats: int) -> None:
    for what, rows, inputs, outputs in shapes(latent):
        layer = linear.Linear(inputs, outputs)
        x = torch.randn(rows, inputs)
        with torch.inference_mode():
            torch_time = timed(lambda: F.linear(x, layer.weight, layer.bias), repeats)
            our_time = timed(lambda: layer(x), repeats)
            chosen = "oneDNN" if linear.uses_onednn(x, layer.weight) else "torch"
        print(f"{what:<26} {rows:>5} x {inputs:>4} -> {outputs:<5}: torch {torch_time * 1e3:7.2f} ms, "
              f"ours {our_time * 1e3:7.2f} ms, ratio {our_time / torch_time:.2f}, "
              f"chosen: {chosen}", flush=True)


def whole_unet(latent: int, repeats: int) -> None:
    medians = unet_medians(latent, repeats, linear, "ONEDNN_MIN_WORK",
                           {"shipped": linear.ONEDNN_MIN_WORK, "BLAS only": float("inf")})
    ours, plain = medians["shipped"], medians["BLAS only"]
    print(f"SD1.5 U-Net batch 2, latent {latent}x{latent}: as shipped {ours:.2f} s, BLAS products only "
          f"{plain:.2f} s (medians of {repeats}); ratio {ours / plain:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (latent = size / 8)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}, "
          f"oneDNN linear: {linear.onednn_linear_available()}")
    per_shape(args.size // 8, args.repeats)
    whole_unet(args.size // 8, args.repeats)


if __name__ == "__main__":
    main()
