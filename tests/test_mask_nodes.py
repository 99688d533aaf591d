"""Mask nodes against hand-computed results; GrowMask against scipy's grey morphology."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from nodeflow_nodes.mask import (crop_mask, feather_mask, grow_mask, image_to_mask, invert_mask,
                                 mask_composite, mask_to_image, solid_mask, threshold_mask)


def test_solid_and_invert():
    (mask,) = solid_mask(0.25, width=3, height=2)
    assert mask.shape == (1, 2, 3) and torch.allclose(mask, torch.full((1, 2, 3), 0.25))
    assert torch.allclose(invert_mask(mask)[0], torch.full((1, 2, 3), 0.75))


@pytest.mark.parametrize("operation, expected", [
    ("multiply", 0.6 * 0.7), ("add", 1.0), ("subtract", 0.0),  # 1.3 and -0.1 clamped
    ("and", 1.0), ("or", 1.0), ("xor", 0.0),  # 0.6 and 0.7 round to 1
])
def test_mask_composite_operations_in_the_overlap_only(operation, expected):
    destination, source = torch.full((1, 4, 5), 0.6), torch.full((1, 3, 3), 0.7)
    (out,) = mask_composite(destination, source, x=3, y=2, operation=operation)
    assert out.shape == (1, 4, 5)
    assert torch.allclose(out[0, 2:, 3:], torch.full((2, 2), expected))  # source clipped to 2 x 2
    outside = torch.ones(4, 5, dtype=torch.bool)
    outside[2:, 3:] = False
    assert torch.allclose(out[0][outside], torch.tensor(0.6))
    assert torch.equal(destination, torch.full((1, 4, 5), 0.6))  # input untouched


def test_mask_composite_logic_rounds_values():
    (out,) = mask_composite(torch.tensor([[0.4, 0.6]]), torch.tensor([[0.6, 0.4]]), 0, 0, "xor")
    assert out.tolist() == [[[1.0, 1.0]]]  # a (B, H, W) batch, as ComfyUI


def test_crop_mask_accepts_2d_and_3d():
    mask = torch.arange(20.0).reshape(4, 5)
    (out,) = crop_mask(mask, x=1, y=2, width=3, height=5)
    assert torch.equal(out, mask[None, 2:, 1:4])
    (batched,) = crop_mask(mask.expand(2, 4, 5), 1, 2, 3, 5)
    assert batched.shape == (2, 2, 3)


@pytest.mark.parametrize("expand", [2, -1, 0])
@pytest.mark.parametrize("tapered", [True, False])
def test_grow_mask_matches_scipy_grey_morphology(expand, tapered):
    generator = torch.Generator().manual_seed(3)
    mask = (torch.rand(2, 9, 11, generator=generator) > 0.7).float() * torch.rand(2, 9, 11, generator=generator)
    if expand < 0:
        mask = 1 - mask
    corner = 0 if tapered else 1
    footprint = np.array([[corner, 1, corner], [1, 1, 1], [corner, 1, corner]], dtype=bool)
    (out,) = grow_mask(mask, expand, tapered)
    for got, m in zip(out, mask):
        expected = m.numpy()
        for _ in range(abs(expand)):
            morph = ndimage.grey_dilation if expand > 0 else ndimage.grey_erosion
            expected = morph(expected, footprint=footprint)
        assert np.allclose(got.numpy(), expected)


def test_grow_mask_by_hand():
    dot = torch.zeros(1, 5, 5)
    dot[0, 2, 2] = 1
    (diamond,) = grow_mask(dot, 1, True)
    assert diamond[0].tolist() == [[0, 0, 0, 0, 0], [0, 0, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 0]]
    (square,) = grow_mask(dot, 1, False)
    assert square[0, 1:4, 1:4].eq(1).all() and square.sum() == 9


def test_feather_mask_left_top_ramps():
    (out,) = feather_mask(torch.ones(6, 8), left=4, top=2, right=0, bottom=0)
    assert torch.allclose(out[0, 5, :5], torch.tensor([0.25, 0.5, 0.75, 1.0, 1.0]))
    assert torch.allclose(out[0, :3, 7], torch.tensor([0.5, 1.0, 1.0]))
    assert torch.isclose(out[0, 0, 0], torch.tensor(0.25 * 0.5))


def test_feather_mask_right_bottom_follow_comfyui_indices():
    # ComfyUI scales column -k by (k + 1) / right for k = 0 .. right - 1: column 0 (k = 0) by 1/3,
    # the last column (k = 1) by 2/3, the one before (k = 2) by 3/3
    (out,) = feather_mask(torch.ones(1, 2, 6), left=0, top=0, right=3, bottom=0)
    assert torch.allclose(out[0, 0], torch.tensor([1 / 3, 1, 1, 1, 1, 2 / 3]))
    (rows,) = feather_mask(torch.ones(1, 4, 1), left=0, top=0, right=0, bottom=2)
    assert torch.allclose(rows[0, :, 0], torch.tensor([0.5, 1, 1, 1]))  # row 0 by 1/2, row -1 by 2/2


def test_image_mask_conversions_and_threshold():
    image = torch.rand(2, 3, 4, 3)
    (green,) = image_to_mask(image, "green")
    assert torch.equal(green, image[..., 1])
    (no_alpha,) = image_to_mask(image, "alpha")
    assert no_alpha.shape == (2, 3, 4) and not no_alpha.any()
    (back,) = mask_to_image(green)
    assert back.shape == (2, 3, 4, 3) and torch.equal(back[..., 2], green)
    (single,) = mask_to_image(green[0])
    assert single.shape == (1, 3, 4, 3)
    (binary,) = threshold_mask(torch.tensor([[0.2, 0.5, 0.51]]), 0.5)
    assert binary.tolist() == [[0.0, 0.0, 1.0]]
