"""Image transform nodes against independently derived pixels: sizes, flips and quarter turns,
batch picking and regrouping, stitching (sizes, padding, spacing, alpha), fit-and-pad, scaling to
a longest side or a pixel count, ComfyUI's seeded noise, palette quantisation and dithering."""

import numpy as np
import pytest
import torch

from nodeflow.errors import NodeInputError
from nodeflow.image.transform import rebatch_images as rebatch_list
from nodeflow_nodes.image import image_scale_to_total_pixels
from nodeflow_nodes.image_transform import (get_image_size, image_add_noise, image_flip, image_from_batch,
                                            image_quantize, image_rotate, image_scale_to_max_dimension,
                                            image_stitch, rebatch_images, repeat_image_batch,
                                            resize_and_pad_image)


def numbered(b=2, h=3, w=4, c=3):
    """Distinct values everywhere, so any misplaced pixel shows."""
    return torch.arange(b * h * w * c, dtype=torch.float32).reshape(b, h, w, c) / (b * h * w * c)


def batch_of_values(values, h=2, w=2):
    """Image i of the batch filled with values[i]."""
    return torch.tensor(values, dtype=torch.float32)[:, None, None, None].expand(len(values), h, w, 3).clone()


# -- size, flips, turns -----------------------------------------------------------------------

def test_get_image_size_reads_width_height_batch():
    assert get_image_size(torch.zeros(3, 5, 7, 3)) == (7, 5, 3)
    with pytest.raises(NodeInputError, match="'image'"):
        get_image_size(torch.zeros(5, 7))


def test_flip_x_axis_reverses_rows_and_y_axis_columns():
    image = numbered()
    (vertical,) = image_flip(image, "x-axis: vertically")
    (horizontal,) = image_flip(image, "y-axis: horizontally")
    h, w = image.shape[1:3]
    for i in range(h):
        for j in range(w):
            assert torch.equal(vertical[:, i, j], image[:, h - 1 - i, j])
            assert torch.equal(horizontal[:, i, j], image[:, i, w - 1 - j])


@pytest.mark.parametrize("rotation, source", [
    # output pixel (i, j) comes from input pixel source(i, j, H, W); clockwise turns
    ("none", lambda i, j, h, w: (i, j)),
    ("90 degrees", lambda i, j, h, w: (h - 1 - j, i)),
    ("180 degrees", lambda i, j, h, w: (h - 1 - i, w - 1 - j)),
    ("270 degrees", lambda i, j, h, w: (j, w - 1 - i)),
])
def test_rotate_turns_clockwise(rotation, source):
    image = numbered(h=3, w=5)
    (out,) = image_rotate(image, rotation)
    h, w = image.shape[1:3]
    assert out.shape[1:3] == ((h, w) if rotation in ("none", "180 degrees") else (w, h))
    for i in range(out.shape[1]):
        for j in range(out.shape[2]):
            assert torch.equal(out[:, i, j], image[(slice(None), *source(i, j, h, w))])
    if rotation == "90 degrees":  # the top-left pixel ends up top-right
        assert torch.equal(out[:, 0, -1], image[:, 0, 0])


# -- batches ----------------------------------------------------------------------------------

@pytest.mark.parametrize("index, length, expected", [
    (2, 2, [2, 3]),
    (4, 3, [4]),          # the length stops at the end
    (9, 1, [4]),          # an index past the end takes the last image (ComfyUI clamps)
    (-2, 5, [3, 4]),      # negative: from the end
    (-9, 2, [0, 1]),      # clamped to the first
])
def test_image_from_batch_picks_and_clamps_like_comfyui(index, length, expected):
    images = batch_of_values([0, 1, 2, 3, 4])
    (out,) = image_from_batch(images, index, length)
    assert out[:, 0, 0, 0].tolist() == expected
    out += 1  # a copy, not a view of the input
    assert images[:, 0, 0, 0].tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("index, warned", [(4, False), (-5, False), (5, True), (-6, True)])
def test_image_from_batch_says_when_it_clamps(caplog, index, warned):
    """ComfyUI clamps silently; a workflow picking an image the batch lacks gets a warning that
    names the node type and input."""
    with caplog.at_level("WARNING"):
        image_from_batch(batch_of_values([0, 1, 2, 3, 4]), index, 1)
    assert ("ImageFromBatch: batch_index" in caplog.text) == warned


def test_repeat_image_batch_repeats_the_whole_batch():
    (out,) = repeat_image_batch(batch_of_values([1, 2]), 3)
    assert out[:, 0, 0, 0].tolist() == [1, 2, 1, 2, 1, 2]


def test_results_larger_than_free_memory_are_refused_naming_the_input(monkeypatch):
    import nodeflow.runtime.devices as devices

    monkeypatch.setattr(devices, "available_memory", lambda device="cpu": 2**30)  # 1 GiB free
    image = torch.zeros(1, 512, 512, 3)  # 3 MiB
    assert repeat_image_batch(image, 300)[0].shape[0] == 300  # 900 MiB fits
    with pytest.raises(NodeInputError, match="'amount'.*GiB"):
        repeat_image_batch(image, 400)  # 1.2 GiB does not
    with pytest.raises(NodeInputError, match="'target_width'"):
        resize_and_pad_image(image, 16384, 16384, "white", "area")
    with pytest.raises(NodeInputError, match="'largest_size'"):
        image_scale_to_max_dimension(image, "area", 16384)


def test_rebatch_regroups_images_in_order():
    five = batch_of_values([0, 1, 2, 3, 4])
    assert [b[:, 0, 0, 0].tolist() for b in rebatch_list([five], 2)] == [[0, 1], [2, 3], [4]]
    three, two = batch_of_values([0, 1, 2]), batch_of_values([3, 4])
    assert [b[:, 0, 0, 0].tolist() for b in rebatch_list([three, two], 4)] == [[0, 1, 2, 3], [4]]
    (joined,) = rebatch_images(five, 2)  # the node passes the batches on joined: the same images
    assert torch.equal(joined, five)


# -- stitching --------------------------------------------------------------------------------

def test_stitch_without_image2_returns_image1():
    image = numbered()
    assert image_stitch(image, "right", True, 0, "white")[0] is image


@pytest.mark.parametrize("direction, order, dim", [("right", (1, 2), 2), ("left", (2, 1), 2),
                                                  ("down", (1, 2), 1), ("up", (2, 1), 1)])
def test_stitch_same_size_concatenates_in_the_direction(direction, order, dim):
    a, b = numbered(h=3, w=3), numbered(h=3, w=3).flip(0)
    (out,) = image_stitch(a, direction, False, 0, "white", b)
    parts = {1: a, 2: b}
    assert torch.equal(out, torch.cat([parts[order[0]], parts[order[1]]], dim=dim))


def test_stitch_pads_the_smaller_side_centred_and_adds_an_even_spacing_strip():
    a = torch.full((1, 2, 6, 3), 0.25)
    b = torch.full((1, 2, 3, 3), 0.75)
    (out,) = image_stitch(a, "down", False, 3, "red", b)  # 3 -> 4 rows of spacing; red pads with 0
    assert out.shape == (1, 2 + 4 + 2, 6, 3)
    assert torch.equal(out[:, :2], a)
    strip = out[0, 2:6]
    assert torch.equal(strip, torch.tensor([1.0, 0.0, 0.0]).expand(4, 6, 3))
    bottom = out[0, 6:]
    # width 3 -> 6: floor(3 / 2) = 1 column before, 2 after
    assert (bottom[:, 0] == 0).all() and (bottom[:, 4:] == 0).all() and (bottom[:, 1:4] == 0.75).all()
    (white,) = image_stitch(a, "down", False, 0, "white", b)
    assert (white[0, 2:, 0] == 1).all() and (white[0, 2:, 4:] == 1).all()


def test_stitch_matches_heights_with_truncated_width():
    a = torch.full((1, 4, 2, 3), 0.1)
    b = torch.full((1, 3, 5, 3), 0.6)  # resized to height 4, width int(4 * 5 / 3) = 6
    (out,) = image_stitch(a, "right", True, 0, "white", b)
    assert out.shape == (1, 4, 8, 3)
    assert torch.equal(out[:, :, :2], a)
    assert torch.allclose(out[:, :, 2:], torch.full((1, 4, 6, 3), 153 / 255))  # Lanczos on 8 bits: 0.6 -> 153


def test_stitch_repeats_the_last_image_of_the_smaller_batch_and_adds_alpha():
    a = batch_of_values([0.2])  # RGB, batch 1
    b = torch.cat([batch_of_values([0.4, 0.6]), torch.full((2, 2, 2, 1), 0.5)], dim=-1)  # RGBA, batch 2
    (out,) = image_stitch(a, "right", False, 2, "blue", b)
    assert out.shape == (2, 2, 2 + 2 + 2, 4)
    assert torch.equal(out[:, :, :2, :3], a[:, :, :, :3].expand(2, 2, 2, 3))  # image1 repeated
    assert (out[:, :, :2, 3] == 1).all()  # an opaque alpha added to image1
    assert torch.equal(out[0, 0, 2], torch.tensor([0.0, 0.0, 1.0, 1.0]))  # blue strip, opaque
    assert torch.equal(out[:, :, 4:], b)


# -- fit and pad, scaling ---------------------------------------------------------------------

def test_resize_and_pad_fits_and_centres():
    image = numbered(b=1, h=4, w=8)
    (out,) = resize_and_pad_image(image, 16, 13, "white", "nearest-exact")
    # scale min(16 / 8, 13 / 4) = 2 -> 16 x 8, top offset (13 - 8) // 2 = 2
    assert out.shape == (1, 13, 16, 3)
    assert (out[:, :2] == 1).all() and (out[:, 10:] == 1).all()
    assert torch.equal(out[:, 2:10], image.repeat_interleave(2, 1).repeat_interleave(2, 2))
    (black,) = resize_and_pad_image(image, 9, 8, "black", "nearest-exact")  # scale 9/8: 9 x int(4.5) = 4
    assert black.shape == (1, 8, 9, 3) and (black[:, :2] == 0).all() and (black[:, 6:] == 0).all()


@pytest.mark.parametrize("h, w, largest, expected", [
    (4, 8, 16, (8, 16)),     # wide: width = largest, height in proportion
    (10, 4, 5, (5, 2)),      # tall: width round(4 / 10 * 5) = 2
    (3, 3, 7, (7, 7)),       # square
])
def test_scale_to_max_dimension_sizes(h, w, largest, expected):
    (out,) = image_scale_to_max_dimension(numbered(b=1, h=h, w=w), "nearest-exact", largest)
    assert out.shape[1:3] == expected


def test_scale_to_max_dimension_nearest_doubles_and_zero_is_refused():
    image = numbered(b=1, h=4, w=8)
    (out,) = image_scale_to_max_dimension(image, "nearest-exact", 16)
    assert torch.equal(out, image.repeat_interleave(2, 1).repeat_interleave(2, 2))
    with pytest.raises(NodeInputError, match="'largest_size'"):
        image_scale_to_max_dimension(image, "area", 0)


@pytest.mark.parametrize("steps, expected", [
    # 64 x 32 to 0.01 MP: scale sqrt(0.01 * 2^20 / 2048) = 2.2627 -> 144.8 x 72.4
    (1, (72, 145)),
    (16, (80, 144)),    # round(9.05) * 16 = 144, round(4.525) * 16 = 80
    (64, (64, 128)),    # round(2.26) * 64, round(1.13) * 64
    (256, (256, 256)),  # both round to 0 steps: at least one step
])
def test_scale_to_total_pixels_rounds_to_resolution_steps(steps, expected):
    (out,) = image_scale_to_total_pixels(numbered(b=1, h=32, w=64), "nearest-exact", 0.01, steps)
    assert out.shape[1:3] == expected


def test_resolution_steps_is_declared_after_megapixels_with_default_1():
    from nodeflow.spec import spec_of

    spec = spec_of(image_scale_to_total_pixels)
    assert [i.name for i in spec.inputs] == ["image", "upscale_method", "megapixels", "resolution_steps"]
    steps = spec.input("resolution_steps")
    assert (steps.default, steps.min, steps.max) == (1, 1, 256)


# -- noise ------------------------------------------------------------------------------------

def test_add_noise_is_comfyuis_seeded_draw_and_leaves_torch_alone():
    image = torch.rand(2, 5, 6, 3, generator=torch.Generator().manual_seed(1))
    state = torch.get_rng_state()
    (out,) = image_add_noise(image, 1234, 0.3)
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is not reseeded
    with torch.random.fork_rng():  # ComfyUI's own expression
        expected = torch.clip(image + 0.3 * torch.randn(image.size(), generator=torch.manual_seed(1234),
                                                        device="cpu").to(image), min=0.0, max=1.0)
    assert torch.equal(out, expected)
    assert out.min() >= 0 and out.max() <= 1 and (out == 1).any() and (out == 0).any()


def test_add_noise_strength_and_seeds():
    image = torch.full((1, 64, 64, 3), 0.5)
    assert torch.equal(image_add_noise(image, 7, 0.0)[0], image)
    small = (image_add_noise(image, 7, 0.01)[0] - 0.5) / 0.01  # unclamped: standard normal values
    assert abs(small.mean()) < 0.05 and abs(small.std() - 1) < 0.05
    assert not torch.equal(image_add_noise(image, 7, 0.1)[0], image_add_noise(image, 8, 0.1)[0])
    assert torch.equal(image_add_noise(image, 2**64 - 1, 0.1)[0], image_add_noise(image, 2**64 - 1, 0.1)[0])


# -- quantisation -----------------------------------------------------------------------------

def _eight_bit(image):
    return (image.clamp(0, 1) * 255).to(torch.uint8).numpy().astype(np.float64)  # (H, W, 3), truncated


def _nearest_check(source, output):
    """Every output pixel is the colour of the output's palette nearest to its source pixel (8-bit
    RGB distance). Pillow, like ComfyUI through it, looks colours up in a cache of 4-level cells,
    so a near tie may go to the second nearest: allowed within a cell's diagonal (7), for at most
    5% of the pixels."""
    out = np.rint(output.numpy() * 255).reshape(-1, 3)
    palette = np.unique(out, axis=0)
    distances = np.sqrt(((source.reshape(-1, 1, 3) - palette[None]) ** 2).sum(-1))  # (pixels, colours)
    chosen = distances[np.arange(len(out)), ((out[:, None] - palette[None]) ** 2).sum(-1).argmin(1)]
    nearest = distances.min(1)
    assert (chosen <= nearest + 7).all() and (chosen == nearest).mean() >= 0.95
    return palette


def test_quantize_keeps_an_image_with_few_colours():
    colours = torch.tensor([[0, 0, 0], [255, 0, 0], [0, 128, 255], [255, 255, 255]]) / 255.0
    pattern = torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0], [1, 1, 3, 3]])
    image = colours[pattern][None]  # (1, 3, 4, 3)
    (out,) = image_quantize(image, 4, "none")
    assert torch.allclose(out, image, atol=1e-6)


def test_quantize_without_dither_maps_each_pixel_to_its_nearest_palette_colour():
    image = torch.rand(1, 12, 16, 3, generator=torch.Generator().manual_seed(3))
    (out,) = image_quantize(image, 5, "none")
    palette = _nearest_check(_eight_bit(image[0]), out[0])
    assert 1 < len(palette) <= 5


#: The classical ordered-dither (Bayer) matrices: thresholds 0 .. n^2 - 1.
BAYER = {2: [[0, 2], [3, 1]],
         4: [[0, 8, 2, 10], [12, 4, 14, 6], [3, 11, 1, 9], [15, 7, 13, 5]]}


@pytest.mark.parametrize("order", [2, 4])
def test_bayer_dither_adds_the_threshold_pattern_before_mapping(order):
    from PIL import Image

    h, w = 38, 45
    image = torch.rand(1, h, w, 3, generator=torch.Generator().manual_seed(4))
    (out,) = image_quantize(image, 3, f"bayer-{order}")  # 3 colours: offsets of 512 / 3 * t + 0.5, not whole
    source = _eight_bit(image[0])
    palette = Image.fromarray(source.astype(np.uint8)).quantize(colors=3)  # Pillow's median cut
    colours = len(palette.getpalette()) // 3
    threshold = (np.array(BAYER[order]) + 0.5) / order**2 - 0.5  # centred on 0
    offset = np.tile(2 * 256 / colours * threshold + 0.5, (-(-h // order), -(-w // order)))[:h, :w]
    shifted = np.floor(np.clip(source + offset[..., None], 0, 255))
    _nearest_check(shifted, out[0])
    mapped = Image.fromarray(shifted.astype(np.uint8)).quantize(palette=palette, dither=Image.Dither.NONE)
    assert np.array_equal(np.rint(out[0].numpy() * 255), np.asarray(mapped.convert("RGB")))
    assert not torch.equal(out, image_quantize(image, 3, "none")[0])  # the pattern changes pixels


def test_floyd_steinberg_keeps_local_brightness_where_plain_mapping_cannot():
    ramp = torch.linspace(0, 1, 64)[None, :].expand(32, 64)
    image = ramp[None, ..., None].expand(1, 32, 64, 3).contiguous()
    (plain,) = image_quantize(image, 2, "none")
    (dithered,) = image_quantize(image, 2, "floyd-steinberg")
    assert len(torch.unique(dithered.reshape(-1, 3), dim=0)) <= 2
    low, high = dithered.min(), dithered.max()  # the two palette colours (median cut: the halves' means)
    blocks = lambda x: x[0, ..., 0].reshape(4, 8, 8, 8).mean(dim=(1, 3))  # (4, 8) means of 8 x 8 blocks
    target = blocks(image).clamp(low, high)  # the brightness reachable with the palette
    assert (blocks(dithered) - target).abs().max() < 0.05
    assert (blocks(plain) - target).abs().max() > 0.15  # a hard threshold: whole blocks one colour


def test_quantize_keeps_alpha_and_refuses_grey_images():
    image = torch.cat([torch.rand(1, 4, 4, 3, generator=torch.Generator().manual_seed(5)),
                       torch.full((1, 4, 4, 1), 0.3)], dim=-1)
    (out,) = image_quantize(image, 2, "none")
    assert torch.equal(out[..., 3], image[..., 3]) and len(torch.unique(out[..., :3].reshape(-1, 3), dim=0)) <= 2
    with pytest.raises(NodeInputError, match="'image'"):
        image_quantize(torch.rand(1, 4, 4, 1), 2, "none")
