"""Reading model files safely: .safetensors, pickles only through ``weights_only`` loading,
and diffusers-format folders.

Every problem names the file: a missing or truncated file, a file that is not a model, a pickle
that would need arbitrary code to load (refused, never executed).
"""

from __future__ import annotations

import json
import math
import logging
import os
import pickle
from pathlib import Path

import torch

from nodeflow.errors import ModelFileError
from nodeflow.loading.diffusers_keys import (TEXT_PREFIX, UNET_PREFIX, VAE_PREFIX, controlnet_metadata, part_metadata,
                                            text_encoder_to_original, unet_to_original, vae_to_original)

logger = logging.getLogger(__name__)

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")

#: Weight file names per part of a diffusers folder, in order of preference (a ".fp16" variant is the fallback).
WEIGHT_NAMES = ("diffusion_pytorch_model.safetensors", "model.safetensors",
                "diffusion_pytorch_model.fp16.safetensors", "model.fp16.safetensors",
                "diffusion_pytorch_model.bin", "pytorch_model.bin")
CONTROLNET_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors",
                      "diffusion_pytorch_model.bin")


def read_state_dict(path: str | os.PathLike, device: str = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a model file. Metadata is the safetensors header's (empty for pickles).

    A diffusers-format folder (``unet/``, ``vae/``, ``text_encoder/``) is read too, its keys
    converted to the original single-file layout (see ``nodeflow.loading.diffusers_keys``).
    """
    path = Path(path)
    if path.is_dir():
        if not is_diffusers_folder(path):
            raise ModelFileError(f"{path}: a folder, but not a diffusers model folder "
                                 "(no model_index.json or unet/)")
        return read_diffusers_folder(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    if path.suffix.lower() == ".safetensors":
        return _read_safetensors(path, device)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return _read_pickle(path), {}
    raise ModelFileError(f"{path}: unsupported model file type {path.suffix!r} "
                         "(use .safetensors, .ckpt, .pt, .pth or .bin)")


# ----- diffusers-format folders ---------------------------------------------------------------

def is_diffusers_folder(path: Path) -> bool:
    return path.is_dir() and ((path / "model_index.json").is_file() or (path / "unet").is_dir())


def read_diffusers_folder(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(state dict in the original layout, metadata) of a diffusers pipeline folder: SD1.x, SD2.x
    (a GELU text encoder: OpenCLIP ViT-H), SDXL (``text_encoder`` and ``text_encoder_2``) or the
    SDXL refiner (``text_encoder_2`` only), each part renamed to its single-file keys."""
    sd: dict[str, torch.Tensor] = {}
    metadata: dict[str, str] = {"nodeflow.source": "diffusers"}
    for part, (prefix, convert) in {"unet": (UNET_PREFIX, unet_to_original),
                                    "vae": (VAE_PREFIX, vae_to_original)}.items():
        folder = path / part
        if not folder.is_dir():
            raise ModelFileError(f"{path}: diffusers folder without {part}/ (needs unet/, vae/ and a text encoder)")
        sd.update({prefix + k: v for k, v in convert(_read_part(folder), folder).items()})
        metadata.update(part_metadata(part, _read_config(folder)))
    sd.update(_diffusers_text_encoders(path))
    return sd, metadata


def _diffusers_text_encoders(path: Path) -> dict[str, torch.Tensor]:
    """The text encoders of a diffusers folder under the prefixes of their family's single files."""
    from nodeflow.loading.open_clip import transformers_to_open_clip

    first, second = path / "text_encoder", path / "text_encoder_2"
    if not first.is_dir() and not second.is_dir():
        raise ModelFileError(f"{path}: diffusers folder without text_encoder/ (needs unet/, vae/ and a text encoder)")
    out: dict[str, torch.Tensor] = {}
    if second.is_dir():  # SDXL: CLIP-L and CLIP-G; the refiner: CLIP-G alone
        clip_g = transformers_to_open_clip(text_encoder_to_original(_read_part(second), second))
        prefix = "conditioner.embedders.1.model." if first.is_dir() else "conditioner.embedders.0.model."
        out.update({prefix + k: v for k, v in clip_g.items()})
        if first.is_dir():
            clip_l = text_encoder_to_original(_read_part(first), first)
            out.update({"conditioner.embedders.0.transformer." + k: v for k, v in clip_l.items()})
        return out
    tensors = text_encoder_to_original(_read_part(first), first)
    if _read_config(first).get("hidden_act") == "gelu":  # OpenCLIP ViT-H: SD2.x, stored without its last layer
        return {"cond_stage_model.model." + k: v
                for k, v in transformers_to_open_clip(tensors, extra_identity_layer=True).items()}
    return {TEXT_PREFIX + k: v for k, v in tensors.items()}


def read_diffusers_vae(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(diffusers-layout VAE tensors, metadata) of a diffusers AutoencoderKL folder."""
    return _read_part(folder), part_metadata("vae", _read_config(folder))


#: the diffusers classes of ControlNet folders nodeflow reads (union ControlNets: nodeflow.models.controlnet_union)
CONTROLNET_CLASSES = ("ControlNetModel", "ControlNetUnionModel")


def read_diffusers_controlnet(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(diffusers-layout tensors, metadata) of a ControlNetModel folder (``save_pretrained``)."""
    if not (folder / "config.json").is_file():
        raise ModelFileError(f"{folder}: a folder, but not a diffusers ControlNet folder (needs config.json "
                             f"and one of {', '.join(CONTROLNET_WEIGHTS)})")
    config = _read_config(folder)
    if config.get("_class_name", "ControlNetModel") not in CONTROLNET_CLASSES:
        raise ModelFileError(f"{folder / 'config.json'}: describes a {config['_class_name']}, not a ControlNetModel")
    return _read_part(folder), controlnet_metadata(config, folder)


def _read_part(folder: Path) -> dict[str, torch.Tensor]:
    index = next(iter(sorted(folder.glob("*.safetensors.index.json"))), None)
    if index is not None:  # sharded weights: the index names the shard of every tensor
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        sd: dict[str, torch.Tensor] = {}
        for shard in shards:
            sd.update(read_state_dict(folder / shard)[0])
        return sd
    for name in WEIGHT_NAMES:
        if (folder / name).is_file():
            return read_state_dict(folder / name)[0]
    raise ModelFileError(f"{folder}: no weights file (looked for {', '.join(WEIGHT_NAMES)})")


def _read_config(folder: Path) -> dict:
    config = folder / "config.json"
    if not config.is_file():
        return {}
    try:
        return json.loads(config.read_text())
    except json.JSONDecodeError as error:
        raise ModelFileError(f"{config}: not valid JSON ({error})") from None


# ----- single files ----------------------------------------------------------------------------

def _read_safetensors(path: Path, device: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    _check_safetensors_header(path)
    try:
        with safe_open(str(path), framework="pt", device=device) as file:
            metadata = dict(file.metadata() or {})
            tensors = {key: file.get_tensor(key) for key in file.keys()}
    except (SafetensorError, OSError, RuntimeError, ValueError) as error:
        raise ModelFileError(f"{path}: corrupt or truncated safetensors file ({error})") from None
    return tensors, metadata


def _check_safetensors_header(path: Path) -> tuple[int, dict]:
    """Validate the header and the file length before reading tensors (clear truncation errors);
    returns (header length, header)."""
    size = path.stat().st_size
    with path.open("rb") as file:
        head = file.read(8)
        if len(head) < 8:
            raise ModelFileError(f"{path}: empty or truncated safetensors file ({size} bytes)")
        header_length = int.from_bytes(head, "little")
        if header_length <= 0 or 8 + header_length > size:
            raise ModelFileError(f"{path}: not a safetensors file, or truncated (header says "
                                 f"{header_length} bytes, file has {size})")
        if header_length > MAX_HEADER_BYTES:
            raise ModelFileError(f"{path}: corrupt safetensors header ({header_length} bytes, at most "
                                 f"{MAX_HEADER_BYTES})")
        try:
            header = json.loads(file.read(header_length))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise ModelFileError(f"{path}: corrupt safetensors header") from None
    end = _check_entries(path, header)
    if 8 + header_length + end > size:
        raise ModelFileError(f"{path}: truncated: {size} bytes, the header needs "
                             f"{8 + header_length + end} (an incomplete download?)")
    return header_length, header


def _check_entries(path: Path, header) -> int:
    """Every entry of a safetensors header is checked before anything is allocated: a known
    dtype, a shape of whole numbers, offsets that hold exactly that many bytes (a 124-byte file
    claiming a 30000 x 30000 tensor at offsets [0, 0] took 4 GB); returns the data's length."""
    if not isinstance(header, dict):
        raise ModelFileError(f"{path}: corrupt safetensors header (not an object)")
    metadata = header.get("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ModelFileError(f"{path}: corrupt safetensors header (__metadata__ must map names to text)")
    end = 0
    for key, info in header.items():
        if key == "__metadata__":
            continue
        problem = _entry_problem(info)
        if problem:
            raise ModelFileError(f"{path}: corrupt safetensors header entry {key!r}: {problem}")
        end = max(end, info["data_offsets"][1])
    return end


def _entry_problem(info) -> str | None:
    if not isinstance(info, dict):
        return "not an object"
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if dtype not in SAFETENSORS_DTYPES:
        return f"unknown dtype {dtype!r}"
    if not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
        return f"bad shape {shape!r}"
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(n) is int for n in offsets)
            and 0 <= offsets[0] <= offsets[1]):
        return f"bad data_offsets {offsets!r}"
    needed = math.prod(shape) * SAFETENSORS_DTYPES[dtype].itemsize
    if offsets[1] - offsets[0] != needed:
        return f"shape {shape} needs {needed} bytes, its offsets hold {offsets[1] - offsets[0]}"
    return None


MAX_HEADER_BYTES = 100 * 2**20  # the safetensors library's own limit

#: safetensors dtype names -> torch dtypes.
SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                      "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                      "U8": torch.uint8, "BOOL": torch.bool}


def stored_dtypes(path: str | os.PathLike) -> dict[str, torch.dtype]:
    """The dtype of every tensor of a .safetensors file, from its header."""
    _, header = _check_safetensors_header(Path(path))
    return {key: SAFETENSORS_DTYPES.get(info.get("dtype"), torch.float32)
            for key, info in header.items() if key != "__metadata__"}


def read_state_dict_for(path: str | os.PathLike, device: torch.device, dtype_for) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a model file for a load on ``device`` that wants each floating tensor
    in ``dtype_for(key)`` (None: as stored). On the CPU, when some stored dtype differs, each
    tensor is converted as it is read (``read_safetensors_converted``: the file is never held whole
    beside the converted weights); otherwise the file is read as it is (memory-mapped)."""
    path = Path(path)
    if torch.device(device).type != "cpu" or path.suffix.lower() != ".safetensors" or not path.is_file():
        return read_state_dict(path)
    stored = stored_dtypes(path)
    if all(dtype_for(key) in (None, kind) for key, kind in stored.items() if kind.is_floating_point):
        return read_state_dict(path)
    return read_safetensors_converted(path, dtype_for)


def read_safetensors_converted(path: str | os.PathLike, dtype_for) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a .safetensors file, each floating tensor converted on reading to
    ``dtype_for(key)`` (None: kept as stored).

    For loads that change the dtype (an fp16 file run in fp32 on the CPU): every tensor is read
    with a plain positioned read into a buffer of its own, converted, and the buffer dropped, so
    the peak memory is the converted weights plus one tensor. (Memory-mapping the file would keep
    every page read resident until the last tensor is released: 1.5x the fp32 weights.)
    """
    path = Path(path)
    header_length, header = _check_safetensors_header(path)
    metadata = dict(header.get("__metadata__") or {})
    tensors: dict[str, torch.Tensor] = {}
    with path.open("rb") as file:
        for key, info in header.items():
            if key == "__metadata__":
                continue
            try:
                stored = SAFETENSORS_DTYPES[info["dtype"]]
                start, end = info["data_offsets"]
            except (KeyError, TypeError, ValueError):
                raise ModelFileError(f"{path}: corrupt safetensors header entry {key!r}") from None
            data = bytearray(end - start)
            file.seek(8 + header_length + start)
            file.readinto(data)
            tensor = torch.frombuffer(data, dtype=stored).reshape(info["shape"]) if data \
                else torch.empty(info["shape"], dtype=stored)
            wanted = dtype_for(key) if tensor.is_floating_point() else None
            tensors[key] = tensor.to(wanted) if wanted is not None and wanted != stored else tensor
    return tensors, metadata


def _read_pickle(path: Path) -> dict[str, torch.Tensor]:
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as error:
        if "mmap" in str(error):
            loaded = load_pickle(path)
        else:
            raise _pickle_error(path, error) from None
    except Exception as error:  # the unpickler's refusals come in several exception types
        raise _pickle_error(path, error) from None
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict):
        raise ModelFileError(f"{path}: holds a {type(loaded).__name__}, not a state dict of tensors")
    tensors = {k: v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
    skipped = len(loaded) - len(tensors)
    if skipped:
        logger.info("%s: ignored %d non-tensor entries", path, skipped)
    return tensors


def load_pickle(path: Path):
    """``torch.load(weights_only=True)``: plain tensors and containers only; anything else is a
    ModelFileError that says why (damaged, or would need code to run)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise _pickle_error(path, error) from None


def _pickle_error(path: Path, error: Exception) -> ModelFileError:
    text = str(error)
    if "GLOBAL" in text or "Unsupported global" in text or "not an allowed global" in text \
            or "Unsupported class" in text:
        return ModelFileError(
            f"{path}: refused: this pickle file needs arbitrary Python code to load, which could "
            "run anything on your machine. nodeflow only loads plain tensors from pickles. "
            "Convert it to .safetensors with a tool you trust, or use a .safetensors release.")
    if "Unsupported operand" in text or "invalid load key" in text or "PytorchStreamReader" in text \
            or isinstance(error, (EOFError, pickle.UnpicklingError)):
        return ModelFileError(f"{path}: not a readable PyTorch file (damaged, cut short, or not a model file)")
    return ModelFileError(f"{path}: cannot read this file ({type(error).__name__}: {text[:200]})")
