"""A ControlNet attached to conditioning: the ``ControlHook`` that ControlNetApply nodes add.

The control image (IMAGE, 0..1) is resized once per latent size to 8x the latent grid
(nearest-exact, centre crop, as ComfyUI), batched per half (see ``broadcast_hint``) and moved to
the model's device and dtype; the result is cached in the hook. Residuals are the ControlNet's
outputs times the strength; outside [start_percent, end_percent] of the schedule the hook gives
none.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from nodeflow.errors import NodeflowError
from nodeflow.image.ops import repeat_to_batch, upscale
from nodeflow.models.unet import ControlResiduals


@dataclass(eq=False)
class ControlNetHook:
    controlnet: torch.nn.Module  # nodeflow.models.controlnet.ControlNetModel
    image: torch.Tensor  # IMAGE (B, H, W, C) in 0..1
    strength: float = 1.0
    start_percent: float = 0.0
    end_percent: float = 1.0
    previous: object = None  # the hook this one chains onto
    _hints: dict = field(default_factory=dict, repr=False)

    def hint(self, batch: int, height: int, width: int, device, dtype, halves: int = 1) -> torch.Tensor:
        """The control image for a model batch of ``batch`` latents (h, w) made of ``halves``
        equal parts (cached per size, device and dtype)."""
        key = (batch, halves, height, width, str(device), dtype)
        if key not in self._hints:
            pixels = self.image[..., :3].movedim(-1, 1).float()  # (B, 3, H, W)
            pixels = upscale(pixels, width * 8, height * 8, "nearest-exact", "center")
            self._hints[key] = broadcast_hint(pixels, batch, halves).to(device=device, dtype=dtype)
        return self._hints[key]

    def residuals(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor,
                  sigma: torch.Tensor, model, halves: int = 1, y: torch.Tensor | None = None) -> ControlResiduals | None:
        """Residuals for x; ``halves``: how many equal parts (conditional, unconditional, area
        entries) the guidance batched into x, each the latent batch in order; ``y``: the batch's
        ADM vectors (SDXL ControlNets take the U-Net's)."""
        if self.strength == 0:
            return None
        check_fits(self.controlnet, model)
        if getattr(self.controlnet, "is_t2i_adapter", False):
            return self._adapter_residuals(x, model, halves).scaled(self.strength)
        dtype = next(self.controlnet.parameters()).dtype
        hint = self.hint(x.shape[0], x.shape[2], x.shape[3], x.device, dtype, halves)
        extra = {} if y is None else {"y": y.to(dtype)}
        out = self.controlnet(x, hint, timesteps, context, **extra)
        return out.scaled(self.strength)

    def _adapter_residuals(self, x: torch.Tensor, model, halves: int) -> ControlResiduals:
        """A T2I-Adapter's features, placed as ComfyUI adds them (nodeflow.models.t2i_adapter).
        The adapter runs once per latent size, batch, device and dtype (it sees neither the
        latent nor the timestep): the control image resized to 8x the latent grid rounded up to
        the adapter's unshuffle factor, averaged to one channel for one-channel adapters."""
        from nodeflow.models.t2i_adapter import adapter_residuals

        adapter = self.controlnet
        key = ("t2i-adapter", x.shape[0], halves, x.shape[2], x.shape[3], str(x.device))
        if key not in self._hints:
            width, height = adapter.hint_size(x.shape[3] * 8, x.shape[2] * 8)
            pixels = upscale(self.image[..., :3].movedim(-1, 1).float(), width, height, "nearest-exact", "center")
            if adapter.config.hint_channels == 1:
                pixels = pixels.mean(1, keepdim=True)
            dtype = next(adapter.parameters()).dtype
            with torch.no_grad():
                self._hints[key] = adapter(broadcast_hint(pixels, x.shape[0], halves).to(device=x.device, dtype=dtype))
        try:
            return adapter_residuals(self._hints[key], adapter.config, model.unet.config,
                                     getattr(adapter, "source", "") or "the T2I-Adapter")
        except ValueError as error:
            raise NodeflowError(str(error)) from None


def broadcast_hint(pixels: torch.Tensor, batch: int, halves: int = 1) -> torch.Tensor:
    """Control images (N, 3, H, W) for a model batch of ``batch`` rows made of ``halves`` parts.

    As ComfyUI: each part gets the images repeated (or cut) to its own size, so latent row i is
    guided by image row i in the conditional and the unconditional part alike; repeating over
    the whole batch would shift the images of the second part when N is neither 1 nor the
    latent batch (N=2, latent batch 3: rows 0,1,0 | 0,1,0, not 0,1,0 | 1,0,1).
    """
    if halves < 1 or batch % halves:
        raise ValueError(f"a model batch of {batch} cannot be split into {halves} equal parts")
    return repeat_to_batch(repeat_to_batch(pixels, batch // halves), batch)


def _shape_of(config) -> tuple:
    return config.model_channels, tuple(config.channel_mult), config.num_res_blocks, config.context_dim


def check_fits(controlnet: torch.nn.Module, model) -> None:
    """A ControlNet adds residuals to one U-Net architecture; any other is a user's mistake that
    would otherwise surface as a matrix-shape error deep in a forward pass. Refused on one line
    naming the ControlNet's file and both families when the loaders recorded them (an SD1.x
    ControlNet on an SDXL model), else both shapes."""
    ours = getattr(getattr(controlnet, "config", None), "unet", None)
    theirs = getattr(getattr(model, "unet", None), "config", None)
    source = getattr(controlnet, "source", "") or "the ControlNet"
    family, model_family = getattr(controlnet, "family", ""), getattr(model, "family", "")
    name = getattr(model, "name", "") or ""
    if family and model_family and family != model_family:
        raise NodeflowError(f"{source}: an {family} ControlNet cannot guide an {model_family} model"
                            f"{f' ({name})' if name else ''}; use a ControlNet made for {model_family}")
    if ours is None or theirs is None or _shape_of(ours) == _shape_of(theirs):
        return
    def describe(config) -> str:
        channels, mult, blocks, context = _shape_of(config)
        return f"{channels} channels x {mult}, {blocks} res blocks per level, text context {context}"
    made_for = f"an {family} U-Net" if family else "a U-Net"
    raise NodeflowError(f"{source} does not fit this model: it was made for {made_for} with {describe(ours)}, "
                        f"the {model_family + ' ' if model_family else ''}model {name} has {describe(theirs)} "
                        "(use a ControlNet made for this model's family, e.g. SD1.x with SD1.x)")
