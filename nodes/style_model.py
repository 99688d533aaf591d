"""Style models: StyleModelLoader and StyleModelApply, with ComfyUI's ids, inputs and defaults
(nodes.py). The model is the T2I-Adapter style model (nodeflow.models.style_model)."""

from __future__ import annotations

import logging

from nodeflow.spec import CONDITIONING, Choice, Float, Input, ModelFile, Output, node
from nodeflow.types import CLIP_VISION_OUTPUT, STYLE_MODEL

logger = logging.getLogger(__name__)

STRENGTH_TYPES = ["multiply", "attn_bias"]


@node("StyleModelLoader", display="Load Style Model", category="loaders",
      inputs=[Choice("style_model_name", lambda paths: paths.list_models("style_models"),
                     tooltip="A T2I-Adapter style model (e.g. t2iadapter_style_sd14v1) from models/style_models")],
      outputs=[Output(STYLE_MODEL)], fingerprint=ModelFile("style_models", "style_model_name"))
def style_model_loader(style_model_name: str, ctx):
    """Load a style model, which turns a CLIP vision encoding of an image into prompt tokens."""
    from nodeflow.loading.style_model import load_style_model

    return (load_style_model(ctx.paths.resolve_model("style_models", style_model_name), device=ctx.device),)


@node("StyleModelApply", display="Apply Style Model", category="conditioning/style_model",
      inputs=[Input("conditioning", CONDITIONING), Input("style_model", STYLE_MODEL),
              Input("clip_vision_output", CLIP_VISION_OUTPUT),
              Float("strength", 1.0, min=0.0, max=10.0, step=0.001,
                    tooltip="multiply: the style tokens are scaled by it"),
              Choice("strength_type", STRENGTH_TYPES,
                     tooltip="multiply: scale the style tokens; attn_bias: ComfyUI's attention bias, which only "
                             "its FLUX-family models read: on SD models the tokens are appended unscaled")],
      outputs=[Output(CONDITIONING)])
def style_model_apply(conditioning, style_model, clip_vision_output, strength: float, strength_type: str):
    """Append the style tokens of the encoded image(s) to every conditioning entry's prompt tokens
    (all images' tokens one after another)."""
    import torch

    from nodeflow.errors import NodeInputError
    from nodeflow.sampling.conditioning import concat_tokens

    if strength_type not in STRENGTH_TYPES:
        raise NodeInputError("strength_type", f"{strength_type!r} is not one of {', '.join(STRENGTH_TYPES)}")
    hidden = clip_vision_output.last_hidden_state
    if hidden.shape[-1] != style_model.config.width:
        raise NodeInputError("clip_vision_output", f"tokens of width {hidden.shape[-1]}, the style model reads "
                             f"{style_model.config.width} (a CLIP ViT-L/14 encoding for the SD1 style model)")
    with torch.no_grad():
        tokens = style_model(hidden.to(style_model.device, torch.float32))  # (B, T, C)
    tokens = tokens.flatten(0, 1)[None].cpu()  # (1, B*T, C)
    if strength_type == "multiply":
        tokens = tokens * strength
    elif strength != 1.0:
        logger.warning("StyleModelApply: strength_type attn_bias is read by FLUX-family models only; the style "
                       "tokens are appended at full strength (as ComfyUI does for SD models)")
    return (concat_tokens(conditioning, [(tokens, {})]),)
