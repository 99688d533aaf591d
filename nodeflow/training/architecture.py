"""The embedded model's architecture: small SD1.x-family U-Net, AutoencoderKL and CLIP text
encoder, built from nodeflow's own model classes (the ones that load community checkpoints).

Sizes are chosen for the 8x8x4 latents of 64x64 images and the 30 MB budget of assets/ (fp16):
the text encoder's token embedding alone is 49408 x hidden values, so the hidden size is 64.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MAX_TOKENS = 77


@dataclass(frozen=True)
class Architecture:
    """Hyper-parameters of the three models."""

    vae_channels: int = 32
    vae_channel_mult: tuple[int, ...] = (1, 1, 2, 2)  # 3 down-samplings: 8x
    vae_res_blocks: int = 1
    latent_channels: int = 4
    unet_channels: int = 64
    unet_channel_mult: tuple[int, ...] = (1, 2, 2)
    unet_res_blocks: int = 1
    unet_attention_levels: tuple[int, ...] = (1, 2)  # 4x4 and 2x2 latents (and the middle)
    unet_num_heads: int = 4
    unet_transformer_depth: int = 1
    text_hidden: int = 64  # also the U-Net's cross-attention context dimension
    text_layers: int = 2
    text_intermediate: int = 256


def build(arch: Architecture) -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module]:
    """Randomly initialised (unet, vae, text_encoder)."""
    return build_unet(arch), build_vae(arch), build_text_encoder(arch)


def unet_config(arch: Architecture):
    from nodeflow.models.unet import UNetConfig

    levels = len(arch.unet_channel_mult)
    return UNetConfig(
        in_channels=arch.latent_channels, out_channels=arch.latent_channels,
        model_channels=arch.unet_channels, channel_mult=arch.unet_channel_mult,
        num_res_blocks=arch.unet_res_blocks,
        transformer_depth=tuple(arch.unet_transformer_depth if level in arch.unet_attention_levels else 0
                                for level in range(levels)),
        middle_transformer_depth=arch.unet_transformer_depth, context_dim=arch.text_hidden,
        num_heads=arch.unet_num_heads)


def vae_config(arch: Architecture):
    from nodeflow.models.vae import VAEConfig

    return VAEConfig(ch=arch.vae_channels, ch_mult=arch.vae_channel_mult,
                     num_res_blocks=arch.vae_res_blocks, z_channels=arch.latent_channels,
                     embed_dim=arch.latent_channels)


def build_unet(arch: Architecture) -> torch.nn.Module:
    """nodeflow's SD1.x U-Net class in a small configuration."""
    from nodeflow.models.unet import UNetModel

    return UNetModel(unet_config(arch))


def build_vae(arch: Architecture) -> torch.nn.Module:
    """nodeflow's AutoencoderKL class in a small configuration."""
    from nodeflow.models.vae import AutoencoderKL

    return AutoencoderKL(vae_config(arch))


def build_text_encoder(arch: Architecture) -> torch.nn.Module:
    """A transformers ``CLIPTextModel`` in SD1's configuration (quick GELU, causal attention,
    77 positions, the real 49408-token vocabulary), CLIP's rule of 64 dimensions per head."""
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=49408,
        hidden_size=arch.text_hidden,
        intermediate_size=arch.text_intermediate,
        num_hidden_layers=arch.text_layers,
        num_attention_heads=max(1, arch.text_hidden // 64),
        max_position_embeddings=MAX_TOKENS,
        hidden_act="quick_gelu",
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )
    return CLIPTextModel(config)


def tokenize(captions: list[str] | tuple[str, ...]) -> torch.Tensor:
    """Token ids (N, 77) of the captions, SD1 style: BOS, ids, EOS, padded with EOS (through the
    tokenizer and chunking that CLIPTextEncode uses)."""
    from nodeflow.text.prompt_weights import chunks, weighted_tokens
    from nodeflow.text.tokenizer import load_tokenizer

    tokenizer = load_tokenizer()
    rows = [[token for token, _ in chunks(weighted_tokens(tokenizer, text))[0]] for text in captions]
    return torch.tensor(rows, dtype=torch.int64)
