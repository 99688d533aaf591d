"""Standalone text-encoder files, for CLIPLoader and DualCLIPLoader: CLIP without a MODEL or a VAE.

A file holds one CLIP text tower, in either key layout:

- transformers' (``text_model.embeddings.token_embedding.weight`` ..., with or without the
  ``text_model.`` segment, plus ``text_projection.weight`` (P, D) for projected towers), as
  ComfyUI's ``clip_l.safetensors`` / ``clip_g.safetensors`` and diffusers' ``text_encoder*/``
  files have it; an old ``text_projection`` (D, P) is transposed, as ComfyUI does for files saved
  by its CLIPSave node;
- OpenCLIP's (``transformer.resblocks.N.*``, fused ``in_proj``; nodeflow.loading.open_clip), as the
  towers of SD2 and SDXL checkpoints store them.

A prefix common to every key (``cond_stage_model.transformer.``, ``conditioner.embedders.1.model.``
... of a tower cut out of a checkpoint) is dropped.

Which tower a file is, independently of its layout (the layout says nothing: CLIP-L also comes in
OpenCLIP's names, CLIP-G in transformers'): the width of the real ones, 768 CLIP-L (ViT-L/14,
quick_gelu), 1024 OpenCLIP ViT-H/14 and 1280 OpenCLIP ViT-bigG/14 (both GELU); other widths (test
models) by depth, as ComfyUI's comfy/sd.py detect_te_model (a 31st layer: CLIP-G, a 23rd: ViT-H,
else CLIP-L). ComfyUI's ``stable_diffusion`` type then makes the CLIP of the family each tower
serves (comfy/sd.py load_text_encoder_state_dicts): CLIP-L SD1.x's, ViT-H SD2.x's, CLIP-G alone the
SDXL refiner's; DualCLIPLoader's ``sdxl`` makes SDXL's two-tower CLIP from a CLIP-L and a CLIP-G
given in either order, told apart by width (the narrower is CLIP-L).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from nodeflow.errors import ModelFileError
from nodeflow.loading.build_errors import built
from nodeflow.loading.checkpoint import UNET_PREFIX, _unsupported
from nodeflow.loading.detect import describe_keys, detect_kind
from nodeflow.loading.families import FAMILIES, KIND_FAMILY
from nodeflow.loading.files import read_state_dict
from nodeflow.loading.open_clip import HIDDEN_ACT as OPEN_CLIP_ACT
from nodeflow.loading.open_clip import OpenClipKeyError, is_open_clip, open_clip_to_transformers
from nodeflow.runtime.devices import model_dtype

logger = logging.getLogger(__name__)

TOKEN_EMBEDDING = "embeddings.token_embedding.weight"
#: The real towers by width.
TOWER_WIDTHS = {768: "clip_l", 1024: "clip_h", 1280: "clip_g"}
TOWER_NAMES = {"clip_l": "a CLIP-L (ViT-L/14) text encoder", "clip_h": "an OpenCLIP ViT-H/14 text encoder (SD2.x's)",
               "clip_g": "an OpenCLIP ViT-bigG/14 text encoder (CLIP-G)"}
WANTED = "a CLIP text encoder file"
#: Text encoders of other families, by a key of theirs (as ComfyUI's detect_te_model tells them).
OTHER_ENCODERS = (("encoder.block.0.layer.0.SelfAttention.k.weight", "a T5 text encoder (SD3, Flux, video models)"),
                  ("model.layers.0.", "a language-model text encoder (Llama, Qwen, Gemma ...)"))
_DROPPED = re.compile(r"(^|\.)(position_ids|logit_scale)$")


@dataclass(frozen=True, eq=False)
class TextEncoderFile:
    """One tower read from a file: its tensors under transformers' names (without ``text_model.``;
    ``text_projection.weight`` when the file has a projection), width, depth and which tower it is."""

    path: Path
    sd: dict[str, torch.Tensor]
    width: int
    depth: int
    tower: str  # clip_l, clip_h or clip_g
    known_width: bool  # the width is a real tower's (else the tower was told by depth)

    @property
    def description(self) -> str:
        return f"{TOWER_NAMES[self.tower]}, {self.width} wide"


def read_text_encoder(path: str | os.PathLike) -> TextEncoderFile:
    """The tower in a text-encoder file (module docstring); any other file is a ModelFileError
    naming it and what it is."""
    path = Path(path)
    sd, _ = read_state_dict(path)
    kind = detect_kind(sd)
    if kind != "unknown":  # a checkpoint, a U-Net, a VAE, a LoRA ...
        raise ModelFileError(_unsupported(path, kind, sd, wanted=WANTED))
    unet_kind = detect_kind({UNET_PREFIX + k: v for k, v in sd.items()})
    if unet_kind in KIND_FAMILY:
        raise ModelFileError(f"{path}: this is the diffusion model (U-Net) of an {FAMILIES[KIND_FAMILY[unet_kind]].name} "
                             f"model (use UNETLoader), not {WANTED}")
    sd = _transformers_layout(path, _without_common_prefix(sd))
    if TOKEN_EMBEDDING not in sd:
        other = next((name for key, name in OTHER_ENCODERS if any(k.startswith(key) for k in sd)), None)
        if other:
            raise ModelFileError(f"{path}: this is {other}; nodeflow runs CLIP text encoders only "
                                 "(SD1.x, SD2.x and SDXL)")
        raise ModelFileError(f"{path}: not {WANTED}; found keys like {describe_keys(sd)}")
    width = sd[TOKEN_EMBEDDING].shape[-1]
    depth = len({int(m.group(1)) for key in sd if (m := re.match(r"encoder\.layers\.(\d+)\.", key))})
    tower = TOWER_WIDTHS.get(width) or ("clip_g" if depth >= 31 else "clip_h" if depth >= 23 else "clip_l")
    return TextEncoderFile(path, sd, width, depth, tower, width in TOWER_WIDTHS)


def is_text_encoder(sd: dict[str, torch.Tensor]) -> bool:
    """Whether ``sd`` looks like a CLIP text tower in either layout (for other loaders' messages)."""
    return any(k.endswith("token_embedding.weight") for k in sd)


def _without_common_prefix(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``sd`` without a prefix that every key shares, found before the token embedding's name."""
    key = next((k for k in sd if k.endswith("token_embedding.weight")), None)
    if key is None:
        return sd
    prefix = key[:-len("token_embedding.weight")]
    for inner in ("text_model.embeddings.", "embeddings.", ""):  # what belongs to the tower's own names
        if prefix.endswith(inner):
            prefix = prefix[:len(prefix) - len(inner)]
            break
    if not prefix or not all(k.startswith(prefix) for k in sd):
        return sd
    return {k[len(prefix):]: v for k, v in sd.items()}


def _transformers_layout(path: Path, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if is_open_clip(sd):
        try:
            sd = open_clip_to_transformers(sd)
        except OpenClipKeyError as error:
            raise ModelFileError(f"{path}: cannot read the text encoder ({error})") from None
    out = {}
    for key, value in sd.items():
        if _DROPPED.search(key):
            continue
        if key == "text_projection":  # (D, P), as ComfyUI's CLIPSave wrote it
            out["text_projection.weight"] = value.t().contiguous()
        else:
            out[key.removeprefix("text_model.")] = value
    return out


def _tower_model(encoder: TextEncoderFile, device: torch.device, dtype: torch.dtype):
    """A transformers model of the tower: CLIP-L a CLIPTextModel with quick_gelu (its projection,
    unused by SD's conditioning, is not loaded, as in checkpoints); the OpenCLIP towers a
    CLIPTextModelWithProjection with GELU (the identity when the file has no projection, as
    ComfyUI does)."""
    from nodeflow.text.text_encoder import clip_model_from_state_dict

    sd = dict(encoder.sd)
    if encoder.tower == "clip_l":
        sd.pop("text_projection.weight", None)
        return built(encoder.path, "text encoder", lambda: clip_model_from_state_dict(sd, device=device, dtype=dtype))
    if "text_projection.weight" not in sd:
        logger.info("%s: no text_projection; using the identity (as ComfyUI does)", encoder.path.name)
        sd["text_projection.weight"] = torch.eye(encoder.width, dtype=sd[TOKEN_EMBEDDING].dtype)
    return built(encoder.path, "text encoder", lambda: clip_model_from_state_dict(
        sd, device=device, dtype=dtype, hidden_act=OPEN_CLIP_ACT))


def load_clip(path: str | os.PathLike, *, device: str | torch.device = "cpu", dtype: str = "auto", tokenizer=None):
    """CLIPLoader, type ``stable_diffusion``: the CLIP of the family the file's tower serves
    (module docstring)."""
    from nodeflow.text.families import sd2_text_encoder, sdxl_refiner_text_encoder
    from nodeflow.text.text_encoder import TextEncoder
    from nodeflow.text.tokenizer import load_tokenizer

    device = torch.device(device)
    text_dtype = model_dtype(device, dtype, "text")
    encoder = read_text_encoder(path)
    model = _tower_model(encoder, device, text_dtype)
    tokenizer = tokenizer or load_tokenizer()
    logger.info("loaded %s: %s", encoder.path.name, encoder.description)
    if encoder.tower == "clip_l":
        return TextEncoder(model, tokenizer, None, device, text_dtype)
    if encoder.tower == "clip_h":
        return sd2_text_encoder(model, tokenizer, device, text_dtype)
    return sdxl_refiner_text_encoder(model, tokenizer, device, text_dtype)


def load_sdxl_clip(path1: str | os.PathLike, path2: str | os.PathLike, *, device: str | torch.device = "cpu",
                   dtype: str = "auto", tokenizer=None):
    """DualCLIPLoader, type ``sdxl``: SDXL's CLIP from a CLIP-L and a CLIP-G file, in either order."""
    from nodeflow.text.families import sdxl_text_encoder
    from nodeflow.text.tokenizer import load_tokenizer

    device = torch.device(device)
    text_dtype = model_dtype(device, dtype, "text")
    clip_l, clip_g = sdxl_pair(read_text_encoder(path1), read_text_encoder(path2))
    models = {name: _tower_model(encoder, device, text_dtype) for name, encoder in (("clip_l", clip_l), ("clip_g", clip_g))}
    logger.info("loaded SDXL's text encoders: %s (CLIP-L), %s (CLIP-G)", clip_l.path.name, clip_g.path.name)
    return sdxl_text_encoder(models["clip_l"], models["clip_g"], tokenizer or load_tokenizer(), device, text_dtype)


def sdxl_pair(first: TextEncoderFile, second: TextEncoderFile) -> tuple[TextEncoderFile, TextEncoderFile]:
    """(CLIP-L, CLIP-G) of two files given in either order; a pair that is not one of each is a
    ModelFileError naming the file(s) and what was expected."""
    if first.width == second.width:
        raise ModelFileError(f"{first.path} and {second.path}: both are {first.description}; SDXL needs "
                             "one CLIP-L and one CLIP-G text encoder")
    narrow, wide = sorted((first, second), key=lambda encoder: encoder.width)
    for encoder, wanted in ((narrow, "clip_l"), (wide, "clip_g")):
        if encoder.known_width and encoder.tower != wanted:
            raise ModelFileError(f"{encoder.path}: this is {encoder.description}, not the "
                                 f"{'CLIP-L' if wanted == 'clip_l' else 'CLIP-G'} that SDXL needs beside "
                                 f"{(wide if encoder is narrow else narrow).path.name}")
    return replace(narrow, tower="clip_l"), replace(wide, tower="clip_g")  # test-sized towers: told by width
