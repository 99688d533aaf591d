"""Loader nodes: checkpoints, VAEs, and the text encoder's clip-skip layer."""

from __future__ import annotations

from nodeflow.spec import CLIP, MODEL, VAE, Choice, Input, Int, ModelFile, Output, node


@node("CheckpointLoaderSimple", display="Load Checkpoint", category="loaders",
      inputs=[Choice("ckpt_name", lambda paths: paths.list_models("checkpoints"),
                     tooltip="A single-file SD1.x checkpoint from the checkpoints folder (or the embedded model)")],
      outputs=[Output(MODEL), Output(CLIP), Output(VAE)],
      fingerprint=ModelFile("checkpoints", "ckpt_name"))
def checkpoint_loader_simple(ckpt_name: str, ctx):
    """Load a Stable Diffusion checkpoint: the denoising U-Net, the CLIP text encoder and the VAE."""
    from nodeflow.loading.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(ctx.paths.resolve_model("checkpoints", ckpt_name),
                                 device=ctx.device, dtype=ctx.dtype)
    return (checkpoint.model, checkpoint.clip, checkpoint.vae)


@node("VAELoader", display="Load VAE", category="loaders",
      inputs=[Choice("vae_name", lambda paths: paths.list_models("vae"))],
      outputs=[Output(VAE)], fingerprint=ModelFile("vae", "vae_name"))
def vae_loader(vae_name: str, ctx):
    """Load a standalone VAE file (for example the ft-MSE VAE) to decode with."""
    from nodeflow.loading.checkpoint import load_vae

    return (load_vae(ctx.paths.resolve_model("vae", vae_name), device=ctx.device, dtype=ctx.dtype),)


@node("CLIPSetLastLayer", display="CLIP Set Last Layer", category="conditioning",
      inputs=[Input("clip", CLIP), Int("stop_at_clip_layer", -1, min=-24, max=-1,
                                       tooltip="-1: the last layer; -2: 'clip skip 2'")],
      outputs=[Output(CLIP)])
def clip_set_last_layer(clip, stop_at_clip_layer: int):
    """Encode prompts with an earlier layer of the text encoder (clip skip)."""
    layers = clip.model.config.num_hidden_layers
    if -stop_at_clip_layer > layers:
        from nodeflow.errors import NodeInputError

        raise NodeInputError("stop_at_clip_layer", f"{stop_at_clip_layer} is beyond this text encoder's {layers} layers")
    return (clip.clone_with(layer_idx=stop_at_clip_layer),)

