"""Hooks into a U-Net forward that model patches use (ComfyUI's transformer_options patches):
functions on the self-attention of the transformer blocks and on the blocks' features.

- ``attn1_patch``: (n, context, value, call) -> (n, context, value), on a transformer block's
  normalised tokens n (B, N, C) before its self-attention reads them (HyperTile, ToMe);
- ``attn1_output_patch``: (out, call) -> out, on the self-attention's output before the residual;
- ``middle_patch``: (x, call) -> x, on a transformer block's tokens x (B, N, C) after the
  self-attention's residual, before the cross-attention (GLIGEN's gated self-attention);
- ``attn2_patch``: (n, context, value, call) -> (n, context, value), on a transformer block's
  normalised tokens n (B, N, C) and the text context its cross-attention reads keys (context) and
  values (value) from (B, T, D), before the projections (hypernetworks);
- ``attn1_replace``: ((block, id) or (block, id, index), function) pairs; the function
  (q, k, v, call) -> (B, N, inner) replaces the attention product of the self-attention of the
  matching transformer blocks, between its projections (PAG, SAG);
- ``input_block``: (h, call) -> h, on an input block's output before it is kept as the skip
  connection, so the skip changes too (deep shrink with downscale_after_skip off);
- ``input_block_after_skip``: (h, call) -> h, on an input block's output after it was kept as
  the skip connection (deep shrink);
- ``output_block``: (h, skip, call) -> (h, skip), before a decoder block joins its skip (FreeU,
  deep shrink).

A U-Net forward with patches hands each hook a ``PatchCall``: where it is (``block``:
("input", i), ("middle", 0) or ("output", i), as ComfyUI numbers them; ``block_index``: the
transformer block within its spatial transformer), the U-Net input's shape, the noise levels of
the batch and the heads of the attention. Without patches the forward passes None and pays nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

Location = tuple  # ("input", 4) or ("input", 4, 0): a block, or one transformer block in it


@dataclass(frozen=True)
class UNetPatches:
    """The hooks of one patched model; ``+`` joins two sets (the right one's replacements win)."""

    attn1_patch: tuple[Callable, ...] = ()
    attn1_output_patch: tuple[Callable, ...] = ()
    middle_patch: tuple[Callable, ...] = ()
    attn1_replace: tuple[tuple[Location, Callable], ...] = ()
    attn2_patch: tuple[Callable, ...] = ()
    input_block_after_skip: tuple[Callable, ...] = ()
    output_block: tuple[Callable, ...] = ()
    input_block: tuple[Callable, ...] = ()

    def __add__(self, other: UNetPatches) -> UNetPatches:
        return UNetPatches(**{name: getattr(self, name) + getattr(other, name) for name in _FIELDS})

    def __bool__(self) -> bool:
        return any(getattr(self, name) for name in _FIELDS)

    def replacement(self, block: tuple, index: int) -> Callable | None:
        """The self-attention replacement for transformer block ``index`` of ``block`` (the last one
        set for (block, index), else for the whole block), or None."""
        specific = [function for location, function in self.attn1_replace if location == (*block, index)]
        general = [function for location, function in self.attn1_replace if location == block]
        found = specific or general
        return found[-1] if found else None


_FIELDS = ("attn1_patch", "attn1_output_patch", "middle_patch", "attn1_replace", "attn2_patch", "input_block_after_skip",
           "output_block", "input_block")


@dataclass(frozen=True)
class PatchCall:
    """What a hook is told about the forward it runs in."""

    patches: UNetPatches
    original_shape: tuple[int, ...]  # the U-Net input's (B, C, h, w)
    sigma: torch.Tensor | None = None  # (B,) the noise levels, when the sampler gave them
    block: tuple = ("input", 0)
    block_index: int = 0
    heads: int = 1
    dim_head: int = 0
    #: free-form facts the caller adds (e.g. which batch chunks are unconditional)
    extra: dict = field(default_factory=dict, compare=False)

    def at(self, block: tuple) -> PatchCall:
        return replace(self, block=block, block_index=0)
