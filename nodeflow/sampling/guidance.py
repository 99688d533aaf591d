"""Classifier-free guidance over conditioning lists (Ho & Salimans 2022).

CONDITIONING is a list of ``(cond (1, T, D), options)`` entries. For each list (positive,
negative) every active entry predicts the denoised latent on its area, weighted by its strength,
its mask and a feathered border (8 latent pixels on sides inside the image); the list's
prediction is the weighted sum divided by the total weight, as ComfyUI combines them. Then

    denoised = uncond + cfg * (cond - uncond),

and cfg == 1 skips the negative list. Entries with the same area, context length and control
run in one batched forward (positive before negative).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nodeflow.sampling.model import DiffusionModel

FEATHER = 8  # latent pixels of linear ramp at an area's inner borders


@dataclass(frozen=True)
class _Job:
    """One entry to evaluate: which list, the model input crop, its weight and context."""

    which: int  # 0 positive, 1 negative
    area: tuple[int, int, int, int]  # (h, w, y, x) in latent pixels
    weight: torch.Tensor  # (B, 1|C, h, w)
    context: torch.Tensor  # (1, T, D)
    control: object
    concat: torch.Tensor | None


def resolve_area(options: dict, height: int, width: int) -> tuple[int, int, int, int] | None:
    """The entry's area (h, w, y, x) in latent pixels, or None for the whole latent."""
    area = options.get("area")
    if area is None:
        return None
    if area[0] == "percentage":
        _, h, w, y, x = area
        area = (max(1, round(h * height)), max(1, round(w * width)), round(y * height), round(x * width))
    h, w, y, x = (int(v) for v in area)
    y, x = min(y, height - 1), min(x, width - 1)
    return (min(h, height - y), min(w, width - x), y, x)


def entry_active(options: dict, sigma: float, model: DiffusionModel) -> bool:
    """Whether the entry's timestep range (ConditioningSetTimestepRange) includes ``sigma``."""
    if "timestep_start" in options and sigma > model.sampling.percent_to_sigma(options["timestep_start"]):
        return False
    if "timestep_end" in options and sigma < model.sampling.percent_to_sigma(options["timestep_end"]):
        return False
    return True


def _weight(options: dict, x: torch.Tensor, area: tuple[int, int, int, int]) -> torch.Tensor:
    h, w, y, x0 = area
    batch, _, height, width = x.shape
    weight = torch.full((batch, 1, h, w), float(options.get("strength", 1.0)), device=x.device)
    mask = options.get("mask")
    if mask is not None:
        mask = mask.to(x.device, torch.float32)
        mask = mask.reshape(-1, 1, mask.shape[-2], mask.shape[-1])
        if mask.shape[-2:] != (height, width):
            mask = F.interpolate(mask, size=(height, width), mode="bilinear", align_corners=False)
        mask = mask[:, :, y:y + h, x0:x0 + w] * float(options.get("mask_strength", 1.0))
        return weight * _repeat_to(mask, batch)
    ramp = [(t + 1) / FEATHER for t in range(FEATHER)]
    for t, factor in enumerate(ramp):  # feather the borders that are inside the latent
        if y != 0:
            weight[:, :, t:t + 1, :] *= factor
        if y + h < height:
            weight[:, :, h - 1 - t:h - t, :] *= factor
        if x0 != 0:
            weight[:, :, :, t:t + 1] *= factor
        if x0 + w < width:
            weight[:, :, :, w - 1 - t:w - t] *= factor
    return weight


def _repeat_to(tensor: torch.Tensor, batch: int) -> torch.Tensor:
    if tensor.shape[0] == batch:
        return tensor
    repeats = math.ceil(batch / tensor.shape[0])
    return tensor.repeat(repeats, *([1] * (tensor.ndim - 1)))[:batch]


def _mask_bounds(mask: torch.Tensor, height: int, width: int) -> tuple[int, int, int, int]:
    """Bounding box (h, w, y, x) in latent pixels of a mask's non-zero part."""
    mask = mask.reshape(-1, 1, mask.shape[-2], mask.shape[-1]).float()
    mask = F.interpolate(mask, size=(height, width), mode="bilinear", align_corners=False)
    rows = torch.nonzero(mask.amax(dim=(0, 1, 3)) > 0)
    cols = torch.nonzero(mask.amax(dim=(0, 1, 2)) > 0)
    if len(rows) == 0:
        return (height, width, 0, 0)
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
    return (y1 - y0 + 1, x1 - x0 + 1, y0, x0)


class CFGDenoiser:
    """``denoise(x, sigma)`` for the samplers: guidance over positive/negative lists."""

    def __init__(self, model: DiffusionModel, positive: list, negative: list, cfg: float,
                 concat: torch.Tensor | None = None) -> None:
        self.model, self.positive, self.negative, self.cfg = model, positive, negative, cfg
        self.concat = concat  # extra input channels (inpainting model), (B, c, h, w)
        self.calls = 0  # model forwards, for tests and statistics

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        lists = [self.positive] if math.isclose(self.cfg, 1.0) else [self.positive, self.negative]
        predictions = self._predict(x, sigma, lists)
        if len(predictions) == 1:
            return predictions[0]
        cond, uncond = predictions
        return uncond + (cond - uncond) * self.cfg

    def _jobs(self, x: torch.Tensor, sigma: float, lists: list[list]) -> list[_Job]:
        height, width = x.shape[-2:]
        jobs = []
        for which, conditioning in enumerate(lists):
            for cond, options in conditioning:
                if not entry_active(options, sigma, self.model):
                    continue
                area = resolve_area(options, height, width)
                if area is None and options.get("set_area_to_bounds") and options.get("mask") is not None:
                    area = _mask_bounds(options["mask"], height, width)
                area = area or (height, width, 0, 0)
                jobs.append(_Job(which, area, _weight(options, x, area), cond,
                                 options.get("control"), self.concat))
        return jobs

    def _predict(self, x: torch.Tensor, sigma: torch.Tensor, lists: list[list]) -> list[torch.Tensor]:
        sums = [torch.zeros_like(x) for _ in lists]
        weights = [torch.full_like(x, 1e-37) for _ in lists]  # uncovered pixels predict 0 (as ComfyUI)
        jobs = self._jobs(x, float(sigma.max()), lists)
        groups: dict[tuple, list[_Job]] = {}
        for job in jobs:
            key = (job.area, tuple(job.context.shape), id(job.control))
            groups.setdefault(key, []).append(job)
        for (area, _, _), members in groups.items():
            h, w, y, x0 = area
            crop = x[:, :, y:y + h, x0:x0 + w]
            batch = crop.shape[0]
            model_x = torch.cat([crop] * len(members))  # (n B, C, h, w)
            context = torch.cat([_repeat_to(job.context, batch) for job in members])
            concat = None
            if self.concat is not None:
                concat = torch.cat([self.concat[:, :, y:y + h, x0:x0 + w]] * len(members))
            sigmas = torch.cat([sigma] * len(members))
            out = self.model.predict_denoised(model_x, sigmas, context, control=members[0].control,
                                              concat=concat)
            self.calls += 1
            for job, prediction in zip(members, out.chunk(len(members))):
                sums[job.which][:, :, y:y + h, x0:x0 + w] += prediction * job.weight
                weights[job.which][:, :, y:y + h, x0:x0 + w] += job.weight
        return [s / w for s, w in zip(sums, weights)]
