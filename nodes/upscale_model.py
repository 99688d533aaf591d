"""Upscale models (ESRGAN, Real-ESRGAN, SwinIR, HAT, DAT ... through spandrel): ComfyUI's
UpscaleModelLoader and ImageUpscaleWithModel, same ids, inputs and outputs."""

from __future__ import annotations

import torch

from nodeflow.spec import IMAGE, Choice, Input, ModelFile, Output, node

UPSCALE_MODEL = "UPSCALE_MODEL"  # spandrel's ImageModelDescriptor (nodeflow.loading.upscale_model)


@node("UpscaleModelLoader", display="Load Upscale Model", category="loaders",
      inputs=[Choice("model_name", lambda paths: paths.list_models("upscale_models"))],
      outputs=[Output(UPSCALE_MODEL)], fingerprint=ModelFile("upscale_models", "model_name"))
def upscale_model_loader(model_name: str, ctx):
    """Load a super-resolution model (.pth/.safetensors: tensors only) from models/upscale_models."""
    from nodeflow.loading.upscale_model import load_upscale_model

    return (load_upscale_model(ctx.paths.resolve_model("upscale_models", model_name), device=ctx.device),)


@node("ImageUpscaleWithModel", display="Upscale Image (using Model)", category="image/upscaling",
      inputs=[Input("upscale_model", UPSCALE_MODEL), Input("image", IMAGE)], outputs=[Output(IMAGE)])
def image_upscale_with_model(upscale_model, image: torch.Tensor, ctx):
    """Upscale by the model's factor, in overlapping tiles of 512 px (halved when memory runs out),
    one progress step per tile."""
    from nodeflow.image.tiled_upscale import upscale_tiled

    def run(tile: torch.Tensor) -> torch.Tensor:  # (1, 3, h, w) -> (1, 3, h s, w s)
        return upscale_model(tile.to(upscale_model.device, upscale_model.dtype))

    return (upscale_tiled(image[..., :3], run, upscale_model.scale, on_tile=ctx.progress),)
