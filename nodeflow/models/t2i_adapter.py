"""T2I-Adapter (Mou et al. 2023, "T2I-Adapter: Learning Adapters to Dig out More Controllable
Ability for Text-to-Image Diffusion Models"): a small convolutional network that turns a control
image into one feature map per U-Net level; the features are added to the U-Net's encoder.

Unlike a ControlNet it does not see the noisy latent or the timestep, so it runs once per control
image (not per step). Original (TencentARC) key names:

- full ("Adapter"): ``conv_in`` after a pixel unshuffle (8x8 -> 64 x hint channels; SDXL: 16x16),
  then ``body.N`` residual blocks, ``num_res_blocks`` (2) per level: ``block1`` (3x3), ReLU,
  ``block2`` (k x k), plus ``in_conv`` where the width changes (or always, with ``skep``, in
  adapters trained without the identity skip) and ``down_opt.op`` where the downsampling is a
  strided convolution instead of 2x2 average pooling.
- light ("Adapter_light"): ``body.i`` per level: ``in_conv`` (1x1 to a quarter width),
  ``body.j.block1/block2`` (3x3 residual blocks), ``out_conv`` (1x1); levels after the first
  start with 2x2 average pooling.

The hyper-parameters are read from the shapes (``t2i_adapter_config_from_state_dict``);
``adapter_residuals`` places the features where ComfyUI adds them: at the last input block of
each level (SD1/SD2: input blocks 2, 5, 8, 11), for SDXL adapters at input blocks 3, 5, 8 and the
middle block.

With ``--vram low`` the adapter streams as a ControlNet does (nodeflow.models.streaming): each
top-level block (``conv_in``, each ``body`` item) is copied to the GPU when it runs; forward reads
only the weights' dtype outside them, and takes the device from the hint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nodeflow.models.meta import load_on_meta
from nodeflow.models.unet import ControlResiduals, UNetConfig

#: SDXL adapters (ComfyUI's ``xl``): where the four features go (input block index; None: middle)
XL_POSITIONS = (3, 5, 8, None)


@dataclass(frozen=True)
class T2IAdapterConfig:
    kind: str  # "full" or "light"
    in_channels: int  # conv_in's (full) / body.0.in_conv's (light) input: hint channels x unshuffle^2
    channels: tuple[int, ...]  # per level
    num_res_blocks: int = 2
    kernel_size: int = 1  # full: block2, in_conv and skep
    skip_conv: bool = False  # full: a ``skep`` convolution instead of the identity skip
    conv_down: bool = False  # full: downsample with a strided 3x3 conv (``down_opt.op``)
    inner_channels: tuple[int, ...] = ()  # light: the residual blocks' width per level
    xl: bool = False  # SDXL adapter: 16x16 unshuffle, downsampling only before level 2

    @property
    def unshuffle(self) -> int:
        return 16 if self.xl else 8

    @property
    def hint_channels(self) -> int:
        return self.in_channels // self.unshuffle ** 2


def _avg_down(x: torch.Tensor) -> torch.Tensor:
    """2x2 average pooling, odd sizes padded as the original Downsample does."""
    return F.avg_pool2d(x, 2, 2, padding=(x.shape[2] % 2, x.shape[3] % 2))


class Downsample(nn.Module):
    def __init__(self, channels: int, use_conv: bool) -> None:
        super().__init__()
        self.use_conv = use_conv
        if use_conv:
            self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x) if self.use_conv else _avg_down(x)


class ResnetBlock(nn.Module):
    """Full adapter block: [down] -> [in_conv] -> x + block2(relu(block1(x))) (or + skep(x))."""

    def __init__(self, in_c: int, out_c: int, *, down: bool, ksize: int, skip_conv: bool, conv_down: bool) -> None:
        super().__init__()
        pad = ksize // 2
        self.in_conv = nn.Conv2d(in_c, out_c, ksize, 1, pad) if in_c != out_c or skip_conv else None
        self.block1 = nn.Conv2d(out_c, out_c, 3, 1, 1)
        self.act = nn.ReLU()
        self.block2 = nn.Conv2d(out_c, out_c, ksize, 1, pad)
        self.skep = nn.Conv2d(in_c, out_c, ksize, 1, pad) if skip_conv else None
        self.down_opt = Downsample(in_c, conv_down) if down else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down_opt is not None:
            x = self.down_opt(x)
        if self.in_conv is not None:
            x = self.in_conv(x)
        h = self.block2(self.act(self.block1(x)))
        # the original's skep reads the block's input after in_conv (both exist only when sk=False)
        return h + (self.skep(x) if self.skep is not None else x)


class LightResnetBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block1 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.act = nn.ReLU()
        self.block2 = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block2(self.act(self.block1(x)))


class Extractor(nn.Module):
    """Light adapter level: [avg down] -> in_conv (1x1) -> residual blocks -> out_conv (1x1)."""

    def __init__(self, in_c: int, inner: int, out_c: int, blocks: int, down: bool) -> None:
        super().__init__()
        self.in_conv = nn.Conv2d(in_c, inner, 1)
        self.body = nn.Sequential(*(LightResnetBlock(inner) for _ in range(blocks)))
        self.out_conv = nn.Conv2d(inner, out_c, 1)
        self.down = down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down:
            x = _avg_down(x)
        return self.out_conv(self.body(self.in_conv(x)))


class T2IAdapter(nn.Module):
    #: set by the loader: the family it was made for ("SDXL"; empty: SD1.x/SD2.x) and its file
    family: str = ""
    source: str = ""
    is_t2i_adapter = True

    def __init__(self, config: T2IAdapterConfig) -> None:
        super().__init__()
        self.config = config
        self.unshuffle = nn.PixelUnshuffle(config.unshuffle)
        ch = config.channels
        if config.kind == "light":
            self.body = nn.ModuleList(
                Extractor(config.in_channels if i == 0 else ch[i - 1], config.inner_channels[i], ch[i],
                          config.num_res_blocks, down=i > 0) for i in range(len(ch)))
            return
        blocks = []
        for i in range(len(ch)):
            for j in range(config.num_res_blocks):
                first = j == 0 and i > 0
                down = first and (i == 2 if config.xl else True)
                blocks.append(ResnetBlock(ch[i - 1] if first else ch[i], ch[i], down=down, ksize=config.kernel_size,
                                          skip_conv=config.skip_conv, conv_down=config.conv_down))
        self.body = nn.ModuleList(blocks)
        self.conv_in = nn.Conv2d(config.in_channels, ch[0], 3, 1, 1)

    def hint_size(self, width: int, height: int) -> tuple[int, int]:
        """The control image size for a picture of width x height: rounded up to the unshuffle
        factor (as ComfyUI's scale_image_to)."""
        u = self.config.unshuffle
        return -(-width // u) * u, -(-height // u) * u

    def forward(self, hint: torch.Tensor) -> list[torch.Tensor]:
        """hint (B, hint_channels, H, W) in 0..1 -> one feature map per level, level i
        (B, channels[i], H / unshuffle / 2^i, ...) (SDXL: levels 0-1 at H/16, 2-3 at H/32)."""
        x = self.unshuffle(hint.to(next(self.parameters()).dtype))  # (B, C*u*u, H/u, W/u)
        features = []
        if self.config.kind == "light":
            for level in self.body:
                x = level(x)
                features.append(x)
            return features
        x = self.conv_in(x)
        r = self.config.num_res_blocks
        for i in range(len(self.config.channels)):
            for block in self.body[i * r:(i + 1) * r]:
                x = block(x)
            features.append(x)
        return features


def feature_positions(adapter_config: T2IAdapterConfig, unet: UNetConfig) -> tuple[int | None, ...]:
    """The input block index each feature is added at (None: the middle block): the last block of
    each level (ComfyUI's [None, None, feature] per level: 2, 5, 8, 11 on SD1/SD2)."""
    if adapter_config.xl:
        return XL_POSITIONS
    step = unet.num_res_blocks + 1
    return tuple(i * step + unet.num_res_blocks for i in range(len(adapter_config.channels)))


def adapter_residuals(features: list[torch.Tensor], adapter_config: T2IAdapterConfig, unet: UNetConfig,
                      source: str = "the T2I-Adapter") -> ControlResiduals:
    """ControlResiduals with the features added to the outputs of their input blocks (``inputs``,
    as ComfyUI's apply_control(h, 'input'): later blocks and the skip see them), the middle's
    feature for SDXL adapters, and zeros (0-d, broadcast) elsewhere. Refuses (ValueError) a
    U-Net whose blocks there have other widths."""
    blocks = len(unet.channel_mult) * (unet.num_res_blocks + 1)
    widths = [unet.model_channels]  # the U-Net's input block output widths
    for level, mult in enumerate(unet.channel_mult):
        widths += [mult * unet.model_channels] * unet.num_res_blocks
        if level < len(unet.channel_mult) - 1:
            widths.append(mult * unet.model_channels)
    zero = features[0].new_zeros(())
    inputs, middle = [zero] * blocks, zero
    for feature, position in zip(features, feature_positions(adapter_config, unet), strict=True):
        width = widths[-1] if position is None else (widths[position] if position < blocks else None)
        if width != feature.shape[1]:
            raise ValueError(f"{source} does not fit this model: a {feature.shape[1]}-channel feature for "
                             f"{'the middle block' if position is None else f'input block {position}'}, "
                             f"which has {width if width is not None else 'no such block'}"
                             f"{' channels' if width is not None else ''}")
        if position is None:
            middle = feature
        else:
            inputs[position] = feature
    return ControlResiduals([zero] * blocks, middle, inputs)


def t2i_adapter_config_from_state_dict(sd: dict[str, torch.Tensor]) -> T2IAdapterConfig:
    """The configuration of an original-layout adapter, from its shapes."""
    if "body.0.out_conv.weight" in sd:  # light
        levels = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"body\.(\d+)\.out_conv\.weight$", k)))
        blocks = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"body\.0\.body\.(\d+)\.block1\.weight$", k)))
        return T2IAdapterConfig(
            kind="light", in_channels=sd["body.0.in_conv.weight"].shape[1],
            channels=tuple(sd[f"body.{i}.out_conv.weight"].shape[0] for i in range(levels)), num_res_blocks=blocks,
            inner_channels=tuple(sd[f"body.{i}.in_conv.weight"].shape[0] for i in range(levels)))
    if "conv_in.weight" not in sd:
        raise ValueError("not a T2I-Adapter: neither conv_in (full) nor body.0.out_conv (light)")
    count = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"body\.(\d+)\.block1\.weight$", k)))
    blocks = 2  # as the released adapters (and ComfyUI): two residual blocks per level
    if count % blocks:
        raise ValueError(f"a full T2I-Adapter with {count} residual blocks, not a multiple of {blocks}")
    cin = sd["conv_in.weight"].shape[1]
    return T2IAdapterConfig(
        kind="full", in_channels=cin,
        channels=tuple(sd[f"body.{i * blocks}.block1.weight"].shape[0] for i in range(count // blocks)),
        num_res_blocks=blocks, kernel_size=sd["body.0.block2.weight"].shape[2],
        skip_conv="body.0.skep.weight" in sd, conv_down=any(k.endswith("down_opt.op.weight") for k in sd),
        xl=cin in (256, 768))  # 16x16 unshuffle of 1 or 3 channels (ComfyUI's test)


def t2i_adapter_from_state_dict(sd: dict[str, torch.Tensor], *, device="cpu",
                                dtype=torch.float32) -> T2IAdapter:
    config = t2i_adapter_config_from_state_dict(sd)
    return load_on_meta(lambda: T2IAdapter(config), sd, device=device, dtype=dtype)
