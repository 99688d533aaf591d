"""CLIP vision files -> nodeflow.image.clip_vision.ClipVision (transformers' CLIPVisionModelWithProjection).

Two layouts are read, with or without the rest of a CLIP model beside the image tower (its text
tower is ignored):

- transformers' (``vision_model.*`` and ``visual_projection.weight``): IP-Adapter's image encoders,
  SDXL revision's clip_vision_g, the CLIPVisionModelWithProjection files of the hub;
- the original one of OpenAI's CLIP and OpenCLIP (``visual.*``, or the bare tower), converted at
  load time:

=============================================  =======================================================
original (after ``visual.``)                   transformers
=============================================  =======================================================
class_embedding (W,)                           vision_model.embeddings.class_embedding
conv1.weight (W, 3, p, p)                      vision_model.embeddings.patch_embedding.weight
positional_embedding (1 + N, W)                vision_model.embeddings.position_embedding.weight
ln_pre.{weight,bias}                           vision_model.pre_layrnorm.*
transformer.resblocks.i.ln_1 / ln_2            vision_model.encoder.layers.i.layer_norm1 / layer_norm2
transformer.resblocks.i.attn.in_proj_* (3W..)  ...layers.i.self_attn.{q,k,v}_proj.* (rows q | k | v)
transformer.resblocks.i.attn.out_proj          ...layers.i.self_attn.out_proj
transformer.resblocks.i.mlp.c_fc / c_proj      ...layers.i.mlp.fc1 / fc2
ln_post.{weight,bias}                          vision_model.post_layernorm.*
proj (W, P), used as x @ proj                  visual_projection.weight (P, W): its transpose
=============================================  =======================================================

The configuration comes from the shapes (width, depth, MLP width, patch, image size from the
positions, projection); what shapes cannot tell follows ComfyUI's three configurations: 16 heads
for ViT-L/14 (width 1024), ViT-H/14 (1280) and ViT-bigG/14 (1664), 64-wide heads otherwise; OpenAI's
quick_gelu for ViT-L (width 1024), GELU for the others (OpenCLIP's towers).
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import torch

from nodeflow.errors import ModelFileError
from nodeflow.image.clip_vision import ClipVision
from nodeflow.loading.build_errors import built
from nodeflow.loading.files import read_state_dict
from nodeflow.models.meta import load_on_meta
from nodeflow.runtime.devices import model_dtype

logger = logging.getLogger(__name__)

#: Width -> heads of the towers ComfyUI knows (clip_vision_config_vitl/h/g.json).
KNOWN_HEADS = {1024: 16, 1280: 16, 1664: 16}
QUICK_GELU_WIDTHS = (1024,)  # OpenAI's ViT-L/14 (and its 336 px variant)

_TOP = {
    "class_embedding": "vision_model.embeddings.class_embedding",
    "conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "ln_pre.weight": "vision_model.pre_layrnorm.weight",
    "ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "ln_post.weight": "vision_model.post_layernorm.weight",
    "ln_post.bias": "vision_model.post_layernorm.bias",
}
_BLOCK = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "attn.out_proj": "self_attn.out_proj",
          "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}
_RESBLOCK = re.compile(r"transformer\.resblocks\.(\d+)\.(.+)\.(weight|bias)")
_IN_PROJ = re.compile(r"transformer\.resblocks\.(\d+)\.attn\.in_proj_(weight|bias)")
#: transformers-layout keys that are not the image tower's (a whole CLIPModel's text side)
_NOT_VISION = re.compile(r"(text_model\..*|text_projection\.weight|logit_scale|vision_model\.embeddings\.position_ids)")


def load_clip_vision(path: str | Path, *, device: torch.device | str = "cpu", dtype: str = "auto") -> ClipVision:
    """The CLIP image tower of a .safetensors (or plain-tensor pickle) file."""
    path = Path(path)
    sd, _ = read_state_dict(path)
    return clip_vision_from_state_dict(sd, path, device=torch.device(device), dtype=dtype)


def clip_vision_from_state_dict(sd: dict[str, torch.Tensor], path: Path, *, device: torch.device,
                                dtype: str = "auto", prefix: str | None = None) -> ClipVision:
    """The tower of ``sd`` in either layout; ``prefix`` (e.g. an unCLIP checkpoint's
    ``embedder.model.visual.``) says where an original-layout tower is, else it is found."""
    tensors = vision_tensors(sd, path, prefix)
    config = vision_config(tensors, path)
    torch_dtype = model_dtype(device, dtype, "text")
    model = _build(path, config, tensors, device, torch_dtype)
    logger.info("%s: CLIP vision tower, width %d, %d layers, %d px", path.name, config.hidden_size,
                config.num_hidden_layers, config.image_size)
    return ClipVision(model, device, torch_dtype, name=path.name)


def vision_tensors(sd: dict[str, torch.Tensor], path: Path, prefix: str | None = None) -> dict[str, torch.Tensor]:
    """The image tower's tensors under transformers' names."""
    if prefix is None:
        prefix = _original_prefix(sd)
    if prefix is not None:
        tower = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        return original_to_transformers(tower, path)
    tensors = {k: v for k, v in sd.items() if not _NOT_VISION.fullmatch(k)}
    if "vision_model.embeddings.class_embedding" not in tensors:
        raise ModelFileError(f"{path}: not a CLIP vision model (expected vision_model.* keys of transformers' "
                             "CLIPVisionModelWithProjection, or visual.* keys of OpenAI's or OpenCLIP's CLIP)")
    return tensors


def _original_prefix(sd: dict[str, torch.Tensor]) -> str | None:
    for prefix in ("visual.", ""):
        if f"{prefix}transformer.resblocks.0.attn.in_proj_weight" in sd and f"{prefix}conv1.weight" in sd:
            return prefix
    return None


def original_to_transformers(tower: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """An original-layout tower (keys after ``visual.``) under transformers' names (module docstring);
    q/k/v are row slices of the fused projection (views, no copy)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in tower.items():
        if key in _TOP:
            out[_TOP[key]] = value
        elif key == "proj":
            out["visual_projection.weight"] = value.t().contiguous()  # (W, P) -> Linear weight (P, W)
        elif match := _IN_PROJ.fullmatch(key):
            layer, kind = match.groups()
            width = value.shape[0] // 3
            for index, name in enumerate(("q_proj", "k_proj", "v_proj")):
                rows = value[index * width:(index + 1) * width]
                out[f"vision_model.encoder.layers.{layer}.self_attn.{name}.{kind}"] = rows
        elif (match := _RESBLOCK.fullmatch(key)) and match.group(2) in _BLOCK:
            layer, module, kind = match.groups()
            out[f"vision_model.encoder.layers.{layer}.{_BLOCK[module]}.{kind}"] = value
        else:
            raise ModelFileError(f"{path}: unknown key {key!r} in a CLIP image tower in the original layout")
    return out


def vision_config(tensors: dict[str, torch.Tensor], path: Path):
    """transformers' CLIPVisionConfig read from the shapes (module docstring)."""
    from transformers import CLIPVisionConfig

    try:
        width = tensors["vision_model.embeddings.class_embedding"].shape[0]
        patch = tensors["vision_model.embeddings.patch_embedding.weight"].shape[-1]
        positions = tensors["vision_model.embeddings.position_embedding.weight"].shape[0]
        projection = tensors["visual_projection.weight"].shape[0]
        mlp = tensors["vision_model.encoder.layers.0.mlp.fc1.weight"].shape[0]
    except KeyError as error:
        raise ModelFileError(f"{path}: CLIP vision tower without {error.args[0]}") from None
    layers = sum(1 for key in tensors if key.endswith(".layer_norm1.weight"))
    grid = math.isqrt(positions - 1)
    heads = KNOWN_HEADS.get(width, width // 64)
    if grid * grid != positions - 1 or heads == 0 or width % heads:
        raise ModelFileError(f"{path}: CLIP vision tower of width {width} with {positions} positions: expected "
                             "a square grid of patches plus the class token, and a width divisible into 64-wide heads")
    return CLIPVisionConfig(hidden_size=width, intermediate_size=mlp, num_hidden_layers=layers,
                            num_attention_heads=heads, image_size=grid * patch, patch_size=patch,
                            projection_dim=projection, layer_norm_eps=1e-5,
                            hidden_act="quick_gelu" if width in QUICK_GELU_WIDTHS else "gelu")


def _build(path: Path, config, tensors: dict[str, torch.Tensor], device: torch.device, dtype: torch.dtype):
    from transformers import CLIPVisionModelWithProjection

    model = built(path, "CLIP vision tower", lambda: load_on_meta(lambda: CLIPVisionModelWithProjection(config),
                                                                  tensors, device=device, dtype=dtype))
    # position_ids is a buffer files do not hold (not persistent): made here, not left on the meta device
    embeddings = model.vision_model.embeddings
    embeddings.register_buffer("position_ids", torch.arange(embeddings.num_positions, device=device)[None],
                               persistent=False)
    return model
