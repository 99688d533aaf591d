"""CONDITIONING lists: copying helpers for the nodes, and their resolution for one sampling run.

A CONDITIONING value is a list of ``(cond (1, T, D), options)`` entries, as ComfyUI's. Options
used here: ``pooled_output``, the SDXL size conditions (``width``, ``height``, ``crop_w``,
``crop_h``, ``target_width``, ``target_height``, ``aesthetic_score``: see nodeflow.sampling.adm),
``area`` ((h, w, y, x) in latent pixels, or ("percentage", h, w,
y, x) in fractions), ``strength``, ``mask`` ((B, H, W) at any size), ``mask_strength``,
``set_area_to_bounds``, ``timestep_start`` / ``timestep_end`` (fractions of the schedule, 0 the
noisy start), ``control`` (a ControlHook) and ``control_apply_to_uncond``, ``gligen``
(GLIGENTextBoxApply's boxes, nodeflow.sampling.gligen); for inpainting models
``concat_latent_image`` (a VAE latent (B, 4, h, w)) and ``concat_mask`` (B, 1, H, W), read by
``inpaint_concat``.

Nothing here modifies a list, an entry or its dict: every helper returns new ones, so cached
node outputs never change.

Before sampling, ``resolve`` turns each list into ``Entry`` records for the latent's size (areas
in latent pixels, masks resized to the latent grid, timestep fractions converted to sigmas, the
ADM vector of SDXL models built from the pooled output and sizes), and
``pair_areas`` / ``share_control`` add the entries ComfyUI adds so that positive and negative
cover the same regions with the same ControlNets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F

from nodeflow.image.ops import upscale

Conditioning = list[tuple[torch.Tensor, dict[str, Any]]]
Area = tuple[int, int, int, int]  # (h, w, y, x) in latent pixels

MIN_BOUNDS = 8  # ComfyUI's smallest "mask bounds" area, in latent pixels
#: an SD latent (in the model's scaled space) of a blank image: what an inpainting model sees when
#: there is no mask at all (ComfyUI's blank_inpaint_image_like)
BLANK_INPAINT_LATENT = (0.8223, -0.6876, 0.6364, 0.1380)


# ---------------------------------------------------------------- helpers for the nodes


def with_options(conditioning: Conditioning, **options: Any) -> Conditioning:
    """A copy of every entry with ``options`` set."""
    return [(cond, {**entry, **options}) for cond, entry in conditioning]


def combine(*conditionings: Conditioning) -> Conditioning:
    """All entries of all lists, in order (the sampler averages their predictions)."""
    return [(cond, dict(options)) for conditioning in conditionings for cond, options in conditioning]


def concat_tokens(conditioning_to: Conditioning, conditioning_from: Conditioning) -> Conditioning:
    """Every entry of ``conditioning_to`` with the first entry of ``conditioning_from``'s tokens
    appended (T1 + T2 tokens)."""
    source = conditioning_from[0][0]
    return [(torch.cat([cond, source.to(cond)], dim=1), dict(options))  # (1, T1 + T2, D)
            for cond, options in conditioning_to]


def average(conditioning_to: Conditioning, conditioning_from: Conditioning, to_strength: float) -> Conditioning:
    """to * s + from * (1 - s) with ``from`` the first entry of conditioning_from, its tokens cut
    or zero-padded to each entry's length; pooled outputs blended the same way."""
    source, source_options = conditioning_from[0]
    source_pooled = source_options.get("pooled_output")
    result = []
    for cond, options in conditioning_to:
        other = source.to(cond)[:, :cond.shape[1]]  # (1, <=T, D)
        if other.shape[1] < cond.shape[1]:
            other = torch.cat([other, torch.zeros_like(cond[:, other.shape[1]:])], dim=1)
        new_options = dict(options)
        pooled = options.get("pooled_output")
        if pooled is not None and source_pooled is not None:
            new_options["pooled_output"] = pooled * to_strength + source_pooled.to(pooled) * (1.0 - to_strength)
        elif source_pooled is not None:
            new_options["pooled_output"] = source_pooled
        result.append((cond * to_strength + other * (1.0 - to_strength), new_options))
    return result


def zero_out(conditioning: Conditioning) -> Conditioning:
    """Embeddings and pooled outputs replaced by zeros (options otherwise kept)."""
    result = []
    for cond, options in conditioning:
        new_options = dict(options)
        if options.get("pooled_output") is not None:
            new_options["pooled_output"] = torch.zeros_like(options["pooled_output"])
        result.append((torch.zeros_like(cond), new_options))
    return result


# ---------------------------------------------------------------- resolution for a run


@dataclass(frozen=True, eq=False)
class Entry:
    """One conditioning entry resolved for a latent of a given size."""

    context: torch.Tensor  # (1 | B, T, D)
    area: Area | None = None  # None: the whole latent
    strength: float = 1.0
    mask: torch.Tensor | None = None  # (B | 1, h, w) on the latent grid
    mask_strength: float = 1.0
    sigma_start: float | None = None  # inactive while sigma > sigma_start
    sigma_end: float | None = None  # inactive once sigma < sigma_end
    control: Any = None  # the last ControlHook of a chain
    control_to_uncond: bool = False
    y: torch.Tensor | None = None  # (1 | B, adm): the ADM vector (SDXL: pooled text and sizes; unCLIP: image)
    gligen: tuple | None = None  # ("position", GLIGEN model, boxes): see nodeflow.sampling.gligen

    def active(self, sigma: float) -> bool:
        """Whether sigma lies within the entry's timestep range (ConditioningSetTimestepRange)."""
        if self.sigma_start is not None and sigma > self.sigma_start:
            return False
        return not (self.sigma_end is not None and sigma < self.sigma_end)


def resolve(conditioning: Conditioning, height: int, width: int, model, negative: bool = False,
            seed: int = 0) -> list[Entry]:
    """Entries for a latent of ``height`` x ``width``: percentage areas to latent pixels
    (rounded, at least 1), masks resized bilinearly to the latent grid, "mask bounds" areas from
    the masks' bounding box (at least 8 x 8), timestep fractions to sigmas, and for SDXL models
    the ADM vector (``model.encode_adm``; sizes the options do not give are the whole latent's
    x 8, whatever the entry's area, as ComfyUI's; ``negative``: this is the negative list; ``seed``:
    the sampler's noise seed, which unCLIP models' ADM vectors draw their noise from)."""
    return [_resolve_entry(cond, options, height, width, model, negative, seed) for cond, options in conditioning]


def _resolve_entry(cond: torch.Tensor, options: dict, height: int, width: int, model, negative: bool,
                   seed: int) -> Entry:
    area = options.get("area")
    if area is not None and area[0] == "percentage":
        _, h, w, y, x = area
        area = (max(1, round(h * height)), max(1, round(w * width)), round(y * height), round(x * width))
    elif area is not None:
        area = tuple(int(v) for v in area)
    mask = options.get("mask")
    if mask is not None:
        mask = resize_mask(mask, height, width)
        if options.get("set_area_to_bounds"):
            area = mask_bounds(mask)
    sampling = model.sampling
    start = options.get("timestep_start", options.get("start_percent"))  # ComfyUI's newer keys too
    end = options.get("timestep_end", options.get("end_percent"))
    encode_adm = getattr(model, "encode_adm", None)
    y = encode_adm(options, width * 8, height * 8, negative, seed=seed) if encode_adm is not None else None
    return Entry(
        context=cond, area=area, strength=float(options.get("strength", 1.0)), mask=mask,
        mask_strength=float(options.get("mask_strength", 1.0)),
        sigma_start=None if start is None else sampling.percent_to_sigma(start),
        sigma_end=None if end is None else sampling.percent_to_sigma(end),
        control=options.get("control"), control_to_uncond=bool(options.get("control_apply_to_uncond")), y=y,
        gligen=options.get("gligen"))


def resize_mask(mask: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """A mask (H, W) or (B, H, W) as float32 (B, height, width), bilinear when resized."""
    mask = mask.float()
    if mask.ndim == 2:
        mask = mask[None]
    if tuple(mask.shape[-2:]) != (height, width):
        mask = F.interpolate(mask[:, None], size=(height, width), mode="bilinear",
                             align_corners=False)[:, 0]  # (B, height, width)
    return mask


def mask_bounds(mask: torch.Tensor) -> Area:
    """Bounding box (h, w, y, x) of the non-zero part of a (B, h, w) mask over the batch, at
    least 8 x 8; an all-zero mask gives (8, 8, 0, 0) (ComfyUI's choice: nothing is weighted)."""
    nonzero = mask.abs().amax(dim=0) != 0  # (h, w)
    if not bool(nonzero.any()):
        return (MIN_BOUNDS, MIN_BOUNDS, 0, 0)
    rows = torch.nonzero(nonzero.any(dim=1))[:, 0]
    cols = torch.nonzero(nonzero.any(dim=0))[:, 0]
    y, x = int(rows[0]), int(cols[0])
    return (max(MIN_BOUNDS, int(rows[-1]) - y + 1), max(MIN_BOUNDS, int(cols[-1]) - x + 1), y, x)


def _inside(inner: Area, outer: Area) -> bool:
    h, w, y, x = inner
    oh, ow, oy, ox = outer
    return y >= oy and x >= ox and y + h <= oy + oh and x + w <= ox + ow


def pair_areas(lists: list[list[Entry]]) -> list[list[Entry]]:
    """Give every area entry of one list a counterpart with the same area in the others.

    As ComfyUI: for an area entry with no equal area in another list, that list gains a copy of
    the entry (area, mask, strength, range, control) carrying the context (and ADM vector) of the
    other list's smallest entry that encloses it (an entry without area encloses everything but
    loses to any enclosing area). The negative prompt then pushes away on the same region the positive pulls.
    """
    result = [list(entries) for entries in lists]
    for k, entries in enumerate(result):
        for entry in list(entries):
            if entry.area is None:
                continue
            for kk, others in enumerate(result):
                if kk != k:
                    _add_counterpart(others, entry)
    return result


def _add_counterpart(others: list[Entry], entry: Entry) -> None:
    smallest = None
    for other in others:
        if other.area is None:
            smallest = smallest or other
        elif _inside(entry.area, other.area):
            if smallest is None or smallest.area is None or math.prod(smallest.area[:2]) > math.prod(other.area[:2]):
                smallest = other
    if smallest is None or smallest.area == entry.area:
        return
    others.append(replace(entry, context=smallest.context, y=smallest.y))


def share_control(positive: list[Entry], negative: list[Entry]) -> list[Entry]:
    """ControlNets applied to the positive only (``control_apply_to_uncond``) are copied onto the
    negative's whole-image entries, unless one of those already has a ControlNet (ComfyUI)."""
    controls = [e.control for e in positive if e.area is None and e.control is not None and e.control_to_uncond]
    negative = list(negative)
    plain = [i for i, e in enumerate(negative) if e.area is None and e.control is None]
    has_control = any(e.area is None and e.control is not None for e in negative)
    if has_control or not controls or not plain:
        return negative
    for n, control in enumerate(controls):
        index = plain[n % len(plain)]
        copy = replace(negative[index], control=control)
        if negative[index].control is None:
            negative[index] = copy
        else:
            negative.append(copy)
    return negative


# ---------------------------------------------------------------- inpainting models' extra input


def inpaint_concat(model, lists: list[Conditioning], source: torch.Tensor,
                   noise_mask: torch.Tensor | None) -> torch.Tensor | None:
    """The extra input channels of an inpainting model (a U-Net with 2 C + 1 input channels for
    C-channel latents: SD1/SD2/SDXL inpainting, 9), as ComfyUI's BaseModel.concat_cond: the mask
    (1 channel) then the masked image's latent (C channels), (B, C + 1, h, w) like ``source``.
    None for any other model (its input is the latent alone: the options are ignored).

    ``source`` is the latent being sampled in the model's space (process_in), ``noise_mask`` its
    noise mask resized to it ((B, C, h, w), or None). The first entry of ``lists`` that has
    ``concat_latent_image`` or ``concat_mask`` (InpaintModelConditioning puts both on every entry)
    gives them: the latent is taken into the model's space; without one the masked image is
    ``source`` and the mask the noise mask (VAEEncodeForInpaint's latent). Either is resized to the
    latent (bilinear, centre crop) and to its batch (ComfyUI's resize_to_batch_size); the mask is
    rounded to 0 / 1. Without any mask the model gets mask 1 and the latent of a blank image.
    """
    in_channels = getattr(getattr(model.unet, "config", None), "in_channels", None)
    batch, channels, height, width = source.shape
    if in_channels is None or in_channels <= channels:
        return None
    if in_channels != 2 * channels + 1:
        raise ValueError(f"the U-Net takes {in_channels} input channels for {channels}-channel latents; only "
                         f"inpainting models ({2 * channels + 1}: mask and masked latent) are known")
    options = next((o for entries in lists for _, o in entries
                    if "concat_latent_image" in o or "concat_mask" in o), {})
    image = options.get("concat_latent_image")
    if image is None:
        image = source
    else:
        image = model.latent_format.process_in(image.float().to(source.device))
    if image.shape[1:] != source.shape[1:]:
        image = upscale(image, width, height, "bilinear", "center")
    image = _spread_to_batch(image, batch)
    mask = options.get("concat_mask", noise_mask)
    if mask is None:
        if len(BLANK_INPAINT_LATENT) != channels:
            raise ValueError(f"no blank inpainting latent is known for {channels}-channel latents")
        blank = torch.tensor(BLANK_INPAINT_LATENT, dtype=source.dtype, device=source.device)
        return torch.cat([torch.ones_like(source[:, :1]), blank.view(1, -1, 1, 1).expand_as(source)], dim=1)
    mask = mask.float().to(source.device)
    if mask.ndim == 4:
        mask = mask[:, :1]
    mask = mask.reshape(-1, 1, mask.shape[-2], mask.shape[-1])  # (B', 1, H, W)
    if mask.shape[-2:] != (height, width):
        mask = upscale(mask, width, height, "bilinear", "center")
    mask = _spread_to_batch(mask.round(), batch)
    return torch.cat([mask, image.to(source)], dim=1)  # (B, 1 + C, h, w)


def _spread_to_batch(tensor: torch.Tensor, batch: int) -> torch.Tensor:
    """``tensor`` with ``batch`` items, spread evenly over its own (ComfyUI's resize_to_batch_size:
    2 -> 4 gives 0, 0, 1, 1; 4 -> 2 gives 0, 3)."""
    size = tensor.shape[0]
    if size == batch:
        return tensor
    if batch <= 1:
        return tensor[:batch]
    if batch < size:
        scale = (size - 1) / (batch - 1)
        index = [min(round(i * scale), size - 1) for i in range(batch)]
    else:
        scale = size / batch
        index = [min(math.floor((i + 0.5) * scale), size - 1) for i in range(batch)]
    return tensor[torch.tensor(index, device=tensor.device)]
