"""unCLIP: unCLIPCheckpointLoader and unCLIPConditioning, with ComfyUI's ids, inputs and defaults
(nodes.py), for SD2.1 unCLIP checkpoints (stable-diffusion-2-1-unclip-l / -h). The checkpoint is read
by nodeflow.loading.checkpoint; the image embeddings become the U-Net's ADM vector when sampling
(nodeflow.sampling.unclip: noise augmentation seeded by the sampler's seed)."""

from __future__ import annotations

from nodeflow.spec import CLIP, CONDITIONING, MODEL, VAE, Choice, Float, Input, ModelFile, Output, node
from nodeflow.types import CLIP_VISION, CLIP_VISION_OUTPUT


@node("unCLIPCheckpointLoader", display="unCLIP Checkpoint Loader", category="loaders",
      inputs=[Choice("ckpt_name", lambda paths: paths.list_models("checkpoints"),
                     tooltip="An SD2.1 unCLIP checkpoint (stable-diffusion-2-1-unclip-l or -h) from the checkpoints "
                             "folder: it holds the CLIP image tower its conditioning is made with")],
      outputs=[Output(MODEL), Output(CLIP), Output(VAE), Output(CLIP_VISION)],
      fingerprint=ModelFile("checkpoints", "ckpt_name"))
def unclip_checkpoint_loader(ckpt_name: str, ctx):
    """Load an unCLIP checkpoint: the U-Net, the text encoder, the VAE and the CLIP vision tower."""
    from nodeflow.loading.checkpoint import load_checkpoint
    from nodeflow.runtime.vram import vram_mode
    from nodeflow.sampling.compiled import prepared

    path = ctx.paths.resolve_model("checkpoints", ckpt_name)
    checkpoint = load_checkpoint(path, device=ctx.device, dtype=ctx.dtype, clip_vision=True,
                                 low_vram=vram_mode(getattr(ctx, "vram", "auto"), ctx.device, path) == "low")
    return (prepared(checkpoint.model, getattr(ctx, "compile", False)), checkpoint.clip, checkpoint.vae,
            checkpoint.clip_vision)


@node("unCLIPConditioning", display="unCLIPConditioning", category="conditioning",
      inputs=[Input("conditioning", CONDITIONING), Input("clip_vision_output", CLIP_VISION_OUTPUT),
              Float("strength", 1.0, min=-10.0, max=10.0, step=0.01,
                    tooltip="How strongly the image guides the generation (its vector's weight)"),
              Float("noise_augmentation", 0.0, min=0.0, max=1.0, step=0.01,
                    tooltip="Noise added to the image embedding: higher values keep less of the image")],
      outputs=[Output(CONDITIONING)])
def unclip_conditioning(conditioning, clip_vision_output, strength: float, noise_augmentation: float):
    """Add an encoded image to every conditioning entry, for unCLIP models (strength 0: unchanged)."""
    if strength == 0:
        return (conditioning,)
    item = {"clip_vision_output": clip_vision_output, "strength": strength, "noise_augmentation": noise_augmentation}
    return ([(cond, {**options, "unclip_conditioning": [*options.get("unclip_conditioning", ()), item]})
             for cond, options in conditioning],)
