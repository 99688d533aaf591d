"""Applying ControlNets: strength, step range, stacking, loading variants, preprocessors."""

import pytest
import torch
from safetensors.torch import save_file

from nodeflow.errors import ModelFileError
from nodeflow.models.controlnet import ControlNetConfig
from nodeflow.loading.controlnet import load_controlnet
from nodeflow.models.unet import UNetModel
from nodeflow.sampling.control_hooks import chain_residuals
from nodeflow.sampling.controlnet import ControlNetHook, broadcast_hint
from nodeflow.sampling.guidance import CFGDenoiser
from nodeflow.sampling.model import DiffusionModel, LatentFormat
from nodeflow.sampling.model_sampling import ModelSampling
from nodeflow_nodes.controlnet import canny_node, controlnet_apply, controlnet_apply_advanced, scribble
from tests.test_controlnet_parity import random_controlnet
from tests.test_unet_parity import random_unet, tiny_config


@pytest.fixture(scope="module")
def parts():
    config = tiny_config()
    unet = random_unet(config)
    model = DiffusionModel(unet, ModelSampling.sd1(), LatentFormat(), torch.device("cpu"), torch.float32)
    return model, random_controlnet(ControlNetConfig(config), seed=1), random_controlnet(ControlNetConfig(config), seed=2)


def conditioning(value=0.5):
    return [(torch.full((1, 77, 48), value), {})]


def denoise(model, positive, x, sigma=5.0):
    return CFGDenoiser(model, positive, conditioning(-0.5), cfg=3.0)(x, torch.full((x.shape[0],), sigma))


def test_strength_zero_equals_no_controlnet(parts):
    model, controlnet, _ = parts
    image = torch.rand(1, 64, 64, 3)
    x = torch.randn(1, 4, 8, 8)
    (applied,) = controlnet_apply(conditioning(), controlnet, image, 0.0)
    assert torch.equal(denoise(model, applied, x), denoise(model, conditioning(), x))
    (applied,) = controlnet_apply(conditioning(), controlnet, image, 1.0)
    assert not torch.allclose(denoise(model, applied, x), denoise(model, conditioning(), x))


def test_outside_the_step_range_there_are_no_residuals(parts):
    model, controlnet, _ = parts
    image = torch.rand(1, 64, 64, 3)
    positive, negative = controlnet_apply_advanced(conditioning(), conditioning(-0.5), controlnet, image,
                                                   1.0, 0.5, 1.0)
    hook = positive[0][1]["control"]
    assert negative[0][1]["control"] is hook  # one hook shared by both prompts
    x = torch.randn(1, 4, 8, 8)
    t = torch.tensor([999.0])
    early = chain_residuals(hook, x, t, torch.zeros(1, 77, 48), torch.tensor([14.0]), model)
    late = chain_residuals(hook, x, t, torch.zeros(1, 77, 48), torch.tensor([0.5]), model)
    assert early is None and late is not None


def test_stacked_controlnets_add_their_residuals(parts):
    model, first, second = parts
    image_a, image_b = torch.rand(1, 64, 64, 3), torch.rand(1, 64, 64, 3)
    (one,) = controlnet_apply(conditioning(), first, image_a, 0.7)
    (both,) = controlnet_apply(one, second, image_b, 1.3)
    x, t, context = torch.randn(1, 4, 8, 8), torch.tensor([300.0]), torch.randn(1, 77, 48)
    sigma = torch.tensor([2.0])
    total = chain_residuals(both[0][1]["control"], x, t, context, sigma, model)
    hint = lambda img: torch.nn.functional.interpolate(img.movedim(-1, 1), size=(64, 64), mode="nearest-exact")
    with torch.no_grad():
        a = first(x, hint(image_a), t, context).scaled(0.7)
        b = second(x, hint(image_b), t, context).scaled(1.3)
    assert torch.allclose(total.middle, a.middle + b.middle, atol=1e-5)
    assert all(torch.allclose(s, p + q, atol=1e-5) for s, p, q in zip(total.skips, a.skips, b.skips))
    assert one[0][1]["control"].previous is None and both[0][1]["control"].previous is one[0][1]["control"]


def test_hint_is_resized_once_and_cached(parts):
    model, controlnet, _ = parts
    (applied,) = controlnet_apply(conditioning(), controlnet, torch.rand(1, 100, 50, 3), 1.0)
    hook = applied[0][1]["control"]
    for _ in range(3):
        denoise(model, applied, torch.randn(2, 4, 8, 8))
    # ControlNetApply guides the negative too: one forward of both halves, a batch of 2 x 2
    assert len(hook._hints) == 1 and next(iter(hook._hints.values())).shape == (4, 3, 64, 64)


def rows(hint: torch.Tensor) -> list[int]:
    """Which image each row of a broadcast hint is (the images are filled with their index)."""
    return [round(float(v)) for v in hint[:, 0, 0, 0]]


def test_the_control_image_is_batched_per_half_as_comfyui():
    images = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 3, 2, 2)
    assert rows(broadcast_hint(images[:2], 6, halves=2)) == [0, 1, 0, 0, 1, 0]  # latent batch 3
    assert rows(broadcast_hint(images[:2], 6, halves=3)) == [0, 1, 0, 1, 0, 1]  # latent batch 2
    assert rows(broadcast_hint(images[:2], 3)) == [0, 1, 0]  # one half
    assert rows(broadcast_hint(images, 4, halves=2)) == [0, 1, 0, 1]  # extra images cut per half
    assert rows(broadcast_hint(images[:1], 4, halves=2)) == [0, 0, 0, 0]
    with pytest.raises(ValueError, match="batch of 5 cannot be split into 2"):
        broadcast_hint(images, 5, halves=2)


def test_the_hook_guides_each_half_with_its_own_image_rows(parts):
    model, controlnet, _ = parts
    image = torch.rand(2, 64, 64, 3)
    hook = ControlNetHook(controlnet, image, strength=0.5)
    x, t, context = torch.randn(6, 4, 8, 8), torch.full((6,), 300.0), torch.randn(6, 77, 48)
    got = hook.residuals(x, t, context, torch.full((6,), 2.0), model, halves=2)
    per_half = image.movedim(-1, 1)[[0, 1, 0, 0, 1, 0]]  # 64x64 already: no resizing
    with torch.no_grad():
        expected = controlnet(x, per_half, t, context).scaled(0.5)
    torch.testing.assert_close(got.middle, expected.middle)
    for a, b in zip(got.skips, expected.skips, strict=True):
        torch.testing.assert_close(a, b)


def test_sampling_batches_the_control_image_per_half(parts):
    model, controlnet, _ = parts
    images = torch.arange(2.0).view(2, 1, 1, 1).expand(2, 64, 64, 3)
    (applied,) = controlnet_apply(conditioning(), controlnet, images, 1.0)  # guides cond and uncond
    denoise(model, applied, torch.randn(3, 4, 8, 8))
    (hint,) = applied[0][1]["control"]._hints.values()
    assert rows(hint) == [0, 1, 0, 0, 1, 0]


def halves(model, positive, negative, x, sigma=5.0):
    """(conditional, unconditional) predictions of the guidance for x."""
    denoiser = CFGDenoiser(model, positive, negative, cfg=3.0)
    return denoiser.predict(x, torch.full((x.shape[0],), sigma), denoiser.entries(*x.shape[-2:]))


def test_controlnet_apply_guides_the_unconditional_half_too(parts):
    """ComfyUI's old ControlNetApply sets control_apply_to_uncond: the negative prompt gets the
    same residuals, though the node never saw it."""
    model, controlnet, _ = parts
    x, image = torch.randn(1, 4, 8, 8), torch.rand(1, 64, 64, 3)
    (applied,) = controlnet_apply(conditioning(), controlnet, image, 1.0)
    assert applied[0][1]["control_apply_to_uncond"] is True
    cond, uncond = halves(model, applied, conditioning(-0.5), x)
    _, plain_uncond = halves(model, conditioning(), conditioning(-0.5), x)
    expected = model.predict_denoised(x, torch.tensor([5.0]), torch.full((1, 77, 48), -0.5),
                                      control=applied[0][1]["control"])
    assert not torch.allclose(uncond, plain_uncond, atol=1e-4)
    torch.testing.assert_close(uncond, expected, atol=1e-5, rtol=1e-5)


def test_controlnet_apply_advanced_guides_only_what_it_is_given(parts):
    model, controlnet, _ = parts
    x, image = torch.randn(1, 4, 8, 8), torch.rand(1, 64, 64, 3)
    positive, _ = controlnet_apply_advanced(conditioning(), conditioning(-0.5), controlnet, image, 1.0, 0.0, 1.0)
    assert positive[0][1]["control_apply_to_uncond"] is False
    _, uncond = halves(model, positive, conditioning(-0.5), x)  # the original negative: no ControlNet
    _, plain_uncond = halves(model, conditioning(), conditioning(-0.5), x)
    torch.testing.assert_close(uncond, plain_uncond)


def test_loading_prefixes_difference_and_refusals(parts, tmp_path):
    model, controlnet, _ = parts
    sd = controlnet.state_dict()
    save_file({"control_model." + k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "cn.safetensors"))
    loaded = load_controlnet(tmp_path / "cn.safetensors")
    assert torch.equal(loaded.middle_block_out[0].weight, sd["middle_block_out.0.weight"])
    base = model.unet.state_dict()
    diff = {k: (v - base[k]) if k in base and base[k].shape == v.shape else v for k, v in sd.items()}
    diff["difference"] = torch.tensor([])
    save_file({k: v.contiguous() for k, v in diff.items()}, str(tmp_path / "diff.safetensors"))
    with pytest.raises(ModelFileError, match="DiffControlNetLoader"):
        load_controlnet(tmp_path / "diff.safetensors")
    rebuilt = load_controlnet(tmp_path / "diff.safetensors", base_unet=model.unet)
    assert torch.allclose(rebuilt.input_blocks[1][0].in_layers[2].weight, sd["input_blocks.1.0.in_layers.2.weight"], atol=1e-6)
    save_file({"body.0.block1.weight": torch.zeros(1), "conv_in.weight": torch.zeros(1)}, str(tmp_path / "t2i.safetensors"))
    with pytest.raises(ModelFileError, match="T2I-Adapter"):
        load_controlnet(tmp_path / "t2i.safetensors")


def test_canny_finds_the_square_outline():
    image = torch.zeros(1, 32, 32, 3)
    image[:, 8:24, 8:24] = 1.0
    (edges,) = canny_node(image, 0.2, 0.5)
    e = edges[0, :, :, 0]
    assert e[16, 7:10].any() and e[16, 22:25].any()  # left and right sides
    assert not e[16, 12:20].any() and not e[2, :].any()  # not inside, not far away


def inner_outline(shape: torch.Tensor) -> torch.Tensor:
    """The hand-made edge map of a filled shape (H, W): its pixels with a 4-neighbour outside."""
    inside = shape.bool()
    padded = torch.nn.functional.pad(inside, (1, 1, 1, 1))
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return inside & ~interior


def within_one_pixel(found: torch.Tensor, of: torch.Tensor) -> float:
    """The fraction of ``found``'s pixels that lie within one pixel (8-neighbourhood) of ``of``."""
    near = torch.nn.functional.max_pool2d(of[None, None].float(), 3, stride=1, padding=1)[0, 0].bool()
    return float((found & near).sum() / found.sum())


def test_canny_edge_maps_match_hand_made_outlines():
    """Whole edge maps against the shapes' outlines, with one pixel of tolerance each way: a
    boundary lies between the last pixel inside and the first outside, and Canny may mark either
    (it does, on the circle's diagonals). Precision: found edges lie on the outline; recall: the
    outline is found everywhere, not only in spots."""
    size = 48
    square = torch.zeros(size, size)
    square[12:36, 10:34] = 1.0
    yy, xx = torch.meshgrid(torch.arange(size * 1.0), torch.arange(size * 1.0), indexing="ij")
    circle = (((yy - 23.5) ** 2 + (xx - 22.0) ** 2) <= 14.0**2).float()
    images = torch.stack([square, circle])[..., None].expand(-1, -1, -1, 3)
    (edges,) = canny_node(images, 0.2, 0.5)
    for found, shape in zip(edges[..., 0].bool(), (square, circle)):
        expected = inner_outline(shape)
        assert within_one_pixel(found, expected) >= 0.95  # nothing inside, outside or far away
        assert within_one_pixel(expected, found) >= 0.95  # every side and arc found
        assert found.sum() <= 1.5 * expected.sum()  # a thin line, not a band


def test_scribble_turns_dark_strokes_white():
    drawing = torch.ones(1, 16, 16, 3)
    drawing[:, 8, :] = 0.0
    (out,) = scribble(drawing, 0.5, 1)
    assert out[0, 7:10, :, 0].eq(1).all() and out[0, 0, :, 0].eq(0).all()


def test_a_controlnet_for_another_architecture_is_a_clear_error(parts):
    from dataclasses import replace

    from nodeflow.errors import NodeflowError

    model, _, _ = parts
    other = random_controlnet(ControlNetConfig(replace(tiny_config(), context_dim=64)))
    (applied,) = controlnet_apply(conditioning(), other, torch.rand(1, 64, 64, 3), 1.0)
    with pytest.raises(NodeflowError, match="the ControlNet does not fit this model: .*text context 64.*text context 48"):
        denoise(model, applied, torch.randn(1, 4, 8, 8))
