"""HyperTile (tfernd/HyperTile, as ComfyUI's HyperTile node): the self-attention of the largest
feature maps computed within tiles, which costs (N / tiles)^2 per tile instead of N^2.

Which self-attentions: those whose token count N is (H / 2^d)(W / 2^d) for a depth d in
0..``max_depth``, H x W the U-Net input's latent (ComfyUI's floating-point comparison: a level whose
size was rounded up from an odd one is never matched).

The grid: ComfyUI reads the N tokens as a grid of ``rows`` = round(sqrt(N W / H)) by ``cols`` =
round(sqrt(N H / W)), both Python rounding. For a square latent this is the feature map itself;
for another one the roles are swapped (rows counts the map's width), so a "tile" is a set of
tokens that is not a rectangle of the image. We keep that grouping, since it decides the image.
A count that does not multiply back to N leaves the attention untiled (ComfyUI's rearrange fails).

The tiles: along each side of ``value`` cells (rows, then cols) the tile count is
``value // d`` for a divisor d of ``value`` from min(t, value) up, t = max(32, tile_size) // 8
latent pixels (times 2^d with ``scale_depth``). The first ``swap_size`` such divisors are the
candidates; one is drawn uniformly from all but the last of them (ComfyUI draws randint(0,
len - 1), whose upper bound is exclusive), and nothing is drawn when there is one candidate. So
swap_size 1 or 2 always takes the smallest divisor: the most tiles.

The attention: ComfyUI's patch tiles only the queries, (B, N, C) -> (B nh nw, N / (nh nw), C),
tile (i, j) of each image holding the cells [i rows/nh, (i+1) rows/nh) x [j cols/nw, (j+1) cols/nw)
of the grid; the keys and values stay the block's normalised tokens, and its attention reshapes
them to the queries' batch, which cuts each image's tokens into nh nw consecutive runs. Tile
number k = i nw + j therefore attends to run k of the raw token order, not to its own cells. We
reproduce this explicitly (``tile_keys``) rather than through a reshape inside the attention,
because it decides ComfyUI's images; tfernd's original tiles queries, keys and values alike.
The output patch puts each query's result back at its token.

Randomness: ComfyUI draws from torch's global generator, which its KSampler seeds with the noise
seed (``torch.manual_seed``) just before drawing the initial noise; its draws follow in the order
of the forwards. We use no global state: each self-attention draws from its own CPU generator
seeded with crc32 of (SEED, the block, the transformer index, sigma), so the same graph and seed
give the same tiles, also when the conditional and unconditional halves run as separate forwards.
Identical to ComfyUI: the tiles wherever fewer than three candidates exist (then ComfyUI's draw
always gives the first), so always with swap_size 1 or 2 (the default). Not identical: which
candidate is drawn when swap_size >= 3 gives three or more (the same distribution, other draws).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from typing import NamedTuple

import torch

from nodeflow.models.unet_patches import PatchCall

#: mixed into every self-attention's generator seed (see the module docstring)
SEED = 0x5EED
MIN_TILE = 32  # pixels: a smaller tile_size counts as this


class TileLayout(NamedTuple):
    """How one self-attention's tokens were tiled: nh x nw tiles of a rows x cols grid."""

    nh: int
    nw: int
    rows: int
    cols: int


def call_generator(call: PatchCall, seed: int) -> torch.Generator:
    """A CPU generator for one hook call: seeded with crc32 of ``seed``, the block, the transformer
    index and the first sigma of the batch (-1 when not given), the same in every process."""
    sigma = float(call.sigma.reshape(-1)[0]) if call.sigma is not None else -1.0
    key = f"{seed}:{call.block[0]}:{call.block[1]}:{call.block_index}:{sigma.hex()}"
    return torch.Generator().manual_seed(zlib.crc32(key.encode()))


def random_divisor(value: int, min_value: int, max_options: int, generator: torch.Generator) -> int:
    """A tile count along a side of ``value`` cells: ``value // d`` for one of the ``max_options``
    smallest divisors d >= min(min_value, value), drawn as ComfyUI draws (see the module docstring)."""
    min_value = min(min_value, value)
    divisors = [d for d in range(min_value, value + 1) if value % d == 0][:max_options]
    counts = [value // d for d in divisors]
    index = 0
    if len(counts) > 1:
        index = int(torch.randint(0, len(counts) - 1, (1,), generator=generator))
    return counts[index]


def token_depth(tokens: int, original_shape: tuple[int, ...], max_depth: int) -> int | None:
    """The depth d <= max_depth at which an H x W latent has ``tokens`` (H / 2^d)(W / 2^d) tokens, or None."""
    height, width = original_shape[-2:]
    for depth in range(max_depth + 1):
        if tokens == (height / 2**depth) * (width / 2**depth):
            return depth
    return None


def token_grid(tokens: int, original_shape: tuple[int, ...]) -> tuple[int, int] | None:
    """ComfyUI's (rows, cols) reading of ``tokens`` for an H x W latent (see the module docstring)."""
    height, width = original_shape[-2:]
    aspect = width / height
    rows, cols = round(math.sqrt(tokens * aspect)), round(math.sqrt(tokens / aspect))
    return (rows, cols) if rows * cols == tokens else None


def tile_tokens(x: torch.Tensor, layout: TileLayout) -> torch.Tensor:
    """(B, rows cols, C) -> (B nh nw, rows/nh cols/nw, C): tile (i, j) of image b at b nh nw + i nw + j."""
    nh, nw, rows, cols = layout
    batch, _, channels = x.shape
    x = x.reshape(batch, nh, rows // nh, nw, cols // nw, channels)  # (B, nh, th, nw, tw, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(batch * nh * nw, (rows // nh) * (cols // nw), channels)


def untile_tokens(x: torch.Tensor, layout: TileLayout) -> torch.Tensor:
    """The inverse of ``tile_tokens``: (B nh nw, rows/nh cols/nw, C) -> (B, rows cols, C)."""
    nh, nw, rows, cols = layout
    channels = x.shape[-1]
    batch = x.shape[0] // (nh * nw)
    x = x.reshape(batch, nh, nw, rows // nh, cols // nw, channels)  # (B, nh, nw, th, tw, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(batch, rows * cols, channels)


def tile_keys(x: torch.Tensor, tiles: int) -> torch.Tensor:
    """Keys or values for tiled queries, as ComfyUI's attention reads them: each image's tokens cut
    into ``tiles`` consecutive runs, (B, N, C) -> (B tiles, N / tiles, C)."""
    return x.reshape(x.shape[0] * tiles, -1, x.shape[-1])


class HyperTileHooks(NamedTuple):
    """The self-attention hooks (nodeflow.models.unet_patches): ``tile`` before, ``untile`` after."""

    tile: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, PatchCall], tuple]
    untile: Callable[[torch.Tensor, PatchCall], torch.Tensor]


def hypertile(tile_size: int = 256, swap_size: int = 2, max_depth: int = 0, scale_depth: bool = False,
              seed: int = SEED) -> HyperTileHooks:
    """HyperTile's hooks for tiles of about ``tile_size`` pixels (see the module docstring)."""
    latent_tile = max(MIN_TILE, tile_size) // 8
    key = object()  # this patch's entry in the forward's PatchCall.extra, between its two hooks

    def tile(n: torch.Tensor, context: torch.Tensor, value: torch.Tensor, call: PatchCall):
        tokens = n.shape[1]
        depth = token_depth(tokens, call.original_shape, max_depth)
        grid = None if depth is None else token_grid(tokens, call.original_shape)
        if grid is None:
            return n, context, value
        rows, cols = grid
        minimum = latent_tile * (2**depth if scale_depth else 1)
        generator = call_generator(call, seed)
        nh = random_divisor(rows, minimum, swap_size, generator)
        nw = random_divisor(cols, minimum, swap_size, generator)
        if nh * nw == 1:
            return n, context, value
        layout = TileLayout(nh, nw, rows, cols)
        call.extra[key] = layout
        return tile_tokens(n, layout), tile_keys(context, nh * nw), tile_keys(value, nh * nw)

    def untile(out: torch.Tensor, call: PatchCall) -> torch.Tensor:
        layout = call.extra.pop(key, None)
        return out if layout is None else untile_tokens(out, layout)

    return HyperTileHooks(tile, untile)
