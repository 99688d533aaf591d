"""Compositing and mask-operation nodes (ImageCompositeMasked, LatentCompositeMasked,
PorterDuffImageComposite, Split/JoinImageWithAlpha, ImageColorToMask, MaskPreview, Morphology)
against hand-computed values, textbook formulas and scipy's filters."""

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from nodeflow.engine.context import RunContext
from nodeflow.engine.registry import Registry
from nodeflow.image.composite import paste
from nodeflow.runtime.paths import Paths
from nodeflow_nodes.compositing import (image_composite_masked, join_image_with_alpha, latent_composite_masked,
                                        porter_duff_image_composite, split_image_with_alpha)
from nodeflow_nodes.mask_ops import image_color_to_mask, image_morphology, mask_preview


def ramp(*shape):
    return torch.arange(float(np.prod(shape))).reshape(shape) / np.prod(shape)


# ---------------------------------------------------------------- ImageCompositeMasked


def test_image_composite_pastes_at_the_offset_and_leaves_the_rest():
    destination, source = torch.zeros(1, 6, 7, 3), ramp(1, 2, 3, 3) + 0.1
    before = destination.clone()
    (out,) = image_composite_masked(destination, source, x=2, y=1, resize_source=False)
    assert torch.equal(out[:, 1:3, 2:5], source)
    outside = torch.ones(6, 7, dtype=torch.bool)
    outside[1:3, 2:5] = False
    assert torch.equal(out[0][outside], torch.zeros(int(outside.sum()), 3))
    assert torch.equal(destination, before)  # the input is not modified


def test_image_composite_blends_through_the_mask():
    destination, source = torch.full((1, 4, 4, 3), 0.2), torch.full((1, 2, 2, 3), 0.6)
    mask = torch.tensor([[[0.0, 0.25], [0.5, 1.0]]])
    (out,) = image_composite_masked(destination, source, 1, 2, False, mask)
    for (row, col), m in zip([(0, 0), (0, 1), (1, 0), (1, 1)], [0.0, 0.25, 0.5, 1.0]):
        torch.testing.assert_close(out[0, 2 + row, 1 + col], torch.full((3,), m * 0.6 + (1 - m) * 0.2))
    assert torch.equal(out[0, :2], destination[0, :2])


def test_image_composite_resizes_the_mask_to_the_source_bilinearly():
    destination, source = torch.zeros(1, 4, 4, 3), torch.ones(1, 4, 4, 3)
    mask = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # 2 x 2 -> 4 x 4: columns 1, 0.75, 0.25, 0
    (out,) = image_composite_masked(destination, source, 0, 0, False, mask)
    assert torch.allclose(out[0, :, :, 0], torch.tensor([1.0, 0.75, 0.25, 0.0]).expand(4, 4))


def test_image_composite_clips_the_source_at_the_far_edges():
    destination, source = torch.zeros(1, 5, 5, 3), torch.ones(1, 3, 3, 3)
    (out,) = image_composite_masked(destination, source, x=3, y=4, resize_source=False)
    assert out.shape == destination.shape
    assert out[0, :, :, 0].sum() == 2 and torch.equal(out[0, 4, 3:, 0], torch.ones(2))  # 1 row x 2 columns
    (beyond,) = image_composite_masked(destination, source, x=9999, y=0, resize_source=False)
    assert torch.equal(beyond, destination)


def test_paste_with_negative_offsets_uses_the_part_of_the_source_on_the_destination():
    destination = torch.zeros(1, 1, 4, 5)
    source = ramp(1, 1, 3, 3) + 1  # distinct values
    out = paste(destination, source, x=-1, y=-2, multiplier=1)
    assert torch.equal(out[0, 0, :1, :2], source[0, 0, 2:, 1:])  # source row 2, columns 1..2
    assert out[0, 0].count_nonzero() == 2
    for x, y in [(-3, 0), (0, -3), (-1000, 5), (3, -1000)]:  # clamped to -size: entirely off the destination
        assert torch.equal(paste(destination, source, x, y), destination)
    latent = paste(torch.zeros(1, 4, 4, 4), torch.ones(1, 4, 2, 2), x=-9, y=0, multiplier=8)
    assert latent[0, 0, :2].tolist() == [[0.0] * 4] * 2  # -9 // 8 = -2: two cells left of the edge, nothing shows


def test_image_composite_resize_source_stretches_it_over_the_destination():
    destination = torch.zeros(1, 4, 4, 3)
    source = torch.tensor([[0.0, 1.0], [0.0, 1.0]])[None, :, :, None].expand(1, 2, 2, 3)
    (out,) = image_composite_masked(destination, source, x=0, y=0, resize_source=True)
    assert torch.allclose(out[0, :, :, 1], torch.tensor([0.0, 0.25, 0.75, 1.0]).expand(4, 4))
    (shifted,) = image_composite_masked(destination, source, x=1, y=0, resize_source=True)
    assert torch.allclose(shifted[0, 0, :, 1], torch.tensor([0.0, 0.0, 0.25, 0.75]))  # resized, then moved


def test_image_composite_keeps_the_destination_channels_and_repeats_the_source_batch():
    rgb, rgba = torch.zeros(3, 2, 2, 3), torch.full((1, 2, 2, 4), 0.5)
    (out,) = image_composite_masked(rgb, rgba, 0, 0, False)
    assert out.shape == (3, 2, 2, 3) and torch.equal(out, torch.full((3, 2, 2, 3), 0.5))  # alpha dropped
    destination = torch.zeros(2, 3, 3, 4)
    (out,) = image_composite_masked(destination, torch.full((1, 1, 1, 3), 0.5), 1, 1, False)
    assert out.shape == (2, 3, 3, 4) and out[:, 1, 1].tolist() == [[0.5, 0.5, 0.5, 1.0]] * 2  # opaque alpha


def test_mask_batch_is_repeated_to_the_source():
    destination, source = torch.zeros(4, 1, 1, 1), torch.ones(4, 1, 1, 1)
    mask = torch.tensor([0.25, 0.75]).reshape(2, 1, 1)
    (out,) = image_composite_masked(destination, source, 0, 0, False, mask)
    assert out.flatten().tolist() == [0.25, 0.75, 0.25, 0.75]


# ---------------------------------------------------------------- LatentCompositeMasked


def test_latent_composite_moves_in_whole_cells_of_eight_pixels():
    destination = {"samples": torch.zeros(1, 4, 6, 6), "noise_mask": torch.ones(1, 1, 48, 48), "batch_index": [3]}
    source = {"samples": ramp(1, 4, 2, 3) + 1}
    (out,) = latent_composite_masked(destination, source, x=23, y=8, resize_source=False)  # 23 px: 2 cells
    assert torch.equal(out["samples"][:, :, 1:3, 2:5], source["samples"])
    assert out["samples"].count_nonzero() == source["samples"].numel()
    assert out["noise_mask"] is destination["noise_mask"] and out["batch_index"] == [3]
    assert destination["samples"].count_nonzero() == 0
    (off,) = latent_composite_masked(destination, source, x=48, y=0, resize_source=False)
    assert off["samples"].count_nonzero() == 0  # at the right edge: nothing of the source lies on it


def test_latent_composite_mask_and_resize():
    destination, source = {"samples": torch.zeros(1, 4, 4, 4)}, {"samples": torch.ones(1, 4, 2, 2)}
    mask = torch.tensor([[[0.5, 1.0], [0.0, 0.25]]])  # one value per source cell
    (out,) = latent_composite_masked(destination, source, 16, 16, False, mask)
    assert torch.equal(out["samples"][0, :, 2:, 2:], mask.expand(4, 2, 2))
    (resized,) = latent_composite_masked(destination, source, 0, 0, True)
    assert torch.equal(resized["samples"], torch.ones(1, 4, 4, 4))


# ---------------------------------------------------------------- PorterDuffImageComposite

S_COLOUR, D_COLOUR = torch.tensor([0.6, 0.2, 0.9]), torch.tensor([0.3, 0.8, 0.5])
S_ALPHA, D_ALPHA = 0.7, 0.4

#: Porter and Duff's operators: the fractions (F_s, F_d) of premultiplied source and destination
TEXTBOOK = {
    "CLEAR": lambda a, b: (0, 0), "SRC": lambda a, b: (1, 0), "DST": lambda a, b: (0, 1),
    "SRC_OVER": lambda a, b: (1, 1 - a), "DST_OVER": lambda a, b: (1 - b, 1),
    "SRC_IN": lambda a, b: (b, 0), "DST_IN": lambda a, b: (0, a),
    "SRC_OUT": lambda a, b: (1 - b, 0), "DST_OUT": lambda a, b: (0, 1 - a),
    "SRC_ATOP": lambda a, b: (b, 1 - a), "DST_ATOP": lambda a, b: (1 - b, a),
    "XOR": lambda a, b: (1 - b, 1 - a),
}


def composite(mode, s=S_COLOUR, d=D_COLOUR, a_s=S_ALPHA, a_d=D_ALPHA, size=(2, 3)):
    source = s.expand(1, *size, 3)
    destination = d.expand(1, *size, 3)
    image, mask = porter_duff_image_composite(source, torch.full((1, *size), 1 - a_s), destination,
                                              torch.full((1, *size), 1 - a_d), mode)
    assert image.shape == (1, *size, 3) and mask.shape == (1, *size)
    return image[0, 0, 0], mask[0, 0, 0]


@pytest.mark.parametrize("mode", sorted(TEXTBOOK))
def test_porter_duff_operators_follow_the_paper(mode):
    f_s, f_d = TEXTBOOK[mode](S_ALPHA, D_ALPHA)
    alpha = S_ALPHA * f_s + D_ALPHA * f_d
    premultiplied = S_ALPHA * S_COLOUR * f_s + D_ALPHA * D_COLOUR * f_d
    expected = premultiplied / alpha if alpha > 1e-5 else torch.zeros(3)
    image, mask = composite(mode)
    torch.testing.assert_close(image, expected.clamp(0, 1))
    torch.testing.assert_close(mask, torch.tensor(1 - alpha))


def test_porter_duff_add_sums_premultiplied_colours_and_clamps():
    image, mask = composite("ADD")
    torch.testing.assert_close(mask, torch.tensor(0.0))  # alpha 0.7 + 0.4 clamped to 1
    torch.testing.assert_close(image, (S_ALPHA * S_COLOUR + D_ALPHA * D_COLOUR).clamp(0, 1))
    image, _ = composite("ADD", a_s=1.0, a_d=1.0)
    torch.testing.assert_close(image, (S_COLOUR + D_COLOUR).clamp(0, 1))


#: the W3C separable blend modes on opaque colours (Compositing and Blending Level 1)
W3C_OPAQUE = {
    "MULTIPLY": lambda s, d: s * d,
    "SCREEN": lambda s, d: s + d - s * d,
    "OVERLAY": lambda s, d: torch.where(2 * d <= 1, 2 * s * d, 1 - 2 * (1 - s) * (1 - d)),
    "DARKEN": torch.minimum,
    "LIGHTEN": torch.maximum,
}


@pytest.mark.parametrize("mode", sorted(W3C_OPAQUE))
def test_blend_modes_on_opaque_images_are_the_w3c_formulas(mode):
    image, mask = composite(mode, a_s=1.0, a_d=1.0)
    torch.testing.assert_close(image, W3C_OPAQUE[mode](S_COLOUR, D_COLOUR))
    torch.testing.assert_close(mask, torch.tensor(0.0))


#: ComfyUI's blend formulas for translucent colours (premultiplied s, d; alphas a, b), which
#: differ from the W3C's: (colour, alpha)
COMFY_TRANSLUCENT = {
    "MULTIPLY": lambda s, d, a, b: (s * d, a * b),
    "SCREEN": lambda s, d, a, b: (s + d - s * d, a + b - a * b),
    "DARKEN": lambda s, d, a, b: ((1 - b) * s + (1 - a) * d + torch.minimum(s, d), a + b - a * b),
    "LIGHTEN": lambda s, d, a, b: ((1 - b) * s + (1 - a) * d + torch.maximum(s, d), a + b - a * b),
    "OVERLAY": lambda s, d, a, b: (torch.where(2 * d < b, 2 * s * d, a * b - 2 * (b - s) * (a - d)), a + b - a * b),
}


@pytest.mark.parametrize("mode", sorted(COMFY_TRANSLUCENT))
def test_blend_modes_on_translucent_images_follow_comfyui(mode):
    colour, alpha = COMFY_TRANSLUCENT[mode](S_ALPHA * S_COLOUR, D_ALPHA * D_COLOUR, S_ALPHA, D_ALPHA)
    image, mask = composite(mode)
    torch.testing.assert_close(image, (colour / alpha).clamp(0, 1))
    torch.testing.assert_close(mask, torch.tensor(1 - alpha))


def test_porter_duff_transparent_result_is_black_and_sizes_follow_the_destination():
    image, mask = composite("SRC_IN", a_d=0.0)  # nothing of the destination: empty result
    assert image.tolist() == [0.0, 0.0, 0.0] and mask.item() == 1.0
    source = torch.full((2, 2, 2, 3), 0.25)  # a constant stays constant when resized (bicubic)
    image, mask = porter_duff_image_composite(source, torch.zeros(2, 2), torch.zeros(3, 4, 6, 3),
                                              torch.zeros(1, 4, 6), "SRC_OVER")
    assert image.shape == (1, 4, 6, 3) and mask.shape == (1, 4, 6)  # batch: the smallest of the four
    torch.testing.assert_close(image, torch.full((1, 4, 6, 3), 0.25))


def test_porter_duff_declaration():
    spec = Registry.load().get("PorterDuffImageComposite")
    mode = spec.input("mode")
    assert mode.default == "DST" and len(mode.choices()) == 18
    assert (spec.display, spec.category) == ("Porter-Duff Image Composite", "mask/compositing")


# ---------------------------------------------------------------- Split / Join image with alpha


def test_join_and_split_round_trip_with_mask_as_one_minus_alpha():
    image = ramp(2, 3, 4, 3)
    mask = torch.tensor([0.0, 0.25, 0.5, 1.0]).repeat(2, 3, 1)  # dyadic: 1 - (1 - m) == m exactly
    (joined,) = join_image_with_alpha(image, mask)
    assert joined.shape == (2, 3, 4, 4)
    assert torch.equal(joined[..., 3], 1 - mask)  # transparent where the mask is 1
    rgb, split_mask = split_image_with_alpha(joined)
    assert torch.equal(rgb, image) and torch.equal(split_mask, mask)
    (again,) = join_image_with_alpha(*split_image_with_alpha(joined))
    assert torch.equal(again, joined)


def test_split_opaque_image_and_join_resizes_the_mask():
    rgb, mask = split_image_with_alpha(torch.rand(1, 2, 2, 3))
    assert torch.equal(mask, torch.zeros(1, 2, 2))
    mask = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])  # 2 x 2 -> 4 x 4 bilinear: columns 1, 0.75, 0.25, 0
    (joined,) = join_image_with_alpha(torch.zeros(3, 4, 4, 4), mask)
    assert joined.shape == (1, 4, 4, 4)  # the smaller batch; the old alpha replaced
    assert torch.allclose(joined[0, ..., 3], 1 - torch.tensor([1.0, 0.75, 0.25, 0.0]).expand(4, 4))


# ---------------------------------------------------------------- ImageColorToMask


def test_color_to_mask_matches_the_exact_8_bit_colour():
    color = 0x12AB7F
    target = torch.tensor([0x12, 0xAB, 0x7F]) / 255.0
    image = target.repeat(1, 2, 3, 1)
    image[0, 0, 1, 2] = (0x7F + 1) / 255  # one level off in blue
    image[0, 1, 0, 0] = (0x12 + 0.4) / 255  # rounds down to the same level
    image[0, 1, 1, 1] = (0xAB - 0.4) / 255  # rounds up to it
    image[0, 1, 2, 1] = (0xAB - 1) / 255
    (mask,) = image_color_to_mask(image, color)
    assert mask.tolist() == [[[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]]]
    (white,) = image_color_to_mask(torch.tensor([[[[1.2, 1.0, 3.0], [1.0, 1.0, 0.99]]]]), 0xFFFFFF)
    assert white.tolist() == [[[1.0, 0.0]]]  # clamped to 255; 0.99 is 252
    (black,) = image_color_to_mask(torch.zeros(1, 1, 2, 4), 0)
    assert black.tolist() == [[[1.0, 1.0]]]  # an alpha channel is ignored


# ---------------------------------------------------------------- MaskPreview


def test_mask_preview_writes_grey_images_to_the_preview_folder(tmp_path):
    shown = []
    ctx = RunContext(paths=Paths(output_dir=tmp_path / "out", temp_dir=tmp_path / "tmp"), on_event=shown.append)
    mask = torch.zeros(2, 4, 6)
    mask[1, :, 3:] = 1.0
    result = mask_preview(mask, ctx)
    files = result["images"]
    assert len(files) == 2 and all(f.startswith(str(tmp_path / "tmp")) for f in files)
    assert not (tmp_path / "out").exists()
    second = np.asarray(Image.open(files[1]))
    assert second.shape == (4, 6, 3) and (second[:, :3] == 0).all() and (second[:, 3:] == 255).all()
    assert type(shown[0]).__name__ == "ImagesShown" and shown[0].images.shape == (2, 4, 6, 3)


# ---------------------------------------------------------------- Morphology


def scipy_morphology(image: np.ndarray, operation: str, size: int) -> np.ndarray:
    """The same operations from scipy's min/max filters on one (H, W) channel; edge pixels
    replicated ("nearest"), which for a flat square equals ignoring the outside (kornia's geodesic
    border); for even sizes the window is centred at size // 2, as kornia's default origin."""
    erode = lambda x: ndimage.minimum_filter(x, size=size, mode="nearest")  # noqa: E731
    dilate = lambda x: ndimage.maximum_filter(x, size=size, mode="nearest")  # noqa: E731
    return {
        "erode": lambda x: erode(x), "dilate": lambda x: dilate(x),
        "open": lambda x: dilate(erode(x)), "close": lambda x: erode(dilate(x)),
        "gradient": lambda x: dilate(x) - erode(x),
        "top_hat": lambda x: x - dilate(erode(x)), "bottom_hat": lambda x: erode(dilate(x)) - x,
    }[operation](image)


@pytest.mark.parametrize("operation", ["erode", "dilate", "open", "close", "gradient", "top_hat", "bottom_hat"])
@pytest.mark.parametrize("size", [3, 4, 5, 9])
def test_morphology_matches_scipy(operation, size):
    image = torch.rand(2, 7, 8, 3, generator=torch.Generator().manual_seed(size))
    (out,) = image_morphology(image, operation, size)
    assert out.shape == image.shape
    for b in range(2):
        for c in range(3):
            expected = scipy_morphology(image[b, :, :, c].numpy(), operation, size)
            np.testing.assert_allclose(out[b, :, :, c].numpy(), expected, atol=1e-6)


def test_morphology_window_by_hand():
    image = torch.zeros(1, 7, 7, 1)
    image[0, 3, 3] = 1.0
    (odd,) = image_morphology(image, "dilate", 3)
    assert torch.equal(odd[0, :, :, 0].nonzero().unique(dim=0)[[0, -1]], torch.tensor([[2, 2], [4, 4]]))
    (even,) = image_morphology(image, "dilate", 4)  # window p - 2 .. p + 1: the pixel spreads to 2..5
    rows, cols = even[0, :, :, 0].nonzero().T
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (2, 5, 2, 5)
    (eroded,) = image_morphology(1 - image, "erode", 3)  # a dark pixel grows the same way
    assert torch.equal(eroded, 1 - odd)
    (big,) = image_morphology(image, "erode", 999)  # larger than the image: the whole image's minimum
    assert torch.equal(big, torch.zeros_like(image))


def test_morphology_against_kornia_when_installed():
    kornia = pytest.importorskip("kornia")
    from kornia import morphology as km

    version = tuple(int(p) for p in kornia.__version__.split(".")[:2])
    image = torch.rand(1, 9, 11, 3, generator=torch.Generator().manual_seed(1))
    sizes = [3, 5] + ([4, 6] if version < (0, 9) else [])  # kornia 0.9 reflects even dilation windows
    names = {"erode": km.erosion, "dilate": km.dilation, "open": km.opening, "close": km.closing,
             "gradient": km.gradient, "top_hat": km.top_hat, "bottom_hat": km.bottom_hat}
    for size in sizes:
        for operation, function in names.items():
            expected = function(image.movedim(-1, 1), torch.ones(size, size)).movedim(1, -1)
            torch.testing.assert_close(image_morphology(image, operation, size)[0], expected)


# ---------------------------------------------------------------- declarations


def test_names_and_categories_are_comfyuis():
    registry = Registry.load()
    expected = {
        "ImageCompositeMasked": ("ImageCompositeMasked", "image"),
        "LatentCompositeMasked": ("LatentCompositeMasked", "latent"),
        "SplitImageWithAlpha": ("Split Image with Alpha", "mask/compositing"),
        "JoinImageWithAlpha": ("Join Image with Alpha", "mask/compositing"),
        "ImageColorToMask": ("ImageColorToMask", "mask"),
        "MaskPreview": ("MaskPreview", "mask"),
        "Morphology": ("ImageMorphology", "image/postprocessing"),
    }
    for node_id, (display, category) in expected.items():
        spec = registry.get(node_id)
        assert (spec.display, spec.category) == (display, category), node_id
    assert registry.get("MaskPreview").output_node
    assert [(i.name, i.default, i.min, i.max, i.step) for i in registry.get("LatentCompositeMasked").widget_inputs] \
        == [("x", 0, 0, 16384, 8), ("y", 0, 0, 16384, 8), ("resize_source", False, None, None, None)]
    assert registry.get("LatentCompositeMasked").input("mask").optional
