"""LoRA loader nodes: patch copies of the model and text encoder (the loaded ones never change)."""

from __future__ import annotations

import logging

from nodeflow.spec import CLIP, MODEL, Choice, Float, Input, ModelFile, Output, node

logger = logging.getLogger(__name__)

LORAS = lambda paths: paths.list_models("loras")  # noqa: E731


def _load(ctx, lora_name: str, model, clip, strength_model: float, strength_clip: float):
    from nodeflow.errors import NodeInputError
    from nodeflow.loading.files import read_state_dict
    from nodeflow.loading.lora import PatchedModule, base_of, lora_patches

    path = ctx.paths.resolve_model("loras", lora_name)
    lora, _ = read_state_dict(path)
    unet_base, unet_done = base_of(model.unet) if model is not None else (None, ())
    text_base, text_done = base_of(clip.model) if clip is not None else (None, ())
    unet_patches, text_patches, unmatched = lora_patches(lora, unet_base, text_base, strength_model,
                                                         strength_clip, str(path),
                                                         getattr(model, "family", "") if model is not None else "")
    if not unet_patches and not text_patches:
        raise NodeInputError("lora_name", f"{path.name}: none of its layers match this model "
                                          f"(e.g. {', '.join(unmatched[:3])})")
    if unmatched:
        logger.warning("%s: %d LoRA layers did not match the model and were skipped (e.g. %s)",
                       path.name, len(unmatched), ", ".join(unmatched[:3]))
    new_model = model.clone_with(unet=PatchedModule(unet_base, unet_done + tuple(unet_patches))) \
        if model is not None and unet_patches and strength_model else model
    new_clip = clip.clone_with(model=PatchedModule(text_base, text_done + tuple(text_patches))) \
        if clip is not None and text_patches and strength_clip else clip
    return new_model, new_clip


@node("LoraLoader", display="Load LoRA", category="loaders",
      inputs=[Input("model", MODEL), Input("clip", CLIP), Choice("lora_name", LORAS),
              Float("strength_model", 1.0, min=-100.0, max=100.0, step=0.01),
              Float("strength_clip", 1.0, min=-100.0, max=100.0, step=0.01)],
      outputs=[Output(MODEL), Output(CLIP)], fingerprint=ModelFile("loras", "lora_name"))
def lora_loader(model, clip, lora_name: str, strength_model: float, strength_clip: float, ctx):
    """Apply a LoRA to the model and the text encoder (several LoRA nodes stack)."""
    if strength_model == 0 and strength_clip == 0:
        return (model, clip)
    return _load(ctx, lora_name, model, clip, strength_model, strength_clip)


@node("LoraLoaderModelOnly", display="Load LoRA (model only)", category="loaders",
      inputs=[Input("model", MODEL), Choice("lora_name", LORAS),
              Float("strength_model", 1.0, min=-100.0, max=100.0, step=0.01)],
      outputs=[Output(MODEL)], fingerprint=ModelFile("loras", "lora_name"))
def lora_loader_model_only(model, lora_name: str, strength_model: float, ctx):
    """Apply a LoRA to the model only."""
    if strength_model == 0:
        return (model,)
    return (_load(ctx, lora_name, model, None, strength_model, 0.0)[0],)
