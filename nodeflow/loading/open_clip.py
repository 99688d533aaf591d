"""OpenCLIP text towers in the original checkpoint layout -> transformers' CLIPTextModelWithProjection keys.

SD2.x conditions on OpenCLIP ViT-H/14 (``cond_stage_model.model.*``), SDXL on OpenCLIP ViT-bigG/14
(``conditioner.embedders.1.model.*``; the refiner's only encoder, ``conditioner.embedders.0.model.*``).
Their text transformer is CLIP's (pre-LayerNorm blocks, causal mask, GELU, the final state at the
first end token as the pooled output), stored with OpenCLIP's names:

====================================================  =====================================================
OpenCLIP (after the tower's prefix)                    transformers (CLIPTextModelWithProjection)
====================================================  =====================================================
token_embedding.weight (V, D)                          text_model.embeddings.token_embedding.weight
positional_embedding (T, D)                            text_model.embeddings.position_embedding.weight
transformer.resblocks.N.ln_1.{weight,bias}             text_model.encoder.layers.N.layer_norm1.*
transformer.resblocks.N.attn.in_proj_weight (3D, D)    ...layers.N.self_attn.{q,k,v}_proj.weight (rows q|k|v)
transformer.resblocks.N.attn.in_proj_bias (3D,)        ...layers.N.self_attn.{q,k,v}_proj.bias
transformer.resblocks.N.attn.out_proj.{weight,bias}    ...layers.N.self_attn.out_proj.*
transformer.resblocks.N.ln_2.{weight,bias}             ...layers.N.layer_norm2.*
transformer.resblocks.N.mlp.c_fc.{weight,bias}         ...layers.N.mlp.fc1.*
transformer.resblocks.N.mlp.c_proj.{weight,bias}       ...layers.N.mlp.fc2.*
ln_final.{weight,bias}                                 text_model.final_layer_norm.*
text_projection (D, P), used as x @ P                  text_projection.weight (P, D): its transpose
text_projection.weight (P, D) (some converted files)   text_projection.weight, as it is
====================================================  =====================================================

``in_proj_weight`` is nn.MultiheadAttention's fused projection, q, k and v stacked along the rows.
Ignored on purpose (``IGNORED``): ``logit_scale`` (the image-text contrastive temperature) and
``attn_mask`` (the causal mask as a buffer; rebuilt). A file without ``text_projection`` gets the
identity (ComfyUI's default for a missing projection), logged. Anything else unknown is an error.

Heads cannot be read from shapes: OpenCLIP's text towers use 64-wide heads (ViT-H 16, bigG 20),
and GELU (erf), not OpenAI CLIP's quick_gelu.
"""

from __future__ import annotations

import logging
import re

import torch

logger = logging.getLogger(__name__)

#: Keys of an OpenCLIP text tower that the CLIP text encoder does not use (see the module docstring).
IGNORED = re.compile(r"^(logit_scale|attn_mask|transformer\.resblocks\.\d+\.attn\.attn_mask)$")
HIDDEN_ACT = "gelu"

_TOP = {
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "positional_embedding": "text_model.embeddings.position_embedding.weight",
    "ln_final.weight": "text_model.final_layer_norm.weight",
    "ln_final.bias": "text_model.final_layer_norm.bias",
}
_BLOCK = {
    "ln_1": "layer_norm1", "ln_2": "layer_norm2", "attn.out_proj": "self_attn.out_proj",
    "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2",
}
_RESBLOCK = re.compile(r"transformer\.resblocks\.(\d+)\.(.+)\.(weight|bias)$")
_IN_PROJ = re.compile(r"transformer\.resblocks\.(\d+)\.attn\.in_proj_(weight|bias)$")


class OpenClipKeyError(KeyError):
    """A key of the tower that is neither mapped nor ignored."""


def is_open_clip(sd: dict[str, torch.Tensor]) -> bool:
    """Whether ``sd`` (keys after the tower's prefix) is an OpenCLIP text tower."""
    return "positional_embedding" in sd or any(k.startswith("transformer.resblocks.") for k in sd)


def open_clip_to_transformers(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tower's tensors under CLIPTextModelWithProjection's names (module docstring). The fused
    q/k/v projections become three row slices (views: nothing is copied); ``text_projection`` is
    transposed. Raises OpenClipKeyError for a key it does not know."""
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if IGNORED.match(key):
            continue
        if key in _TOP:
            out[_TOP[key]] = value
        elif key == "text_projection":
            out["text_projection.weight"] = value.t().contiguous()  # (D, P) -> Linear weight (P, D)
        elif key == "text_projection.weight":  # already a Linear weight (ComfyUI accepts both forms)
            out["text_projection.weight"] = value
        elif match := _IN_PROJ.match(key):
            layer, kind = match.groups()
            width = value.shape[0] // 3
            for index, name in enumerate(("q_proj", "k_proj", "v_proj")):
                out[f"text_model.encoder.layers.{layer}.self_attn.{name}.{kind}"] = value[index * width:(index + 1) * width]
        elif (match := _RESBLOCK.match(key)) and match.group(2) in _BLOCK:
            layer, module, kind = match.groups()
            out[f"text_model.encoder.layers.{layer}.{_BLOCK[module]}.{kind}"] = value
        else:
            raise OpenClipKeyError(f"unknown OpenCLIP text-tower key {key!r}")
    if "text_projection.weight" not in out and "text_model.final_layer_norm.weight" in out:
        width = out["text_model.final_layer_norm.weight"].shape[0]
        like = out["text_model.final_layer_norm.weight"]
        logger.info("OpenCLIP text tower without text_projection: using the identity (as ComfyUI does)")
        out["text_projection.weight"] = torch.eye(width, dtype=like.dtype, device=like.device)
    return out


def transformers_to_open_clip(sd: dict[str, torch.Tensor], extra_identity_layer: bool = False) -> dict[str, torch.Tensor]:
    """The inverse: a CLIPTextModel(WithProjection)'s tensors (``text_model.*`` or, as
    transformers 5 saves them, without that segment) under OpenCLIP's names, q/k/v fused, the
    projection as (D, P). ``extra_identity_layer`` appends a block that leaves its input as it is
    (zero output projections): diffusers stores SD2's ViT-H without its last layer, which SD2
    never uses (it conditions on the penultimate one), and the padded tower keeps that meaning."""
    sd = {k.removeprefix("text_model."): v for k, v in sd.items() if not k.endswith("position_ids")}
    inverse_top = {v.removeprefix("text_model."): k for k, v in _TOP.items()}
    inverse_block = {v: k for k, v in _BLOCK.items()}
    out: dict[str, torch.Tensor] = {}
    layers = set()
    for key, value in sd.items():
        if key in inverse_top:
            out[inverse_top[key]] = value
        elif key == "text_projection.weight":
            out["text_projection"] = value.t().contiguous()
        elif match := re.fullmatch(r"encoder\.layers\.(\d+)\.(.+)\.(weight|bias)", key):
            layer, module, kind = match.groups()
            layers.add(int(layer))
            if module in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
                continue  # fused below
            if module not in inverse_block:
                raise OpenClipKeyError(f"unknown CLIP text-model key {key!r}")
            out[f"transformer.resblocks.{layer}.{inverse_block[module]}.{kind}"] = value
        else:
            raise OpenClipKeyError(f"unknown CLIP text-model key {key!r}")
    for layer in sorted(layers):
        for kind in ("weight", "bias"):
            out[f"transformer.resblocks.{layer}.attn.in_proj_{kind}"] = torch.cat(
                [sd[f"encoder.layers.{layer}.self_attn.{p}_proj.{kind}"] for p in "qkv"])
    if extra_identity_layer and layers:
        last, new = max(layers), max(layers) + 1
        for key in [k for k in out if k.startswith(f"transformer.resblocks.{last}.")]:
            like = out[key]
            norm_scale = key.endswith(("ln_1.weight", "ln_2.weight"))
            out[key.replace(f".{last}.", f".{new}.", 1)] = torch.ones_like(like) if norm_scale else torch.zeros_like(like)
    return out
