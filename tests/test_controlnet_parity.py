"""Our ControlNet equals diffusers' ControlNetModel on the same random weights (converted from the
original layout by diffusers' own single-file utilities), and its residuals drive our U-Net as
diffusers' U-Net takes them."""

import pytest
import torch

from nodeflow.models.controlnet import (ControlNetConfig, ControlNetModel, controlnet_config_from_state_dict,
                                        controlnet_from_state_dict)
from tests.test_unet_parity import diffusers_unet, random_unet, relative_error, tiny_config

diffusers = pytest.importorskip("diffusers")
from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint  # noqa: E402


def random_controlnet(config: ControlNetConfig, seed: int = 3) -> ControlNetModel:
    torch.manual_seed(seed)
    model = ControlNetModel(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.1)
    return model.eval()


def reference_controlnet(config: ControlNetConfig, state_dict: dict):
    c = config.unet
    model = diffusers.ControlNetModel(
        in_channels=c.in_channels, down_block_types=[
            "CrossAttnDownBlock2D" if d else "DownBlock2D" for d in c.transformer_depth],
        block_out_channels=[c.model_channels * m for m in c.channel_mult], layers_per_block=c.num_res_blocks,
        cross_attention_dim=c.context_dim, attention_head_dim=c.num_heads,
        use_linear_projection=c.use_linear_in_transformer,
        conditioning_embedding_out_channels=(16, 32, 96, 256), norm_num_groups=32)
    converted = convert_controlnet_checkpoint({"control_model." + k: v for k, v in state_dict.items()}, model.config)
    model.load_state_dict(converted, strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def setup():
    config = ControlNetConfig(tiny_config())
    ours = random_controlnet(config)
    return config, ours, reference_controlnet(config, ours.state_dict())


def test_residuals_match_diffusers(setup):
    config, ours, reference = setup
    x = torch.randn(2, 4, 16, 16)
    hint = torch.rand(2, 3, 128, 128)
    t = torch.tensor([900.0, 20.0])
    context = torch.randn(2, 77, config.unet.context_dim)
    with torch.no_grad():
        got = ours(x, hint, t, context)
        down, middle = reference(x, t, encoder_hidden_states=context, controlnet_cond=hint, return_dict=False)
    assert len(got.skips) == len(down)
    for a, b in zip(got.skips, down):
        assert relative_error(a, b) < 1e-4
    assert relative_error(got.middle, middle) < 1e-4


def test_unet_with_controlnet_residuals_matches_diffusers(setup):
    config, ours, reference = setup
    unet = random_unet(config.unet)
    reference_unet = diffusers_unet(config.unet, unet.state_dict())
    x, hint = torch.randn(1, 4, 16, 16), torch.rand(1, 3, 128, 128)
    t, context = torch.tensor([400.0]), torch.randn(1, 77, config.unet.context_dim)
    with torch.no_grad():
        residuals = ours(x, hint, t, context)
        got = unet(x, t, context, control=residuals)
        down, middle = reference(x, t, encoder_hidden_states=context, controlnet_cond=hint, return_dict=False)
        expected = reference_unet(x, t, encoder_hidden_states=context, down_block_additional_residuals=down,
                                  mid_block_additional_residual=middle).sample
    assert relative_error(got, expected) < 1e-4


def test_config_from_shapes_and_prefix_free_loading(setup):
    config, ours, _ = setup
    sd = ours.state_dict()
    assert controlnet_config_from_state_dict(sd, num_heads=8) == config
    loaded = controlnet_from_state_dict(sd, num_heads=8)
    assert torch.equal(loaded.zero_convs[0][0].weight, sd["zero_convs.0.0.weight"])
