"""Loader nodes: checkpoints, standalone U-Net, text-encoder and VAE files, and the text
encoder's clip-skip layer.

UNETLoader, CLIPLoader and DualCLIPLoader have ComfyUI's ids, inputs, choices and defaults
(nodes.py), so shared workflows validate unchanged; the choices for model families nodeflow does
not run are refused when the node runs, on one line (``type``), and UNETLoader's fp8
``weight_dtype`` choices round the weights as ComfyUI stores them (nodeflow.loading.diffusion_model).

The run's ``--vram`` (nodeflow.runtime.vram) is resolved per loaded file: when it is ``low``, the
U-Net's and VAE's weights stay in CPU memory (streamed to the GPU when used) and text encoders
load on the CPU, as with CLIPLoader's ``device=cpu``.
"""

from __future__ import annotations

from nodeflow.errors import NodeInputError
from nodeflow.spec import CLIP, MODEL, VAE, Choice, Input, Int, ModelFile, Output, node

#: ComfyUI's choices (nodes.py UNETLoader, CLIPLoader, DualCLIPLoader), in its order.
WEIGHT_DTYPES = ["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"]
CLIP_TYPES = ["stable_diffusion", "stable_cascade", "sd3", "stable_audio", "mochi", "ltxv", "pixart", "cosmos",
              "lumina2", "wan", "hidream", "chroma", "ace", "omnigen2", "qwen_image", "hunyuan_image", "flux2",
              "ovis", "longcat_image", "cogvideox", "lens", "pixeldit", "ideogram4", "boogu", "krea2", "joyimage",
              "mage", "minimax", "yue2"]
DUAL_CLIP_TYPES = ["sdxl", "sd3", "flux", "hunyuan_video", "hidream", "hunyuan_image", "hunyuan_video_15",
                   "kandinsky5", "kandinsky5_image", "ltxv", "newbie", "ace"]
DEVICES = ["default", "cpu"]
RUNS = "nodeflow runs SD1.x, SD2.x and SDXL"


def _device_input():
    return Choice("device", DEVICES, optional=True,
                  tooltip="cpu: keep the text encoder on the CPU (the sampler still runs on the run's device)")


def _text_device(device: str, ctx, *paths):
    """Where a text encoder from ``paths`` computes: the CPU when asked (``device``) or in a low-VRAM run."""
    return "cpu" if device == "cpu" or any(_low_vram(ctx, path) for path in paths) else ctx.device


def _text_dtype(where: str, ctx) -> str:
    """--dtype for a text encoder computing on ``where`` (nodeflow.runtime.devices.dtype_option)."""
    from nodeflow.runtime.devices import dtype_option

    return dtype_option(where, ctx.device, ctx.dtype)


def _low_vram(ctx, path) -> bool:
    """Whether this run keeps the weights of the file at ``path`` in CPU memory (``--vram``)."""
    from nodeflow.runtime.vram import vram_mode

    return vram_mode(getattr(ctx, "vram", "auto"), ctx.device, path) == "low"


def _prepared(model, ctx):
    """The loaded MODEL compiled with ``--compile`` (nodeflow.sampling.compiled.prepared)."""
    from nodeflow.sampling.compiled import prepared

    return prepared(model, getattr(ctx, "compile", False))  # tests' stand-in contexts may lack it


@node("CheckpointLoaderSimple", display="Load Checkpoint", category="loaders",
      inputs=[Choice("ckpt_name", lambda paths: paths.list_models("checkpoints"),
                     tooltip="A checkpoint from the checkpoints folder: an SD1.x, SD2.x or SDXL (base, refiner, "
                             "inpainting) single file or diffusers folder, or the embedded model")],
      outputs=[Output(MODEL), Output(CLIP), Output(VAE)],
      fingerprint=ModelFile("checkpoints", "ckpt_name"))
def checkpoint_loader_simple(ckpt_name: str, ctx):
    """Load a Stable Diffusion checkpoint: the denoising U-Net, the CLIP text encoder and the VAE."""
    from nodeflow.loading.checkpoint import load_checkpoint

    path = ctx.paths.resolve_model("checkpoints", ckpt_name)
    checkpoint = load_checkpoint(path, device=ctx.device, dtype=ctx.dtype, low_vram=_low_vram(ctx, path))
    return (_prepared(checkpoint.model, ctx), checkpoint.clip, checkpoint.vae)


@node("VAELoader", display="Load VAE", category="loaders",
      inputs=[Choice("vae_name", lambda paths: paths.list_models("vae"))],
      outputs=[Output(VAE)], fingerprint=ModelFile("vae", "vae_name"))
def vae_loader(vae_name: str, ctx):
    """Load a standalone VAE file (for example the ft-MSE VAE) to decode with."""
    from nodeflow.loading.checkpoint import load_vae

    path = ctx.paths.resolve_model("vae", vae_name)
    return (load_vae(path, device=ctx.device, dtype=ctx.dtype, low_vram=_low_vram(ctx, path)),)


@node("UNETLoader", display="Load Diffusion Model", category="advanced/loaders",
      inputs=[Choice("unet_name", lambda paths: paths.list_models("diffusion_models"),
                     tooltip="A U-Net-only file (SD1.x, SD2.x or SDXL) from models/diffusion_models or models/unet"),
              Choice("weight_dtype", WEIGHT_DTYPES,
                     tooltip="fp8: weights rounded to 8-bit floats as ComfyUI stores them (same image as "
                             "ComfyUI's, no memory saved)")],
      outputs=[Output(MODEL)], fingerprint=ModelFile("diffusion_models", "unet_name"))
def unet_loader(unet_name: str, weight_dtype: str, ctx):
    """Load a standalone diffusion model (U-Net) file, without its text encoder or VAE."""
    from nodeflow.loading.diffusion_model import load_diffusion_model

    path = ctx.paths.resolve_model("diffusion_models", unet_name)
    model = load_diffusion_model(path, device=ctx.device, dtype=ctx.dtype, weight_dtype=weight_dtype,
                                 low_vram=_low_vram(ctx, path))
    return (_prepared(model, ctx),)


@node("CLIPLoader", display="Load CLIP", category="advanced/loaders",
      inputs=[Choice("clip_name", lambda paths: paths.list_models("text_encoders"),
                     tooltip="A text-encoder file from models/text_encoders or models/clip"),
              Choice("type", CLIP_TYPES,
                     tooltip="stable_diffusion: CLIP-L for SD1.x, OpenCLIP ViT-H for SD2.x, CLIP-G for the "
                             "SDXL refiner (the others are for families nodeflow does not run)"),
              _device_input()],
      outputs=[Output(CLIP)], fingerprint=ModelFile("text_encoders", "clip_name"))
def clip_loader(clip_name: str, type: str, ctx, device: str = "default"):
    """Load one text encoder (CLIP) file; which family it serves is read from the file."""
    from nodeflow.loading.text_encoder_files import load_clip

    if type != "stable_diffusion":
        raise NodeInputError("type", f"{type!r} is for a model family nodeflow does not run ({RUNS}); "
                                     "use 'stable_diffusion'")
    path = ctx.paths.resolve_model("text_encoders", clip_name)
    where = _text_device(device, ctx, path)
    return (load_clip(path, device=where, dtype=_text_dtype(where, ctx)),)


@node("DualCLIPLoader", display="DualCLIPLoader", category="advanced/loaders",
      inputs=[Choice("clip_name1", lambda paths: paths.list_models("text_encoders")),
              Choice("clip_name2", lambda paths: paths.list_models("text_encoders")),
              Choice("type", DUAL_CLIP_TYPES, tooltip="sdxl: a CLIP-L and a CLIP-G file, in either order"),
              _device_input()],
      outputs=[Output(CLIP)], fingerprint=ModelFile("text_encoders", "clip_name1", ("clip_name2",)))
def dual_clip_loader(clip_name1: str, clip_name2: str, type: str, ctx, device: str = "default"):
    """Load SDXL's two text encoders (CLIP-L and CLIP-G) from two files."""
    from nodeflow.loading.text_encoder_files import load_sdxl_clip

    if type != "sdxl":
        raise NodeInputError("type", f"{type!r} is for a model family nodeflow does not run ({RUNS}); "
                                     "use 'sdxl' with a CLIP-L and a CLIP-G file")
    paths = [ctx.paths.resolve_model("text_encoders", name) for name in (clip_name1, clip_name2)]
    where = _text_device(device, ctx, *paths)
    return (load_sdxl_clip(*paths, device=where, dtype=_text_dtype(where, ctx)),)


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

