"""Image nodes against hand-computed results; image files (alpha, EXIF, animation, errors)."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from nodeflow.engine.context import RunContext
from nodeflow.errors import ModelFileError
from nodeflow.runtime.paths import Paths
from nodeflow_nodes.image import (empty_image, image_batch, image_blend, image_blur, image_crop,
                                  image_invert, image_pad_for_outpaint, image_scale, image_scale_by,
                                  image_scale_to_total_pixels, image_sharpen, load_image,
                                  load_image_mask)


def gradient(h=4, w=8, b=1):
    values = torch.arange(b * h * w * 3, dtype=torch.float32) / (b * h * w * 3)
    return values.reshape(b, h, w, 3)


@pytest.fixture
def ctx(tmp_path):
    (tmp_path / "in").mkdir()
    return RunContext(paths=Paths(input_dir=tmp_path / "in", output_dir=tmp_path / "out", temp_dir=tmp_path / "tmp"))


# -- resizing ---------------------------------------------------------------------------------

def test_image_scale_sizes_and_center_crop():
    image = gradient(h=4, w=8)
    (out,) = image_scale(image, "nearest-exact", 0, 8, "disabled")
    assert out.shape == (1, 8, 16, 3)  # width from the aspect ratio
    assert torch.equal(out, image.repeat_interleave(2, 1).repeat_interleave(2, 2))
    (square,) = image_scale(image, "nearest-exact", 4, 4, "center")
    assert torch.equal(square, image[:, :, 2:6])  # the middle of a 2:1 image
    (same,) = image_scale(image, "bilinear", 0, 0, "disabled")
    assert same is image


def test_image_scale_by_lanczos_truncates_to_8_bits_like_comfyui():
    image = torch.full((1, 6, 6, 3), 0.5)  # 127.5 -> 127
    (out,) = image_scale_by(image, "lanczos", 2.0)
    assert out.shape == (1, 12, 12, 3) and torch.allclose(out, torch.full_like(out, 127 / 255))


def test_image_scale_to_total_pixels():
    (out,) = image_scale_to_total_pixels(gradient(h=32, w=64), "area", 0.01)
    # int(0.01 * 2^20) = 10485 pixels: scale sqrt(10485 / 2048) = 2.2627 -> 145 x 72
    assert out.shape == (1, 72, 145, 3)


# -- padding for outpainting ------------------------------------------------------------------

def test_pad_for_outpaint_geometry_and_feathering():
    image = torch.rand(2, 10, 10, 3)
    padded, mask = image_pad_for_outpaint(image, left=4, top=0, right=0, bottom=2, feathering=3)
    assert padded.shape == (2, 12, 14, 3) and mask.shape == (1, 12, 14)
    assert torch.equal(padded[:, :10, 4:], image)
    assert (padded[:, :, :4] == 0.5).all() and (padded[:, 10:] == 0.5).all()
    assert (mask[0, :, :4] == 1).all() and (mask[0, 10:] == 1).all()
    inner = mask[0, :10, 4:]
    # left side padded: column j has distance j; bottom padded: row i has distance 10 - i
    assert torch.allclose(inner[0, :4], torch.tensor([1.0, (2 / 3) ** 2, (1 / 3) ** 2, 0.0]))
    assert torch.allclose(inner[7:, 5], torch.tensor([0.0, (1 / 3) ** 2, (2 / 3) ** 2]))
    assert inner[9, 0] == 1.0  # min distance wins (0 from the left)
    assert not inner[:7, 3:].any()


def test_pad_without_feathering_when_the_image_is_too_small():
    _, mask = image_pad_for_outpaint(torch.rand(1, 6, 6, 3), 8, 0, 0, 0, feathering=3)  # 2 * 3 >= 6
    assert not mask[0, :, 8:].any() and (mask[0, :, :8] == 1).all()


# -- simple operations ------------------------------------------------------------------------

def test_invert_batch_crop_empty():
    image = gradient()
    assert torch.allclose(image_invert(image)[0], 1 - image)
    (batch,) = image_batch(image, gradient(h=8, w=16))
    assert batch.shape == (2, 4, 8, 3) and torch.equal(batch[0], image[0])
    (crop,) = image_crop(image, width=3, height=10, x=6, y=1)
    assert torch.equal(crop, image[:, 1:4, 6:8])  # clipped to the image
    (corner,) = image_crop(image, width=2, height=2, x=100, y=100)  # start clamped to the last pixel
    assert torch.equal(corner, image[:, 3:, 7:])
    (color,) = empty_image(width=3, height=2, batch_size=2, color=0xFF8000)
    assert color.shape == (2, 2, 3, 3) and torch.allclose(color[1, 1, 2], torch.tensor([1.0, 128 / 255, 0.0]))


@pytest.mark.parametrize("mode, expected", [
    ("normal", 0.6), ("multiply", 0.12), ("screen", 0.68), ("overlay", 0.24),
    ("soft_light", 0.2 + 0.2 * (((16 * 0.2 - 12) * 0.2 + 4) * 0.2 - 0.2)),  # b > 0.5, a <= 0.25
    ("difference", -0.4),  # signed: 0.2 - 0.6 (the mix is clamped afterwards)
])
def test_blend_modes(mode, expected):
    a, b = torch.full((1, 2, 2, 3), 0.2), torch.full((1, 2, 2, 3), 0.6)
    (full,) = image_blend(a, b, 1.0, mode)
    assert torch.allclose(full, torch.full_like(a, max(expected, 0.0)), atol=1e-6)
    (half,) = image_blend(a, b, 0.5, mode)
    assert torch.allclose(half, torch.full_like(a, max(0.5 * 0.2 + 0.5 * expected, 0.0)), atol=1e-6)


def test_blend_resizes_the_second_image():
    (out,) = image_blend(torch.zeros(1, 4, 4, 3), torch.ones(1, 8, 16, 3), 0.5, "normal")
    assert out.shape == (1, 4, 4, 3) and torch.allclose(out, torch.full_like(out, 0.5))


def test_rgb_next_to_rgba_gets_an_opaque_alpha():
    rgba = torch.full((1, 2, 2, 4), 0.5)
    (batch,) = image_batch(rgba, torch.zeros(1, 2, 2, 3))
    assert batch.shape == (2, 2, 2, 4) and (batch[1, ..., 3] == 1).all() and not batch[1, ..., :3].any()
    (blend,) = image_blend(torch.zeros(1, 2, 2, 3), rgba, 1.0, "normal")
    assert blend.shape == (1, 2, 2, 4) and torch.allclose(blend[..., 3], torch.full((1, 2, 2), 0.5))


def _impulse(value=1.0, background=0.0, size=7):
    image = torch.full((1, size, size, 3), background)
    image[0, size // 2, size // 2] = value
    return image


def test_blur_kernel_spans_minus_one_to_one():
    (out,) = image_blur(_impulse(), blur_radius=1, sigma=1.0)
    # kernel taps at -1, 0, 1 in both axes: weight exp(-d^2 / 2) normalised
    total = 1 + 4 * math.exp(-0.5) + 4 * math.exp(-1.0)
    assert math.isclose(out[0, 3, 3, 0].item(), 1 / total, rel_tol=1e-5)
    assert math.isclose(out[0, 2, 3, 0].item(), math.exp(-0.5) / total, rel_tol=1e-5)
    assert math.isclose(out[0, 2, 2, 0].item(), math.exp(-1.0) / total, rel_tol=1e-5)
    assert torch.allclose(image_blur(torch.full((1, 5, 5, 3), 0.3), 2, 0.5)[0], torch.full((1, 5, 5, 3), 0.3))


def test_sharpen_is_ten_alpha_unsharp_mask():
    (out,) = image_sharpen(_impulse(0.55, 0.5), sharpen_radius=1, sigma=1.0, alpha=0.1)
    center_weight = 1 / (1 + 4 * math.exp(-0.5) + 4 * math.exp(-1.0))
    blurred = 0.5 + 0.05 * center_weight
    assert math.isclose(out[0, 3, 3, 0].item(), 0.55 + 10 * 0.1 * (0.55 - blurred), rel_tol=1e-5)
    assert torch.allclose(out[0, 0, 0], torch.full((3,), 0.5))  # flat areas unchanged


# -- image files ------------------------------------------------------------------------------

def test_load_image_alpha_becomes_the_inverted_mask(ctx):
    rgba = np.zeros((3, 4, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, [[0, 255, 51, 255]] * 3
    Image.fromarray(rgba, "RGBA").save(ctx.paths.input_dir / "alpha.png")
    image, mask = load_image("alpha.png", ctx)
    assert image.shape == (1, 3, 4, 3) and torch.allclose(image[0, 0, 0], torch.tensor([200 / 255, 0, 0]))
    assert torch.allclose(mask[0, 0], torch.tensor([1.0, 0.0, 0.8, 0.0]))


def test_load_image_without_alpha_gives_a_64_square_zero_mask(ctx):
    Image.new("RGB", (5, 3), (10, 20, 30)).save(ctx.paths.input_dir / "plain.jpg", quality=100)
    image, mask = load_image("plain.jpg", ctx)
    assert image.shape == (1, 3, 5, 3) and mask.shape == (1, 64, 64) and not mask.any()


def test_load_image_applies_exif_orientation(ctx):
    picture = Image.new("RGB", (4, 2), (0, 0, 0))
    picture.putpixel((3, 0), (255, 255, 255))  # top-right corner white
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    picture.save(ctx.paths.input_dir / "rotated.png", exif=exif)
    image, _ = load_image("rotated.png", ctx)
    assert image.shape == (1, 4, 2, 3)  # portrait once rotated
    # rotating clockwise moves the top-right corner to the bottom-right
    assert image[0, 3, 1].min() > 0.99 and image[0].sum() == 3.0


def test_load_image_gives_every_frame_of_an_animation(ctx):
    frames = [Image.new("RGBA", (6, 4), (v, 0, 0, 255 - v)) for v in (0, 100, 200)]
    frames[0].save(ctx.paths.input_dir / "anim.png", save_all=True, append_images=frames[1:])
    image, mask = load_image("anim.png", ctx)
    assert image.shape == (3, 4, 6, 3) and mask.shape == (3, 4, 6)
    assert torch.allclose(image[:, 0, 0, 0], torch.tensor([0, 100 / 255, 200 / 255]))
    assert torch.allclose(mask[:, 0, 0], torch.tensor([0, 100 / 255, 200 / 255]))


def test_bad_image_file_is_named(ctx):
    (ctx.paths.input_dir / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ModelFileError, match="broken.png"):
        load_image("broken.png", ctx)
    with pytest.raises(ModelFileError, match="missing.png"):
        load_image("missing.png", ctx)


def test_fingerprint_is_the_content_hash(ctx):
    spec = load_image.__nodeflow_spec__
    path = ctx.paths.input_dir / "x.png"
    Image.new("RGB", (2, 2), (1, 2, 3)).save(path)
    first = spec.fingerprint({"image": "x.png"}, ctx.paths)
    assert spec.fingerprint({"image": "x.png"}, ctx.paths) == first
    Image.new("RGB", (2, 2), (1, 2, 4)).save(path)
    assert spec.fingerprint({"image": "x.png"}, ctx.paths) != first
    assert "x.png" in spec.inputs[0].choices(ctx.paths)


def test_load_image_mask_channels(ctx):
    rgba = np.zeros((2, 3, 4), dtype=np.uint8)
    rgba[..., 1], rgba[..., 3] = 51, 204
    Image.fromarray(rgba, "RGBA").save(ctx.paths.input_dir / "m.png")
    (green,) = load_image_mask("m.png", "green", ctx)
    (alpha,) = load_image_mask("m.png", "alpha", ctx)
    assert green.shape == (1, 2, 3) and torch.allclose(green, torch.full((1, 2, 3), 0.2))
    assert torch.allclose(alpha, torch.full((1, 2, 3), 0.2))  # 1 - 204 / 255
    Image.new("L", (3, 2), 102).save(ctx.paths.input_dir / "grey.png")
    (red,) = load_image_mask("grey.png", "red", ctx)  # greyscale reads as R = G = B
    assert torch.allclose(red, torch.full((1, 2, 3), 0.4))
    (opaque,) = load_image_mask("grey.png", "alpha", ctx)  # no alpha: opaque, mask 0 at full size
    assert opaque.shape == (1, 2, 3) and not opaque.any()
