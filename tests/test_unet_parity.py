"""Our U-Net equals diffusers' UNet2DConditionModel on the same random weights.

Our model is built with random weights in the original checkpoint layout, converted to diffusers'
layout by diffusers' own single-file conversion (convert_ldm_unet_checkpoint: if our key names
differed from the real layout it would fail), and both run on the same inputs (fp32).
"""

import pytest
import torch

from nodeflow.models.layers import timestep_embedding
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


def diffusers_unet(config: UNetConfig, state_dict: dict, assign: bool = False) -> torch.nn.Module:
    """diffusers' model for ``config`` holding ``state_dict`` (original layout). With ``assign``
    it is built on the meta device and takes the tensors themselves (no random init, no copy)."""
    levels = len(config.channel_mult)
    widths = [config.model_channels * m for m in config.channel_mult]
    # diffusers' "attention_head_dim" is the number of heads (a legacy misnomer)
    heads = ([w // config.head_channels for w in widths] if config.head_channels else config.num_heads)
    down = ["CrossAttnDownBlock2D" if d else "DownBlock2D" for d in config.transformer_depth]
    up = ["CrossAttnUpBlock2D" if d else "UpBlock2D" for d in reversed(config.transformer_depth)]
    reference_config = dict(
        sample_size=8, in_channels=config.in_channels, out_channels=config.out_channels,
        down_block_types=down, up_block_types=up,
        block_out_channels=widths,
        layers_per_block=config.num_res_blocks, cross_attention_dim=config.context_dim,
        attention_head_dim=heads, use_linear_projection=config.use_linear_in_transformer,
        transformer_layers_per_block=[max(d, 1) for d in config.transformer_depth],
    )
    with torch.device("meta" if assign else "cpu"):
        model = diffusers.UNet2DConditionModel(**reference_config)
    converted = convert_ldm_unet_checkpoint({PREFIX + k: v for k, v in state_dict.items()}, model.config)
    model.load_state_dict(converted, strict=True, assign=assign)
    assert levels == len(down)
    return model.eval()


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("changes", [
    {},
    {"use_linear_in_transformer": True},
    {"in_channels": 9},  # the inpainting model's input
    {"num_res_blocks": 1, "transformer_depth": (0, 2, 1), "num_heads": 4},
    # SD2-style: fixed channels per head (4 and 8 heads here), linear projections
    {"num_heads": None, "head_channels": 8, "use_linear_in_transformer": True},
])
def test_matches_diffusers(changes):
    config = tiny_config(**changes)
    ours = random_unet(config)
    reference = diffusers_unet(config, ours.state_dict())
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, config.in_channels, 16, 16, generator=generator)
    t = torch.tensor([999.0, 17.5])  # fractional timesteps are legal
    context = torch.randn(2, 77, config.context_dim, generator=generator)
    with torch.no_grad():
        expected = reference(x, t, encoder_hidden_states=context).sample
        got = ours(x, t, context)
    assert got.shape == (2, 4, 16, 16)
    assert relative_error(got, expected) < 1e-4


def test_sizes_not_divisible_by_the_downsampling_match_diffusers():
    """18x14 goes 18->9->5 and 14->7->4: the up-sampling must land on each skip's size."""
    config = tiny_config(num_res_blocks=1)
    ours = random_unet(config)
    reference = diffusers_unet(config, ours.state_dict())
    x = torch.randn(1, 4, 18, 14)
    t = torch.tensor([321.0])
    context = torch.randn(1, 10, config.context_dim)
    with torch.no_grad():
        expected = reference(x, t, encoder_hidden_states=context).sample
        got = ours(x, t, context)
    assert got.shape == (1, 4, 18, 14)
    assert relative_error(got, expected) < 1e-4


def test_timestep_embedding_matches_diffusers():
    from diffusers.models.embeddings import get_timestep_embedding

    t = torch.tensor([0.0, 1.0, 17.5, 999.0])
    expected = get_timestep_embedding(t, 320, flip_sin_to_cos=True, downscale_freq_shift=0)
    assert torch.allclose(timestep_embedding(t, 320), expected, atol=1e-6)
    assert torch.equal(timestep_embedding(t[:1], 8), torch.tensor([[1.0] * 4 + [0.0] * 4]))  # [cos | sin] at 0


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
                   tiny_config(num_res_blocks=1, transformer_depth=(0, 2, 1), num_heads=4),
                   tiny_config(middle_transformer_depth=0, out_channels=8)):
        sd = UNetModel(config).state_dict()
        assert unet_config_from_state_dict(sd, num_heads=config.num_heads) == config
    sd2_style = tiny_config(num_heads=None, head_channels=8, use_linear_in_transformer=True)
    sd = UNetModel(sd2_style).state_dict()
    assert unet_config_from_state_dict(sd, head_channels=8) == sd2_style


def test_full_sd15_layout_converts_with_diffusers():
    """The real SD1.5 key set and shapes (checked on the meta device, no memory): diffusers'
    converter maps every one of our keys onto UNet2DConditionModel's, strictly."""
    sd15 = UNetConfig()  # the defaults are SD1.5's: 320 channels, (1, 2, 4, 4), 8 heads, context 768
    with torch.device("meta"):
        sd = UNetModel(sd15).state_dict()
    assert len(sd) == 686
    assert sum(v.numel() for v in sd.values()) == 859_520_964  # SD1.5's U-Net parameter count
    assert unet_config_from_state_dict(sd) == sd15
    inpainting = UNetConfig(in_channels=9)
    with torch.device("meta"):
        assert unet_config_from_state_dict(UNetModel(inpainting).state_dict()) == inpainting
    diffusers_unet(sd15, sd, assign=True)  # strict: raises on any missing/unexpected key or shape


@pytest.mark.slow
def test_full_sd15_config_matches_diffusers():
    torch.manual_seed(0)
    ours = UNetModel(UNetConfig()).eval()  # torch's default init: no zero layers
    reference = diffusers_unet(UNetConfig(), ours.state_dict(), assign=True)  # shares the tensors
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(1, 4, 16, 16, generator=generator)
    t = torch.tensor([500.0])
    context = torch.randn(1, 77, 768, generator=generator)
    with torch.no_grad():
        expected = reference(x, t, encoder_hidden_states=context).sample
        got = ours(x, t, context)
    assert relative_error(got, expected) < 1e-4


def test_meta_build_and_assign_load_shares_tensors():
    config = tiny_config()
    sd = random_unet(config).state_dict()
    model = unet_from_state_dict(sd, num_heads=8)
    weight = model.input_blocks[0][0].weight
    assert weight.data_ptr() == sd["input_blocks.0.0.weight"].data_ptr()
    assert not any(p.is_meta for p in model.parameters())


def test_tiny_checkpoint_factory_round_trips(tmp_path):
    """tests/factories.py (used by the loading and end-to-end tests): its U-Net part is the
    documented tiny config and loads strictly into ours."""
    from safetensors.torch import load_file

    from tests.factories import TINY_UNET, write_tiny_checkpoint

    for inpainting in (False, True):
        path = write_tiny_checkpoint(tmp_path / f"tiny{inpainting}.safetensors", inpainting=inpainting)
        sd = {k[len(PREFIX):]: v for k, v in load_file(path).items() if k.startswith(PREFIX)}
        expected = UNetConfig(**{**TINY_UNET.__dict__, "in_channels": 9 if inpainting else 4})
        assert unet_config_from_state_dict(sd) == expected
        model = unet_from_state_dict(sd, dtype=torch.float32)
        with torch.no_grad():
            out = model(torch.randn(1, expected.in_channels, 8, 8), torch.tensor([10.0]), torch.randn(1, 77, 32))
        assert out.shape == (1, 4, 8, 8) and torch.isfinite(out).all()
