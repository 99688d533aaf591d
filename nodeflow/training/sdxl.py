"""The SDXL sibling of the embedded model: the same shapes dataset, recipe and (frozen) VAE, with
SDXL's architecture, so that SDXL workflows run offline on a fresh install.

What makes it SDXL, as the loader and the sampler see it:

- two text towers: CLIP-L (transformers' CLIPTextModel, quick GELU, padded with the end token)
  and CLIP-G (CLIPTextModelWithProjection, GELU, padded with 0); the U-Net's context is both
  towers' penultimate hidden states side by side, and CLIP-G's projected end-token output is the
  pooled vector (shared/reference/comfyui-conventions.md, 14-16);
- the U-Net's ADM input ``y`` = [pooled, size embeddings of (height, width, crop_h, crop_w,
  target_height, target_width)], here always 64 x 64 pixels uncropped, which is what
  CLIPTextEncode gives at the workflow's size (17);
- SDXL's U-Net shape: transformer depth per level (none at the first), linear projections,
  64 channels per attention head;
- saved in SDXL's original layout (``conditioner.embedders.0.transformer.*`` and CLIP-G in
  OpenCLIP's layout under ``conditioner.embedders.1.model.*``), so it loads through the code path
  of community SDXL files.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from nodeflow.sampling.adm import SIZE_COUNTS, SIZE_EMBEDDING, embed_numbers
from nodeflow.training.architecture import MAX_TOKENS
from nodeflow.training.architecture import tokenize as tokenize_clip_l

RESOLUTION = 64
END_TOKEN = 49407
OPEN_CLIP_PAD = 0


@dataclass(frozen=True)
class SDXLArchitecture:
    unet_channels: int = 64
    unet_channel_mult: tuple[int, ...] = (1, 2, 2)
    unet_res_blocks: int = 1
    unet_transformer_depth: tuple[int, ...] = (0, 1, 2)  # per level, as SDXL's (0, 2, 10)
    unet_middle_transformer_depth: int = 2
    text_hidden: int = 64  # each tower; the U-Net's context is both: 128
    text_layers: int = 2
    text_intermediate: int = 256
    projection: int = 64  # CLIP-G's pooled width

    def to_dict(self) -> dict:
        return asdict(self)


def unet_config(arch: SDXLArchitecture):
    from nodeflow.models.unet import UNetConfig

    return UNetConfig(in_channels=4, out_channels=4, model_channels=arch.unet_channels,
                      channel_mult=arch.unet_channel_mult, num_res_blocks=arch.unet_res_blocks,
                      transformer_depth=arch.unet_transformer_depth,
                      middle_transformer_depth=arch.unet_middle_transformer_depth,
                      context_dim=2 * arch.text_hidden, num_heads=None, head_channels=64,
                      use_linear_in_transformer=True,
                      adm_in_channels=arch.projection + SIZE_COUNTS["sdxl"] * SIZE_EMBEDDING)


class Towers(nn.Module):
    """CLIP-L and CLIP-G, trained together (one module, so one EMA copy holds both)."""

    def __init__(self, clip_l: nn.Module, clip_g: nn.Module) -> None:
        super().__init__()
        self.clip_l, self.clip_g = clip_l, clip_g


def build(arch: SDXLArchitecture) -> tuple[nn.Module, Towers]:
    """Randomly initialised (unet, towers)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from nodeflow.models.unet import UNetModel

    def config(act: str, **extra) -> CLIPTextConfig:
        return CLIPTextConfig(vocab_size=49408, hidden_size=arch.text_hidden, intermediate_size=arch.text_intermediate,
                              num_hidden_layers=arch.text_layers, num_attention_heads=max(1, arch.text_hidden // 64),
                              max_position_embeddings=MAX_TOKENS, hidden_act=act, bos_token_id=49406,
                              eos_token_id=END_TOKEN, pad_token_id=END_TOKEN, **extra)

    towers = Towers(CLIPTextModel(config("quick_gelu")),
                    CLIPTextModelWithProjection(config("gelu", projection_dim=arch.projection)))
    return UNetModel(unet_config(arch)), towers


def tokenize(captions: list[str] | tuple[str, ...]) -> torch.Tensor:
    """Token ids (N, 2, 77): CLIP-L's (padded with the end token) and CLIP-G's (the same tokens,
    padded with 0 after the first end token), through the tokenizer CLIPTextEncode uses."""
    clip_l = tokenize_clip_l(captions)  # (N, 77)
    after_end = torch.cumsum(clip_l == END_TOKEN, dim=1) > 1  # every pad position after the first end token
    clip_g = torch.where(after_end, torch.full_like(clip_l, OPEN_CLIP_PAD), clip_l)
    return torch.stack([clip_l, clip_g], dim=1)


def size_condition(resolution: int = RESOLUTION) -> torch.Tensor:
    """(1, 6 * 256): height, width, crop 0, 0, target height, width."""
    return embed_numbers([resolution, resolution, 0, 0, resolution, resolution])


def condition(towers: Towers, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """The U-Net's inputs for token ids (B, 2, 77): context (B, 77, 2D) and y (B, adm)."""
    clip_l = towers.clip_l(input_ids=input_ids[:, 0], output_hidden_states=True)
    clip_g = towers.clip_g(input_ids=input_ids[:, 1], output_hidden_states=True)
    context = torch.cat([clip_l.hidden_states[-2], clip_g.hidden_states[-2]], dim=-1)
    sizes = size_condition().to(clip_g.text_embeds).expand(len(input_ids), -1)
    return {"context": context, "y": torch.cat([clip_g.text_embeds, sizes], dim=-1)}


def checkpoint_state_dict(unet: nn.Module, vae: nn.Module, towers: Towers) -> dict[str, torch.Tensor]:
    """SDXL's original single-file layout, fp16, contiguous, on the CPU."""
    from nodeflow.loading.open_clip import transformers_to_open_clip
    from nodeflow.training.export import UNET_PREFIX, VAE_PREFIX, to_fp16

    clip_l = {("" if k.startswith("text_model.") else "text_model.") + k: v
              for k, v in towers.clip_l.state_dict().items() if not k.endswith("position_ids")}
    parts = {UNET_PREFIX: unet.state_dict(), VAE_PREFIX: vae.state_dict(),
             "conditioner.embedders.0.transformer.": clip_l,
             "conditioner.embedders.1.model.": transformers_to_open_clip(towers.clip_g.state_dict())}
    return {prefix + key: to_fp16(value) for prefix, sd in parts.items() for key, value in sd.items()}
