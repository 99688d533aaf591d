"""Stage 4: a LoRA for the embedded model, so the LoRA example workflow has something to load.

LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models") as the community
trains it for Stable Diffusion: the checkpoint stays frozen; every linear and convolution layer of
the U-Net's transformer blocks and residual blocks gets a low-rank update

    W' = W + (alpha / rank) * up @ down,      down: (rank, in[, k, k]),  up: (out, rank),

with ``up`` initialised to zero, so training starts from the unchanged model. The objective is
the same epsilon MSE as stage 2, on images of a new "style": shapes that nearly fill the frame
(sizes 80-95% of the side instead of 35-75%), with the usual captions. Applied with strength s,
the LoRA moves the model toward that style by s. Saved in the kohya/A1111 layout
(``lora_unet_<layer>.lora_down.weight`` / ``.lora_up.weight`` / ``.alpha``) that LoraLoader reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import torch

from nodeflow.training.data import TensorBatch
from nodeflow.training.optim import adamw, warmup_cosine
from nodeflow.training.train_text_unet import encode_pool, encode_text, scaled_linear_alphas_cumprod

StepCallback = Callable[[int, int, torch.Tensor], None]

#: The dataset variant the LoRA learns: shapes that nearly fill the frame.
BIG_SHAPES = {"min_size": 0.8, "max_size": 0.95}


@dataclass(frozen=True)
class LoRATraining:
    steps: int = 1500
    batch_size: int = 32
    rank: int = 4
    lr: float = 1e-3
    warmup: int = 50
    caption_dropout: float = 0.1
    pool_size: int = 4096

    def to_dict(self) -> dict:
        return asdict(self) | {"dataset": BIG_SHAPES}


def target_layers(unet: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """The layers that get an update: linear and convolution layers inside the U-Net's blocks
    (not the time embedding, the first convolution or the output head)."""
    return {name: module for name, module in unet.named_modules()
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d))
            and name.startswith(("input_blocks.", "middle_block.", "output_blocks."))
            and not name.startswith("input_blocks.0.")}


class LoRAWeights(torch.nn.Module):
    """The trainable ``down`` and ``up`` matrices of every target layer."""

    def __init__(self, layers: dict[str, torch.nn.Module], rank: int, generator: torch.Generator) -> None:
        super().__init__()
        self.rank = rank
        self.names = list(layers)
        self.down = torch.nn.ParameterList()
        self.up = torch.nn.ParameterList()
        for layer in layers.values():
            weight = layer.weight  # (out, in) or (out, in, k, k)
            fan_in = weight[0].numel()
            down = torch.randn((rank, *weight.shape[1:]), generator=generator) / fan_in ** 0.5
            self.down.append(torch.nn.Parameter(down))
            self.up.append(torch.nn.Parameter(torch.zeros(weight.shape[0], rank)))

    def deltas(self, base: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """{layer.weight: W + up @ down} (alpha = rank: scale 1)."""
        weights = {}
        for name, down, up in zip(self.names, self.down, self.up):
            weight = base[name + ".weight"]
            weights[name + ".weight"] = weight + (up @ down.flatten(1)).reshape(weight.shape)
        return weights

    def kohya_state_dict(self) -> dict[str, torch.Tensor]:
        tensors = {}
        for name, down, up in zip(self.names, self.down, self.up):
            key = "lora_unet_" + name.replace(".", "_")
            tensors[key + ".lora_down.weight"] = down.detach().half().contiguous()
            tensors[key + ".lora_up.weight"] = up.detach()[..., None, None].half().contiguous() \
                if down.ndim == 4 else up.detach().half().contiguous()
            tensors[key + ".alpha"] = torch.tensor(float(self.rank)).half()
        return tensors


def train_lora(unet, text_encoder, vae, data: Iterator[TensorBatch], tokens: torch.Tensor, scale: float,
               settings: LoRATraining, device: torch.device, seed: int,
               on_step: StepCallback | None = None) -> LoRAWeights:
    """Train and return the LoRA weights (the models stay frozen)."""
    for module in (unet, text_encoder, vae):
        module.to(device).eval().requires_grad_(False)
    generator = torch.Generator(device=device).manual_seed(seed)
    lora = LoRAWeights(target_layers(unet), settings.rank, torch.Generator().manual_seed(seed)).to(device)
    base = {name: parameter for name, parameter in unet.named_parameters()}
    pool = encode_pool(vae, data, settings.pool_size, device)
    tokens = tokens.to(device)
    alphas_cumprod = scaled_linear_alphas_cumprod().to(device)
    optimizer = adamw(lora.parameters(), settings.lr)
    schedule = warmup_cosine(optimizer, settings.warmup, settings.steps)

    for step in range(1, settings.steps + 1):
        with torch.no_grad():
            rows = torch.randint(0, len(pool), (settings.batch_size,), device=device, generator=generator)
            noise = torch.randn(pool.mean[rows].shape, device=device, generator=generator)
            latents = (pool.mean[rows] + pool.std[rows] * noise) * scale
            ids = pool.caption_ids[rows]
            dropped = torch.rand(ids.shape, device=device, generator=generator) < settings.caption_dropout
            ids = torch.where(dropped, torch.zeros_like(ids), ids)
            context = encode_text(text_encoder, tokens[ids])  # (B, 77, D)
            t = torch.randint(0, len(alphas_cumprod), (len(rows),), device=device, generator=generator)
            eps = torch.randn(latents.shape, device=device, generator=generator)
            abar = alphas_cumprod[t].float()[:, None, None, None]
            noisy = abar.sqrt() * latents + (1 - abar).sqrt() * eps
        weights = {**base, **lora.deltas(base)}
        predicted = torch.func.functional_call(unet, weights, (noisy, t.float(), context))
        loss = torch.nn.functional.mse_loss(predicted, eps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lora.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if on_step is not None:
            on_step(step, settings.steps, loss.detach())
    return lora
