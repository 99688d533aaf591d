"""Token merging for Stable Diffusion (Bolya & Hoffman 2023, "Token Merging for Fast Stable
Diffusion"; dbolya/tomesd, as ComfyUI's TomePatchModel): the self-attention of the full-size
feature maps computed for fewer queries.

Before a self-attention at the U-Net input's size (N = H x W tokens; ComfyUI's test
ceil(sqrt(HW // N)) <= 1, which only N = HW passes without failing), r = int(N ratio) query tokens
are merged away by bipartite soft matching (section 3 of the paper, "random 2d" partition):

1. destinations: one token of every 2 x 2 cell of the H x W grid, drawn at random; every other
   token (and the last row or column of an odd grid) is a source;
2. each source's best match is the destination with the highest cosine similarity of the
   matching metric (ComfyUI uses the normalised tokens themselves, the queries' input);
3. the r sources with the highest best similarity are merged: each destination becomes the mean
   of itself and the sources merged into it; the rest stay.

The N - r merged tokens are the queries; the keys and values stay all N tokens (ComfyUI's
placement: the patch changes the queries only). After the attention each source merged away takes
its destination's output (unmerge), so the block's output keeps N tokens.

Randomness: ComfyUI draws the destinations with torch.randint from the global generator of the
tokens' device. We use no global state: each self-attention draws from its own CPU generator
seeded with crc32 of (SEED, the block, the transformer index, sigma) (the seeding of
nodeflow.sampling.hypertile.call_generator), so a run reproduces, on any device and however the
batch is split. The destinations therefore differ from ComfyUI's (same distribution, other draws),
and so do the images, slightly. Ties between equal similarities may also break differently (we
sort stably; ComfyUI's argsort is not stable).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from nodeflow.models.unet_patches import PatchCall
from nodeflow.sampling.hypertile import call_generator

#: mixed into every self-attention's generator seed (see the module docstring)
SEED = 0x70E
STRIDE = 2  # destination cells are STRIDE x STRIDE tokens


def random_destinations(height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """Which token of each 2 x 2 cell of an H x W grid is a destination: (H // 2, W // 2) int64 in
    0..3, k meaning row 2i + k // 2, column 2j + k % 2 (drawn on the CPU)."""
    return torch.randint(STRIDE * STRIDE, (height // STRIDE, width // STRIDE), generator=generator)


class Matching(NamedTuple):
    """``merge``: (B, N, C) -> (B, N - r, C); ``unmerge``: (B, N - r, C) -> (B, N, C)."""

    merge: Callable[[torch.Tensor], torch.Tensor]
    unmerge: Callable[[torch.Tensor], torch.Tensor]


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def bipartite_soft_matching(metric: torch.Tensor, height: int, width: int, r: int,
                            destinations: torch.Tensor) -> Matching:
    """Merge the ``r`` source tokens most similar to a destination (see the module docstring):
    ``metric`` (B, N, C) on an H x W grid (N = H W), ``destinations`` from ``random_destinations``."""
    batch, tokens, _ = metric.shape
    if r <= 0 or height == 1 or width == 1:
        return Matching(_identity, _identity)
    if tokens != height * width:
        raise ValueError(f"{tokens} tokens are not a {height} x {width} grid")
    device = metric.device
    with torch.no_grad():
        cells_h, cells_w = destinations.shape
        row = torch.arange(cells_h, device=device)[:, None] * STRIDE + destinations.to(device) // STRIDE
        col = torch.arange(cells_w, device=device)[None, :] * STRIDE + destinations.to(device) % STRIDE
        is_destination = torch.zeros(height, width, dtype=torch.bool, device=device)
        is_destination[row, col] = True
        dst_index = is_destination.flatten().nonzero().squeeze(1)  # (Nd,) token positions
        src_index = (~is_destination).flatten().nonzero().squeeze(1)  # (Ns,)
        unit = metric / metric.norm(dim=-1, keepdim=True)  # (B, N, C)
        scores = unit[:, src_index] @ unit[:, dst_index].transpose(1, 2)  # (B, Ns, Nd) cosine similarities
        r = min(r, src_index.numel())
        best, best_dst = scores.max(dim=-1)  # (B, Ns)
        order = best.argsort(dim=-1, descending=True, stable=True)  # (B, Ns)
        merged, kept = order[:, :r], order[:, r:]  # source numbers
        targets = best_dst.gather(1, merged)  # (B, r) destination numbers
        kept_at = src_index[kept]  # (B, Ns - r) token positions
        merged_at = src_index[merged]  # (B, r)

    def rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return x.gather(1, index[..., None].expand(-1, -1, x.shape[-1]))

    def merge(x: torch.Tensor) -> torch.Tensor:
        dst = x[:, dst_index]  # (B, Nd, C)
        sources = rows(x, merged_at)  # (B, r, C)
        dst = dst.scatter_reduce(1, targets[..., None].expand_as(sources), sources, reduce="mean")
        return torch.cat([rows(x, kept_at), dst], dim=1)  # (B, N - r, C)

    def unmerge(y: torch.Tensor) -> torch.Tensor:
        kept_count = kept_at.shape[1]
        kept_rows, dst = y[:, :kept_count], y[:, kept_count:]  # (B, Ns - r, C), (B, Nd, C)
        out = y.new_empty(y.shape[0], tokens, y.shape[-1])  # (B, N, C)
        out[:, dst_index] = dst
        out.scatter_(1, kept_at[..., None].expand_as(kept_rows), kept_rows)
        merged_rows = rows(dst, targets)  # (B, r, C)
        out.scatter_(1, merged_at[..., None].expand_as(merged_rows), merged_rows)
        return out

    return Matching(merge, unmerge)


class TokenMergingHooks(NamedTuple):
    """The self-attention hooks (nodeflow.models.unet_patches): ``merge`` before, ``unmerge`` after."""

    merge: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, PatchCall], tuple]
    unmerge: Callable[[torch.Tensor, PatchCall], torch.Tensor]


def token_merging(ratio: float = 0.3, seed: int = SEED) -> TokenMergingHooks:
    """ToMe's hooks merging ``ratio`` of the full-size self-attentions' query tokens."""
    key = object()  # this patch's entry in the forward's PatchCall.extra, between its two hooks

    def merge(n: torch.Tensor, context: torch.Tensor, value: torch.Tensor, call: PatchCall):
        tokens = n.shape[1]
        height, width = call.original_shape[-2:]
        r = int(tokens * ratio)
        if tokens != height * width or r <= 0 or height == 1 or width == 1:
            return n, context, value
        destinations = random_destinations(height, width, call_generator(call, seed))
        matching = bipartite_soft_matching(n, height, width, r, destinations)
        call.extra[key] = matching.unmerge
        return matching.merge(n), context, value

    def unmerge(out: torch.Tensor, call: PatchCall) -> torch.Tensor:
        restore = call.extra.pop(key, None)
        return out if restore is None else restore(out)

    return TokenMergingHooks(merge, unmerge)
