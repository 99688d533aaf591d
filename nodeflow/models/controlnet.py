"""ControlNet (Zhang et al. 2023): a trainable copy of the U-Net's encoder that reads a control
image and adds its features to the locked U-Net through zero-initialised 1x1 convolutions.

Original key names (``control_model.`` prefix optional): ``input_hint_block.{0,2,...,14}`` (the
hint encoder: 8 3x3 convolutions with SiLU, three of stride 2, from the control image at pixel
resolution down to the latent grid), ``time_embed``, ``input_blocks`` (as the U-Net's),
``zero_convs.N.0`` (one 1x1 convolution per input block output), ``middle_block`` and
``middle_block_out.0``. Diffusers-format ControlNets are renamed into this layout by
``nodeflow.loading.diffusers_keys.controlnet_to_original``.

forward: h = conv_in(x) + hint_encoder(hint); each input block's output goes through its zero
conv into the residual list; the middle block's output through middle_block_out. The residuals
are added to the U-Net's skip connections and middle block (see ``UNetModel.forward``). SDXL
ControlNets also have the U-Net's ``label_emb`` and take the same ADM vector ``y``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from nodeflow.models.layers import timestep_embedding
from nodeflow.models.meta import load_on_meta
from nodeflow.models.unet import (ControlResiduals, UNetConfig, add_label_embedding, build_encoder,
                                  build_label_embed, build_time_embed, encoder_config_from_state_dict)


@dataclass(frozen=True)
class ControlNetConfig:
    unet: UNetConfig
    hint_channels: int = 3
    hint_widths: tuple[int, ...] = (16, 16, 32, 32, 96, 96, 256)  # the hint encoder's hidden convs


class ControlNetModel(nn.Module):
    #: set by the loader (nodeflow.loading.controlnet): the model family it was made for ("SDXL")
    #: and the file it came from; empty for a ControlNet built otherwise
    family: str = ""
    source: str = ""

    def __init__(self, config: ControlNetConfig) -> None:
        super().__init__()
        self.config = config
        mc = config.unet.model_channels
        self.time_embed = build_time_embed(config.unet)
        if config.unet.adm_in_channels:
            self.label_emb = build_label_embed(config.unet)
        widths = (config.hint_channels,) + config.hint_widths + (mc,)
        hint: list[nn.Module] = []
        for i, (w_in, w_out) in enumerate(zip(widths[:-1], widths[1:])):
            # every second hidden conv halves the size (both layouts), whatever its widths
            stride = 2 if 0 < i < len(widths) - 2 and i % 2 == 0 else 1
            hint.append(nn.Conv2d(w_in, w_out, 3, padding=1, stride=stride))
            if i < len(widths) - 2:
                hint.append(nn.SiLU())
        self.input_hint_block = nn.Sequential(*hint)
        # the U-Net's input and middle blocks, with its key names (built after the hint encoder:
        # a fresh ControlNet's hint encoder draws the same random init as it always has)
        encoder = build_encoder(config.unet)
        self.input_blocks = encoder.input_blocks
        self.zero_convs = nn.ModuleList(self._zero_conv(ch) for ch in encoder.channels)
        self.middle_block = encoder.middle_block
        self.middle_block_out = self._zero_conv(encoder.channels[-1])

    @staticmethod
    def _zero_conv(channels: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor, hint: torch.Tensor, timesteps: torch.Tensor,
                context: torch.Tensor, y: torch.Tensor | None = None) -> ControlResiduals:
        """x (B, C, h, w) the U-Net's input, hint (B, 3, 8h, 8w) in 0..1, timesteps (B,),
        context (B, T, D), y (B, adm) for SDXL ControlNets -> residuals for every skip and the
        middle block."""
        emb = self.embed_time(timesteps, y)
        guided_hint = self.input_hint_block(hint.to(emb.dtype))  # (B, mc, h, w)
        return self.encode(x, guided_hint, emb, context)

    def embed_time(self, timesteps: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The timestep embedding (B, 4 mc), plus the ADM input's for SDXL ControlNets."""
        dtype = self.time_embed[0].weight.dtype
        emb = self.time_embed(timestep_embedding(timesteps, self.config.unet.model_channels).to(dtype))
        return add_label_embedding(self, emb, y)

    def encode(self, x: torch.Tensor, guided_hint: torch.Tensor, emb: torch.Tensor,
               context: torch.Tensor) -> ControlResiduals:
        """The encoder on x with the encoded hint added after its first block; every block's
        output through its zero convolution, and the middle block's."""
        h, context = x.to(emb.dtype), context.to(emb.dtype)
        skips = []
        for index, (block, zero_conv) in enumerate(zip(self.input_blocks, self.zero_convs)):
            h = block(h, emb, context)
            if index == 0:
                h = h + guided_hint
            skips.append(zero_conv(h))
        h = self.middle_block(h, emb, context)
        return ControlResiduals(skips, self.middle_block_out(h))


def controlnet_config_from_state_dict(sd: dict[str, torch.Tensor], num_heads: int | None = None,
                                      head_channels: int | None = None) -> ControlNetConfig:
    """Read the configuration from shapes (keys without ``control_model.``); heads as for the U-Net."""
    unet = encoder_config_from_state_dict(sd, num_heads, head_channels)
    indices = sorted(int(m.group(1)) for k in sd if (m := re.match(r"input_hint_block\.(\d+)\.weight", k)))
    widths = tuple(sd[f"input_hint_block.{i}.weight"].shape[0] for i in indices[:-1])
    return ControlNetConfig(unet, sd[f"input_hint_block.{indices[0]}.weight"].shape[1], widths)


def controlnet_from_state_dict(sd: dict[str, torch.Tensor], *, device="cpu", dtype=torch.float32,
                               num_heads: int | None = None, head_channels: int | None = None) -> ControlNetModel:
    config = controlnet_config_from_state_dict(sd, num_heads, head_channels)
    return load_on_meta(lambda: ControlNetModel(config), sd, device=device, dtype=dtype)
