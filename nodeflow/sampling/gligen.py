"""GLIGEN boxes of a conditioning entry -> the U-Net hook that runs the gated blocks.

GLIGENTextBoxApply stores, as ComfyUI does, ``options["gligen"] = ("position", model, boxes)``
with each box ``(pooled (1, D), h, w, y, x)`` in latent pixels (the pixel values // 8). For each
U-Net call of that entry (alone: entries with boxes never share a forward), the boxes become
fractions of the U-Net input's latent (x0 = x / w_latent, y0 = y / h_latent, x1 = (x + w) /
w_latent, y1 = (y + h) / h_latent, of the entry's area crop when it has one), the position net
turns them into grounding tokens, and a ``middle_patch`` (nodeflow.models.unet_patches) runs each
transformer block's gated self-attention on them, right after the block's self-attention.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nodeflow.models.gligen import Gligen
from nodeflow.models.unet_patches import PatchCall, UNetPatches

POSITION = "position"  # the only kind of GLIGEN entry ComfyUI's nodes make


@dataclass(frozen=True, eq=False)
class GatedBlocks:
    """The ``middle_patch`` of one U-Net call: the transformer block at the hook's location runs
    its gated block on the grounding tokens (blocks without one are left alone)."""

    model: Gligen
    tokens: torch.Tensor  # (1, 30, key_dim) on the model's device

    def __call__(self, x: torch.Tensor, call: PatchCall) -> torch.Tensor:
        fuser = self.model.fuser_at((*call.block, call.block_index))
        if fuser is None:
            return x
        dtype = self.tokens.dtype
        objs = self.tokens.expand(x.shape[0], -1, -1)  # (B, 30, key_dim)
        return fuser(x.to(self.tokens.device, dtype), objs).to(x)  # (B, N, C)


def box_fractions(boxes: list[tuple], height: int, width: int) -> torch.Tensor:
    """Boxes (pooled, h, w, y, x) in latent pixels -> (n, 4) as (x0, y0, x1, y1) fractions of a
    latent of ``height`` x ``width``."""
    return torch.tensor([(x / width, y / height, (x + w) / width, (y + h) / height)
                         for _, h, w, y, x in boxes], dtype=torch.float32).reshape(-1, 4)


def gligen_patches(option: tuple, shape: tuple[int, ...]) -> UNetPatches:
    """The U-Net hooks of a conditioning entry's ``gligen`` option for a U-Net input of ``shape``
    (B, C, h, w)."""
    kind, model, boxes = option
    if kind != POSITION:
        raise ValueError(f"GLIGEN conditioning of kind {kind!r}: only {POSITION!r} (GLIGENTextBoxApply) is known")
    height, width = shape[-2:]
    pooled = [p.reshape(1, -1).float() for p, *_ in boxes]
    embeddings = torch.cat(pooled)  # (n, D): add_box always adds one
    with torch.no_grad():
        tokens = model.grounding_tokens(embeddings, box_fractions(boxes, height, width))  # (1, 30, key_dim)
    return UNetPatches(middle_patch=(GatedBlocks(model, tokens),))


def add_box(conditioning: list, model: Gligen, pooled: torch.Tensor, width: int, height: int, x: int,
            y: int) -> list:
    """Every entry of ``conditioning`` with one more GLIGEN box (a copy: entries are never changed):
    the phrase's pooled text embedding ``pooled`` (1, D) over the pixel box at (x, y) of ``width``
    x ``height``, kept in latent pixels (// 8) after the entry's earlier boxes, with ``model``."""
    box = (pooled, height // 8, width // 8, y // 8, x // 8)
    result = []
    for cond, options in conditioning:
        earlier = list(options["gligen"][2]) if "gligen" in options else []
        result.append((cond, {**options, "gligen": (POSITION, model, [*earlier, box])}))
    return result
