"""Latent arithmetic, batches and files behind the latent nodes (ComfyUI's conventions: LATENT is
{"samples": (B, C, h, w), optional "noise_mask", "batch_index"}).

- ``match_latent``: the second operand of LatentAdd/Subtract/Interpolate/Batch resized (bilinear,
  centre crop) to the first's size and repeated or cut to its batch, as ComfyUI's reshape_latent_to.
- ``interpolate``: LatentInterpolate's blend of directions and lengths of the channel vectors.
- ``concat`` / ``cut``: LatentConcat and LatentCut along x (width), y (height) or t (the third
  dimension from the end: the channels of an image latent, as in ComfyUI).
- ``rebatch_latents``: RebatchLatents' regrouping, with noise masks and batch indices.
- ``write_latent_file`` / ``latent_from_file``: ComfyUI's .latent files (safetensors with
  ``latent_tensor`` and the ``latent_format_version_0`` marker); written without overwriting.
"""

from __future__ import annotations

from pathlib import Path

import torch

from nodeflow.image.files import save_numbered
from nodeflow.image.ops import repeat_to_batch, upscale

#: Latents in files without the version marker were stored unscaled (ComfyUI multiplies by 1 / 0.18215).
LEGACY_LATENT_SCALE = 1.0 / 0.18215
LATENT_KEY = "latent_tensor"
VERSION_MARKER = "latent_format_version_0"
CONCAT_DIMS = ("x", "-x", "y", "-y", "t", "-t")
CUT_DIMS = ("x", "y", "t")


def match_latent(target_shape: torch.Size | tuple[int, ...], x: torch.Tensor,
                 repeat_batch: bool = True) -> torch.Tensor:
    """``x`` resized (bilinear, centre crop to the aspect ratio) to ``target_shape``'s height and
    width when its shape after the batch differs, then repeated or cut to the target's batch
    (unless ``repeat_batch`` is False). A different channel count is left as it is: the caller
    reports it."""
    if tuple(x.shape[1:]) != tuple(target_shape[1:]):
        x = upscale(x, target_shape[-1], target_shape[-2], "bilinear", "center")
    return repeat_to_batch(x, target_shape[0]) if repeat_batch else x


def interpolate(a: torch.Tensor, b: torch.Tensor, ratio: float) -> torch.Tensor:
    """LatentInterpolate (ratio 1: ``a``, 0: ``b``). At every latent pixel the channel vectors are
    split into length and direction: the direction is the normalised ratio * dir(a) + (1 - ratio) *
    dir(b), the length ratio * |a| + (1 - ratio) * |b|. Zero vectors have direction 0 (and
    opposite directions at ratio 0.5 give 0)."""
    length_a = torch.linalg.vector_norm(a, dim=1, keepdim=True)  # (B, 1, h, w)
    length_b = torch.linalg.vector_norm(b, dim=1, keepdim=True)
    mixed = torch.nan_to_num(a / length_a) * ratio + torch.nan_to_num(b / length_b) * (1.0 - ratio)
    direction = torch.nan_to_num(mixed / torch.linalg.vector_norm(mixed, dim=1, keepdim=True))
    return direction * (length_a * ratio + length_b * (1.0 - ratio))


def _dim(x: torch.Tensor, name: str) -> int:
    """x: the last dimension (width), y: the one before (height), t: the third from the end."""
    return x.ndim - {"x": 1, "y": 2, "t": 3}[name.lstrip("-")]


def concat(a: torch.Tensor, b: torch.Tensor, dim: str) -> torch.Tensor:
    """``b`` (repeated or cut to ``a``'s batch) joined after ``a`` along ``dim``, or before it for
    "-x", "-y", "-t". Raises ValueError when the other dimensions differ."""
    b = repeat_to_batch(b, a.shape[0]).to(a)
    axis = _dim(a, dim)
    if b.ndim != a.ndim or any(sa != sb for i, (sa, sb) in enumerate(zip(a.shape, b.shape)) if i != axis):
        raise ValueError(f"shape {tuple(b.shape)} cannot join {tuple(a.shape)} along {dim.lstrip('-')} "
                         "(the other dimensions must be equal)")
    return torch.cat((b, a) if dim.startswith("-") else (a, b), dim=axis)


def cut(x: torch.Tensor, dim: str, index: int, amount: int) -> torch.Tensor:
    """``amount`` slices of ``x`` along ``dim`` from ``index`` (negative: from the end); the start
    is clamped into the tensor and the amount to what is left after it."""
    axis = _dim(x, dim)
    size = x.shape[axis]
    if index >= 0:
        index = min(index, size - 1)
        amount = min(size - index, amount)
    else:
        index = max(index, -size)
        amount = min(-index, amount)
    return torch.narrow(x, axis, index, amount)


def rebatch_latents(latents: list[dict], batch_size: int) -> list[dict]:
    """ComfyUI's RebatchLatents over a list of LATENTs: consecutive latents of the same height and
    width are joined and split into batches of ``batch_size`` (the last of each run may be
    smaller; a new size starts a new batch). Each batch is {"samples", "batch_index", "noise_mask"}:
    batch indices are the latents' own, else their position among all latents so far; masks are
    the latents' noise masks repeated to their batch, else ones (B, 1, 8h, 8w), and a batch whose
    mask is all ones has none."""
    runs: list[list[tuple[torch.Tensor, torch.Tensor, list[int]]]] = []
    position = 0
    for latent in latents:
        samples = latent["samples"]
        batch = samples.shape[0]
        mask = latent.get("noise_mask")
        if mask is None:
            mask = torch.ones((batch, 1, samples.shape[-2] * 8, samples.shape[-1] * 8))
        mask = repeat_to_batch(mask, batch)
        indices = list(latent["batch_index"]) if "batch_index" in latent else list(range(position, position + batch))
        position += len(indices)
        if not runs or runs[-1][-1][0].shape[-2:] != samples.shape[-2:]:
            runs.append([])
        runs[-1].append((samples, mask, indices))
    batches = []
    for run in runs:
        samples = torch.cat([s for s, _, _ in run])
        masks = torch.cat([m for _, m, _ in run])
        indices = [i for _, _, part in run for i in part]
        for start in range(0, samples.shape[0], batch_size):
            batch = {"samples": samples[start:start + batch_size],
                     "noise_mask": masks[start:start + batch_size],
                     "batch_index": indices[start:start + batch_size]}
            if batch["noise_mask"].mean() == 1.0:
                del batch["noise_mask"]
            batches.append(batch)
    return batches


def join_latent_batches(batches: list[dict]) -> dict:
    """One LATENT holding ``batches`` in order (what running the next node on each batch and
    gathering the results sees): samples and batch indices joined; a noise mask when any batch
    has one (batches without one get ones: repaint everything)."""
    joined = {"samples": torch.cat([b["samples"] for b in batches]),
              "batch_index": [i for b in batches for i in b["batch_index"]]}
    masks = [b.get("noise_mask") for b in batches]
    shape = next((m.shape[1:] for m in masks if m is not None), None)
    if shape is not None:
        joined["noise_mask"] = torch.cat([m if m is not None else torch.ones((b["samples"].shape[0], *shape))
                                          for m, b in zip(masks, batches)])
    return joined


def latent_file_tensors(samples: torch.Tensor) -> dict[str, torch.Tensor]:
    """The tensors of a .latent file as ComfyUI's SaveLatent writes them: the samples as they are
    (contiguous, on the CPU) and an empty version marker."""
    return {LATENT_KEY: samples.detach().cpu().contiguous(), VERSION_MARKER: torch.tensor([])}


def latent_from_file(tensors: dict[str, torch.Tensor]) -> dict:
    """The LATENT of a .latent file's tensors: ``latent_tensor`` in float32, times 1 / 0.18215 when
    the file lacks the ``latent_format_version_0`` marker (files from before it). Raises
    ValueError for a file without ``latent_tensor``."""
    if LATENT_KEY not in tensors:
        found = ", ".join(sorted(tensors)) or "none"
        raise ValueError(f"not a latent file: it has no {LATENT_KEY!r} tensor (found: {found})")
    scale = 1.0 if VERSION_MARKER in tensors else LEGACY_LATENT_SCALE
    return {"samples": tensors[LATENT_KEY].float() * scale}


def write_latent_file(samples: torch.Tensor, folder: Path, name: str, metadata: dict[str, str] | None = None) -> Path:
    """Save ``samples`` as ``name_NNNNN_.latent`` in ``folder`` (the first free counter), never
    overwriting a file and never leaving half a file under that name: the bytes go to a hidden
    temporary file in the folder, which is then linked to the name (failing if it exists, when the
    next counter is tried). Returns the file's path."""
    from safetensors.torch import save as safetensors_bytes

    data = safetensors_bytes(latent_file_tensors(samples), metadata=metadata or None)
    return save_numbered(folder, name, ".latent", lambda path: path.write_bytes(data))
