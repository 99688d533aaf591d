"""SD2.x, SDXL and SDXL-refiner U-Nets (and SDXL ControlNets) equal diffusers' on random weights.

As tests/test_unet_parity.py does for SD1, but the diffusers side is built the way diffusers
builds it from a single-file checkpoint: the original (sgm / ldm yaml) network config of each
family goes through diffusers' ``create_unet_diffusers_config_from_ldm``, our state dict (original
layout) through ``convert_ldm_unet_checkpoint``, and diffusers' UNet2DConditionModel loads the
result with ``strict=True``. If our key names or shapes differed from the real layout, diffusers'
converter would leave keys out and the strict load would fail.

Scaled-down configs keep every structural feature of their family: linear proj_in / proj_out and
64 channels per head (SD2, SDXL), no attention at the top level and a transformer depth per level
(SDXL: (0, 2, 10) -> (0, 1, 2)), the ``label_emb`` of the ADM vector (pooled text + 6 sizes for
SDXL, + 5 numbers with the aesthetic score for the refiner: diffusers' "text_time" embedding), and
the real context widths (1024, 2048, 1280). The full-size U-Nets are compared on the meta device:
same key set, same shapes, as diffusers' published configs build them.
"""

from __future__ import annotations

import pytest
import torch

from nodeflow.models.controlnet import ControlNetConfig, ControlNetModel, controlnet_config_from_state_dict
from nodeflow.models.unet import UNetConfig, UNetModel, unet_config_from_state_dict
from nodeflow.sampling.adm import encode_adm
from tests.test_unet_parity import random_unet, relative_error

diffusers = pytest.importorskip("diffusers")
from diffusers.loaders import single_file_utils as sfu  # noqa: E402

PREFIX = "model.diffusion_model."


def family(**changes) -> UNetConfig:
    base = dict(model_channels=64, num_res_blocks=2, num_heads=None, head_channels=64,
                use_linear_in_transformer=True)
    return UNetConfig(**(base | changes))


# SD2.x: (1, 2, 4, 4) -> (1, 2, 2, 2), attention on the three upper levels, context 1024
SD2 = family(channel_mult=(1, 2, 2, 2), transformer_depth=(1, 1, 1, 0), middle_transformer_depth=1,
             context_dim=1024)
# SDXL: 3 levels, depths (0, 2, 10) -> (0, 1, 2), middle as deep as the last level, pooled 1280 + 6 x 256
SDXL = family(channel_mult=(1, 2, 4), transformer_depth=(0, 1, 2), middle_transformer_depth=2,
              context_dim=2048, adm_in_channels=2816)
# SDXL refiner: 4 levels, depth 4 -> 2 on the two middle levels, context 1280 (bigG only), 1280 + 5 x 256
REFINER = family(channel_mult=(1, 2, 4, 4), transformer_depth=(0, 2, 2, 0), middle_transformer_depth=2,
                 context_dim=1280, adm_in_channels=2560)
# pruned SDXL derivatives (SSD-1B, Vega) give each output block its own depth
PRUNED = family(channel_mult=(1, 2, 4), transformer_depth=(0, 1, 2), middle_transformer_depth=2,
                context_dim=2048, adm_in_channels=2816, transformer_depth_output=(1, 2, 3, 2, 1, 1, 0, 0, 0))


def ldm_config(config: UNetConfig) -> dict:
    """The original network config (what sd_xl_base.yaml, sd_xl_refiner.yaml or
    v2-inference.yaml hold) of ``config``."""
    depths = {d for d in config.transformer_depth if d}
    assert config.middle_transformer_depth == (depths.copy().pop() if len(depths) == 1
                                               else config.transformer_depth[-1])
    params = {
        "in_channels": config.in_channels, "out_channels": config.out_channels,
        "model_channels": config.model_channels, "channel_mult": list(config.channel_mult),
        "num_res_blocks": config.num_res_blocks,
        "attention_resolutions": [2 ** level for level, d in enumerate(config.transformer_depth) if d],
        "num_head_channels": config.head_channels, "use_linear_in_transformer": config.use_linear_in_transformer,
        # a level without attention (not in attention_resolutions) lists depth 1, as sd_xl_base.yaml
        "transformer_depth": depths.pop() if len(depths) == 1 else [d or 1 for d in config.transformer_depth],
        "context_dim": config.context_dim, "use_spatial_transformer": True, "legacy": False,
    }
    if config.adm_in_channels:
        params |= {"num_classes": "sequential", "adm_in_channels": config.adm_in_channels}
    return {"model": {"params": {"network_config": {"params": params},
                                 "first_stage_config": {"params": {"ddconfig": {"ch_mult": [1, 2, 4, 4]}}}}}}


def diffusers_config(config: UNetConfig, checkpoint: dict) -> dict:
    """diffusers' UNet2DConditionModel config of ``config``, from its original config."""
    result = sfu.create_unet_diffusers_config_from_ldm(ldm_config(config), checkpoint)
    if config.transformer_depth_output is not None:  # no yaml field for it: diffusers' own option
        per_block = config.num_res_blocks + 1
        depths = config.transformer_depth_output
        result["reverse_transformer_layers_per_block"] = [
            list(depths[i:i + per_block]) for i in range(0, len(depths), per_block)]
    return result


def reference_unet(config: UNetConfig, state_dict: dict, meta: bool = False) -> torch.nn.Module:
    """diffusers' U-Net holding ``state_dict`` (original layout) through diffusers' conversion."""
    checkpoint = {PREFIX + k: v for k, v in state_dict.items()}
    unet_config = diffusers_config(config, checkpoint)
    with torch.device("meta" if meta else "cpu"):
        model = diffusers.UNet2DConditionModel(**unet_config)
    converted = sfu.convert_ldm_unet_checkpoint(checkpoint, unet_config)
    model.load_state_dict(converted, strict=True, assign=meta)
    return model.eval()


def sizes_and_pooled(config: UNetConfig, batch: int):
    """Per-image conditioning options and diffusers' ``time_ids`` for the same numbers."""
    generator = torch.Generator().manual_seed(5)
    pooled = torch.randn(batch, 1280, generator=generator)
    refiner = config.adm_in_channels == 2560
    options, time_ids = [], []
    for i in range(batch):
        h, w, crop_h, crop_w = 1024 - 128 * i, 768 + 64 * i, 16 * i, 8 + 24 * i
        entry = {"pooled_output": pooled[i:i + 1], "height": h, "width": w, "crop_h": crop_h, "crop_w": crop_w}
        if refiner:
            entry["aesthetic_score"] = 6.0 - 3.5 * i
            time_ids.append([h, w, crop_h, crop_w, entry["aesthetic_score"]])
        else:
            entry |= {"target_height": h + 64, "target_width": w - 32}
            time_ids.append([h, w, crop_h, crop_w, h + 64, w - 32])
        options.append(entry)
    return pooled, options, torch.tensor(time_ids, dtype=torch.float32)


@pytest.mark.parametrize("config", [SD2, SDXL, REFINER, PRUNED], ids=["sd2", "sdxl", "sdxl-refiner", "pruned-sdxl"])
def test_family_matches_diffusers(config):
    ours = random_unet(config)
    reference = reference_unet(config, ours.state_dict())
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 16, 16, generator=generator)
    t = torch.tensor([999.0, 17.0])
    context = torch.randn(2, 77, config.context_dim, generator=generator)
    kwargs, y = {}, None
    if config.adm_in_channels:
        pooled, options, time_ids = sizes_and_pooled(config, 2)
        kwargs = {"added_cond_kwargs": {"text_embeds": pooled, "time_ids": time_ids}}
        # our ADM vectors, built from the conditioning options as the sampler builds them
        y = torch.cat([encode_adm(o, 512, 512, channels=config.adm_in_channels) for o in options])
        assert y.shape == (2, config.adm_in_channels)
    with torch.no_grad():
        expected = reference(x, t, encoder_hidden_states=context, **kwargs).sample
        got = ours(x, t, context, y=y)
    assert got.shape == (2, 4, 16, 16)
    assert relative_error(got, expected) < 1e-4
    if y is not None:  # the size conditioning matters: other sizes, another result
        with torch.no_grad():
            other = ours(x, t, context, y=y.flip(0))
        assert relative_error(other, expected) > 1e-3


@pytest.mark.parametrize("config", [SD2, SDXL, REFINER, PRUNED], ids=["sd2", "sdxl", "sdxl-refiner", "pruned-sdxl"])
def test_family_config_is_read_from_shapes(config):
    with torch.device("meta"):
        sd = UNetModel(config).state_dict()
    assert unet_config_from_state_dict(sd, head_channels=64) == config


def test_adm_model_without_y_is_a_clear_error():
    ours = random_unet(SDXL)
    with pytest.raises(ValueError, match="ADM vector y"):
        ours(torch.randn(1, 4, 8, 8), torch.tensor([1.0]), torch.randn(1, 77, 2048))
    with pytest.raises(ValueError, match="2816"):
        ours(torch.randn(1, 4, 8, 8), torch.tensor([1.0]), torch.randn(1, 77, 2048), y=torch.randn(1, 2560))


# diffusers' published configs (unet/config.json of stabilityai/stable-diffusion-2-1,
# stable-diffusion-xl-base-1.0 and stable-diffusion-xl-refiner-1.0; fields left at their defaults omitted)
PUBLISHED = {
    "sd2": dict(
        sample_size=96, attention_head_dim=[5, 10, 20, 20], block_out_channels=[320, 640, 1280, 1280],
        cross_attention_dim=1024, layers_per_block=2, use_linear_projection=True, upcast_attention=True,
        down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]),
    "sdxl": dict(
        sample_size=128, attention_head_dim=[5, 10, 20], block_out_channels=[320, 640, 1280],
        cross_attention_dim=2048, layers_per_block=2, use_linear_projection=True,
        transformer_layers_per_block=[1, 2, 10], addition_embed_type="text_time", addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816,
        down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"]),
    "sdxl-refiner": dict(
        sample_size=128, attention_head_dim=[6, 12, 24, 24], block_out_channels=[384, 768, 1536, 1536],
        cross_attention_dim=1280, layers_per_block=2, use_linear_projection=True, transformer_layers_per_block=4,
        addition_embed_type="text_time", addition_time_embed_dim=256, projection_class_embeddings_input_dim=2560,
        down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"]),
}
FULL = {
    "sd2": UNetConfig(channel_mult=(1, 2, 4, 4), transformer_depth=(1, 1, 1, 0), context_dim=1024,
                      num_heads=None, head_channels=64, use_linear_in_transformer=True),
    "sdxl": UNetConfig(channel_mult=(1, 2, 4), transformer_depth=(0, 2, 10), middle_transformer_depth=10,
                       context_dim=2048, num_heads=None, head_channels=64, use_linear_in_transformer=True,
                       adm_in_channels=2816),
    "sdxl-refiner": UNetConfig(model_channels=384, channel_mult=(1, 2, 4, 4), transformer_depth=(0, 4, 4, 0),
                               middle_transformer_depth=4, context_dim=1280, num_heads=None, head_channels=64,
                               use_linear_in_transformer=True, adm_in_channels=2560),
}
# parameter counts of the released U-Nets
PARAMETERS = {"sd2": 865_910_724, "sdxl": 2_567_463_684}


@pytest.mark.parametrize("name", list(FULL))
def test_full_size_layout_matches_diffusers_published_config(name):
    """The real key sets and shapes, on the meta device (no memory, no weights): diffusers'
    conversion of our state dict is exactly the state dict of diffusers' published model."""
    config = FULL[name]
    with torch.device("meta"):
        sd = UNetModel(config).state_dict()
        reference = diffusers.UNet2DConditionModel(**PUBLISHED[name])
    assert unet_config_from_state_dict(sd, head_channels=64) == config
    if name in PARAMETERS:
        assert sum(v.numel() for v in sd.values()) == PARAMETERS[name]
    checkpoint = {PREFIX + k: v for k, v in sd.items()}
    converted = sfu.convert_ldm_unet_checkpoint(checkpoint, reference.config)
    assert len(converted) == len(sd)  # every key of ours was taken, once
    expected = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in converted.items()} == expected
    # and the original config of ours gives diffusers' published one
    derived = diffusers_config(config, checkpoint)
    for key, value in PUBLISHED[name].items():
        if key not in ("sample_size", "upcast_attention"):  # image size and fp16 upcast: not in the weights
            assert derived[key] == value or list(derived[key]) == value, key


# ---------------------------------------------------------------- SDXL ControlNet


def test_sdxl_controlnet_matches_diffusers():
    """An SDXL ControlNet (label_emb, no attention at the top level, linear projections) against
    diffusers' ControlNetModel with the "text_time" embedding, on the same ADM input."""
    config = ControlNetConfig(SDXL)
    torch.manual_seed(3)
    ours = ControlNetModel(config)
    with torch.no_grad():
        for parameter in ours.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.1)
    ours.eval()
    sd = ours.state_dict()
    assert controlnet_config_from_state_dict(sd, head_channels=64) == config
    c = config.unet
    reference = diffusers.ControlNetModel(
        in_channels=4, down_block_types=["CrossAttnDownBlock2D" if d else "DownBlock2D" for d in c.transformer_depth],
        block_out_channels=[c.model_channels * m for m in c.channel_mult], layers_per_block=c.num_res_blocks,
        cross_attention_dim=c.context_dim, attention_head_dim=[c.model_channels * m // 64 for m in c.channel_mult],
        transformer_layers_per_block=list(c.transformer_depth), use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=c.adm_in_channels,
        conditioning_embedding_out_channels=(16, 32, 96, 256))
    converted = sfu.convert_controlnet_checkpoint({"control_model." + k: v for k, v in sd.items()}, reference.config)
    for diffusers_key, ldm_key in sfu.DIFFUSERS_TO_LDM_MAPPING["controlnet"]["addition_embed_type"].items():
        converted[diffusers_key] = sd[ldm_key]  # diffusers' own table; its converter skips these
    reference.load_state_dict(converted, strict=True)
    reference.eval()
    pooled, options, time_ids = sizes_and_pooled(c, 2)
    y = torch.cat([encode_adm(o, 512, 512, channels=c.adm_in_channels) for o in options])
    x, hint = torch.randn(2, 4, 16, 16), torch.rand(2, 3, 128, 128)
    t, context = torch.tensor([900.0, 20.0]), torch.randn(2, 77, c.context_dim)
    with torch.no_grad():
        got = ours(x, hint, t, context, y=y)
        down, middle = reference(x, t, encoder_hidden_states=context, controlnet_cond=hint, return_dict=False,
                                 added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids})
    assert len(got.skips) == len(down)
    for a, b in zip(got.skips, down):
        assert relative_error(a, b) < 1e-4
    assert relative_error(got.middle, middle) < 1e-4
