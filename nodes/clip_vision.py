"""CLIP vision: CLIPVisionLoader and CLIPVisionEncode, with ComfyUI's ids, inputs and outputs
(nodes.py). The tower is transformers' CLIPVisionModelWithProjection (nodeflow.loading.clip_vision);
the preprocessing ComfyUI's (nodeflow.image.clip_vision)."""

from __future__ import annotations

from nodeflow.spec import IMAGE, Choice, Input, ModelFile, Output, node
from nodeflow.types import CLIP_VISION, CLIP_VISION_OUTPUT

CROPS = ["center", "none"]


@node("CLIPVisionLoader", display="Load CLIP Vision", category="loaders",
      inputs=[Choice("clip_name", lambda paths: paths.list_models("clip_vision"),
                     tooltip="A CLIP image tower (ViT-L/14, ViT-H/14, ViT-bigG/14) from models/clip_vision, in "
                             "transformers' layout or OpenAI's / OpenCLIP's")],
      outputs=[Output(CLIP_VISION)], fingerprint=ModelFile("clip_vision", "clip_name"))
def clip_vision_loader(clip_name: str, ctx):
    """Load a CLIP vision model, which turns images into embeddings for style models and unCLIP."""
    from nodeflow.loading.clip_vision import load_clip_vision

    return (load_clip_vision(ctx.paths.resolve_model("clip_vision", clip_name), device=ctx.device, dtype=ctx.dtype),)


@node("CLIPVisionEncode", display="CLIP Vision Encode", category="conditioning",
      inputs=[Input("clip_vision", CLIP_VISION), Input("image", IMAGE),
              Choice("crop", CROPS, tooltip="center: the shorter side scaled to the tower's size and the centre cut "
                                            "out; none: the whole image squeezed to a square")],
      outputs=[Output(CLIP_VISION_OUTPUT)])
def clip_vision_encode(clip_vision, image, crop: str):
    """Encode images with a CLIP vision model: the image embeddings and the last two layers' tokens."""
    from nodeflow.errors import NodeInputError

    if crop not in CROPS:
        raise NodeInputError("crop", f"{crop!r} is not one of {', '.join(CROPS)}")
    return (clip_vision.encode(image, crop=crop == "center"),)
