"""ControlNetInpaintingAliMamaApply, as ComfyUI computes it for the ControlNets nodeflow loads.

ComfyUI masks the image and adds the mask as a hint channel only for ControlNets that declare
``concat_mask``: AliMama's SD3 and Flux inpainting ControlNets (17 latent channels), families
nodeflow does not run; their files are refused by the loader, naming the family. Every other
ControlNet (SD1.x/SD2.x/SDXL, AliMama's EcomXL SDXL inpainting ControlNet among them: a plain
3-channel one) is applied as ControlNetApplyAdvanced applies it, with the unmasked image. The
reference here is the ControlNet called directly on the control image, times the strength.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from nodeflow.errors import ModelFileError, NodeInputError
from nodeflow.loading.controlnet import load_controlnet
from nodeflow.models.controlnet import ControlNetConfig
from nodeflow.sampling.controlnet import ControlNetHook
from nodeflow_nodes.controlnet import controlnet_inpainting_alimama_apply
from tests.test_controlnet_parity import random_controlnet
from tests.test_unet_parity import tiny_config


@pytest.fixture(scope="module")
def controlnet():
    return random_controlnet(ControlNetConfig(tiny_config()), seed=4)


def conditioning(value: float) -> list:
    return [(torch.full((1, 77, 48), value), {"pooled": value})]


def apply(controlnet, image, mask, strength=0.7, start=0.1, end=0.8):
    return controlnet_inpainting_alimama_apply(conditioning(0.5), conditioning(-0.5), controlnet, None, image, mask,
                                               strength, start, end)


def test_both_prompts_get_the_controlnet_with_its_range(controlnet):
    image, mask = torch.rand(1, 64, 64, 3), torch.zeros(1, 64, 64)
    positive, negative = apply(controlnet, image, mask)
    hook = positive[0][1]["control"]
    assert isinstance(hook, ControlNetHook) and negative[0][1]["control"] is hook
    assert (hook.strength, hook.start_percent, hook.end_percent) == (0.7, 0.1, 0.8)
    assert positive[0][1]["control_apply_to_uncond"] is False and negative[0][1]["pooled"] == -0.5


def test_residuals_are_the_controlnets_on_the_unmasked_image_whatever_the_mask(controlnet):
    image = torch.rand(1, 64, 64, 3)
    x, t, context = torch.randn(1, 4, 8, 8), torch.tensor([500.0]), torch.randn(1, 77, 48)
    with torch.no_grad():
        expected = controlnet(x, image.movedim(-1, 1), t, context)
    masks = [torch.zeros(1, 64, 64), torch.ones(64, 64), (torch.rand(1, 32, 32) > 0.5).float()]
    for mask in masks:
        positive, _ = apply(controlnet, image, mask)
        got = positive[0][1]["control"].residuals(x, t, context, torch.tensor([3.0]), model=None)
        torch.testing.assert_close(got.middle, expected.middle * 0.7)
        for a, b in zip(got.skips, expected.skips, strict=True):
            torch.testing.assert_close(a, b * 0.7)


def test_strength_zero_leaves_the_conditioning_as_it_is(controlnet):
    positive, negative = apply(controlnet, torch.rand(1, 64, 64, 3), torch.zeros(1, 64, 64), strength=0.0)
    assert "control" not in positive[0][1] and "control" not in negative[0][1]


def test_a_mask_that_is_not_one_is_refused_naming_the_input(controlnet):
    with pytest.raises(NodeInputError, match="input 'mask': expected a mask"):
        apply(controlnet, torch.rand(1, 64, 64, 3), torch.zeros(1, 1, 64, 64, 3))


@pytest.mark.parametrize("keys, family", [
    (("controlnet_blocks.0.weight", "pos_embed_input.proj.weight", "transformer_blocks.0.attn.to_q.weight"), "SD3"),
    (("controlnet_blocks.0.weight", "controlnet_x_embedder.weight", "x_embedder.weight"), "Flux"),
])
def test_alimamas_sd3_and_flux_inpainting_controlnets_are_refused_naming_the_family(tmp_path, keys, family):
    save_file({k: torch.zeros(2, 2) for k in keys}, str(tmp_path / "inpaint.safetensors"))
    with pytest.raises(ModelFileError, match=rf"inpaint\.safetensors: a ControlNet for {family} models, "
                                             "a family nodeflow does not run"):
        load_controlnet(tmp_path / "inpaint.safetensors")
