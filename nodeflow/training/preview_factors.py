"""Live-preview factors fitted to a checkpoint's own VAE.

A live preview maps each latent pixel to RGB by a fixed linear projection (nodeflow.sampling
.latent_preview). ComfyUI's factors were fitted to SD's and SDXL's VAEs; the embedded models have
their own tiny VAE, on which those factors draw the wrong colours. Here the 4 x 3 matrix and bias
are fitted by least squares between the scaled latents of shapes-dataset images and the images
averaged over each 8 x 8 block (in -1..1, the preview's space), and stored in the file's metadata
(``nodeflow.latent_rgb``, read by nodeflow.loading.checkpoint).

    python -m nodeflow.training --fit-preview assets/nodeflow-tiny.safetensors
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from nodeflow.loading.checkpoint import META_LATENT_RGB, load_checkpoint
from nodeflow.training.data import to_tensors
from nodeflow.training.export import save_atomically
from nodeflow.training.shapes import ShapeDataset

SAMPLES = 512


@torch.no_grad()
def fit_factors(vae: torch.nn.Module, scale_factor: float, images: torch.Tensor) -> dict:
    """{"factors": C x 3, "bias": 3} minimising the squared error of latent @ factors + bias
    against ``images`` (B, 3, H, W, -1..1) averaged to the latent grid."""
    latents = vae.encode(images) * scale_factor  # (B, C, h, w), the model's scaled space
    target = torch.nn.functional.avg_pool2d(images, images.shape[-1] // latents.shape[-1])  # (B, 3, h, w)
    inputs = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1]).double()
    inputs = torch.cat([inputs, torch.ones(len(inputs), 1, dtype=torch.float64)], dim=1)  # (N, C + 1)
    solution = torch.linalg.lstsq(inputs, target.permute(0, 2, 3, 1).reshape(-1, 3).double()).solution
    rounded = [[round(float(v), 4) for v in row] for row in solution.tolist()]
    return {"factors": rounded[:-1], "bias": rounded[-1]}


def shape_images(count: int = SAMPLES, seed: int = 1, resolution: int = 64) -> torch.Tensor:
    """``count`` images of the shapes dataset (B, 3, H, W) in -1..1."""
    return to_tensors(ShapeDataset(resolution=resolution).sample(np.random.default_rng(seed), count)).images


def add_preview_factors(path: str | Path, seed: int = 1) -> dict:
    """Fit the factors to the checkpoint's VAE and rewrite the file with them in its metadata
    (tensors unchanged; atomically). Returns the factors."""
    from safetensors import safe_open

    path = Path(path)
    checkpoint = load_checkpoint(path, device="cpu", dtype="fp32")
    factors = fit_factors(checkpoint.vae.model.eval(), checkpoint.model.latent_format.scale_factor,
                          shape_images(seed=seed))
    with safe_open(str(path), "pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        metadata = dict(handle.metadata() or {})
    metadata[META_LATENT_RGB] = json.dumps(factors)
    save_atomically(path, tensors, metadata)
    return factors
