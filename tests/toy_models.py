"""Small stand-in models for sampling tests (no checkpoint needed)."""

from dataclasses import dataclass

import torch

from nodeflow.sampling.model import DiffusionModel, LatentFormat
from nodeflow.sampling.schedules import ModelSampling


@dataclass(frozen=True)
class ToyConfig:
    in_channels: int = 4


class ToyUNet(torch.nn.Module):
    """eps = tanh(x) * 0.5 + mean of the context * 0.1 + t / 1000 * 0.01: cheap, smooth, and it
    depends on every input the guidance varies."""

    def __init__(self, in_channels: int = 4) -> None:
        super().__init__()
        self.config = ToyConfig(in_channels)
        self.scale = torch.nn.Parameter(torch.tensor(0.5))
        self.calls = []

    def forward(self, x, timesteps, context, control=None):
        self.calls.append(x.shape[0])
        out = torch.tanh(x[:, :4]) * self.scale + context.mean(dim=(1, 2))[:, None, None, None] * 0.1
        out = out + timesteps[:, None, None, None] / 1000 * 0.01
        if control is not None:
            out = out + control.middle.mean() * 0
        return out


def toy_model(in_channels: int = 4) -> DiffusionModel:
    return DiffusionModel(ToyUNet(in_channels), ModelSampling.sd1(), LatentFormat(),
                          torch.device("cpu"), torch.float32)


def cond(value: float, tokens: int = 77, **options):
    return [(torch.full((1, tokens, 8), value), dict(options))]
