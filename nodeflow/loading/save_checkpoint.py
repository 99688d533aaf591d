"""Save models as single-file .safetensors in the original layout (ComfyUI's CheckpointSave,
ModelSave, CLIPSave and VAESave; comfy/sd.py save_checkpoint), the inverse of the loaders'.

Checkpoint keys, per family (nodeflow.loading.families, the first prefix of each tower):

=============  ====================================================================================
all            ``model.diffusion_model.*`` (U-Net), ``first_stage_model.*`` (VAE)
SD1.x          ``cond_stage_model.transformer.text_model.*`` (CLIP-L, transformers' names)
SD2.x          ``cond_stage_model.model.*`` (OpenCLIP ViT-H: fused in_proj, text_projection (D, P))
SDXL           ``conditioner.embedders.0.transformer.text_model.*`` (CLIP-L, with ``position_ids``),
               ``conditioner.embedders.1.model.*`` (OpenCLIP bigG)
SDXL refiner   ``conditioner.embedders.0.model.*`` (OpenCLIP bigG)
=============  ====================================================================================

OpenCLIP towers also get ``logit_scale`` (ComfyUI's 4.6055; unused by the conditioning, present in
the original files), CLIP-L in SDXL files ``position_ids``, as ComfyUI writes them; v-prediction
models the ``v_pred`` (and ``ztsnr``) marker keys. Metadata as ComfyUI's: ``modelspec.*`` for SDXL
(architecture, implementation ``sgm``, title ``<name> <counter>``), ``modelspec.predict_key``, and
the workflow (``prompt``, ``workflow``, given by the caller); plus nodeflow's ``nodeflow.unet.num_heads``,
``nodeflow.vae.scaling_factor`` and ``nodeflow.latent_rgb`` where the shapes or the family do not
tell them. ModelSave writes the U-Net part alone (UNETLoader reads it), VAESave the VAE without
prefix, CLIPSave one file per tower in transformers' names (``<prefix>_clip_l`` ...), as ComfyUI.

Weights are written as the models run with them (merges and LoRAs applied, in the model's dtype),
computed one tensor at a time while the file is written (``write_safetensors`` streams the
safetensors format: an 8-byte header length, the JSON header, then the tensors' bytes), so saving
never holds a second copy of the model. Files are written to a hidden temporary file in the target
folder, then hard-linked to the first free ``<name>_NNNNN_.safetensors``: an existing file is never
replaced, and an error leaves no partial file under the final name.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from nodeflow.loading.checkpoint import META_LATENT_RGB, META_UNET_HEADS, META_VAE_SCALE, UNET_PREFIX, VAE_PREFIX
from nodeflow.loading.families import FAMILIES, OPEN_CLIP_TOWERS
from nodeflow.loading.lora import base_of
from nodeflow.loading.merge import effective_weight, patches_by_parameter, text_towers
from nodeflow.loading.open_clip import transformers_to_open_clip

logger = logging.getLogger(__name__)

#: ComfyUI's value of an OpenCLIP tower's contrastive temperature (comfy/sd1_clip.py), written
#: where the original files have one; the loaders ignore it.
LOGIT_SCALE = 4.6055
MODELSPEC_ARCHITECTURES = {"SDXL": "stable-diffusion-xl-v1-base", "SDXL refiner": "stable-diffusion-xl-v1-refiner"}
PREDICT_KEYS = {"eps": "epsilon", "v": "v"}
SD1_HEADS = 8  # what the loader assumes for an SD1.x U-Net without nodeflow.unet.num_heads
_SAFETENSORS_DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
                       torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
                       torch.uint8: "U8", torch.bool: "BOOL", torch.float8_e4m3fn: "F8_E4M3",
                       torch.float8_e5m2: "F8_E5M2"}


class SaveError(ValueError):
    """The models cannot be saved as asked (a CLIP of another family, an unknown family ...)."""


@dataclass(frozen=True)
class LazyTensor:
    """A tensor to write: its shape and dtype now, its values when ``load()`` is called."""

    shape: tuple[int, ...]
    dtype: torch.dtype
    load: Callable[[], torch.Tensor] = field(repr=False)


def _family_key(model) -> str:
    for key, family in FAMILIES.items():
        if family.name == getattr(model, "family", ""):
            return key
    raise SaveError(f"the model's family ({getattr(model, 'family', '') or 'unknown'}) is not one nodeflow "
                    "saves (SD1.x, SD2.x, SDXL, SDXL refiner)")


# ----- the parts' tensors ---------------------------------------------------------------------

def module_tensors(module: torch.nn.Module, prefix: str = "", rename: Callable[[str], str] = lambda k: k,
                   skip: Callable[[str], bool] = lambda k: False) -> dict[str, LazyTensor]:
    """The module's state-dict tensors (patched: merges and LoRAs applied when each is loaded)
    under ``prefix + rename(name)``; ``skip(name)`` leaves some out."""
    base, patches = base_of(module)
    by_parameter = patches_by_parameter(patches)
    parameters = dict(base.named_parameters())
    tensors = {}
    for name, value in base.state_dict(keep_vars=True).items():
        if skip(name):
            continue
        if name in parameters:
            load = (lambda name=name: effective_weight(base, name, by_parameter.get(name, ())))
        else:
            load = (lambda value=value: value.detach())
        tensors[prefix + rename(name)] = LazyTensor(tuple(value.shape), value.dtype, load)
    return tensors


def unet_tensors(model, prefix: str = UNET_PREFIX) -> dict[str, LazyTensor]:
    """The MODEL's U-Net, as it runs (merges, LoRAs), under ``model.diffusion_model.``."""
    return module_tensors(model.unet, prefix)


def vae_tensors(vae, prefix: str = VAE_PREFIX) -> dict[str, LazyTensor]:
    return module_tensors(vae.model, prefix)


def markers(model) -> dict[str, LazyTensor]:
    """``v_pred`` (and ``ztsnr``) marker keys for a v-prediction model, as ComfyUI writes them."""
    sampling = model.sampling
    if sampling.parameterization != "v":
        return {}
    found = {"v_pred": _constant(torch.tensor([]))}
    if getattr(sampling, "zsnr", False):
        found["ztsnr"] = _constant(torch.tensor([]))
    return found


def _constant(value: torch.Tensor) -> LazyTensor:
    return LazyTensor(tuple(value.shape), value.dtype, lambda: value)


def _tower_tensors(clip, tower: str) -> dict[str, LazyTensor]:
    """One tower's tensors in transformers' names with ``text_model.`` (``text_projection.weight``
    for projected towers), patched; ``position_ids`` left out."""
    prefix = text_towers(clip)[tower]
    base, _ = base_of(clip.model)

    def rename(name: str) -> str:
        name = name[len(prefix):]
        return name if name.startswith(("text_model.", "text_projection.")) else "text_model." + name

    return module_tensors(clip.model, rename=rename,
                          skip=lambda name: not name.startswith(prefix) or name.endswith("position_ids"))


class _Converted:
    """A tower's OpenCLIP-layout tensors, converted together when the first is asked for and
    handed out (and let go) one by one."""

    def __init__(self, tensors: dict[str, LazyTensor]) -> None:
        self._sources, self._done = tensors, None

    def pop(self, key: str) -> torch.Tensor:
        if self._done is None:
            self._done = transformers_to_open_clip({k: t.load() for k, t in self._sources.items()})
            self._sources = {}
        return self._done.pop(key)


def _open_clip_tensors(tensors: dict[str, LazyTensor]) -> dict[str, LazyTensor]:
    """A tower in transformers' names -> OpenCLIP's (nodeflow.loading.open_clip's inverse), lazily:
    shapes from a conversion on the meta device, values converted when first asked for."""
    shapes = transformers_to_open_clip({k: torch.empty(t.shape, dtype=t.dtype, device="meta")
                                        for k, t in tensors.items()})
    converted = _Converted(tensors)
    out = {key: LazyTensor(tuple(meta.shape), meta.dtype, lambda key=key: converted.pop(key))
           for key, meta in shapes.items()}
    dtype = tensors["text_model.embeddings.token_embedding.weight"].dtype
    out["logit_scale"] = _constant(torch.tensor(LOGIT_SCALE, dtype=dtype))
    return out


def text_tensors(clip, model) -> dict[str, LazyTensor]:
    """The CLIP's towers in the checkpoint layout of ``model``'s family (module docstring)."""
    family_key = _family_key(model)
    family = FAMILIES[family_key]
    towers = text_towers(clip)
    if set(towers) != set(family.towers):
        raise SaveError(f"the CLIP holds {' and '.join(sorted(towers))}, but an {family.name} checkpoint needs "
                        f"{' and '.join(sorted(family.towers))}: a text encoder of another model family")
    out: dict[str, LazyTensor] = {}
    for tower, prefixes in family.towers.items():
        prefix = prefixes[0]
        tensors = _tower_tensors(clip, tower)
        if tower in OPEN_CLIP_TOWERS:
            tensors = _open_clip_tensors(tensors)
        elif family_key == "sdxl":  # ComfyUI writes CLIP-L's position ids into SDXL files
            positions = tensors["text_model.embeddings.position_embedding.weight"].shape[0]
            tensors["text_model.embeddings.position_ids"] = _constant(torch.arange(positions)[None])
        out.update({prefix + key: tensor for key, tensor in tensors.items()})
    return out


def clip_file_tensors(clip) -> dict[str, dict[str, LazyTensor]]:
    """CLIPSave's files: {tower: its tensors in transformers' names} (ComfyUI writes each tower's
    ``text_model.*`` and ``text_projection.weight`` in one file per tower)."""
    return {tower: _tower_tensors(clip, tower) for tower in text_towers(clip)}


def checkpoint_tensors(model, clip=None, vae=None) -> dict[str, LazyTensor]:
    """A whole checkpoint (ModelSave: the U-Net and markers only)."""
    tensors = unet_tensors(model)
    if clip is not None:
        tensors.update(text_tensors(clip, model))
    if vae is not None:
        tensors.update(vae_tensors(vae))
    tensors.update(markers(model))
    return tensors


# ----- metadata -------------------------------------------------------------------------------

def model_metadata(model, title: str) -> dict[str, str]:
    """ComfyUI's modelspec keys for ``model`` (``title``: "<file name> <counter>") and nodeflow's
    keys for what the loader cannot tell from the shapes and the family."""
    metadata = {}
    family = getattr(model, "family", "")
    if family in MODELSPEC_ARCHITECTURES:
        metadata.update({"modelspec.architecture": MODELSPEC_ARCHITECTURES[family], "modelspec.sai_model_spec": "1.0.0",
                         "modelspec.implementation": "sgm", "modelspec.title": title})
    if model.sampling.parameterization in PREDICT_KEYS:
        metadata["modelspec.predict_key"] = PREDICT_KEYS[model.sampling.parameterization]
    config = getattr(base_of(model.unet)[0], "config", None)
    defaults = FAMILIES[_family_key(model)]
    if config is not None and not config.head_channels and (defaults.head_channels or config.num_heads != SD1_HEADS):
        metadata[META_UNET_HEADS] = str(config.num_heads)
    latent, expected = model.latent_format, defaults.latent_format
    if latent.scale_factor != expected.scale_factor:
        metadata[META_VAE_SCALE] = repr(float(latent.scale_factor))
    own_preview = (latent.rgb_factors, latent.rgb_bias) != (expected.rgb_factors, expected.rgb_bias)
    if own_preview and latent.rgb_bias is not None:
        metadata[META_LATENT_RGB] = json.dumps({"factors": [list(row) for row in latent.rgb_factors],
                                                "bias": list(latent.rgb_bias)})
    return metadata


def vae_metadata(vae) -> dict[str, str]:
    """nodeflow's latent scale, when it is not SD1's (VAELoader reads it back)."""
    from nodeflow.loading.checkpoint import SD1_SCALING_FACTOR

    return {} if vae.scaling_factor == SD1_SCALING_FACTOR else {META_VAE_SCALE: repr(float(vae.scaling_factor))}


# ----- writing --------------------------------------------------------------------------------

def write_safetensors(file, tensors: dict[str, LazyTensor], metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` to the open binary ``file`` in the safetensors format, loading one
    tensor at a time (keys in sorted order, header padded to 8 bytes as safetensors does)."""
    header, offset, order = {}, 0, sorted(tensors)
    for key in order:
        tensor = tensors[key]
        if tensor.dtype not in _SAFETENSORS_DTYPES:
            raise SaveError(f"{key}: a {tensor.dtype} tensor cannot be stored in safetensors")
        size = _numel(tensor.shape) * tensor.dtype.itemsize
        header[key] = {"dtype": _SAFETENSORS_DTYPES[tensor.dtype], "shape": list(tensor.shape),
                       "data_offsets": [offset, offset + size]}
        offset += size
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    file.write(struct.pack("<Q", len(text)))
    file.write(text)
    for key in order:
        expected = tensors[key]
        value = expected.load().detach()
        if tuple(value.shape) != expected.shape or value.dtype != expected.dtype:
            raise SaveError(f"{key}: computed as {tuple(value.shape)} {value.dtype}, declared "
                            f"{expected.shape} {expected.dtype}")
        data = value.to("cpu").contiguous().reshape(-1).view(torch.uint8)
        file.write(data.numpy().data)
        del value, data


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


def next_counter(folder: Path, name: str) -> int:
    """1 + the highest counter of the ``<name>_NNNNN_.*`` files in ``folder`` (ComfyUI's rule)."""
    pattern = re.compile(re.escape(name) + r"_(\d{5,})_\.")
    found = [int(m.group(1)) for p in folder.iterdir() if (m := pattern.match(p.name))]
    return max(found, default=0) + 1


def save_new_file(folder: Path, name: str, tensors: dict[str, LazyTensor],
                  metadata: Callable[[int], dict[str, str]] | dict[str, str] | None = None,
                  max_counter: int = 99999) -> Path:
    """Write ``tensors`` as ``folder/<name>_NNNNN_.safetensors``, NNNNN the next free counter,
    never replacing a file: written to a hidden temporary file in ``folder``, then hard-linked
    (exclusively) to the name; on any error the temporary file is removed and no file of that
    name appears. ``metadata``: a dict, or a function of the counter (for a title naming it)."""
    from nodeflow.image.files import claim

    folder.mkdir(parents=True, exist_ok=True)
    counter = next_counter(folder, name)
    while counter <= max_counter:
        target = folder / f"{name}_{counter:05}_.safetensors"
        temporary = _create_temporary(folder)
        try:
            with open(temporary, "wb") as file:
                write_safetensors(file, tensors, metadata(counter) if callable(metadata) else metadata)
                file.flush()
                os.fsync(file.fileno())
            claim(temporary, target)
            logger.info("saved %s", target)
            return target
        except FileExistsError:  # another save took the name meanwhile
            counter = max(counter + 1, next_counter(folder, name))
        finally:
            temporary.unlink(missing_ok=True)
    raise SaveError(f"no free file name left for prefix {name!r} in {folder}")


def _create_temporary(folder: Path) -> Path:
    """A new empty hidden file in ``folder`` (mode 0666 less the umask, not mkstemp's 0600)."""
    while True:
        path = folder / f".saving-{secrets.token_hex(8)}.safetensors.partial"
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return path
        except FileExistsError:
            continue
