"""Regenerate the embedded model from a seed: ``python -m nodeflow.training --seed 0 --out assets/``.

Stage 1 trains the VAE, stage 2 the U-Net and the text encoder jointly (``--sdxl-from``: the SDXL
sibling's U-Net and two text towers on the VAE of a finished checkpoint); a checkpoint (EMA
weights) and a sample grid are written every ``--snapshot-every`` steps, so an interrupted run
leaves usable weights. Progress goes to stderr. ``--estimate`` times a few steps of each stage
and prints how long the full run would take on this machine, without training.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

logger = logging.getLogger("nodeflow.training")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from nodeflow.training.run import DEFAULTS
    from nodeflow.training.train_controlnet import ControlNetTraining

    parser = argparse.ArgumentParser(prog="python -m nodeflow.training", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="seed of everything (default 0)")
    parser.add_argument("--out", type=Path, default=Path("assets"),
                        help="folder for the checkpoint and the sample grid (default assets/)")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda")
    parser.add_argument("--vae-steps", type=int, default=DEFAULTS.vae.steps)
    parser.add_argument("--vae-batch-size", type=int, default=DEFAULTS.vae.batch_size)
    parser.add_argument("--vae-crop", type=int, default=DEFAULTS.vae.crop,
                        help="side of the random training windows (64: whole images)")
    parser.add_argument("--unet-steps", type=int, default=DEFAULTS.diffusion.steps)
    parser.add_argument("--unet-batch-size", type=int, default=DEFAULTS.diffusion.batch_size)
    parser.add_argument("--pool-size", type=int, default=DEFAULTS.diffusion.pool_size,
                        help="images encoded once for the U-Net stage")
    parser.add_argument("--lr", type=float, default=DEFAULTS.diffusion.lr,
                        help="U-Net/text encoder learning rate")
    parser.add_argument("--snapshot-every", type=int, default=DEFAULTS.diffusion.snapshot_every)
    parser.add_argument("--workers", type=int, default=None,
                        help="data worker processes (default: 0 on CPU, 6 on GPU)")
    parser.add_argument("--vae-from", type=Path, default=None,
                        help="skip stage 1: reuse a VAE state dict saved by an earlier run")
    parser.add_argument("--controlnet-from", type=Path, default=None, metavar="CHECKPOINT",
                        help="only stage 3: train the mask ControlNet for this exported checkpoint")
    parser.add_argument("--controlnet-steps", type=int, default=ControlNetTraining.steps)
    parser.add_argument("--controlnet-batch-size", type=int, default=32)
    parser.add_argument("--lora-from", type=Path, default=None, metavar="CHECKPOINT",
                        help="only stage 4: train the example LoRA (big shapes) for this exported checkpoint")
    parser.add_argument("--lora-steps", type=int, default=1500)
    parser.add_argument("--sdxl-from", type=Path, default=None, metavar="CHECKPOINT",
                        help="only the SDXL sibling (U-Net and both text towers; --unet-* settings), "
                             "with the frozen VAE of this exported SD1 checkpoint")
    parser.add_argument("--fit-preview", type=Path, nargs="+", default=None, metavar="CHECKPOINT",
                        help="only fit the live-preview factors to each checkpoint's VAE and store them in it")
    parser.add_argument("--estimate", action="store_true",
                        help="time a few steps of each stage, print the projected run time, exit")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    args = parse_args(argv)
    from nodeflow.training import run

    settings = replace(
        run.DEFAULTS,
        seed=args.seed,
        vae=replace(run.DEFAULTS.vae, steps=args.vae_steps, batch_size=args.vae_batch_size,
                    crop=args.vae_crop),
        diffusion=replace(run.DEFAULTS.diffusion, steps=args.unet_steps,
                          batch_size=args.unet_batch_size, lr=args.lr, pool_size=args.pool_size,
                          snapshot_every=args.snapshot_every),
    )
    device = run.pick_device(args.device)
    workers = args.workers if args.workers is not None else (6 if device.type == "cuda" else 0)
    if args.fit_preview:
        from nodeflow.training.preview_factors import add_preview_factors

        for path in args.fit_preview:
            logger.info("%s: preview factors %s", path, add_preview_factors(path))
        return 0
    if args.controlnet_from is not None:
        path = run.train_controlnet_stage(args.controlnet_from, args.out, device, args.controlnet_steps,
                                          args.seed, workers, batch_size=args.controlnet_batch_size)
        logger.info("controlnet written: %s", path)
        return 0
    if args.lora_from is not None:
        from nodeflow.training.train_lora import LoRATraining

        path = run.train_lora_stage(args.lora_from, args.out, device, LoRATraining(steps=args.lora_steps),
                                    args.seed, workers)
        logger.info("lora written: %s", path)
        return 0
    if args.sdxl_from is not None:
        path = run.train_sdxl_stage(args.sdxl_from, args.out, device, settings.diffusion, args.seed, workers)
        logger.info("sdxl sibling written: %s", path)
        return 0
    if args.estimate:
        report = run.estimate(settings, device)
        sys.stderr.write(json.dumps(report, indent=2) + "\n")
        return 0
    started = time.perf_counter()
    checkpoint = run.train(settings, args.out, device, workers, vae_from=args.vae_from)
    logger.info("done in %.0f s on %s: %s", time.perf_counter() - started, device, checkpoint)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
