"""U-Net patches for size and speed (issue 15): PatchModelAddDownscale (Kohya's deep shrink),
HyperTile and TomePatchModel (token merging).

Deep shrink is checked by the feature sizes it leaves (spied on with further hooks) and by its
resizes against torch's interpolate and a bislerp written out here; HyperTile by its token tiles
and a per-tile attention computed here on one transformer block; ToMe by a bipartite matching
computed here token by token. Each node: the input model untouched, and composition with FreeU
and a LoRA applied after.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nodeflow.models.attention import BasicTransformerBlock
from nodeflow.models.unet_patches import PatchCall, UNetPatches
from nodeflow.sampling.deep_shrink import deep_shrink, resize
from nodeflow.sampling.hypertile import (TileLayout, hypertile, random_divisor, tile_tokens, token_depth,
                                         token_grid, untile_tokens)
from nodeflow.sampling.model import DiffusionModel, LatentFormat
from nodeflow.sampling.model_sampling import ModelSampling
from nodeflow.sampling.token_merging import bipartite_soft_matching, random_destinations
from nodeflow_nodes.model_advanced import free_u
from nodeflow_nodes.unet_patches import hyper_tile, patch_model_add_downscale, tome_patch_model
from tests.test_unet_parity import random_unet, tiny_config

# the tiny U-Net: input blocks 0 (conv), 1-2 (full size, attention), 3 (down), 4-5 (1/2, attention),
# 6 (down), 7-8 (1/4); output blocks 0-2 (1/4), 3-5 (1/2, attention), 6-8 (full size, attention)
FULL_SIZE_BLOCKS = {("input", 1), ("input", 2), ("output", 6), ("output", 7), ("output", 8)}
HALF_SIZE_BLOCKS = {("input", 4), ("input", 5), ("output", 3), ("output", 4), ("output", 5)}


def unet_model() -> DiffusionModel:
    """The tiny random U-Net with its self-attention logits 900 times larger: random weights give
    nearly uniform attention, which hardly depends on the queries (so merging them would not show)."""
    unet = random_unet(tiny_config())
    with torch.no_grad():
        for name, module in unet.named_modules():
            if name.endswith("attn1"):
                module.to_q.weight.mul_(30.0)
                module.to_k.weight.mul_(30.0)
    return DiffusionModel(unet, ModelSampling.sd1(), LatentFormat(), torch.device("cpu"), torch.float32)


def inputs(height: int = 16, width: int = 16, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    x = torch.randn(batch, 4, height, width, generator=generator)
    return x, torch.randn(batch, 5, tiny_config().context_dim, generator=generator)


def predict(model: DiffusionModel, x: torch.Tensor, context: torch.Tensor, sigma: float) -> torch.Tensor:
    return model.predict_denoised(x, torch.full((x.shape[0],), float(sigma)), context)


# --- deep shrink --------------------------------------------------------------------------------


def feature_spy(model: DiffusionModel, inputs_seen: dict, skips_seen: dict) -> DiffusionModel:
    """The model with hooks after its others recording each input block's output size (after any
    downscale) and each output block's skip size and incoming feature size (after any restore)."""

    def after_skip(h, call):
        inputs_seen[call.block[1]] = tuple(h.shape[-2:])
        return h

    def output(h, skip, call):
        skips_seen[call.block[1]] = (tuple(h.shape[-2:]), tuple(skip.shape[-2:]))
        return h, skip

    return model.with_unet_patches(input_block_after_skip=(after_skip,), output_block=(output,))


def test_deep_shrink_outside_its_sigma_range_leaves_the_output_exactly_unchanged():
    model = unet_model()
    x, context = inputs()
    [early] = patch_model_add_downscale(model, 3, 2.0, 0.0, 0.35, True, "bicubic", "bicubic")
    sigma_end = model.sampling.percent_to_sigma(0.35)
    for sigma in (sigma_end * 0.99, 0.5, 0.05):  # past the end of its range
        assert torch.equal(predict(early, x, context, sigma), predict(model, x, context, sigma))
    assert not torch.allclose(predict(early, x, context, 10.0), predict(model, x, context, 10.0), atol=1e-4)
    [late] = patch_model_add_downscale(model, 3, 2.0, 0.5, 1.0, False, "bilinear", "area")
    sigma_start = model.sampling.percent_to_sigma(0.5)
    for sigma in (sigma_start * 1.01, 10.0):  # before the start of its range
        assert torch.equal(predict(late, x, context, sigma), predict(model, x, context, sigma))
    assert not torch.allclose(predict(late, x, context, 1.0), predict(model, x, context, 1.0), atol=1e-4)


@pytest.mark.parametrize("size, block, after_skip", [((16, 16), 3, True), ((15, 13), 3, True), ((15, 13), 3, False),
                                                     ((15, 13), 1, False), ((13, 11), 4, True)])
def test_deep_shrink_inside_its_range_shrinks_the_features_after_the_chosen_block(size, block, after_skip):
    model = unet_model()
    x, context = inputs(*size)
    plain_inputs, plain_skips, inputs_seen, skips_seen = {}, {}, {}, {}
    plain = predict(feature_spy(model, plain_inputs, plain_skips), x, context, 10.0)
    [patched] = patch_model_add_downscale(model, block, 2.0, 0.0, 0.35, after_skip, "bicubic", "bislerp")
    out = predict(feature_spy(patched, inputs_seen, skips_seen), x, context, 10.0)
    assert out.shape == plain.shape == x.shape and not torch.allclose(out, plain, atol=1e-4)
    height, width = plain_inputs[block]
    shrunk = (round(height / 2), round(width / 2))  # Python rounding, as ComfyUI
    assert inputs_seen[block] == shrunk
    assert all(inputs_seen[i] == plain_inputs[i] for i in range(block))  # earlier blocks untouched
    if block + 1 in inputs_seen and block + 1 not in (3, 6):  # the next block (not a downsample) runs small
        assert inputs_seen[block + 1] == shrunk
    # every decoder block joins features of its skip's size; the chosen block's skip is full size
    # after the skip was kept, shrunk when the downscale came first
    assert all(h == skip for h, skip in skips_seen.values())
    consumer = len(model.unet.input_blocks) - 1 - block  # the output block reading this skip
    assert skips_seen[consumer][1] == (plain_skips[consumer][1] if after_skip else shrunk)


def test_deep_shrink_hooks_resize_like_torch_interpolate():
    h = torch.randn(2, 6, 9, 7, generator=torch.Generator().manual_seed(3))
    inside = PatchCall(UNetPatches(), (2, 4, 36, 28), torch.tensor([5.0, 5.0]), block=("input", 3))
    for method in ("nearest-exact", "bilinear", "area", "bicubic"):
        hooks = deep_shrink(ModelSampling.sd1(), 3, 2.0, 0.0, 0.35, method, method)
        small = hooks.downscale(h, inside)
        assert torch.equal(small, F.interpolate(h, size=(round(9 / 2), round(7 / 2)), mode=method))  # (4, 4)
        up, skip = hooks.restore(small, h, inside.at(("output", 5)))
        assert skip is h and torch.equal(up, F.interpolate(small, size=(9, 7), mode=method))
        assert hooks.restore(h, h, inside)[0] is h  # sizes agree: nothing to do
        assert hooks.downscale(h, inside.at(("input", 4))) is h  # another block
    hooks = deep_shrink(ModelSampling.sd1(), 3, 1 / 1.5, 0.0, 0.35, "bilinear", "bilinear")  # factor < 1 grows
    assert hooks.downscale(h, inside).shape[-2:] == (round(9 * 1.5), round(7 * 1.5))


def reference_slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation of two channel vectors, lengths interpolated linearly; ComfyUI's
    bislerp keeps ``a`` for (nearly) equal directions and blends linearly for opposite ones."""
    norm_a, norm_b = a.norm(), b.norm()
    unit_a = a / norm_a if norm_a > 0 else torch.zeros_like(a)
    unit_b = b / norm_b if norm_b > 0 else torch.zeros_like(b)
    cosine = float(unit_a @ unit_b)
    if cosine > 1 - 1e-5:
        return a
    if cosine < -1 + 1e-5:
        return a * (1 - t) + b * t
    omega = math.acos(cosine)
    direction = (math.sin((1 - t) * omega) * unit_a + math.sin(t * omega) * unit_b) / math.sin(omega)
    return direction * (norm_a * (1 - t) + norm_b * t)


def reference_resize_axis(x: torch.Tensor, size: int, axis: int) -> torch.Tensor:
    """Slerp along one spatial axis of (B, C, H, W) at bilinear's sample positions (pixel centres,
    clamped to the border), one output pixel at a time."""
    old = x.shape[axis]
    shape = list(x.shape)
    shape[axis] = size
    out = torch.empty(shape)
    for i in range(size):
        position = min(max((i + 0.5) * old / size - 0.5, 0.0), old - 1)
        low = math.floor(position)
        high, t = min(low + 1, old - 1), position - low
        for b in range(x.shape[0]):
            for j in range(x.shape[5 - axis]):  # the other spatial axis
                if axis == 3:
                    out[b, :, j, i] = reference_slerp(x[b, :, j, low], x[b, :, j, high], t)
                else:
                    out[b, :, i, j] = reference_slerp(x[b, :, low, j], x[b, :, high, j], t)
    return out


@pytest.mark.parametrize("new_size", [(3, 4), (9, 11)])
def test_bislerp_resize_equals_a_pixel_by_pixel_slerp(new_size):
    x = torch.randn(2, 4, 5, 6, generator=torch.Generator().manual_seed(5))
    x[0, :, :, 1] = -x[0, :, :, 0]  # opposite neighbours: the linear branch
    x[1, :, 2] = x[1, :, 1] * 3.0  # parallel neighbours: the first one kept
    height, width = new_size
    expected = reference_resize_axis(reference_resize_axis(x, width, 3), height, 2)
    got = resize(x, width, height, "bislerp")
    assert got.shape == (2, 4, height, width) and torch.allclose(got, expected, atol=1e-5)


# --- HyperTile ----------------------------------------------------------------------------------


def test_hypertile_with_one_tile_leaves_the_output_exactly_unchanged():
    model = unet_model()
    x, context = inputs()
    for tile_size in (128, 2048):  # 16 latent pixels or more: one tile on a 16 x 16 latent
        [patched] = hyper_tile(model, tile_size, 2, 1, False)
        assert torch.equal(predict(patched, x, context, 3.0), predict(model, x, context, 3.0))
    [tiled] = hyper_tile(model, 32, 2, 0, False)
    assert not torch.allclose(predict(tiled, x, context, 3.0), predict(model, x, context, 3.0), atol=1e-4)


def test_tiling_tokens_is_exactly_invertible_and_each_tile_is_a_block_of_the_grid():
    x = torch.randn(2, 48, 3)
    grid = x.reshape(2, 6, 8, 3)
    for nh, nw in [(1, 2), (2, 1), (2, 2), (3, 4), (6, 8)]:
        layout = TileLayout(nh, nw, 6, 8)
        tiled = tile_tokens(x, layout)
        th, tw = 6 // nh, 8 // nw
        assert tiled.shape == (2 * nh * nw, th * tw, 3)
        assert torch.equal(untile_tokens(tiled, layout), x)
        for b in range(2):
            for i in range(nh):
                for j in range(nw):
                    cells = grid[b, i * th:(i + 1) * th, j * tw:(j + 1) * tw].reshape(-1, 3)
                    assert torch.equal(tiled[(b * nh + i) * nw + j], cells)


def test_hypertile_reads_token_grids_and_depths_as_comfyui():
    assert token_grid(64, (1, 4, 8, 8)) == (8, 8)
    assert token_grid(32, (1, 4, 4, 8)) == (8, 4)  # round(sqrt(N W / H)) rows: the width, for a wide latent
    assert token_depth(64, (1, 4, 8, 8), 0) == 0 and token_depth(16, (1, 4, 8, 8), 0) is None
    assert token_depth(16, (1, 4, 8, 8), 2) == 1 and token_depth(4, (1, 4, 8, 8), 2) == 2
    assert token_depth(56, (1, 4, 15, 13), 3) is None  # a level rounded up from odd sizes: never tiled


def test_hypertile_draws_tile_counts_as_comfyui():
    generators = [torch.Generator().manual_seed(seed) for seed in range(40)]
    # 16 cells, tiles of at least 4: the divisors 4, 8, 16 give 4, 2, 1 tiles
    assert {random_divisor(16, 4, 1, g) for g in generators} == {4}
    assert {random_divisor(16, 4, 2, g) for g in generators} == {4}  # randint(0, 1) is always 0
    assert {random_divisor(16, 4, 3, g) for g in generators} == {4, 2}  # never the last candidate
    assert {random_divisor(64, 4, 5, g) for g in generators} == {16, 8, 4, 2}
    assert random_divisor(7, 4, 3, generators[0]) == 1 and random_divisor(3, 8, 2, generators[0]) == 1


def reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v per head, written out: (N, inner), (T, inner) -> (N, inner)."""
    d = q.shape[-1] // heads
    outs = []
    for head in range(heads):
        part = slice(head * d, (head + 1) * d)
        weights = torch.softmax(q[:, part] @ k[:, part].T / math.sqrt(d), dim=-1)
        outs.append(weights @ v[:, part])
    return torch.cat(outs, dim=-1)


def test_hypertile_attends_within_tiles_on_a_transformer_block():
    generator = torch.Generator().manual_seed(11)
    block = BasicTransformerBlock(32, 4, 8, 16).eval()
    with torch.no_grad():
        for parameter in block.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
    x = torch.randn(2, 64, 32, generator=generator)  # an 8 x 8 latent's tokens
    context = torch.randn(2, 5, 16, generator=generator)
    hooks = hypertile(tile_size=32, swap_size=1)  # tiles of 4 x 4 latent pixels: 2 x 2 tiles
    call = PatchCall(UNetPatches(attn1_patch=(hooks.tile,), attn1_output_patch=(hooks.untile,)), (2, 4, 8, 8),
                     torch.tensor([2.0, 2.0]), block=("input", 1))
    with torch.no_grad():
        got = block(x, context, call)
        # ComfyUI tiles the queries; the keys and values are the tokens cut into consecutive runs of
        # a tile's length (its attention reshapes them to the queries' batch): tile k reads run k
        n, attn = block.norm1(x), block.attn1
        out = torch.zeros_like(x)
        positions = torch.arange(64).reshape(8, 8)
        for b in range(2):
            for i in range(2):
                for j in range(2):
                    queries = positions[i * 4:(i + 1) * 4, j * 4:(j + 1) * 4].flatten()
                    keys = torch.arange(16) + (i * 2 + j) * 16
                    product = reference_attention(attn.to_q(n[b, queries]), attn.to_k(n[b, keys]),
                                                  attn.to_v(n[b, keys]), 4)
                    out[b, queries] = attn.to_out(product)
        expected = x + out
        expected = expected + block.attn2(block.norm2(expected), context)
        expected = expected + block.ff(block.norm3(expected))
        assert torch.allclose(got, expected, atol=1e-5)
        assert not torch.allclose(got, block(x, context), atol=1e-4)
        assert call.extra == {}  # the layout went from one hook to the other and no further


def tile_spy(model: DiffusionModel, seen: dict) -> DiffusionModel:
    """Records, after the other token patches, the query batch each self-attention sees."""

    def spy(n, context, value, call):
        seen[call.block] = n.shape[0]
        return n, context, value

    return model.with_unet_patches(attn1_patch=(spy,))


@pytest.mark.parametrize("max_depth, scale_depth, half_size_tiles", [(0, False, 1), (1, False, 4), (1, True, 1)])
def test_hypertile_tiles_the_levels_down_to_max_depth(max_depth, scale_depth, half_size_tiles):
    model = unet_model()
    x, context = inputs(batch=1)
    seen = {}
    [patched] = hyper_tile(model, 32, 2, max_depth, scale_depth)
    predict(tile_spy(patched, seen), x, context, 3.0)
    # 16 x 16 tokens, tiles of at least 4: 4 x 4 tiles; 8 x 8: 2 x 2 tiles (1 when scaled to 8)
    assert {block: seen[block] for block in FULL_SIZE_BLOCKS} == {block: 16 for block in FULL_SIZE_BLOCKS}
    assert {block: seen[block] for block in HALF_SIZE_BLOCKS} == {block: half_size_tiles for block in HALF_SIZE_BLOCKS}
    assert seen[("middle", 0)] == 1


def test_hypertile_is_reproducible_and_touches_no_global_random_state():
    model = unet_model()
    x, context = inputs()
    [patched] = hyper_tile(model, 32, 3, 0, False)  # 4 or 2 tiles a side, at random
    outputs = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        state = torch.get_rng_state()
        outputs.append(predict(patched, x, context, 3.0))
        assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(outputs[0], outputs[1])
    counts = set()  # the draws do vary, with the block and the step
    for sigma in (0.5, 1.0, 3.0, 8.0):
        seen = {}
        predict(tile_spy(patched, seen), x, context, sigma)
        counts |= {seen[block] for block in FULL_SIZE_BLOCKS}
    assert counts == {2 * 4, 2 * 8, 2 * 16}  # (2 or 4) x (2 or 4) tiles, batch of 2


# --- token merging ------------------------------------------------------------------------------


def reference_merge(x: torch.Tensor, metric: torch.Tensor, height: int, width: int, r: int,
                    destinations: torch.Tensor) -> tuple[torch.Tensor, list]:
    """Bipartite soft matching token by token: (each token replaced by the mean of its merged
    group, the rows of the merged sequence) for one image's tokens (N, C)."""
    dst = [(2 * i + int(k) // 2) * width + 2 * j + int(k) % 2
           for i, row in enumerate(destinations) for j, k in enumerate(row)]
    src = [t for t in range(height * width) if t not in dst]
    best = {}
    for s in src:
        similarities = [float(F.cosine_similarity(metric[s], metric[d], dim=0)) for d in dst]
        best[s] = (max(similarities), dst[similarities.index(max(similarities))])
    merged = sorted(src, key=lambda s: -best[s][0])[:r]
    groups = {d: [d] + [s for s in merged if best[s][1] == d] for d in dst}
    means = {d: x[group].mean(0) for d, group in groups.items()}
    out = x.clone()
    for d in dst:
        out[d] = means[d]
    for s in merged:
        out[s] = means[best[s][1]]
    rows = [x[s] for s in src if s not in merged] + [means[d] for d in dst]
    return out, rows


def same_rows(a: torch.Tensor, rows: list) -> bool:
    """Whether (M, C) ``a`` holds ``rows`` in any order."""
    ordered = sorted(a.tolist())
    expected = sorted(torch.stack(rows).tolist())
    return torch.allclose(torch.tensor(ordered), torch.tensor(expected), atol=1e-6)


@pytest.mark.parametrize("height, width, r", [(4, 4, 5), (5, 3, 4), (6, 6, 40)])
def test_merge_and_unmerge_follow_an_independent_bipartite_matching(height, width, r):
    generator = torch.Generator().manual_seed(height * width)
    metric = torch.randn(2, height * width, 5, generator=generator)
    x = torch.randn(2, height * width, 3, generator=generator)
    destinations = random_destinations(height, width, generator)
    matching = bipartite_soft_matching(metric, height, width, r, destinations)
    sources = height * width - (height // 2) * (width // 2)
    merged = matching.merge(x)
    assert merged.shape == (2, height * width - min(r, sources), 3)
    restored = matching.unmerge(merged)
    for b in range(2):
        expected, rows = reference_merge(x[b], metric[b], height, width, min(r, sources), destinations)
        assert torch.allclose(restored[b], expected, atol=1e-6)
        assert same_rows(merged[b], rows)
    # a token-wise function between merge and unmerge acts on the group means
    assert torch.allclose(matching.unmerge(torch.tanh(merged)), torch.tanh(restored), atol=1e-6)


def test_tome_ratio_zero_changes_nothing():
    model = unet_model()
    x, context = inputs()
    [patched] = tome_patch_model(model, 0.0)
    assert torch.equal(predict(patched, x, context, 2.0), predict(model, x, context, 2.0))


def test_tome_keeps_the_shape_reproduces_and_touches_no_global_random_state():
    model = unet_model()
    x, context = inputs(15, 13)
    [patched] = tome_patch_model(model, 0.5)
    outputs = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        state = torch.get_rng_state()
        outputs.append(predict(patched, x, context, 2.0))
        assert torch.equal(torch.get_rng_state(), state)
    assert outputs[0].shape == x.shape and torch.equal(outputs[0], outputs[1])
    assert not torch.allclose(outputs[0], predict(model, x, context, 2.0), atol=1e-4)


@pytest.mark.parametrize("size", [(16, 16), (15, 13)])
def test_tome_merges_only_the_full_size_self_attentions(size):
    model = unet_model()
    x, context = inputs(*size)
    tokens, plain = {}, {}

    def spy(record):
        def patch(n, context, value, call):
            record[call.block] = n.shape[1]
            return n, context, value
        return patch

    [patched] = tome_patch_model(model, 0.4)
    predict(patched.with_unet_patches(attn1_patch=(spy(tokens),)), x, context, 2.0)
    predict(model.with_unet_patches(attn1_patch=(spy(plain),)), x, context, 2.0)
    full = size[0] * size[1]
    for block, count in plain.items():
        assert tokens[block] == (full - int(full * 0.4) if block in FULL_SIZE_BLOCKS else count)
    assert {block for block, count in plain.items() if count == full} == FULL_SIZE_BLOCKS


# --- the nodes ----------------------------------------------------------------------------------

NODES = {
    "deep shrink": lambda model: patch_model_add_downscale(model, 3, 2.0, 0.0, 0.35, True, "bicubic", "bislerp")[0],
    "deep shrink before the skip": lambda model: patch_model_add_downscale(model, 1, 1.5, 0.0, 0.5, False,
                                                                           "area", "bilinear")[0],
    "hypertile": lambda model: hyper_tile(model, 32, 3, 1, False)[0],
    "tome": lambda model: tome_patch_model(model, 0.5)[0],
}
SIGMA = 10.0  # within the deep shrinks' ranges


@pytest.mark.parametrize("name", NODES)
def test_nodes_return_a_patched_copy_and_leave_the_input_model_alone(name):
    model = unet_model()
    x, context = inputs()
    before = predict(model, x, context, SIGMA)
    patched = NODES[name](model)
    assert patched is not model and patched.unet_patches and not model.unet_patches
    assert not torch.allclose(predict(patched, x, context, SIGMA), before, atol=1e-4)
    assert torch.equal(predict(model, x, context, SIGMA), before)


@pytest.mark.parametrize("name", NODES)
def test_patches_compose_with_freeu_and_a_lora_applied_after(name, tmp_path):
    from safetensors.torch import save_file

    from nodeflow.engine.context import RunContext
    from nodeflow.runtime.paths import Paths
    from nodeflow_nodes.lora import lora_loader_model_only
    from tests.test_lora import layers, random_lora

    make = NODES[name]
    model = unet_model()
    x, context = inputs()
    patched = make(model)
    [both] = free_u(patched, 1.1, 1.2, 0.9, 0.2)
    [neutral] = free_u(patched, 1.0, 1.0, 1.0, 1.0)
    [freeu_only] = free_u(model, 1.1, 1.2, 0.9, 0.2)
    out = predict(both, x, context, SIGMA)
    assert out.shape == x.shape
    assert torch.allclose(predict(neutral, x, context, SIGMA), predict(patched, x, context, SIGMA), atol=1e-5)
    assert not torch.allclose(out, predict(patched, x, context, SIGMA), atol=1e-4)
    assert not torch.allclose(out, predict(freeu_only, x, context, SIGMA), atol=1e-4)
    (tmp_path / "loras").mkdir()
    save_file({k: v.contiguous() for k, v in random_lora(layers(model.unet, ("input_blocks.1.1",)), seed=3).items()},
              str(tmp_path / "loras" / "style.safetensors"))
    ctx = RunContext(paths=Paths(models_dirs=(tmp_path,)))
    [with_lora] = lora_loader_model_only(both, "style.safetensors", 1.0, ctx)
    assert with_lora.unet_patches == both.unet_patches
    patched_after = predict(with_lora, x, context, SIGMA)
    assert not torch.allclose(patched_after, out, atol=1e-4)
    [lora_first] = lora_loader_model_only(model, "style.safetensors", 1.0, ctx)
    [lora_first] = free_u(make(lora_first), 1.1, 1.2, 0.9, 0.2)
    assert torch.allclose(predict(lora_first, x, context, SIGMA), patched_after, atol=1e-5)


@pytest.mark.parametrize("node_id, inputs_declared", [
    ("PatchModelAddDownscale", [("block_number", 3, 1, 32, 1), ("downscale_factor", 2.0, 0.1, 9.0, 0.001),
                                ("start_percent", 0.0, 0.0, 1.0, 0.001), ("end_percent", 0.35, 0.0, 1.0, 0.001),
                                ("downscale_after_skip", True, None, None, None),
                                ("downscale_method", "bicubic", None, None, None),
                                ("upscale_method", "bicubic", None, None, None)]),
    ("HyperTile", [("tile_size", 256, 1, 2048, 1), ("swap_size", 2, 1, 128, 1), ("max_depth", 0, 0, 10, 1),
                   ("scale_depth", False, None, None, None)]),
    ("TomePatchModel", [("ratio", 0.3, 0.0, 1.0, 0.01)]),
])
def test_declarations_follow_comfyui(node_id, inputs_declared):
    from nodeflow.engine.registry import Registry
    from nodeflow.runtime.paths import Paths

    spec = Registry.load(Paths()).get(node_id)
    assert spec.category == "model_patches/unet" and [o.type for o in spec.outputs] == ["MODEL"]
    assert [i.name for i in spec.inputs][0] == "model"
    declared = [(i.name, i.default, i.min, i.max, i.step if i.min is not None else None) for i in spec.inputs[1:]]
    assert declared == inputs_declared
    if node_id == "PatchModelAddDownscale":
        assert spec.display == "PatchModelAddDownscale (Kohya Deep Shrink)"
        methods = ["bicubic", "nearest-exact", "bilinear", "area", "bislerp"]
        assert spec.input("downscale_method").choices() == spec.input("upscale_method").choices() == methods
