"""The Stable Diffusion U-Net noise predictor, with the original checkpoint's key names.

Architecture (Rombach et al. 2022; the U-Net of Ho et al. 2020 with spatial transformers):
``input_blocks`` (a conv, then per level ``num_res_blocks`` x [ResBlock, SpatialTransformer?]
and a Downsample between levels), ``middle_block`` (ResBlock, SpatialTransformer, ResBlock),
``output_blocks`` (per level ``num_res_blocks + 1`` x [ResBlock on the concatenated skip,
SpatialTransformer?], an Upsample between levels) and ``out`` (GroupNorm, SiLU, conv).

The configuration is read from the tensor shapes of a state dict (``unet_config_from_state_dict``)
so SD1.x, SD2.x, SDXL (base and refiner), the 9-channel inpainting models and scaled-down test
models take one code path. Heads cannot be read from shapes: SD1.x uses 8 heads at every level
(``num_heads``), SD2.x and SDXL 64 channels per head (``head_channels``).

SDXL adds ``label_emb``: an MLP from the ADM vector ``y`` (pooled text and size embeddings, see
nodeflow.sampling.adm) whose output is added to the timestep embedding. Its transformer depth
varies per level ((0, 2, 10): none at the top level) and, in pruned derivatives (SSD-1B, Vega),
per output block: ``transformer_depth_output`` (as ComfyUI's model detection reads it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
from torch import nn

from nodeflow.models.attention import SpatialTransformer
from nodeflow.models.layers import (Downsample, ResBlock, TimestepSequential, Upsample, normalization,
                                    timestep_embedding)
from nodeflow.models.linear import Linear
from nodeflow.models.meta import load_on_meta
from nodeflow.models.unet_patches import PatchCall, UNetPatches


@dataclass
class ControlResiduals:
    """What a control model adds to the U-Net: ControlNets a residual per input-block output (in
    order, to the skip connections) and the middle's; T2I-Adapters features added to the input
    blocks' outputs themselves (``inputs``, in order; None: none), so later blocks see them too."""

    skips: list[torch.Tensor]
    middle: torch.Tensor
    inputs: list[torch.Tensor] | None = None

    def __add__(self, other: ControlResiduals) -> ControlResiduals:
        inputs = self.inputs if other.inputs is None else other.inputs if self.inputs is None else [
            a + b for a, b in zip(self.inputs, other.inputs, strict=True)]
        return ControlResiduals([a + b for a, b in zip(self.skips, other.skips, strict=True)],
                                self.middle + other.middle, inputs)

    def scaled(self, factor: float) -> ControlResiduals:
        inputs = None if self.inputs is None else [t * factor for t in self.inputs]
        return ControlResiduals([s * factor for s in self.skips], self.middle * factor, inputs)


@dataclass(frozen=True)
class UNetConfig:
    """Hyper-parameters of a U-Net."""

    in_channels: int = 4
    out_channels: int = 4
    model_channels: int = 320
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    transformer_depth: tuple[int, ...] = (1, 1, 1, 0)  # per level; 0 = no attention
    middle_transformer_depth: int = 1
    #: per output block, in order (levels x (num_res_blocks + 1), the deepest level first); None:
    #: each output block as its level's ``transformer_depth``
    transformer_depth_output: tuple[int, ...] | None = None
    context_dim: int = 768
    num_heads: int | None = 8  # SD1: fixed heads ...
    head_channels: int | None = None  # ... SD2/SDXL: fixed channels per head
    use_linear_in_transformer: bool = False
    adm_in_channels: int | None = None  # SDXL's pooled-text/size vector (label_emb)

    def heads_for(self, channels: int) -> tuple[int, int]:
        """(heads, dim_head) of a transformer at ``channels``."""
        if self.head_channels:
            return channels // self.head_channels, self.head_channels
        heads = self.num_heads or 8
        return heads, channels // heads

    def attention_scores(self, height: int, width: int) -> int:
        """Self-attention score entries (tokens x tokens x heads, summed over every transformer
        block) of one call on a ``height`` x ``width`` latent: attention's share of the work,
        which grows with the square of the latent's area, unlike the parameters' share."""
        levels = len(self.channel_mult)
        depths = [(level, self.transformer_depth[level] * self.num_res_blocks) for level in range(levels)]
        outputs = self.output_depths()
        depths += [(levels - 1 - index // (self.num_res_blocks + 1), depth) for index, depth in enumerate(outputs)]
        depths.append((levels - 1, self.middle_transformer_depth))
        total = 0
        for level, depth in depths:
            tokens = (height >> level) * (width >> level)
            total += depth * tokens * tokens * self.heads_for(self.model_channels * self.channel_mult[level])[0]
        return total

    def output_depths(self) -> tuple[int, ...]:
        """The transformer depth of every output block, in order (deepest level first)."""
        if self.transformer_depth_output is not None:
            return self.transformer_depth_output
        return tuple(self.transformer_depth[level] for level in reversed(range(len(self.channel_mult)))
                     for _ in range(self.num_res_blocks + 1))


def spatial_transformer(config: UNetConfig, channels: int, depth: int) -> SpatialTransformer:
    """A SpatialTransformer of ``depth`` blocks at ``channels``, heads as ``config`` says."""
    heads, dim_head = config.heads_for(channels)
    return SpatialTransformer(channels, heads, dim_head, depth, config.context_dim, config.use_linear_in_transformer)


def build_time_embed(config: UNetConfig) -> nn.Sequential:
    """The timestep embedding's MLP (``time_embed``): model_channels -> 4 x model_channels."""
    mc, emb = config.model_channels, config.model_channels * 4
    return nn.Sequential(Linear(mc, emb), nn.SiLU(), Linear(emb, emb))


class UNetEncoder(NamedTuple):
    """The encoder a U-Net and its ControlNet share, and the channels of every input block's output
    (the skips, in order; the last is the middle block's width)."""

    input_blocks: nn.ModuleList
    middle_block: TimestepSequential
    channels: list[int]


def build_encoder(config: UNetConfig) -> UNetEncoder:
    """``input_blocks`` (a conv, then per level ``num_res_blocks`` x [ResBlock, SpatialTransformer?]
    and a Downsample between levels) and ``middle_block`` (ResBlock, SpatialTransformer?, ResBlock)."""
    mc, emb = config.model_channels, config.model_channels * 4
    input_blocks = nn.ModuleList([TimestepSequential(nn.Conv2d(config.in_channels, mc, 3, padding=1))])
    channels = [mc]
    ch = mc
    for level, mult in enumerate(config.channel_mult):
        for _ in range(config.num_res_blocks):
            layers: list[nn.Module] = [ResBlock(ch, emb, mult * mc)]
            ch = mult * mc
            if config.transformer_depth[level]:
                layers.append(spatial_transformer(config, ch, config.transformer_depth[level]))
            input_blocks.append(TimestepSequential(*layers))
            channels.append(ch)
        if level != len(config.channel_mult) - 1:
            input_blocks.append(TimestepSequential(Downsample(ch)))
            channels.append(ch)
    middle: list[nn.Module] = [ResBlock(ch, emb, ch)]
    if config.middle_transformer_depth:
        middle.append(spatial_transformer(config, ch, config.middle_transformer_depth))
    middle.append(ResBlock(ch, emb, ch))
    return UNetEncoder(input_blocks, TimestepSequential(*middle), channels)


class UNetModel(nn.Module):
    """Predicts the noise (or v) in ``x`` at ``timesteps`` given the text ``context``."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        mc = config.model_channels
        emb = mc * 4
        self.time_embed = build_time_embed(config)
        if config.adm_in_channels:
            self.label_emb = build_label_embed(config)
        self.input_blocks, self.middle_block, skip_channels = build_encoder(config)
        ch = skip_channels[-1]
        depths = iter(config.output_depths())
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(config.channel_mult))):
            for i in range(config.num_res_blocks + 1):
                layers: list[nn.Module] = [ResBlock(ch + skip_channels.pop(), emb, mult * mc)]
                ch = mult * mc
                depth = next(depths)
                if depth:
                    layers.append(spatial_transformer(config, ch, depth))
                if level and i == config.num_res_blocks:
                    layers.append(Upsample(ch))
                self.output_blocks.append(TimestepSequential(*layers))
        self.out = nn.Sequential(normalization(ch), nn.SiLU(), nn.Conv2d(mc, config.out_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor,
                control: ControlResiduals | None = None, y: torch.Tensor | None = None,
                patches: UNetPatches | None = None, sigma: torch.Tensor | None = None,
                extra: dict | None = None) -> torch.Tensor:
        """x (B, in, h, w), timesteps (B,), context (B, T, context_dim), y (B, adm_in_channels)
        for SDXL models (ignored by others) -> (B, out, h, w). ``patches``: a patched model's hooks
        (nodeflow.models.unet_patches), told the noise levels ``sigma`` (B,) and the caller's
        ``extra`` facts; output-block hooks see the skip after the ControlNet's residual."""
        dtype = self.time_embed[0].weight.dtype
        emb = self.time_embed(timestep_embedding(timesteps, self.config.model_channels).to(dtype))
        emb = add_label_embedding(self, emb, y)
        h, context = x.to(dtype), context.to(dtype)
        call = PatchCall(patches, tuple(x.shape), sigma, extra=extra or {}) if patches else None
        skips = []
        for index, block in enumerate(self.input_blocks):
            where = None if call is None else call.at(("input", index))
            h = block(h, emb, context, call=where)
            if control is not None and control.inputs is not None:
                h = h + control.inputs[index].to(h.dtype)
            if where is not None:
                for patch in patches.input_block:
                    h = patch(h, where)
            skips.append(h)
            if where is not None:
                for patch in patches.input_block_after_skip:
                    h = patch(h, where)
        h = self.middle_block(h, emb, context, call=None if call is None else call.at(("middle", 0)))
        if control is not None:
            h = h + control.middle.to(h.dtype)
        for index, block in enumerate(self.output_blocks):
            skip = skips.pop()
            if control is not None:
                skip = skip + control.skips[len(skips)].to(skip.dtype)
            where = None if call is None else call.at(("output", index))
            if where is not None:
                for patch in patches.output_block:
                    h, skip = patch(h, skip, where)
            h = torch.cat([h, skip], dim=1)  # (B, ch + skip_ch, h, w)
            size = skips[-1].shape[-2:] if skips else None
            h = block(h, emb, context, size, call=where)
        return self.out(h).to(x.dtype)


def build_label_embed(config: UNetConfig) -> nn.Sequential:
    """SDXL's ``label_emb``: adm_in_channels -> 4 x model_channels (keys ``label_emb.0.0``, ``.0.2``)."""
    emb = config.model_channels * 4
    return nn.Sequential(nn.Sequential(Linear(config.adm_in_channels, emb), nn.SiLU(), Linear(emb, emb)))


def add_label_embedding(model: nn.Module, emb: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """The timestep embedding plus ``label_emb(y)`` for a model with one (a U-Net or ControlNet
    whose config has ``adm_in_channels``); unchanged for others."""
    channels = model.label_emb[0][0].in_features if hasattr(model, "label_emb") else None
    if channels is None:
        return emb
    if y is None:
        raise ValueError(f"this model needs the ADM vector y ({channels} wide: pooled text and sizes, "
                         "SDXL), and none was given")
    if y.shape != (emb.shape[0], channels):
        raise ValueError(f"the ADM vector y is {tuple(y.shape)}, this model needs ({emb.shape[0]}, {channels})")
    return emb + model.label_emb(y.to(emb.dtype))  # (B, 4 mc)


def unet_config_from_state_dict(sd: dict[str, torch.Tensor], num_heads: int | None = None,
                                head_channels: int | None = None) -> UNetConfig:
    """Read a U-Net's configuration from tensor shapes (keys without ``model.diffusion_model.``):
    the encoder's (``encoder_config_from_state_dict``), the output channels (``out.2``) and the
    output blocks' transformer depths (kept only where they differ from their levels')."""
    config = replace(encoder_config_from_state_dict(sd, num_heads, head_channels),
                     out_channels=sd["out.2.weight"].shape[0])
    blocks = len(config.channel_mult) * (config.num_res_blocks + 1)
    output_depths = tuple(_transformer_depth(sd, f"output_blocks.{i}.1.") for i in range(blocks))
    if output_depths != config.output_depths():
        config = replace(config, transformer_depth_output=output_depths)
    return config


def encoder_config_from_state_dict(sd: dict[str, torch.Tensor], num_heads: int | None = None,
                                   head_channels: int | None = None) -> UNetConfig:
    """Read the encoder's configuration from the keys a U-Net and a ControlNet share
    (``input_blocks``, ``middle_block``, ``label_emb``); ``out_channels``, which only a U-Net's
    output shows, is set to ``in_channels``.

    Heads: ``num_heads`` or ``head_channels`` if given, else SD1's 8 heads.
    """
    conv_in = sd["input_blocks.0.0.weight"]  # (mc, in, 3, 3)
    mc = conv_in.shape[0]
    blocks = sorted({int(m.group(1)) for k in sd if (m := re.match(r"input_blocks\.(\d+)\.", k))})
    mults, depths, res_per_level = [], [], []
    count, level_depth = 0, 0
    for index in blocks[1:]:
        prefix = f"input_blocks.{index}."
        if prefix + "0.op.weight" in sd:  # a Downsample closes the level
            mults.append(current_mult)
            depths.append(level_depth)
            res_per_level.append(count)
            count, level_depth = 0, 0
            continue
        current_mult = sd[prefix + "0.out_layers.3.weight"].shape[0] // mc
        count += 1
        level_depth = max(level_depth, _transformer_depth(sd, prefix + "1."))
    mults.append(current_mult)
    depths.append(level_depth)
    res_per_level.append(count)
    if len(set(res_per_level)) != 1:
        raise ValueError(f"unsupported U-Net: residual blocks per level differ ({res_per_level})")
    context_key = next((k for k in sd if k.endswith("attn2.to_k.weight")), None)
    proj_in = next((v for k, v in sd.items() if k.endswith(".proj_in.weight")), None)
    adm = sd.get("label_emb.0.0.weight")
    return UNetConfig(
        in_channels=conv_in.shape[1],
        out_channels=conv_in.shape[1],
        model_channels=mc,
        channel_mult=tuple(mults),
        num_res_blocks=res_per_level[0],
        transformer_depth=tuple(depths),
        middle_transformer_depth=_transformer_depth(sd, "middle_block.1."),
        context_dim=sd[context_key].shape[1] if context_key else 768,
        num_heads=None if head_channels else (num_heads or 8),
        head_channels=head_channels,
        use_linear_in_transformer=proj_in is not None and proj_in.ndim == 2,
        adm_in_channels=adm.shape[1] if adm is not None else None,
    )


def _transformer_depth(sd: dict[str, torch.Tensor], prefix: str) -> int:
    found = {int(m.group(1)) for k in sd
             if k.startswith(prefix) and (m := re.match(re.escape(prefix) + r"transformer_blocks\.(\d+)\.", k))}
    return max(found) + 1 if found else 0


def unet_from_state_dict(sd: dict[str, torch.Tensor], *, device: torch.device | str = "cpu",
                         dtype: torch.dtype = torch.float32, num_heads: int | None = None,
                         head_channels: int | None = None) -> UNetModel:
    """Build on the meta device and take the tensors of ``sd`` (strict): no random init, no copy
    beyond the dtype/device conversion."""
    config = unet_config_from_state_dict(sd, num_heads, head_channels)
    return load_on_meta(lambda: UNetModel(config), sd, device=device, dtype=dtype)
