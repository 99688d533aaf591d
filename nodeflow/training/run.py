"""The whole training run: settings, the two stages, snapshots (checkpoint + sample grid), and a
time estimate."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from nodeflow.training import architecture
from nodeflow.training.data import ALL_CAPTIONS, batches
from nodeflow.training.export import export_checkpoint
from nodeflow.training.preview_factors import add_preview_factors
from nodeflow.training.sample_grid import PREVIEW_CAPTIONS, sample_images, save_grid
from nodeflow.training.progress import ProgressBar, format_seconds
from nodeflow.training.shapes import ShapeDataset
from nodeflow.training.train_text_unet import (
    DiffusionTraining,
    diffusion_loss,
    encode_pool,
    scaled_linear_alphas_cumprod,
    train_text_unet,
)
from nodeflow.training.train_vae import (
    VAETraining,
    encode_posterior,
    measure_scaling_factor,
    random_crop,
    train_vae,
    vae_loss,
)

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "nodeflow-tiny.safetensors"
GRID_NAME = "samples-grid.png"
DESCRIPTION = (
    "nodeflow's embedded model: a tiny SD1.x-architecture latent diffusion model (U-Net, "
    "AutoencoderKL, CLIP text encoder) trained from scratch on procedural images of one colored "
    "shape (circle, square, triangle, star) on a colored background, 64x64 pixels. Prompt: "
    "'a red circle on a blue background'. Colors: red, green, blue, yellow, orange, purple, "
    "white, black."
)


@dataclass(frozen=True)
class TrainingRun:
    """Everything that determines the weights."""

    seed: int = 0
    resolution: int = 64
    architecture: architecture.Architecture = field(default_factory=architecture.Architecture)
    vae: VAETraining = field(default_factory=VAETraining)
    diffusion: DiffusionTraining = field(default_factory=DiffusionTraining)

    def to_dict(self) -> dict:
        return asdict(self)


DEFAULTS = TrainingRun()


def pick_device(name: str) -> torch.device:
    """``auto``: CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def train(settings: TrainingRun, out: Path, device: torch.device, workers: int = 0,
          vae_from: Path | None = None) -> Path:
    """Run both stages; write ``out/nodeflow-tiny.safetensors`` and ``out/samples-grid.png``
    (and snapshots along the way). Returns the checkpoint's path."""
    torch.manual_seed(settings.seed)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    out = Path(out)
    work = out / "training"
    work.mkdir(parents=True, exist_ok=True)
    dataset = ShapeDataset(resolution=settings.resolution)
    unet, vae, text_encoder = architecture.build(settings.architecture)
    logger.info("parameters: unet %.2fM, vae %.2fM, text encoder %.2fM",
                *(sum(p.numel() for p in m.parameters()) / 1e6 for m in (unet, vae, text_encoder)))

    started = time.perf_counter()
    if vae_from is not None:
        vae.load_state_dict(torch.load(vae_from, map_location="cpu"))
    else:
        vae_data = batches(dataset, settings.seed, settings.vae.batch_size, workers)
        train_vae(vae, vae_data, settings.vae, device, settings.seed, on_step=ProgressBar("vae"))
        torch.save(vae.state_dict(), work / "vae.pt")
    vae.to(device)
    scale = measure_scaling_factor(vae, batches(dataset, settings.seed + 1, 64), device)
    vae_seconds = time.perf_counter() - started
    logger.info("vae stage: %s, latent scaling factor %.5f", format_seconds(vae_seconds), scale)

    checkpoint = out / CHECKPOINT_NAME
    tokens = architecture.tokenize(ALL_CAPTIONS)  # (C, 77)

    def snapshot(step: int, ema_unet: torch.nn.Module, ema_text: torch.nn.Module) -> None:
        elapsed = time.perf_counter() - started
        record = settings.to_dict() | {"completed_unet_steps": step, "device": str(device),
                                       "seconds": round(elapsed)}
        export_checkpoint(checkpoint, ema_unet, vae, ema_text, name="nodeflow-tiny",
                          description=DESCRIPTION, unet_num_heads=settings.architecture.unet_num_heads,
                          vae_scaling_factor=scale, settings=record, seed=settings.seed)
        images = sample_images(ema_unet, ema_text, vae, scale, PREVIEW_CAPTIONS, seed=0)
        save_grid(images, columns=8, path=work / f"samples-{step:06d}.png")
        save_grid(images, columns=8, path=out / GRID_NAME)
        ema_unet.eval()
        ema_text.eval()
        logger.info("snapshot at step %d (%s): %s", step, format_seconds(elapsed), checkpoint)

    pool_data = batches(dataset, settings.seed + 2, 256, workers)
    pool = encode_pool(vae, pool_data, settings.diffusion.pool_size, device)
    logger.info("encoded a pool of %d latents (%s)", len(pool),
                format_seconds(time.perf_counter() - started))
    train_text_unet(unet, text_encoder, pool, tokens, settings.diffusion, scale, device,
                    settings.seed, on_step=ProgressBar("unet"), on_snapshot=snapshot)
    add_preview_factors(checkpoint)
    return checkpoint


def estimate(settings: TrainingRun, device: torch.device, steps: int = 6) -> dict:
    """Time ``steps`` optimisation steps of each stage (after one warm-up step) and project the
    duration of the full run on this machine."""
    dataset = ShapeDataset(resolution=settings.resolution)
    unet, vae, text_encoder = architecture.build(settings.architecture)
    unet.to(device), vae.to(device), text_encoder.to(device)
    tokens = architecture.tokenize(ALL_CAPTIONS).to(device)
    alphas_cumprod = scaled_linear_alphas_cumprod().to(device)
    vae_batches = batches(dataset, 0, settings.vae.batch_size)
    unet_batches = batches(dataset, 0, settings.diffusion.batch_size)
    vae_optimizer = torch.optim.AdamW(vae.parameters())
    crop_generator = torch.Generator().manual_seed(0)
    unet_optimizer = torch.optim.AdamW(list(unet.parameters()) + list(text_encoder.parameters()))

    def vae_step() -> None:
        images = random_crop(next(vae_batches).images, settings.vae.crop, crop_generator)
        loss = vae_loss(vae, images.to(device), settings.vae)
        vae_optimizer.zero_grad()
        loss.backward()
        vae_optimizer.step()

    def unet_step() -> None:
        batch = next(unet_batches)
        with torch.no_grad():
            latents = encode_posterior(vae, batch.images.to(device)).sample()
        loss = diffusion_loss(unet, text_encoder, latents, tokens[batch.caption_ids.to(device)],
                              alphas_cumprod)
        unet_optimizer.zero_grad()
        loss.backward()
        unet_optimizer.step()

    @torch.no_grad()
    def encode_step() -> None:
        vae.encode(next(unet_batches).images.to(device))

    seconds = {name: _time_steps(fn, steps, device) for name, fn in
               (("vae", vae_step), ("unet", unet_step), ("encode", encode_step))}
    encode_batches = settings.diffusion.pool_size / settings.diffusion.batch_size
    total = (seconds["vae"] * settings.vae.steps + seconds["encode"] * encode_batches
             + (seconds["unet"] - seconds["encode"]) * settings.diffusion.steps)
    return {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "seconds_per_step": seconds,
        "projected_seconds": round(total),
        "projected": format_seconds(total),
    }


def _time_steps(step, count: int, device: torch.device) -> float:
    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(count):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / count


CONTROLNET_NAME = "nodeflow-tiny-mask.safetensors"
CONTROLNET_DESCRIPTION = (
    "ControlNet for nodeflow's embedded model: the control image is the shape's mask (white shape on "
    "black); the generated shape follows its position and size.")


def train_controlnet_stage(checkpoint_path: Path, out: Path, device: torch.device, steps: int,
                           seed: int = 0, workers: int = 0, batch_size: int = 32) -> Path:
    """Stage 3 on an exported checkpoint: write ``out/controlnet/nodeflow-tiny-mask.safetensors``."""
    from nodeflow.loading.checkpoint import load_checkpoint
    from nodeflow.training.export import export_controlnet
    from nodeflow.training.train_controlnet import ControlNetTraining, train_controlnet

    started = time.perf_counter()
    checkpoint = load_checkpoint(checkpoint_path, device="cpu", dtype="fp32")
    unet, text, vae = checkpoint.model.unet, checkpoint.clip.model, checkpoint.vae.model
    settings = ControlNetTraining(steps=steps, batch_size=batch_size)
    dataset = ShapeDataset(resolution=DEFAULTS.resolution)
    data = batches(dataset, seed + 3, settings.batch_size, workers)
    tokens = architecture.tokenize(ALL_CAPTIONS)
    controlnet = train_controlnet(unet, text, vae, data, tokens, checkpoint.vae.scaling_factor, settings,
                                  device, seed, on_step=ProgressBar("controlnet"))
    record = settings.to_dict() | {"device": str(device), "seconds": round(time.perf_counter() - started),
                                   "checkpoint": checkpoint_path.name}
    heads = int(checkpoint.metadata.get("nodeflow.unet.num_heads", DEFAULTS.architecture.unet_num_heads))
    return export_controlnet(out / "controlnet" / CONTROLNET_NAME, controlnet, name="nodeflow-tiny-mask",
                             description=CONTROLNET_DESCRIPTION, unet_num_heads=heads, settings=record, seed=seed)


LORA_NAME = "nodeflow-tiny-big-shapes.safetensors"
LORA_DESCRIPTION = (
    "LoRA for nodeflow's embedded model: shapes that nearly fill the frame. Strength 1: full effect; "
    "0.5: halfway; 0: the model as it is.")


def train_lora_stage(checkpoint_path: Path, out: Path, device: torch.device, settings=None, seed: int = 0,
                     workers: int = 0) -> Path:
    """Stage 4 on an exported checkpoint: write ``out/loras/nodeflow-tiny-big-shapes.safetensors``."""
    import json

    from nodeflow.loading.checkpoint import load_checkpoint
    from nodeflow.training.export import save_atomically
    from nodeflow.training.train_lora import BIG_SHAPES, LoRATraining, train_lora

    started = time.perf_counter()
    checkpoint = load_checkpoint(checkpoint_path, device="cpu", dtype="fp32")
    settings = settings or LoRATraining()
    dataset = ShapeDataset(resolution=DEFAULTS.resolution, **BIG_SHAPES)
    data = batches(dataset, seed + 4, 256, workers)
    lora = train_lora(checkpoint.model.unet, checkpoint.clip.model, checkpoint.vae.model, data,
                      architecture.tokenize(ALL_CAPTIONS), checkpoint.vae.scaling_factor, settings, device, seed,
                      on_step=ProgressBar("lora"))
    record = settings.to_dict() | {"device": str(device), "seconds": round(time.perf_counter() - started),
                                   "checkpoint": checkpoint_path.name}
    metadata = {"name": "nodeflow-tiny-big-shapes", "description": LORA_DESCRIPTION,
                "nodeflow.training": json.dumps(record, sort_keys=True), "nodeflow.seed": str(seed)}
    return save_atomically(out / "loras" / LORA_NAME, lora.kohya_state_dict(), metadata)


SDXL_NAME = "nodeflow-tiny-xl.safetensors"
SDXL_DESCRIPTION = (
    "The SDXL sibling of nodeflow's embedded model: SDXL's architecture (CLIP-L + CLIP-G text towers, "
    "size conditioning, per-level transformer depth) in a tiny size, trained on the same procedural "
    "shapes with the same recipe and VAE. Prompt: 'a red circle on a blue background'.")


def train_sdxl_stage(checkpoint_path: Path, out: Path, device: torch.device, settings: DiffusionTraining,
                     seed: int = 0, workers: int = 0, arch=None) -> Path:
    """The SDXL sibling, with the (frozen) VAE of the SD1 checkpoint at ``checkpoint_path``:
    write ``out/nodeflow-tiny-xl.safetensors`` (snapshots along the way)."""
    import json

    from nodeflow.loading.checkpoint import load_checkpoint
    from nodeflow.training import sdxl
    from nodeflow.training.export import save_atomically

    started = time.perf_counter()
    torch.manual_seed(seed)
    source = load_checkpoint(checkpoint_path, device="cpu", dtype="fp32")
    vae, scale = source.vae.model.to(device).eval(), source.vae.scaling_factor
    arch = arch or sdxl.SDXLArchitecture()
    unet, towers = sdxl.build(arch)
    logger.info("parameters: unet %.2fM, text towers %.2fM", *(sum(p.numel() for p in m.parameters()) / 1e6
                                                              for m in (unet, towers)))
    dataset = ShapeDataset(resolution=sdxl.RESOLUTION)
    pool = encode_pool(vae, batches(dataset, seed + 2, 256, workers), settings.pool_size, device)
    target = out / SDXL_NAME

    def snapshot(step: int, ema_unet: torch.nn.Module, ema_towers: torch.nn.Module) -> None:
        record = {"architecture": arch.to_dict(), "diffusion": settings.to_dict(), "completed_unet_steps": step,
                  "device": str(device), "seconds": round(time.perf_counter() - started), "vae": checkpoint_path.name}
        metadata = {"name": "nodeflow-tiny-xl", "description": SDXL_DESCRIPTION, "format": "pt",
                    "nodeflow.training": json.dumps(record, sort_keys=True), "nodeflow.seed": str(seed),
                    "nodeflow.vae.scaling_factor": repr(float(scale))}
        save_atomically(target, sdxl.checkpoint_state_dict(ema_unet, vae, ema_towers), metadata)
        logger.info("snapshot at step %d (%s): %s", step, format_seconds(time.perf_counter() - started), target)

    train_text_unet(unet, towers, pool, sdxl.tokenize(ALL_CAPTIONS), settings, scale, device, seed,
                    on_step=ProgressBar("sdxl"), on_snapshot=snapshot, condition=sdxl.condition)
    add_preview_factors(target)
    return target
