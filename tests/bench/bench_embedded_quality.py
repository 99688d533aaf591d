"""What the embedded model draws: rates measured by the independent image checker.

    python tests/bench/bench_embedded_quality.py [--samples 3] [--device cuda] [--dtype bf16] [--controlnet]

Every shape x every foreground color (backgrounds rotating through the palette), ``--samples``
images each, through the default workflow's graph and settings. Prints the rates of right
foreground color, background color and shape, and writes a grid of the images.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu (the default workflow's setting) or cuda")
    parser.add_argument("--dtype", default="auto", help="auto (fp32 on the CPU), fp32, fp16 or bf16")
    parser.add_argument("--controlnet", action="store_true",
                        help="instead: IoU of the shape with the control mask, through workflows/controlnet.json")
    parser.add_argument("--grid", type=Path, default=None, help="write the images as a grid PNG here")
    args = parser.parse_args()
    if args.controlnet:
        return controlnet_rates(args.device)
    import tempfile

    from PIL import Image

    from nodeflow.engine.executor import Executor
    from nodeflow.runtime.paths import Paths
    from nodeflow.engine.registry import Registry
    from nodeflow.training.palette import caption
    from nodeflow.formats import load_workflow
    from tests.image_checker import read_image
    from tests.project import run_for_images
    from tests.test_embedded_model import prompts

    with tempfile.TemporaryDirectory() as folder:
        paths = Paths(output_dir=Path(folder) / "out", temp_dir=Path(folder) / "tmp")
        registry = Registry.load(paths)
        executor = Executor(registry, paths)
        rows, hits = [], {"foreground": 0, "background": 0, "shape": 0}
        total, started = 0, time.perf_counter()
        for index, (shape, color, background) in enumerate(prompts()):
            workflow = load_workflow(ROOT / "workflows" / "txt2img.json")
            workflow.nodes["6"].inputs["text"] = caption(shape, color, background)
            workflow.nodes["5"].inputs["batch_size"] = args.samples
            workflow.nodes["3"].inputs["seed"] = 1000 + index
            images = run_for_images(executor, workflow, device=args.device, dtype=args.dtype)
            for image in images:
                reading = read_image(image)
                hits["foreground"] += reading.foreground == color
                hits["background"] += reading.background == background
                hits["shape"] += reading.shape == shape
                total += 1
            rows.append(np.concatenate(list((images * 255).astype(np.uint8)), axis=1))
    print(f"dtype {args.dtype} on {args.device}, {time.perf_counter() - started:.1f} s")
    for key, value in hits.items():
        print(f"{key:>10}: {value}/{total} = {value / total:.1%}")
    if args.grid is not None:
        Image.fromarray(np.concatenate([np.concatenate(rows[i::8], axis=0) for i in range(8)], axis=1)).save(args.grid)


def controlnet_rates(device: str) -> None:
    import tempfile

    from tests.test_embedded_controlnet import IOU, make_executor, measure_ious

    with tempfile.TemporaryDirectory() as folder:
        executor, input_dir = make_executor(Path(folder))
        for strength in (1.0, 0.0):
            ious = np.array(measure_ious(executor, input_dir, strength=strength, device=device))
            print(f"strength {strength}: IoU >= {IOU} in {np.mean(ious >= IOU):.1%} of {len(ious)} images "
                  f"(median IoU {np.median(ious):.3f})")


if __name__ == "__main__":
    main()
