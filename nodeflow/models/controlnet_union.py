"""Union ControlNets (xinsir's ControlNet++, "controlnet-union-sdxl-1.0" and its ProMax): one
ControlNet for several kinds of control image, told which kind by a control type.

A union ControlNet is a ControlNet (nodeflow.models.controlnet) with four extra parts, stored
under xinsir's names beside the diffusers-layout ControlNet keys:

- ``task_embedding`` (types, C): a learned vector per control type;
- ``transformer_layes.N`` (sic): a small pre-norm transformer block of width C (``attn`` an
  ``nn.MultiheadAttention`` of 8 heads, ``ln_1``, ``mlp.c_fc`` / ``mlp.c_proj`` with QuickGELU,
  ``ln_2``) that mixes the condition features;
- ``spatial_ch_projs`` C -> model channels: the mixed features as a per-channel shift;
- ``control_add_embedding.linear_1`` / ``linear_2``: an embedding of the control type, added to
  the timestep embedding.

forward, as ComfyUI's ControlNet with ``union_controlnet_num_control_type``: the control type
(one index, or None for "auto") becomes a one-hot vector over the types, each entry embedded
sinusoidally (``timestep_embedding``, 256 wide in the real files) and the flattened result goes
through ``control_add_embedding`` into the time embedding, for "auto" too (an all-zero one-hot).
With a type, the encoded hint's spatial mean plus that type's ``task_embedding`` is one token
through ``transformer_layes``; ``spatial_ch_projs`` of it is added to every pixel of the encoded
hint. Without one ("auto") the encoded hint is used as it is.

The transformer sees one token per batch row (ComfyUI's reading). xinsir's original (and
diffusers' ControlNetUnionModel) also passes a token of the latent, but its attention runs over
the batch dimension (``nn.MultiheadAttention`` without ``batch_first``), so that token never
meets the condition's; both agree with this for a batch of one, or whenever every row has the
same control image.

With ``--vram low`` the model streams as a plain ControlNet does (nodeflow.models.streaming):
``task_embedding``, held by the model itself rather than by a block, is copied to the GPU for the
whole of each call; ``control_add_embedding`` makes its one-hot on the time embedding's device.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from nodeflow.models.controlnet import ControlNetConfig, ControlNetModel, controlnet_config_from_state_dict
from nodeflow.models.layers import timestep_embedding
from nodeflow.models.meta import load_on_meta
from nodeflow.models.unet import ControlResiduals

#: ComfyUI's union control types (comfy/cldm/control_types.py), in index order
UNION_TYPES = ("openpose", "depth", "hed/pidi/scribble/ted", "canny/lineart/anime_lineart/mlsd", "normal",
               "segment", "tile", "repaint")
#: the keys a union ControlNet has beside a ControlNet's
UNION_PREFIXES = ("task_embedding", "transformer_layes.", "spatial_ch_projs.", "control_add_embedding.")
UNION_HEADS = 8  # not in the shapes: xinsir's num_trans_head, as ComfyUI fixes it


@dataclass(frozen=True)
class UnionConfig:
    control_types: int  # 6 in controlnet-union-sdxl-1.0, 8 in ProMax
    channels: int = 320  # the condition transformer's width
    layers: int = 1
    heads: int = UNION_HEADS
    type_embed_dim: int = 256  # the sinusoidal embedding of each one-hot entry


def is_union(sd: dict[str, torch.Tensor]) -> bool:
    """Whether ControlNet keys (without ``control_model.``) are a union ControlNet's."""
    return "task_embedding" in sd


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ConditionMlp(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.c_fc = nn.Linear(width, width * 4)
        self.gelu = QuickGELU()
        self.c_proj = nn.Linear(width * 4, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class ConditionBlock(nn.Module):
    """xinsir's ResidualAttentionBlock, attending over the tokens of each batch row."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = ConditionMlp(width)
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, C)
        normed = self.ln_1(x)
        x = x + self.attn(normed, normed, normed, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class ControlTypeEmbedding(nn.Module):
    """The control type (an index, or None: none) -> a vector added to the time embedding."""

    def __init__(self, config: UnionConfig, time_embed_dim: int) -> None:
        super().__init__()
        self.config = config
        self.linear_1 = nn.Linear(config.type_embed_dim * config.control_types, time_embed_dim)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(time_embed_dim, time_embed_dim)

    def forward(self, control_type: int | None, dtype: torch.dtype,
                device: torch.device) -> torch.Tensor:  # (1, time_embed_dim)
        """The embedding in ``dtype`` on ``device`` (the time embedding's): the device comes from
        the caller, not from a weight, which a streamed model keeps on the CPU between calls
        (nodeflow.models.streaming)."""
        one_hot = torch.zeros(self.config.control_types, device=device)
        if control_type is not None:
            one_hot[control_type] = 1.0
        embedded = timestep_embedding(one_hot, self.config.type_embed_dim).to(dtype).reshape(1, -1)
        return self.linear_2(self.act(self.linear_1(embedded)))


class UnionControlNetModel(ControlNetModel):
    def __init__(self, config: ControlNetConfig, union: UnionConfig) -> None:
        super().__init__(config)
        self.union = union
        self.task_embedding = nn.Parameter(torch.empty(union.control_types, union.channels))
        self.transformer_layes = nn.Sequential(*(ConditionBlock(union.channels, union.heads)
                                                 for _ in range(union.layers)))
        self.spatial_ch_projs = nn.Linear(union.channels, config.unet.model_channels)
        self.control_add_embedding = ControlTypeEmbedding(union, self.time_embed[-1].out_features)

    def forward(self, x: torch.Tensor, hint: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor,
                y: torch.Tensor | None = None, control_type: int | None = None) -> ControlResiduals:
        """As ControlNetModel.forward, told the kind of control image: ``control_type`` an index
        into UNION_TYPES (below ``union.control_types``), or None ("auto")."""
        if control_type is not None and not 0 <= control_type < self.union.control_types:
            raise ValueError(f"control type {control_type} is not one of this union ControlNet's "
                             f"{self.union.control_types}")
        emb = self.embed_time(timesteps, y)
        emb = emb + self.control_add_embedding(control_type, emb.dtype, emb.device)
        guided_hint = self.input_hint_block(hint.to(emb.dtype))  # (B, mc, h, w)
        if control_type is not None:
            guided_hint = guided_hint + self.type_shift(guided_hint, control_type)
        return self.encode(x, guided_hint, emb, context)

    def type_shift(self, guided_hint: torch.Tensor, control_type: int) -> torch.Tensor:
        """The per-channel shift (B, mc, 1, 1) of the encoded hint for a control type."""
        token = guided_hint.mean(dim=(2, 3)) + self.task_embedding[control_type]  # (B, C)
        mixed = self.transformer_layes(token[:, None])[:, 0]
        return self.spatial_ch_projs(mixed)[:, :, None, None]


class TypedUnionControlNet(nn.Module):
    """A union ControlNet told its control type (SetUnionControlNetType's output): the same
    weights, called as any ControlNet; ``config``, ``family`` and ``source`` are the network's."""

    def __init__(self, network: UnionControlNetModel, control_type: int) -> None:
        super().__init__()
        self.network = network
        self.control_type = control_type
        self.config, self.family, self.source = network.config, network.family, network.source

    def forward(self, x: torch.Tensor, hint: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor,
                y: torch.Tensor | None = None) -> ControlResiduals:
        return self.network(x, hint, timesteps, context, y=y, control_type=self.control_type)


def union_config_from_state_dict(sd: dict[str, torch.Tensor]) -> UnionConfig:
    """The union parts' sizes from their shapes (keys without ``control_model.``)."""
    types, channels = sd["task_embedding"].shape
    layers = len({m.group(1) for k in sd if (m := re.match(r"transformer_layes\.(\d+)\.", k))})
    type_embed_dim = sd["control_add_embedding.linear_1.weight"].shape[1] // types
    return UnionConfig(types, channels, layers, UNION_HEADS, type_embed_dim)


def union_controlnet_from_state_dict(sd: dict[str, torch.Tensor], *, device="cpu", dtype=torch.float32,
                                     num_heads: int | None = None,
                                     head_channels: int | None = None) -> UnionControlNetModel:
    config = controlnet_config_from_state_dict(sd, num_heads, head_channels)
    union = union_config_from_state_dict(sd)
    return load_on_meta(lambda: UnionControlNetModel(config, union), sd, device=device, dtype=dtype)
