"""The CLIP_VISION link value: a CLIP image tower (Radford et al. 2021) with ComfyUI's preprocessing,
and the CLIP_VISION_OUTPUT it gives.

Preprocessing, as ComfyUI's clip_preprocess: RGB only; unless the image is already the tower's
size, a resize with torch's antialiased bicubic filter, either of the shorter side to the size and
then the centre cut out (crop "center") or of the whole image to a square (crop "none"); the values
rounded to 8 bits; then CLIP's per-channel mean and deviation taken out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

#: CLIP's image statistics (OpenAI's, which OpenCLIP's ViT-H and bigG were trained with too).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def clip_preprocess(image: torch.Tensor, size: int, crop: bool = True) -> torch.Tensor:
    """IMAGE (B, H, W, C) in 0..1 -> the tower's pixel values (B, 3, size, size), float32."""
    x = image[..., :3].float().movedim(-1, 1)  # (B, 3, H, W)
    height, width = x.shape[-2:]
    if (height, width) != (size, size):
        if crop:
            scale = size / min(height, width)
            target = (round(scale * height), round(scale * width))
        else:
            target = (size, size)
        x = F.interpolate(x, size=target, mode="bicubic", antialias=True)
        top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
        x = x[:, :, top:top + size, left:left + size]  # (B, 3, size, size)
    x = (x * 255.0).clamp(0, 255).round() / 255.0
    mean = torch.tensor(CLIP_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


@dataclass(frozen=True)
class ClipVisionOutput:
    """What CLIPVisionEncode gives (ComfyUI's names; ``output["image_embeds"]`` works too), float32
    on the CPU: ``image_embeds`` (B, P) the projected pooled state; ``last_hidden_state`` (B, 1 + N,
    W) the last layer's tokens (class token first, before the final LayerNorm);
    ``penultimate_hidden_states`` (B, 1 + N, W) the second-to-last layer's."""

    image_embeds: torch.Tensor
    last_hidden_state: torch.Tensor
    penultimate_hidden_states: torch.Tensor

    def __getitem__(self, name: str) -> torch.Tensor:
        return getattr(self, name)


@dataclass(frozen=True, eq=False)
class ClipVision:
    """A CLIP vision tower (transformers' CLIPVisionModelWithProjection) on ``device`` in ``dtype``."""

    model: torch.nn.Module
    device: torch.device
    dtype: torch.dtype
    name: str = ""

    @property
    def image_size(self) -> int:
        return self.model.config.image_size

    @torch.no_grad()
    def encode(self, image: torch.Tensor, crop: bool = True) -> ClipVisionOutput:
        """The tower's output for IMAGE (B, H, W, C), preprocessed as the module docstring says."""
        pixels = clip_preprocess(image.to(self.device), self.image_size, crop).to(self.dtype)
        out = self.model(pixel_values=pixels, output_hidden_states=True)
        cpu = torch.device("cpu")
        return ClipVisionOutput(image_embeds=out.image_embeds.to(cpu, torch.float32),
                                last_hidden_state=out.last_hidden_state.to(cpu, torch.float32),
                                penultimate_hidden_states=out.hidden_states[-2].to(cpu, torch.float32))
