"""Which dtype each model runs in, by device and the user's --dtype.

Rule for ``auto``: CPU runs everything in float32 (fp16 matmuls are slow or missing on CPUs).
CUDA runs the U-Net and the text encoder in float16; the VAE in bfloat16 where the GPU supports
it, otherwise float32, because SD's VAE decoder overflows in float16 (NaN/black images). MPS
runs the U-Net and text encoder in float16 and the VAE in float32. An explicit fp32/fp16/bf16
applies to every model, except that a VAE is never run in float16: asked for fp16, it runs in
bfloat16 on a CUDA GPU that has it, else float32 (SD's and even more SDXL's VAE overflow in
float16 and give black or NaN images), and the log says so.
"""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)

NAMES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA if available, else MPS, else CPU; an explicit device is checked to exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but this PyTorch build sees no CUDA GPU")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {name!r} asked for, but MPS is not available here")
    return device


def model_dtype(device: torch.device | str, requested: str = "auto", part: str = "unet") -> torch.dtype:
    """The dtype for ``part`` ("unet", "text", "vae") on ``device``."""
    kind = torch.device(device).type
    if requested != "auto":
        try:
            dtype = NAMES[requested]
        except KeyError:
            raise ValueError(f"unknown dtype {requested!r}; one of auto, {', '.join(NAMES)}") from None
        if part == "vae" and dtype == torch.float16:
            dtype = _vae_dtype(kind)
            logger.info("the VAE runs in %s, not float16, which overflows in it (black or NaN images)",
                        str(dtype).removeprefix("torch."))
        return dtype
    if kind == "cuda":
        return _vae_dtype(kind) if part == "vae" else torch.float16
    if kind == "mps":
        return torch.float32 if part == "vae" else torch.float16
    return torch.float32


def dtype_option(where: torch.device | str, run_device: torch.device | str, requested: str) -> str:
    """The --dtype option for a model computing on ``where`` in a run on ``run_device``: the
    user's, except for a model moved off the run's device (a text encoder kept on the CPU in a GPU
    run), which takes its own device's default ("auto"): the user's fp16 or bf16 was meant for the
    GPU, and fp16 on a CPU is slow or has no kernels."""
    return requested if torch.device(where) == torch.device(run_device) else "auto"


def _vae_dtype(kind: str) -> torch.dtype:
    """The VAE's dtype on a device kind that should not run it in float32 for speed: bfloat16
    where supported (CUDA), else float32."""
    if kind == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocation failure: torch.OutOfMemoryError (CUDA), or a
    RuntimeError saying "out of memory" or "can't allocate memory" (the CPU allocator's words)."""
    if isinstance(error, getattr(torch, "OutOfMemoryError", ())):
        return True
    message = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in message or "can't allocate memory" in message)


def available_memory(device: torch.device | str) -> int | None:
    """Bytes free for new tensors on ``device``: CUDA's free memory, or the CPU's MemAvailable
    (Linux); None where it cannot be told."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "cpu":
        try:
            with open("/proc/meminfo", encoding="ascii") as meminfo:
                for line in meminfo:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return None
    return None


def fits_in_memory(nbytes: int, device: torch.device | str = "cpu") -> tuple[bool, int | None]:
    """(whether ``nbytes`` more fit on ``device`` now, the bytes free there or None if unknown)."""
    free = available_memory(device)
    return (free is None or nbytes <= free), free
