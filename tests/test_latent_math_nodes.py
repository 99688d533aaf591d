"""Latent arithmetic and batch nodes against hand-derived values: resizing of the second operand
(centre crop, batch repeat), refused channel counts, interpolation of known vectors, batch
indices and noise masks through batching, seed behaviour and rebatching, concat and cut."""

import math

import pytest
import torch

from nodeflow.errors import NodeInputError
from nodeflow.image.latent_ops import rebatch_latents as rebatch_list
from nodeflow_nodes.latent_math import (latent_add, latent_batch, latent_batch_seed_behavior, latent_concat,
                                        latent_cut, latent_interpolate, latent_multiply, latent_subtract,
                                        rebatch_latents)


def latent(b=1, c=4, h=2, w=2, start=0.0, **extra):
    return {"samples": torch.arange(b * c * h * w, dtype=torch.float32).reshape(b, c, h, w) + start, **extra}


def per_pixel(*vectors):
    """A (1, C, 1, len(vectors)) latent whose pixel k holds vectors[k]."""
    return {"samples": torch.tensor(vectors, dtype=torch.float32).T[None, :, None, :]}


# -- add, subtract, multiply ------------------------------------------------------------------

def test_add_and_subtract_same_shape_keep_samples1_extras():
    mask = torch.ones(1, 1, 16, 16)
    a, b = latent(b=2, noise_mask=mask, batch_index=[4, 5]), latent(b=2, start=100.0)
    (added,) = latent_add(a, b)
    (subtracted,) = latent_subtract(a, b)
    assert torch.equal(added["samples"], a["samples"] + b["samples"])
    assert torch.equal(subtracted["samples"], torch.full_like(a["samples"], -100.0))
    assert added["noise_mask"] is mask and added["batch_index"] == [4, 5]


def test_second_operand_is_centre_cropped_and_repeated_to_the_first():
    a = latent(b=2, h=2, w=2)
    b = latent(b=1, h=2, w=4, start=1000.0)  # 2:1 -> 1:1 keeps the middle columns 1..2, no resize needed
    (added,) = latent_add(a, b)
    expected = a["samples"] + b["samples"][:, :, :, 1:3].expand(2, 4, 2, 2)
    assert torch.equal(added["samples"], expected)
    three = latent(b=3, start=10.0)  # a larger batch is cut to the first's
    assert torch.equal(latent_subtract(a, three)[0]["samples"], a["samples"] - three["samples"][:2])


def test_second_operand_of_another_size_is_resized_bilinearly():
    a = latent(h=4, w=4)
    b = {"samples": torch.tensor([1.0, 2.0, 3.0, 4.0])[None, :, None, None].expand(1, 4, 2, 2)}
    (added,) = latent_add(a, b)  # a constant per channel stays constant when resized
    assert torch.allclose(added["samples"], a["samples"] + torch.tensor([1.0, 2.0, 3.0, 4.0])[None, :, None, None])


def test_different_channel_counts_are_refused_naming_samples2():
    with pytest.raises(NodeInputError, match="'samples2'.*channel"):
        latent_add(latent(c=4), latent(c=16))
    with pytest.raises(NodeInputError, match="'samples2'"):
        latent_interpolate(latent(c=4), latent(c=8), 0.5)


def test_multiply_scales_every_value():
    a = latent(batch_index=[1])
    (out,) = latent_multiply(a, -2.5)
    assert torch.equal(out["samples"], a["samples"] * -2.5) and out["batch_index"] == [1]


# -- interpolation ----------------------------------------------------------------------------

def test_interpolate_blends_directions_and_lengths_separately():
    a = per_pixel([3, 4, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0])
    b = per_pixel([0, 0, 0, 2], [0, 0, 0, 2], [-1, 0, 0, 0])
    (half,) = latent_interpolate(a, b, 0.5)
    pixels = half["samples"][0, :, 0].T  # (pixels, C)
    # pixel 0: direction (0.6, 0.8, 0, 0) + (0, 0, 0, 1) halved and normalised, length (5 + 2) / 2
    assert torch.allclose(pixels[0], torch.tensor([0.6, 0.8, 0.0, 1.0]) / math.sqrt(2) * 3.5, atol=1e-6)
    # pixel 1: a zero vector has no direction: b's direction, half b's length
    assert torch.allclose(pixels[1], torch.tensor([0.0, 0.0, 0.0, 1.0]), atol=1e-6)
    # pixel 2: opposite directions cancel
    assert torch.equal(pixels[2], torch.zeros(4))
    (quarter,) = latent_interpolate(a, b, 0.25)
    direction = 0.25 * torch.tensor([0.6, 0.8, 0, 0]) + 0.75 * torch.tensor([0, 0, 0, 1.0])
    length = 0.25 * 5 + 0.75 * 2
    assert torch.allclose(quarter["samples"][0, :, 0, 0], direction / direction.norm() * length, atol=1e-6)
    assert torch.allclose(latent_interpolate(a, b, 1.0)[0]["samples"], a["samples"], atol=1e-6)
    assert torch.allclose(latent_interpolate(a, b, 0.0)[0]["samples"], b["samples"], atol=1e-6)


def test_interpolate_treats_each_latent_of_a_batch_alone():
    a, b = torch.randn(3, 4, 2, 3), torch.randn(3, 4, 2, 3)
    (both,) = latent_interpolate({"samples": a}, {"samples": b}, 0.3)
    for k in range(3):
        (one,) = latent_interpolate({"samples": a[k:k + 1]}, {"samples": b[k:k + 1]}, 0.3)
        assert torch.allclose(both["samples"][k:k + 1], one["samples"], atol=1e-6)


# -- batches and seeds ------------------------------------------------------------------------

def test_latent_batch_joins_with_batch_indices():
    mask = torch.zeros(1, 1, 16, 16)
    (out,) = latent_batch(latent(b=2, noise_mask=mask), latent(b=1, start=50.0))
    assert out["samples"].shape == (3, 4, 2, 2) and out["batch_index"] == [0, 1, 0]
    assert torch.equal(out["samples"][2], latent(b=1, start=50.0)["samples"][0])
    assert out["noise_mask"] is mask  # samples1's entries are kept, as ComfyUI's copy
    (indexed,) = latent_batch(latent(batch_index=[7]), latent(b=2, batch_index=[3, 9]))
    assert indexed["batch_index"] == [7, 3, 9]


def test_latent_batch_resizes_but_does_not_repeat_the_second():
    b = latent(b=3, h=2, w=4, start=1000.0)
    (out,) = latent_batch(latent(b=1), b)
    assert out["samples"].shape == (4, 4, 2, 2)
    assert torch.equal(out["samples"][1:], b["samples"][:, :, :, 1:3])  # centre crop to 1:1


@pytest.mark.parametrize("extra, expected", [({}, [0, 0, 0]), ({"batch_index": [3, 4, 5]}, [3, 3, 3])])
def test_seed_behavior_fixed_gives_every_latent_the_first_noise(extra, expected):
    (out,) = latent_batch_seed_behavior(latent(b=3, **extra), "fixed")
    assert out["batch_index"] == expected


def test_seed_behavior_random_drops_batch_indices_only():
    mask = torch.ones(1, 1, 16, 16)
    (out,) = latent_batch_seed_behavior(latent(b=2, batch_index=[5, 5], noise_mask=mask), "random")
    assert "batch_index" not in out and out["noise_mask"] is mask


# -- rebatching -------------------------------------------------------------------------------

def test_rebatch_boundaries_and_positions():
    batches = rebatch_list([latent(b=5)], 2)
    assert [b["samples"].shape[0] for b in batches] == [2, 2, 1]
    assert [b["batch_index"] for b in batches] == [[0, 1], [2, 3], [4]]
    assert torch.equal(torch.cat([b["samples"] for b in batches]), latent(b=5)["samples"])
    assert not any("noise_mask" in b for b in batches)  # all-ones masks are dropped


def test_rebatch_starts_a_batch_at_a_new_size_and_keeps_counting_positions():
    big, small, big2 = latent(b=3, h=8, w=8), latent(b=2, h=4, w=4), latent(b=3, h=8, w=8, batch_index=[7, 8, 9])
    batches = rebatch_list([big, small, big2], 2)
    assert [tuple(b["samples"].shape[-2:]) for b in batches] == [(8, 8), (8, 8), (4, 4), (8, 8), (8, 8)]
    assert [b["batch_index"] for b in batches] == [[0, 1], [2], [3, 4], [7, 8], [9]]
    joined = rebatch_list([latent(b=3), latent(b=3, start=99.0)], 4)  # same size: one run across inputs
    assert [b["batch_index"] for b in joined] == [[0, 1, 2, 3], [4, 5]]


def test_rebatch_carries_noise_masks_per_batch():
    mask = torch.ones(2, 1, 16, 16)
    mask[1, :, 4:8] = 0.0  # the second latent keeps part of itself
    batches = rebatch_list([latent(b=4, noise_mask=mask)], 1)  # the mask repeats to the batch: 1 2 1 2
    assert ["noise_mask" in b for b in batches] == [False, True, False, True]
    assert torch.equal(batches[1]["noise_mask"], mask[1:2]) and torch.equal(batches[3]["noise_mask"], mask[1:2])


def test_rebatch_node_passes_the_batches_on_joined():
    mask = torch.ones(1, 1, 16, 16)
    mask[..., :4] = 0.5
    source = latent(b=3, noise_mask=mask, batch_index=[2, 3, 4], type="sd1")
    (out,) = rebatch_latents(source, 2)
    assert torch.equal(out["samples"], source["samples"]) and out["batch_index"] == [2, 3, 4]
    assert torch.equal(out["noise_mask"], mask.expand(3, 1, 16, 16))
    assert "type" not in out  # ComfyUI's batches hold samples, batch_index and noise_mask only
    (plain,) = rebatch_latents(latent(b=3), 2)
    assert "noise_mask" not in plain and plain["batch_index"] == [0, 1, 2]


# -- concat and cut ---------------------------------------------------------------------------

@pytest.mark.parametrize("dim, axis, reverse", [("x", 3, False), ("-x", 3, True), ("y", 2, False),
                                                ("-y", 2, True), ("t", 1, False), ("-t", 1, True)])
def test_concat_along_each_dimension(dim, axis, reverse):
    a, b = latent(start=0.0), latent(start=100.0)
    (out,) = latent_concat(a, b, dim)
    first, second = (b, a) if reverse else (a, b)
    assert torch.equal(out["samples"], torch.cat([first["samples"], second["samples"]], dim=axis))


def test_concat_repeats_samples2_to_the_batch_and_refuses_other_sizes():
    (out,) = latent_concat(latent(b=2), latent(b=1, start=100.0), "x")
    assert out["samples"].shape == (2, 4, 2, 4)
    assert torch.equal(out["samples"][1, :, :, 2:], latent(start=100.0)["samples"][0])
    with pytest.raises(NodeInputError, match="'samples2'"):
        latent_concat(latent(h=2), latent(h=3), "x")


@pytest.mark.parametrize("dim, index, amount, expected", [
    ("x", 1, 2, (slice(None), slice(None), slice(None), slice(1, 3))),
    ("x", 9, 2, (slice(None), slice(None), slice(None), slice(3, 4))),    # start clamped to the last column
    ("x", -2, 5, (slice(None), slice(None), slice(None), slice(2, 4))),   # from the end, amount clamped
    ("x", -9, 3, (slice(None), slice(None), slice(None), slice(0, 3))),   # clamped to the first column
    ("y", 0, 1, (slice(None), slice(None), slice(0, 1))),
    ("t", 1, 2, (slice(None), slice(1, 3))),                             # t: the channels of an image latent
])
def test_cut_takes_clamped_slices(dim, index, amount, expected):
    source = latent(b=2, h=3, w=4, batch_index=[0, 1])
    (out,) = latent_cut(source, dim, index, amount)
    assert torch.equal(out["samples"], source["samples"][expected]) and out["batch_index"] == [0, 1]
