"""Sample grids during training: Euler sampling with classifier-free guidance on the EMA models.

Deliberately the same recipe as the default workflow (``normal`` schedule, Euler, CFG on the
denoised values, ComfyUI's CPU noise), so the grids show what users will get.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nodeflow.training.architecture import tokenize
from nodeflow.training.palette import PALETTE, SHAPES, caption
from nodeflow.sampling.samplers import sample_euler
from nodeflow.sampling.schedulers import SCHEDULERS
from nodeflow.sampling.model_sampling import ModelSampling
from nodeflow.training.train_text_unet import encode_text

#: 32 prompts: every shape with every foreground color, on rotating backgrounds.
PREVIEW_CAPTIONS: tuple[str, ...] = tuple(
    caption(shape, fg, list(PALETTE)[(i + 3 + j) % len(PALETTE)])
    for j, shape in enumerate(SHAPES)
    for i, fg in enumerate(PALETTE)
)


@torch.no_grad()
def sample_images(
    unet: torch.nn.Module,
    text_encoder: torch.nn.Module,
    vae: torch.nn.Module,
    scaling_factor: float,
    captions: tuple[str, ...] | list[str],
    seed: int = 0,
    steps: int = 20,
    cfg: float = 6.0,
    resolution: int = 64,
) -> np.ndarray:
    """Images (N, H, W, 3) uint8 for the captions, one per caption, noise from ``seed``."""
    device = next(unet.parameters()).device
    unet.eval(), text_encoder.eval(), vae.eval()
    sampling = ModelSampling.sd1()
    n = len(captions)
    tokens = tokenize(list(captions) + [""]).to(device)  # (N + 1, 77)
    context = encode_text(text_encoder, tokens)  # (N + 1, 77, D)
    cond, uncond = context[:n], context[n:].expand(n, -1, -1)
    generator = torch.Generator("cpu").manual_seed(seed)
    shape = (n, 4, resolution // 8, resolution // 8)
    sigmas = SCHEDULERS["normal"](sampling, steps).to(device)
    x = torch.randn(shape, generator=generator).to(device) * (1 + sigmas[0] ** 2).sqrt()

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """CFG on the denoised values, cond and uncond in one batch. sigma: (N,)."""
        x2, sigma2 = torch.cat([x, x]), torch.cat([sigma, sigma])  # (2N, 4, h, w), (2N,)
        t = sampling.timestep(sigma2.cpu()).to(device)  # nearest timestep
        eps = unet(sampling.calculate_input(sigma2, x2), t, torch.cat([cond, uncond]))
        good, base = sampling.calculate_denoised(sigma2, eps, x2).chunk(2)
        return base + (good - base) * cfg

    x = sample_euler(denoise, x, sigmas)  # Karras et al. 2022, algorithm 2
    pixels = vae.decode(x / scaling_factor)  # (N, 3, H, W)
    pixels = ((pixels + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
    return (pixels * 255).astype(np.uint8)


def save_grid(images: np.ndarray, columns: int, path: str | Path) -> None:
    """Tile images (N, H, W, 3) uint8 into a grid PNG, ``columns`` per row."""
    n, h, w, c = images.shape
    rows = -(-n // columns)
    grid = np.zeros((rows * h, columns * w, c), dtype=np.uint8)
    for i, image in enumerate(images):
        r, col = divmod(i, columns)
        grid[r * h:(r + 1) * h, col * w:(col + 1) * w] = image
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)
