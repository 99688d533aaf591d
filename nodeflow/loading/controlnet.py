"""Load ControlNet files: original layout (``control_model.`` prefix optional), diffusers'
layout (a ``ControlNetModel`` folder as ``save_pretrained`` writes it, or its weights file alone,
keys renamed by ``nodeflow.loading.diffusers_keys``), "difference" ControlNets (stored as the
difference to a base model: the base U-Net's weights are added), and T2I-Adapters (either
layout; nodeflow.loading.t2i_adapter), which the ControlNet apply nodes accept as well.

SD1.x, SD2.x and SDXL ControlNets: the family is told from the shapes as for a U-Net-only file
(nodeflow.loading.detect on the encoder's keys: an ADM input ``label_emb`` is SDXL, a 1024-wide
context or linear projections SD2), as ComfyUI's load_controlnet_state_dict asks its model
detection; with it come the heads (SD2/SDXL: 64 channels each) unless the file's metadata or the
diffusers ``config.json`` states them. The loaded ControlNet carries ``family`` and ``source``
(the file's name) so that applying it to a model of another family is refused naming both
(nodeflow.sampling.controlnet.check_fits).

Union ControlNets (xinsir's ControlNet++; nodeflow.models.controlnet_union) are told by their
extra keys (``task_embedding``, ``transformer_layes.*``, ...), which keep their names in either
layout, and load as a UnionControlNetModel."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from nodeflow.errors import ModelFileError
from nodeflow.models.controlnet import ControlNetModel, controlnet_from_state_dict
from nodeflow.models.controlnet_union import UNION_PREFIXES, is_union, union_controlnet_from_state_dict
from nodeflow.loading.build_errors import built
from nodeflow.loading.detect import UNET, describe_keys, detect_kind
from nodeflow.loading.families import FAMILIES, KIND_FAMILY
from nodeflow.runtime.devices import model_dtype
from nodeflow.loading.diffusers_keys import controlnet_metadata, controlnet_to_original, is_diffusers_controlnet
from nodeflow.loading.files import CONTROLNET_CLASSES, read_diffusers_controlnet, read_state_dict
from nodeflow.loading.t2i_adapter import load_t2i_adapter, read_diffusers_t2i_adapter
from nodeflow.models.t2i_adapter import T2IAdapter

PREFIX = "control_model."
META_HEADS = "nodeflow.unet.num_heads"
META_HEAD_CHANNELS = "nodeflow.unet.head_channels"
IGNORED_SUFFIXES = ("lvlb_weights", "position_ids")
#: ControlNets for families nodeflow does not run, told as ComfyUI's load_controlnet_state_dict
#: tells them: (family, keys all present)
OTHER_FAMILY_CONTROLNETS = (
    ("Hunyuan-DiT", ("after_proj_list.18.bias",)),
    ("Flux", ("controlnet_blocks.0.weight", "double_blocks.0.img_attn.norm.key_norm.scale")),  # XLabs
    ("Flux", ("controlnet_blocks.0.weight", "controlnet_x_embedder.weight")),  # InstantX, AliMama inpainting
    ("Flux", ("controlnet_blocks.0.linear.weight",)),  # Mistoline
    ("SD3", ("controlnet_blocks.0.weight", "pos_embed_input.proj.weight")),  # SD3/3.5, AliMama inpainting
)


def is_difference(sd: dict[str, torch.Tensor]) -> bool:
    return "difference" in sd or "control_model.difference" in sd


def load_controlnet(path: str | os.PathLike, *, device="cpu", dtype: str = "auto",
                    base_unet: torch.nn.Module | None = None) -> ControlNetModel | T2IAdapter:
    path = Path(path)
    adapter_folder = read_diffusers_t2i_adapter(path) if path.is_dir() else None
    if adapter_folder is not None:
        return load_t2i_adapter(path, adapter_folder, device=device, dtype=dtype)
    sd, metadata = read_controlnet_file(path)
    other = other_family_controlnet(sd)
    if other:
        raise ModelFileError(f"{path}: a ControlNet for {other} models, a family nodeflow does not run")
    kind = detect_kind(sd)
    if kind == "t2i-adapter":
        return load_t2i_adapter(path, sd, device=device, dtype=dtype)
    if kind != "controlnet":
        raise ModelFileError(f"{path}: not a ControlNet; found keys like {describe_keys(sd)}")
    sd = {k: v for k, v in sd.items() if not k.endswith(IGNORED_SUFFIXES)}
    union = {k: sd.pop(k) for k in list(sd) if k.removeprefix(PREFIX).startswith(UNION_PREFIXES)}
    if is_diffusers_controlnet(sd):
        plain = controlnet_to_original(sd, path)
    else:
        plain = {k.removeprefix(PREFIX): v for k, v in sd.items()}
    plain.update({k.removeprefix(PREFIX): v for k, v in union.items()})
    if is_difference(sd):
        plain = _add_base(path, plain, base_unet)
    family = controlnet_family(path, plain)
    heads = int(metadata[META_HEADS]) if META_HEADS in metadata else None
    head_channels = int(metadata[META_HEAD_CHANNELS]) if META_HEAD_CHANNELS in metadata else None
    if heads is None and head_channels is None:
        head_channels = FAMILIES[family].head_channels  # None for SD1: 8 heads
    device = torch.device(device)
    build = union_controlnet_from_state_dict if is_union(plain) else controlnet_from_state_dict
    model = built(path, "ControlNet", lambda: build(plain, device=device, dtype=model_dtype(device, dtype, "unet"),
                                                    num_heads=heads, head_channels=head_channels))
    model.family, model.source = FAMILIES[family].name, path.name
    return model


def other_family_controlnet(sd: dict[str, torch.Tensor]) -> str | None:
    """The family of a ControlNet for a model nodeflow does not run (OTHER_FAMILY_CONTROLNETS), or None."""
    return next((family for family, keys in OTHER_FAMILY_CONTROLNETS if all(k in sd for k in keys)), None)


def controlnet_family(path: Path, plain: dict[str, torch.Tensor]) -> str:
    """The family key (nodeflow.loading.families) of a ControlNet's keys in the original layout
    (without ``control_model.``): its encoder's shapes, read as a U-Net-only file's."""
    encoder = {UNET + k: v for k, v in plain.items() if k.startswith(("input_blocks.", "middle_block.", "label_emb."))}
    if UNET + "input_blocks.0.0.weight" not in encoder:
        raise ModelFileError(f"{path}: not a ControlNet; found keys like {describe_keys(plain)}")
    kind = detect_kind(encoder)
    if kind not in KIND_FAMILY:
        raise ModelFileError(f"{path}: a ControlNet for a {kind} model, a family nodeflow does not run")
    return KIND_FAMILY[kind]


def read_controlnet_file(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a ControlNet file or diffusers ControlNet folder.

    A diffusers-layout file inside a diffusers folder (how a model list that shows files names
    it) takes the heads from the ``config.json`` beside it; shapes cannot tell them.
    """
    if path.is_dir():
        return read_diffusers_controlnet(path)
    sd, metadata = read_state_dict(path)
    if is_diffusers_controlnet(sd):
        config = _controlnet_config_beside(path)
        if config is not None:
            metadata = {**metadata, **controlnet_metadata(config, path.parent)}
    return sd, metadata


def _controlnet_config_beside(path: Path) -> dict | None:
    """The ControlNetModel ``config.json`` next to ``path``, or None (absent, unreadable, or
    describing something else: a folder of single files may hold an unrelated one)."""
    try:
        config = json.loads((path.parent / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) and config.get("_class_name") in CONTROLNET_CLASSES else None


def _add_base(path: Path, plain: dict[str, torch.Tensor], base_unet: torch.nn.Module | None) -> dict[str, torch.Tensor]:
    """A "difference" ControlNet's weights plus the base U-Net's (where names and shapes agree)."""
    plain.pop("difference", None)
    if base_unet is None:
        raise ModelFileError(f"{path}: a 'difference' ControlNet; load it with DiffControlNetLoader "
                             "and connect the model it was made for")
    from nodeflow.loading.lora import base_of

    base = base_of(base_unet)[0].state_dict()
    return {k: (v + base[k].to(v)) if k in base and base[k].shape == v.shape else v for k, v in plain.items()}
