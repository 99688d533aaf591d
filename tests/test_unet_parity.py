"""Our U-Net equals diffusers' UNet2DConditionModel on the same random weights.

Our model is built with random weights in the original checkpoint layout, converted to diffusers'
layout by diffusers' own single-file conversion, and both run on the same inputs (fp32).
"""

import pytest
import torch

from nodeflow.models.unet import ControlResiduals, UNetConfig, UNetModel, unet_config_from_state_dict, unet_from_state_dict

diffusers = pytest.importorskip("diffusers")
from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint  # noqa: E402

PREFIX = "model.diffusion_model."


def tiny_config(**changes) -> UNetConfig:
    base = dict(in_channels=4, out_channels=4, model_channels=32, channel_mult=(1, 2, 2),
                num_res_blocks=2, transformer_depth=(1, 1, 0), middle_transformer_depth=1,
                context_dim=48, num_heads=8)
    return UNetConfig(**(base | changes))


def random_unet(config: UNetConfig, seed: int = 0) -> UNetModel:
    torch.manual_seed(seed)
    model = UNetModel(config)
    with torch.no_grad():
        for parameter in model.parameters():  # non-zero everywhere (zero-init layers included)
            parameter.copy_(torch.randn_like(parameter) * 0.1)
    return model.eval()


def diffusers_unet(config: UNetConfig, state_dict: dict) -> torch.nn.Module:
    levels = len(config.channel_mult)
    down = ["CrossAttnDownBlock2D" if d else "DownBlock2D" for d in config.transformer_depth]
    up = ["CrossAttnUpBlock2D" if d else "UpBlock2D" for d in reversed(config.transformer_depth)]
    reference_config = dict(
        sample_size=8, in_channels=config.in_channels, out_channels=config.out_channels,
        down_block_types=down, up_block_types=up,
        block_out_channels=[config.model_channels * m for m in config.channel_mult],
        layers_per_block=config.num_res_blocks, cross_attention_dim=config.context_dim,
        attention_head_dim=config.num_heads, use_linear_projection=config.use_linear_in_transformer,
        transformer_layers_per_block=[max(d, 1) for d in config.transformer_depth],
    )
    model = diffusers.UNet2DConditionModel(**reference_config)
    converted = convert_ldm_unet_checkpoint({PREFIX + k: v for k, v in state_dict.items()}, model.config)
    model.load_state_dict(converted, strict=True)
    assert levels == len(down)
    return model.eval()


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("changes", [
    {},
    {"use_linear_in_transformer": True},
    {"in_channels": 9},  # the inpainting model's input
    {"num_res_blocks": 1, "transformer_depth": (0, 2, 1), "num_heads": 4},
])
def test_matches_diffusers(changes):
    config = tiny_config(**changes)
    ours = random_unet(config)
    reference = diffusers_unet(config, ours.state_dict())
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, config.in_channels, 16, 16, generator=generator)
    t = torch.tensor([999.0, 17.0])
    context = torch.randn(2, 77, config.context_dim, generator=generator)
    with torch.no_grad():
        expected = reference(x, t, encoder_hidden_states=context).sample
        got = ours(x, t, context)
    assert got.shape == (2, 4, 16, 16)
    assert relative_error(got, expected) < 1e-4


def test_control_residuals_match_diffusers_additional_residuals():
    config = tiny_config()
    ours = random_unet(config)
    reference = diffusers_unet(config, ours.state_dict())
    x = torch.randn(1, 4, 16, 16)
    t = torch.tensor([500.0])
    context = torch.randn(1, 77, config.context_dim)
    shapes = []  # every input block's output shape, taken with forward hooks
    handles = [block.register_forward_hook(lambda m, i, o: shapes.append(o.shape))
               for block in ours.input_blocks]
    with torch.no_grad():
        plain = ours(x, t, context)
        for handle in handles:
            handle.remove()
        skips = [torch.randn(s) * 0.5 for s in shapes]
        middle = torch.randn(shapes[-1]) * 0.5
        got = ours(x, t, context, control=ControlResiduals(skips, middle))
        expected = reference(x, t, encoder_hidden_states=context,
                             down_block_additional_residuals=tuple(skips),
                             mid_block_additional_residual=middle).sample
    assert relative_error(got, expected) < 1e-4
    assert relative_error(got, plain) > 1e-3  # the residuals did change the result


def test_config_is_inferred_from_shapes():
    for config in (tiny_config(), tiny_config(use_linear_in_transformer=True, in_channels=9),
                   tiny_config(num_res_blocks=1, transformer_depth=(0, 2, 1))):
        sd = UNetModel(config).state_dict()
        assert unet_config_from_state_dict(sd, num_heads=config.num_heads) == config


def test_meta_build_and_assign_load_shares_tensors():
    config = tiny_config()
    sd = random_unet(config).state_dict()
    model = unet_from_state_dict(sd, num_heads=8)
    weight = model.input_blocks[0][0].weight
    assert weight.data_ptr() == sd["input_blocks.0.0.weight"].data_ptr()
    assert not any(p.is_meta for p in model.parameters())
