"""Latent nodes against hand-computed results (sizes, batch indices, feathering, rotations)."""

import math

import pytest
import torch

from nodeflow.image.ops import bislerp
from nodeflow_nodes.latent import (empty_latent_image, latent_blend, latent_composite, latent_crop,
                                   latent_flip, latent_from_batch, latent_rotate, latent_upscale,
                                   latent_upscale_by, repeat_latent_batch, set_latent_noise_mask)


def latent(b=1, c=4, h=8, w=16, **extra):
    return {"samples": torch.arange(b * c * h * w, dtype=torch.float32).reshape(b, c, h, w), **extra}


def test_empty_latent_is_zeros_at_an_eighth():
    (out,) = empty_latent_image(width=520, height=64, batch_size=3)
    assert out["samples"].shape == (3, 4, 8, 65) and not out["samples"].any()


@pytest.mark.parametrize("width, height, expected", [
    (0, 256, (32, 64)),     # width from the aspect ratio: 16 * 256 / 8 = 512 px
    (256, 0, (16, 32)),     # height: 8 * 256 / 16 = 128 px
    (16, 16, (8, 8)),       # both below 64 px: raised to 64
    (200, 100, (12, 25)),   # pixel sizes floor-divided by 8
])
def test_latent_upscale_sizes(width, height, expected):
    (out,) = latent_upscale(latent(), "nearest-exact", width, height, "disabled")
    assert out["samples"].shape[2:] == expected


def test_latent_upscale_zero_zero_keeps_the_latent_and_extras():
    source = latent(batch_index=[5])
    (out,) = latent_upscale(source, "bilinear", 0, 0, "disabled")
    assert out["samples"] is source["samples"] and out["batch_index"] == [5]


def test_latent_upscale_nearest_doubles_cells_and_center_crop():
    x = latent(h=4, w=8)
    (out,) = latent_upscale(x, "nearest-exact", 128, 64, "disabled")  # (8, 16) cells
    assert torch.equal(out["samples"], x["samples"].repeat_interleave(2, 2).repeat_interleave(2, 3))
    (cropped,) = latent_upscale(x, "nearest-exact", 64, 64, "center")  # 8 x 8 cells
    # aspect 2:1 -> 1:1 keeps the middle four columns (2..5), each cell doubled
    assert torch.equal(cropped["samples"], x["samples"][:, :, :, 2:6].repeat_interleave(2, 2).repeat_interleave(2, 3))


def test_latent_upscale_by_rounds_the_size():
    (out,) = latent_upscale_by(latent(h=8, w=10), "bicubic", 1.25)
    assert out["samples"].shape == (1, 4, 10, 12)  # round(12.5) = 12 (banker's), round(10) = 10


def test_bislerp_keeps_same_size_and_interpolates_on_the_sphere():
    x = torch.randn(2, 4, 5, 6)
    assert torch.allclose(bislerp(x, 6, 5), x, atol=1e-5)
    # one row of two orthogonal channel vectors a = (1, 0), b = (0, 2) widened 2 -> 4:
    # samples at clamp((i + 0.5) / 2 - 0.5) = 0, 0.25, 0.75, 1
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    row = torch.stack([a, b], dim=-1)[None, :, None, :]  # (1, 2, 1, 2)
    out = bislerp(row, 4, 1)[0, :, 0].T  # (4, 2)
    for i, t in enumerate([0.0, 0.25, 0.75, 1.0]):
        angle, length = t * math.pi / 2, 1 + t  # slerp direction, linear length
        assert torch.allclose(out[i], torch.tensor([math.cos(angle), math.sin(angle)]) * length, atol=1e-5)


def test_latent_upscale_bislerp_runs_with_crop():
    (out,) = latent_upscale(latent(), "bislerp", 0, 128, "center")
    assert out["samples"].shape == (1, 4, 16, 32) and torch.isfinite(out["samples"]).all()


def test_latent_from_batch_says_when_it_clamps(caplog):
    with caplog.at_level("WARNING"):
        latent_from_batch(latent(b=4), batch_index=3, length=1)
    assert "LatentFromBatch" not in caplog.text
    with caplog.at_level("WARNING"):
        latent_from_batch(latent(b=4), batch_index=4, length=1)
    assert "LatentFromBatch: batch_index 4 is outside the batch of 4 latents" in caplog.text


def test_latent_from_batch_keeps_indices_and_masks():
    mask = torch.arange(4.0).reshape(4, 1, 1, 1).expand(4, 1, 8, 16)
    (out,) = latent_from_batch(latent(b=4, noise_mask=mask), batch_index=1, length=2)
    assert torch.equal(out["samples"], latent(b=4)["samples"][1:3])
    assert out["batch_index"] == [1, 2]
    assert out["noise_mask"][:, 0, 0, 0].tolist() == [1.0, 2.0]
    (tail,) = latent_from_batch(out, batch_index=5, length=3)  # clamped to the last item
    assert tail["batch_index"] == [2] and tail["samples"].shape[0] == 1


def test_repeat_latent_batch_continues_the_indices():
    source = latent(b=2, batch_index=[3, 4])
    (out,) = repeat_latent_batch(source, amount=3)
    assert out["batch_index"] == [3, 4, 5, 6, 7, 8]
    assert torch.equal(out["samples"], torch.cat([source["samples"]] * 3))
    assert source["batch_index"] == [3, 4]  # input untouched


def test_latent_composite_pastes_and_feathers():
    target = {"samples": torch.zeros(1, 1, 6, 6)}
    source = {"samples": torch.ones(1, 1, 4, 4)}
    (plain,) = latent_composite(target, source, x=8, y=8, feather=0)
    expected = torch.zeros(6, 6)
    expected[1:5, 1:5] = 1
    assert torch.equal(plain["samples"][0, 0], expected)
    (soft,) = latent_composite(target, source, x=8, y=8, feather=16)  # 2 cells: ramp 1/2, 2/2
    ring = torch.tensor([[0.25, 0.5, 0.5, 0.25], [0.5, 1, 1, 0.5], [0.5, 1, 1, 0.5], [0.25, 0.5, 0.5, 0.25]])
    assert torch.allclose(soft["samples"][0, 0, 1:5, 1:5], ring)
    assert not target["samples"].any()  # input untouched


def test_latent_composite_edges_on_the_border_are_not_feathered_and_overflow_is_clipped():
    target = {"samples": torch.zeros(1, 1, 4, 4)}
    source = {"samples": torch.ones(1, 1, 4, 4)}
    (out,) = latent_composite(target, source, x=16, y=0, feather=8)  # 1 cell: ramp 1/1
    assert torch.equal(out["samples"][0, 0, :, 2:], torch.ones(4, 2))
    assert not out["samples"][0, 0, :, :2].any()


def test_latent_blend_and_resize():
    a, b = {"samples": torch.full((1, 4, 2, 2), 2.0)}, {"samples": torch.full((1, 4, 2, 2), 4.0)}
    (out,) = latent_blend(a, b, 0.25)
    assert torch.allclose(out["samples"], torch.full((1, 4, 2, 2), 0.25 * 2 + 0.75 * 4))
    (resized,) = latent_blend(a, {"samples": torch.full((1, 4, 4, 4), 4.0)}, 0.5)
    assert resized["samples"].shape == (1, 4, 2, 2) and torch.allclose(resized["samples"], torch.full((1, 4, 2, 2), 3.0))


def test_latent_crop_clamps_like_comfyui():
    x = latent(h=16, w=16)
    (out,) = latent_crop(x, width=64, height=32, x=16, y=8)
    assert torch.equal(out["samples"], x["samples"][:, :, 1:5, 2:10])
    (clamped,) = latent_crop(x, width=512, height=512, x=1000, y=1000)  # start at most 8 cells from the end
    assert torch.equal(clamped["samples"], x["samples"][:, :, 8:, 8:])


def test_flip_and_rotate_clockwise():
    grid = {"samples": torch.tensor([[1.0, 2, 3], [4, 5, 6]])[None, None]}
    (flipped,) = latent_flip(grid, "x-axis: vertically")
    assert flipped["samples"][0, 0].tolist() == [[4, 5, 6], [1, 2, 3]]
    (mirrored,) = latent_flip(grid, "y-axis: horizontally")
    assert mirrored["samples"][0, 0].tolist() == [[3, 2, 1], [6, 5, 4]]
    expected = {"none": [[1, 2, 3], [4, 5, 6]], "90 degrees": [[4, 1], [5, 2], [6, 3]],
                "180 degrees": [[6, 5, 4], [3, 2, 1]], "270 degrees": [[3, 6], [2, 5], [1, 4]]}
    for rotation, values in expected.items():
        (out,) = latent_rotate(grid, rotation)
        assert out["samples"][0, 0].tolist() == values, rotation


def test_set_latent_noise_mask_reshapes_and_copies():
    source = latent(batch_index=[0])
    (out,) = set_latent_noise_mask(source, torch.ones(64, 128))
    assert out["noise_mask"].shape == (1, 1, 64, 128) and out["batch_index"] == [0]
    (batched,) = set_latent_noise_mask(source, torch.ones(3, 64, 128))
    assert batched["noise_mask"].shape == (3, 1, 64, 128)
    assert "noise_mask" not in source
