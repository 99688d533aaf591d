"""Small stand-in models for sampling tests (no checkpoint needed)."""

from dataclasses import dataclass

import torch

from nodeflow.models.unet import ControlResiduals
from nodeflow.sampling.model import DiffusionModel, LatentFormat
from nodeflow.sampling.model_sampling import ModelSampling


@dataclass(frozen=True)
class ToyConfig:
    in_channels: int = 4


class ToyUNet(torch.nn.Module):
    """eps = 0.5 tanh(x) + 0.1 mean(context) + 0.2 mean(x) + 0.01 t / 1000 + mean(control.middle):
    cheap and smooth; it depends on every input the guidance varies, including the crop (through
    the mean of x) and the ControlNet residuals. Records the batch size of every call."""

    def __init__(self, in_channels: int = 4, scale: float = 0.5) -> None:
        super().__init__()
        self.config = ToyConfig(in_channels)
        self.scale = torch.nn.Parameter(torch.tensor(scale))
        self.calls: list[int] = []  # batch size of every call
        self.shapes: list[tuple[int, ...]] = []  # input shape of every call

    def forward(self, x, timesteps, context, control=None):
        self.calls.append(x.shape[0])
        self.shapes.append(tuple(x.shape))
        batch = x.shape[0]
        out = torch.tanh(x[:, :4]) * self.scale + context.mean(dim=(1, 2)).view(batch, 1, 1, 1) * 0.1
        out = out + x[:, :4].mean(dim=(1, 2, 3)).view(batch, 1, 1, 1) * 0.2
        out = out + timesteps.view(batch, 1, 1, 1) / 1000 * 0.01
        if control is not None:
            out = out + control.middle.reshape(batch, -1).mean(dim=1).view(batch, 1, 1, 1)
        return out


class ZeroUNet(ToyUNet):
    """eps = 0: the denoiser returns x itself, so samplers leave x unchanged."""

    def forward(self, x, timesteps, context, control=None):
        self.calls.append(x.shape[0])
        return torch.zeros_like(x[:, :4])


def toy_model(in_channels: int = 4, unet: torch.nn.Module | None = None,
              latent_format: LatentFormat | None = None) -> DiffusionModel:
    return DiffusionModel(unet or ToyUNet(in_channels), ModelSampling.sd1(), latent_format or LatentFormat(),
                          torch.device("cpu"), torch.float32)


def cond(value: float, tokens: int = 77, **options):
    return [(torch.full((1, tokens, 8), value), dict(options))]


def context(value: float, batch: int = 1, tokens: int = 77) -> torch.Tensor:
    return torch.full((batch, tokens, 8), value)


@dataclass(eq=False)
class ConstantHook:
    """A ControlHook whose residuals are ``value * strength`` everywhere (middle (B, 1, 1, 1))."""

    value: float
    strength: float = 1.0
    start_percent: float = 0.0
    end_percent: float = 1.0
    previous: object = None

    def residuals(self, x, timesteps, context, sigma, model, halves=1):
        middle = torch.full((x.shape[0], 1, 1, 1), self.value)
        return ControlResiduals([], middle).scaled(self.strength)
