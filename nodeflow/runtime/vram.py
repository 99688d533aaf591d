"""``--vram auto|low|normal|high``: how much of the GPU's memory the models may hold.

- ``normal`` and ``high``: every model is placed on the run's device, as it always was. nodeflow
  makes no difference between the two (ComfyUI's ``--highvram`` also keeps models loaded
  between runs, which nodeflow's output cache already does); ``high`` is accepted for users who
  know the word.
- ``low``: only meaningful on a CUDA GPU (on the CPU or MPS it changes nothing: the weights are
  already in the memory the computation uses). The U-Net's weights stay in CPU memory (pinned, in
  the GPU's compute dtype) and each of its top-level blocks is copied to the GPU just before it
  runs and dropped right after (nodeflow.models.streaming), so about one block's weights are on
  the GPU at a time: SDXL's U-Net (5 GB in fp16) samples in under 4 GB. The text encoders stay on
  the CPU and compute there (as CLIPLoader's ``device=cpu``); the VAE's weights stay on the CPU and
  the whole VAE is copied to the GPU for each encode or decode. ControlNets (plain and union) and
  T2I-Adapters stream like the U-Net. Slower than ``normal`` (every step copies the U-Net's weights once over PCIe).
- ``auto``: ``low`` on a CUDA GPU whose free memory is less than the model file's size x 1.5 +
  1 GiB (``resolve_vram``), else ``normal``; elsewhere ``normal``.

The rule is a pure function of its inputs, so its branches are tested without a GPU;
``vram_mode`` asks the device for its free memory only when the rule needs it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

MODES = ("auto", "low", "normal", "high")
#: ``auto`` picks ``low`` below weights x WEIGHTS_FACTOR + HEADROOM_BYTES of free GPU memory:
#: room for the weights, the activations of a 1024 px SDXL step and the allocator's slack
WEIGHTS_FACTOR = 1.5
HEADROOM_BYTES = 2**30


def resolve_vram(mode: str, device_type: str, weights_bytes: int, free_bytes: int | None) -> str:
    """The effective mode, ``low`` or ``normal``, for ``mode`` (one of MODES) on a device of
    type ``device_type`` ("cuda", "cpu", "mps"), for a model file of ``weights_bytes`` and a GPU
    with ``free_bytes`` free (None: unknown, taken as enough). ``high`` reads as ``normal``;
    ``low`` anywhere but CUDA reads as ``normal`` (nothing to save there)."""
    if mode not in MODES:
        raise ValueError(f"unknown --vram mode {mode!r}; one of {', '.join(MODES)}")
    if device_type != "cuda" or mode in ("normal", "high"):
        return "normal"
    if mode == "low":
        return "low"
    if free_bytes is None:
        return "normal"
    return "low" if free_bytes < weights_bytes * WEIGHTS_FACTOR + HEADROOM_BYTES else "normal"


def vram_mode(mode: str, device, path: str | os.PathLike) -> str:
    """``resolve_vram`` for the model file (or diffusers folder) at ``path`` on ``device`` (a
    torch.device or its name), asking CUDA for its free memory only for ``auto``."""
    import torch  # here, not at import time: nodeflow starts without torch

    device = torch.device(device)
    if device.type != "cuda" or mode != "auto":
        return resolve_vram(mode, device.type, 0, None)
    from nodeflow.runtime.devices import available_memory

    size, free = weights_size(path), available_memory(device)
    resolved = resolve_vram(mode, device.type, size, free)
    if resolved == "low":
        logger.info("--vram auto: %.1f GiB free on %s for a %.1f GiB model file; streaming it from the CPU (low)",
                    free / 2**30, device, size / 2**30)
    return resolved


def weights_size(path: str | os.PathLike) -> int:
    """Bytes of the model file at ``path``, or of every file under it for a folder (diffusers);
    0 for a path that cannot be read (its loader then says what is wrong with it)."""
    path = Path(path)
    try:
        if path.is_dir():
            return sum(entry.stat().st_size for entry in path.rglob("*") if entry.is_file())
        return path.stat().st_size
    except OSError:
        return 0
