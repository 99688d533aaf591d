"""The AutoencoderKL of latent diffusion (Rombach et al. 2022), with the original key names.

The encoder maps an image in -1..1 (B, 3, H, W) to a diagonal Gaussian over latents
(B, z, H/2^(L-1), W/2^(L-1)) (``quant_conv`` gives mean and log-variance); the decoder maps a
latent back to pixels (``post_quant_conv`` first). SD's VAE has 4 levels (8x down-sampling) and
4 latent channels; the diffusion model sees latents multiplied by a scaling factor (0.18215 for
SD1.x) that is applied outside this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nodeflow.models.layers import GroupNorm32
from nodeflow.models.meta import load_on_meta


def _norm(channels: int) -> GroupNorm32:
    return GroupNorm32(32, channels, eps=1e-6)


class ResnetBlock(nn.Module):
    """Two 3x3 convolutions with pre-activation GroupNorm + SiLU, and a 1x1 shortcut when the
    channel count changes (``nin_shortcut``)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm1 = _norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = _norm(out_channels)
        self.dropout = nn.Dropout(0.0)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        if hasattr(self, "nin_shortcut"):
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the H*W positions; q/k/v/proj_out are 1x1 convolutions.
    Files converted from diffusers store them as linear (2-D) weights; those are accepted."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = _norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        h = self.norm(x)
        q, k, v = (conv(h).flatten(2).transpose(1, 2)[:, None] for conv in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v)  # (B, 1, H*W, C)
        out = out[:, 0].transpose(1, 2).reshape(batch, channels, height, width)
        return x + self.proj_out(out)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in ("q", "k", "v", "proj_out"):
            key = f"{prefix}{name}.weight"
            if key in state_dict and state_dict[key].ndim == 2:
                state_dict[key] = state_dict[key][:, :, None, None]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class Downsample(nn.Module):
    """Pad right/bottom by one, then a 3x3 convolution with stride 2 (no padding)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour 2x, then a 3x3 convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Level(nn.Module):
    """One resolution level: ``block`` (ResnetBlocks) and an optional ``downsample``/``upsample``."""

    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.block = nn.ModuleList(blocks)
        self.attn = nn.ModuleList()  # SD's VAE has no attention inside levels


class _Middle(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


@dataclass(frozen=True)
class VAEConfig:
    """Hyper-parameters of an AutoencoderKL (SD's: ch 128, mult (1, 2, 4, 4), 2 blocks, z 4)."""

    in_channels: int = 3
    out_channels: int = 3
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    z_channels: int = 4
    embed_dim: int = 4

    @property
    def downscale(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)


class Encoder(nn.Module):
    def __init__(self, c: VAEConfig) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(c.in_channels, c.ch, 3, padding=1)
        self.down = nn.ModuleList()
        channels = c.ch
        for level, mult in enumerate(c.ch_mult):
            blocks = []
            for _ in range(c.num_res_blocks):
                blocks.append(ResnetBlock(channels, c.ch * mult))
                channels = c.ch * mult
            stage = _Level(blocks)
            if level != len(c.ch_mult) - 1:
                stage.downsample = Downsample(channels)
            self.down.append(stage)
        self.mid = _Middle(channels)
        self.norm_out = _norm(channels)
        self.conv_out = nn.Conv2d(channels, 2 * c.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for stage in self.down:
            for block in stage.block:
                h = block(h)
            if hasattr(stage, "downsample"):
                h = stage.downsample(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, 2 z, H/f, W/f)


class Decoder(nn.Module):
    def __init__(self, c: VAEConfig) -> None:
        super().__init__()
        channels = c.ch * c.ch_mult[-1]
        self.conv_in = nn.Conv2d(c.z_channels, channels, 3, padding=1)
        self.mid = _Middle(channels)
        levels: list[nn.Module] = []
        for level, mult in reversed(list(enumerate(c.ch_mult))):
            blocks = []
            for _ in range(c.num_res_blocks + 1):
                blocks.append(ResnetBlock(channels, c.ch * mult))
                channels = c.ch * mult
            stage = _Level(blocks)
            if level != 0:
                stage.upsample = Upsample(channels)
            levels.insert(0, stage)  # up.0 is the full-resolution level, as in the checkpoints
        self.up = nn.ModuleList(levels)
        self.norm_out = _norm(channels)
        self.conv_out = nn.Conv2d(channels, c.out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for stage in reversed(self.up):
            for block in stage.block:
                h = block(h)
            if hasattr(stage, "upsample"):
                h = stage.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, 3, H, W)


class AutoencoderKL(nn.Module):
    """Image <-> latent. ``encode`` gives the posterior mean (what img2img uses)."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.quant_conv = nn.Conv2d(2 * config.z_channels, 2 * config.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(config.embed_dim, config.z_channels, 1)

    def encode_dist(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, logvar), each (B, embed_dim, H/f, W/f), of q(z | x) for x (B, 3, H, W) in -1..1."""
        moments = self.quant_conv(self.encoder(x))
        mean, logvar = moments.chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode_dist(x)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Pixels (B, 3, H, W), roughly in -1..1, from latents (B, embed_dim, h, w)."""
        return self.decoder(self.post_quant_conv(z))


def vae_config_from_state_dict(sd: dict[str, torch.Tensor]) -> VAEConfig:
    """Read the configuration from tensor shapes (keys without ``first_stage_model.``)."""
    ch = sd["encoder.conv_in.weight"].shape[0]
    levels = sorted({int(m.group(1)) for k in sd if (m := re.match(r"encoder\.down\.(\d+)\.", k))})
    blocks = {int(m.group(1)) for k in sd if (m := re.match(r"encoder\.down\.0\.block\.(\d+)\.", k))}
    mults = tuple(sd[f"encoder.down.{level}.block.0.conv2.weight"].shape[0] // ch for level in levels)
    return VAEConfig(
        in_channels=sd["encoder.conv_in.weight"].shape[1],
        out_channels=sd["decoder.conv_out.weight"].shape[0],
        ch=ch,
        ch_mult=mults,
        num_res_blocks=len(blocks),
        z_channels=sd["decoder.conv_in.weight"].shape[1],
        embed_dim=sd["post_quant_conv.weight"].shape[1],
    )


def vae_from_state_dict(sd: dict[str, torch.Tensor], *, device: torch.device | str = "cpu",
                        dtype: torch.dtype = torch.float32) -> AutoencoderKL:
    """Build on the meta device and take the tensors of ``sd`` (strict)."""
    config = vae_config_from_state_dict(sd)
    return load_on_meta(lambda: AutoencoderKL(config), sd, device=device, dtype=dtype)
