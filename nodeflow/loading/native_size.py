"""The image size a checkpoint was trained at, read from its file without loading its weights.

The editor offers it for Empty Latent Image (a 64 px model sampled at 512 px makes tiles of
noise, an SDXL model at 512 px makes mush). Only the safetensors header is read (names,
shapes, metadata: a few hundred kilobytes of a multi-gigabyte file), so asking is cheap:

1. The file says so in its metadata: ``modelspec.resolution`` ("1024x1024", Stability AI's model
   spec, written by their releases and by kohya's trainers), or ``nodeflow.training`` (nodeflow's
   own trainer: its ``resolution``, else the 64 px every embedded model was trained at).
2. Else its family, from the header's key names and shapes (nodeflow.loading.detect on shape-only
   stand-ins): SD1.x and SD2.x 512, SD2.x v-prediction and SD2.1 unCLIP 768, SDXL 1024. The one
   statistic detect reads (ComfyUI's SD2-768-v guess) is a single small tensor, read for real.
3. A diffusers folder: its U-Net's ``sample_size`` (latent pixels) times the VAE's 8.

Pickled checkpoints (.ckpt) cannot be read without unpickling them: their size is unknown (None).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from nodeflow.errors import ModelFileError

#: Native size (pixels, square) of the kinds nodeflow.loading.detect names that load.
KIND_SIZES = {"sd1": 512, "sd1-inpaint": 512, "sd2": 512, "sd2-inpaint": 512, "sd2-v": 768,
              "sd2-unclip": 768, "sd2-unclip-v": 768, "sdxl": 1024, "sdxl-inpaint": 1024, "sdxl-refiner": 1024}
#: nodeflow.training's resolution when its metadata names none (run.py's and sdxl.py's 64 px).
NODEFLOW_TRAINING_RESOLUTION = 64
VAE_FACTOR = 8  # latent pixels -> image pixels (every family's VAE)

Size = tuple[int, int]  # (width, height) in pixels


def native_size(path: str | os.PathLike) -> Size | None:
    """(width, height) the model file at ``path`` was trained at, or None when it does not tell
    (see the module docstring). Raises ModelFileError, naming the file, when it is not readable."""
    path = Path(path)
    if path.is_dir():
        return _diffusers_size(path)
    if path.suffix.lower() != ".safetensors":
        return None
    metadata, shapes = _read_header(path)
    told = size_from_metadata(metadata)
    if told is not None:
        return told
    side = KIND_SIZES.get(_kind(path, shapes))
    return (side, side) if side else None


def size_from_metadata(metadata: dict[str, str]) -> Size | None:
    """The size a safetensors file's metadata states (``modelspec.resolution`` or
    ``nodeflow.training``), or None."""
    stated = _parse_size(metadata.get("modelspec.resolution", ""))
    if stated is not None:
        return stated
    training = metadata.get("nodeflow.training")
    if training is None:
        return None
    try:
        side = json.loads(training).get("resolution", NODEFLOW_TRAINING_RESOLUTION)
    except (json.JSONDecodeError, AttributeError):
        return None
    return (side, side) if type(side) is int and side > 0 else None


def _parse_size(text: str) -> Size | None:
    """"1024x1024" (or "1024"): (1024, 1024); anything else: None."""
    parts = text.lower().replace(" ", "").split("x")
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or not all(part.isdigit() and int(part) > 0 for part in parts):
        return None
    return int(parts[0]), int(parts[1])


def _read_header(path: Path) -> tuple[dict[str, str], dict[str, list[int]]]:
    """(metadata, shape of every tensor) from the header alone (safetensors maps the file and
    reads no tensor for these)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as file:
            return dict(file.metadata() or {}), {key: file.get_slice(key).get_shape() for key in file.keys()}
    except (SafetensorError, OSError, RuntimeError, ValueError) as error:
        raise ModelFileError(f"{path}: not a readable safetensors file ({error})") from None


def _kind(path: Path, shapes: dict[str, list[int]]) -> str:
    """detect_kind on meta tensors of the header's shapes, but for the one small tensor its SD2
    v-prediction guess reads, taken from the file."""
    import torch
    from safetensors import safe_open

    from nodeflow.loading.detect import SD2_V_KEY, detect_kind

    stand_ins = {key: torch.empty(shape, device="meta") for key, shape in shapes.items()}
    if SD2_V_KEY in stand_ins:
        with safe_open(str(path), framework="pt") as file:
            stand_ins[SD2_V_KEY] = file.get_tensor(SD2_V_KEY)
    return detect_kind(stand_ins)


def _diffusers_size(folder: Path) -> Size | None:
    """A diffusers folder's U-Net ``sample_size`` (latent pixels) in image pixels, or None."""
    config = folder / "unet" / "config.json"
    if not config.is_file():
        return None
    try:
        sample = json.loads(config.read_text()).get("sample_size")
    except (json.JSONDecodeError, AttributeError, OSError) as error:
        raise ModelFileError(f"{config}: not a readable U-Net config ({error})") from None
    if isinstance(sample, int) and sample > 0:
        return sample * VAE_FACTOR, sample * VAE_FACTOR
    if isinstance(sample, list) and len(sample) == 2 and all(isinstance(n, int) and n > 0 for n in sample):
        return sample[1] * VAE_FACTOR, sample[0] * VAE_FACTOR  # diffusers lists (height, width)
    return None
