"""Latent, image and mask nodes against hand-computed results."""

import pytest
import torch
from PIL import Image

from nodeflow.engine.registry import Registry
from nodeflow_nodes import image as im
from nodeflow_nodes import latent as lt
from nodeflow_nodes import mask as mk


def test_registry_has_the_core_node_set():
    expected = {
        "CheckpointLoaderSimple", "VAELoader", "CLIPSetLastLayer", "CLIPTextEncode", "ConditioningCombine",
        "ConditioningConcat", "ConditioningAverage", "ConditioningSetArea", "ConditioningSetAreaPercentage",
        "ConditioningSetAreaStrength", "ConditioningSetMask", "ConditioningSetTimestepRange",
        "ConditioningZeroOut", "EmptyLatentImage", "VAEEncode", "VAEDecode", "VAEEncodeTiled", "VAEDecodeTiled",
        "VAEEncodeForInpaint", "SetLatentNoiseMask", "LatentUpscale", "LatentUpscaleBy", "LatentFromBatch",
        "RepeatLatentBatch", "LatentComposite", "LatentBlend", "LatentCrop", "LatentFlip", "LatentRotate",
        "KSampler", "KSamplerAdvanced", "LoadImage", "LoadImageMask", "SaveImage", "PreviewImage", "ImageScale",
        "ImageScaleBy", "ImageScaleToTotalPixels", "ImagePadForOutpaint", "ImageInvert", "ImageBatch",
        "ImageCrop", "ImageBlend", "ImageBlur", "ImageSharpen", "EmptyImage", "SolidMask", "InvertMask",
        "MaskComposite", "CropMask", "GrowMask", "FeatherMask", "ImageToMask", "MaskToImage", "ThresholdMask"}
    assert expected <= set(Registry.load().specs)


def test_ksampler_inputs_follow_comfyui():
    spec = Registry.load().get("KSampler")
    assert [i.name for i in spec.inputs] == ["model", "seed", "steps", "cfg", "sampler_name", "scheduler",
                                             "positive", "negative", "latent_image", "denoise"]
    seed = spec.input("seed")
    assert seed.seed and seed.max == 2**64 - 1 and spec.input("cfg").default == 8.0


def test_empty_latent_and_transforms():
    (latent,) = lt.empty_latent_image(64, 32, 2)
    assert latent["samples"].shape == (2, 4, 4, 8) and not latent["samples"].any()
    x = torch.arange(2 * 4 * 2 * 3, dtype=torch.float32).reshape(2, 4, 2, 3)
    (flipped,) = lt.latent_flip({"samples": x}, "y-axis: horizontally")
    assert torch.equal(flipped["samples"][..., 0], x[..., 2])
    (rotated,) = lt.latent_rotate({"samples": x}, "90 degrees")
    assert rotated["samples"].shape == (2, 4, 3, 2)
    assert torch.equal(rotated["samples"][0, 0, 0], torch.flip(x[0, 0, :, 0], [0]))  # clockwise


def test_latent_batch_nodes_keep_batch_indices():
    x = torch.randn(4, 4, 2, 2)
    (picked,) = lt.latent_from_batch({"samples": x}, 1, 2)
    assert torch.equal(picked["samples"], x[1:3]) and picked["batch_index"] == [1, 2]
    (repeated,) = lt.repeat_latent_batch(picked, 2)
    assert repeated["samples"].shape[0] == 4 and repeated["batch_index"] == [1, 2, 3, 4]


def test_latent_composite_pastes_at_position():
    target = {"samples": torch.zeros(1, 4, 8, 8)}
    source = {"samples": torch.ones(1, 4, 2, 2)}
    (out,) = lt.latent_composite(target, source, 16, 8, 0)
    assert out["samples"][0, 0, 1:3, 2:4].eq(1).all() and out["samples"].sum() == 16
    assert target["samples"].sum() == 0  # input untouched


def test_image_scale_blend_invert_crop():
    image = torch.rand(1, 10, 20, 3)
    (scaled,) = im.image_scale(image, "bilinear", 40, 0, "disabled")
    assert scaled.shape == (1, 20, 40, 3)
    (inverted,) = im.image_invert(image)
    assert torch.allclose(inverted, 1 - image)
    (crop,) = im.image_crop(image, 5, 4, 3, 2)
    assert torch.equal(crop, image[:, 2:6, 3:8])
    (blend,) = im.image_blend(image, torch.zeros_like(image), 0.25, "normal")
    assert torch.allclose(blend, image * 0.75)


def test_pad_for_outpaint_masks_the_new_border():
    image = torch.rand(1, 64, 64, 3)
    padded, mask = im.image_pad_for_outpaint(image, 8, 0, 0, 0, 0)
    assert padded.shape == (1, 64, 72, 3) and torch.equal(padded[:, :, 8:], image)
    assert mask[0, :, :8].eq(1).all() and mask[0, :, 8:].eq(0).all()
    _, feathered = im.image_pad_for_outpaint(image, 8, 0, 0, 0, 10)
    assert 0 < float(feathered[0, 0, 8]) <= 1 and float(feathered[0, 0, 30]) == 0


def test_empty_image_color():
    (image,) = im.empty_image(4, 2, 1, 0xFF8000)
    assert torch.allclose(image[0, 0, 0], torch.tensor([1.0, 128 / 255, 0.0]))


def test_masks():
    (solid,) = mk.solid_mask(0.25, 4, 3)
    assert solid.shape == (1, 3, 4) and solid.eq(0.25).all()
    dot = torch.zeros(1, 5, 5)
    dot[0, 2, 2] = 1
    (grown,) = mk.grow_mask(dot, 1, False)
    assert grown[0, 1:4, 1:4].eq(1).all() and grown.sum() == 9
    (tapered,) = mk.grow_mask(dot, 1, True)
    assert tapered.sum() == 5
    (shrunk,) = mk.grow_mask(grown, -1, False)
    assert torch.equal(shrunk, dot)
    (composite,) = mk.mask_composite(torch.zeros(1, 4, 4), torch.ones(1, 2, 2), 1, 1, "add")
    assert composite.sum() == 4 and composite[0, 1, 1] == 1
    (thresholded,) = mk.threshold_mask(torch.tensor([[[0.2, 0.7]]]), 0.5)
    assert thresholded.tolist() == [[[0.0, 1.0]]]
    (feathered,) = mk.feather_mask(torch.ones(1, 4, 4), 2, 0, 0, 0)
    assert feathered[0, 0].tolist() == [0.5, 1.0, 1.0, 1.0]


def test_load_image_alpha_exif_and_frames(tmp_path):
    from nodeflow.image.files import load_image

    rgba = Image.new("RGBA", (4, 2), (255, 0, 0, 64))
    rgba.save(tmp_path / "a.png")
    image, mask = load_image(tmp_path / "a.png")
    assert image.shape == (1, 2, 4, 3) and torch.allclose(mask, torch.full((1, 2, 4), 1 - 64 / 255))
    rotated = Image.new("RGB", (4, 2), (0, 255, 0))
    exif = rotated.getexif()
    exif[0x0112] = 6  # rotate 90 degrees
    rotated.save(tmp_path / "r.jpg", exif=exif)
    image, _ = load_image(tmp_path / "r.jpg")
    assert image.shape == (1, 4, 2, 3)
    frames = [Image.new("RGB", (3, 3), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    image, _ = load_image(tmp_path / "anim.gif")
    assert image.shape[0] == 2


def test_bad_image_file_names_it(tmp_path):
    from nodeflow.errors import ModelFileError
    from nodeflow.image.files import load_image

    (tmp_path / "x.png").write_text("nope")
    with pytest.raises(ModelFileError, match="x.png"):
        load_image(tmp_path / "x.png")
