"""ControlNet nodes: loaders, apply nodes (ComfyUI's), and simple control-image preprocessors.

With ``--vram low`` (nodeflow.runtime.vram) a ControlNet's weights (plain, union, or a T2I-Adapter's)
stay in CPU memory and its blocks stream to the GPU as the U-Net's do (nodeflow.models.streaming).
"""

from __future__ import annotations

import torch

import logging

from nodeflow.errors import NodeInputError
from nodeflow.spec import (CONDITIONING, CONTROL_NET, IMAGE, MASK, MODEL, VAE, Choice, Float, Input, Int,
                           ModelFile, Output, node)

CONTROLNETS = lambda paths: paths.list_models("controlnet")  # noqa: E731
#: ComfyUI's union control types (nodeflow.models.controlnet_union.UNION_TYPES, kept equal by a test),
#: listed here so that declaring the node imports no torch module
UNION_TYPE_CHOICES = ["auto", "openpose", "depth", "hed/pidi/scribble/ted", "canny/lineart/anime_lineart/mlsd",
                      "normal", "segment", "tile", "repaint"]
logger = logging.getLogger(__name__)


@node("ControlNetLoader", display="Load ControlNet Model", category="loaders",
      inputs=[Choice("control_net_name", CONTROLNETS)], outputs=[Output(CONTROL_NET)],
      fingerprint=ModelFile("controlnet", "control_net_name"))
def controlnet_loader(control_net_name: str, ctx):
    """Load a ControlNet: original layout (.safetensors/.pth) or diffusers (a ControlNetModel folder or its file)."""
    return (_load(ctx.paths.resolve_model("controlnet", control_net_name), ctx),)


@node("DiffControlNetLoader", display="Load ControlNet Model (diff)", category="loaders",
      inputs=[Input("model", MODEL), Choice("control_net_name", CONTROLNETS)], outputs=[Output(CONTROL_NET)],
      fingerprint=ModelFile("controlnet", "control_net_name"))
def diff_controlnet_loader(model, control_net_name: str, ctx):
    """Load a ControlNet stored as a difference to the given model (plain ones load as usual)."""
    return (_load(ctx.paths.resolve_model("controlnet", control_net_name), ctx, base_unet=model.unet),)


def _load(path, ctx, base_unet=None):
    """The ControlNet file at ``path`` for this run: on its device, or with ``--vram low`` kept in
    CPU memory in the device's dtype and streamed (module docstring)."""
    from nodeflow.loading.controlnet import load_controlnet
    from nodeflow.models.streaming import stream_blocks
    from nodeflow.runtime.devices import NAMES, model_dtype
    from nodeflow.runtime.vram import vram_mode

    if vram_mode(getattr(ctx, "vram", "auto"), ctx.device, path) != "low":
        return load_controlnet(path, device=ctx.device, dtype=ctx.dtype, base_unet=base_unet)
    device = torch.device(ctx.device)
    compute = {dtype: name for name, dtype in NAMES.items()}[model_dtype(device, ctx.dtype, "unet")]
    model = load_controlnet(path, device="cpu", dtype=compute, base_unet=base_unet)
    return stream_blocks(model, device, pin=device.type == "cuda")


def _apply(conditioning: list, hook_for, to_uncond: bool) -> list:
    """Copies of the entries with the ControlNet chained on. ``to_uncond``: the sampler also
    applies it to the negative prompt (ControlNetApply has no negative input; as in ComfyUI)."""
    result = []
    for cond, options in conditioning:
        new = dict(options)
        new["control"] = hook_for(options.get("control"))
        new["control_apply_to_uncond"] = to_uncond
        result.append((cond, new))
    return result


def _hook_factory(control_net, image, strength, start, end):
    from nodeflow.sampling.controlnet import ControlNetHook

    made: dict[int, ControlNetHook] = {}

    def hook_for(previous):
        key = id(previous)
        if key not in made:  # one hook per previous chain, shared by positive and negative
            made[key] = ControlNetHook(control_net, image, strength, start, end, previous)
        return made[key]

    return hook_for


def _check_image(image: torch.Tensor) -> None:
    if image.ndim != 4 or image.shape[-1] < 3:
        raise NodeInputError("image", f"expected images (B, H, W, C), got shape {tuple(image.shape)}")


@node("ControlNetApply", display="Apply ControlNet (old)", category="conditioning/controlnet",
      inputs=[Input("conditioning", CONDITIONING), Input("control_net", CONTROL_NET), Input("image", IMAGE),
              Float("strength", 1.0, min=0.0, max=10.0, step=0.01)],
      outputs=[Output(CONDITIONING)])
def controlnet_apply(conditioning: list, control_net, image: torch.Tensor, strength: float):
    """Guide generation with a control image through a ControlNet (this conditioning's, and the
    negative's at sampling time, as ComfyUI's old node does)."""
    if strength == 0:
        return (conditioning,)
    _check_image(image)
    return (_apply(conditioning, _hook_factory(control_net, image, strength, 0.0, 1.0), to_uncond=True),)


@node("ControlNetApplyAdvanced", display="Apply ControlNet", category="conditioning/controlnet",
      inputs=[Input("positive", CONDITIONING), Input("negative", CONDITIONING), Input("control_net", CONTROL_NET),
              Input("image", IMAGE), Float("strength", 1.0, min=0.0, max=10.0, step=0.01),
              Float("start_percent", 0.0, min=0.0, max=1.0, step=0.001),
              Float("end_percent", 1.0, min=0.0, max=1.0, step=0.001),
              Input("vae", VAE, optional=True)],
      outputs=[Output(CONDITIONING, "positive"), Output(CONDITIONING, "negative")])
def controlnet_apply_advanced(positive: list, negative: list, control_net, image: torch.Tensor, strength: float,
                              start_percent: float, end_percent: float, vae=None):
    """Guide generation with a control image, on both prompts, over a part of the schedule."""
    if strength == 0:
        return (positive, negative)
    _check_image(image)
    hook_for = _hook_factory(control_net, image, strength, start_percent, end_percent)
    return (_apply(positive, hook_for, to_uncond=False), _apply(negative, hook_for, to_uncond=False))


@node("SetUnionControlNetType", display="SetUnionControlNetType", category="conditioning/controlnet",
      inputs=[Input("control_net", CONTROL_NET), Choice("type", UNION_TYPE_CHOICES)],
      outputs=[Output(CONTROL_NET)])
def set_union_controlnet_type(control_net, type: str):  # noqa: A002 (ComfyUI's input name)
    """Tell a union ControlNet (ControlNet++ / ProMax) which kind of control image it gets; "auto"
    lets it guess. Other ControlNets pass through unchanged, as in ComfyUI."""
    from nodeflow.models.controlnet_union import TypedUnionControlNet, UnionControlNetModel

    network = control_net.network if isinstance(control_net, TypedUnionControlNet) else control_net
    if not isinstance(network, UnionControlNetModel):
        if type != "auto":
            logger.warning("SetUnionControlNetType: %s is not a union ControlNet; the type %r does nothing",
                           getattr(control_net, "source", "") or "the ControlNet", type)
        return (control_net,)
    if type == "auto":
        return (network,)
    index = UNION_TYPE_CHOICES.index(type) - 1
    if index >= network.union.control_types:
        known = ", ".join(UNION_TYPE_CHOICES[1:network.union.control_types + 1])
        raise NodeInputError("type", f"{network.source or 'this union ControlNet'} knows "
                                     f"{network.union.control_types} control types ({known}), not {type!r}")
    return (TypedUnionControlNet(network, index),)


@node("ControlNetInpaintingAliMamaApply", display="ControlNetInpaintingAliMamaApply",
      category="conditioning/controlnet",
      inputs=[Input("positive", CONDITIONING), Input("negative", CONDITIONING), Input("control_net", CONTROL_NET),
              Input("vae", VAE), Input("image", IMAGE), Input("mask", MASK),
              Float("strength", 1.0, min=0.0, max=10.0, step=0.01),
              Float("start_percent", 0.0, min=0.0, max=1.0, step=0.001),
              Float("end_percent", 1.0, min=0.0, max=1.0, step=0.001)],
      outputs=[Output(CONDITIONING, "positive"), Output(CONDITIONING, "negative")])
def controlnet_inpainting_alimama_apply(positive: list, negative: list, control_net, vae, image: torch.Tensor,
                                        mask: torch.Tensor, strength: float, start_percent: float,
                                        end_percent: float):
    """Apply an inpainting ControlNet with the image and its mask.

    As ComfyUI: only ControlNets that take the mask as a hint channel ("concat_mask": AliMama's
    SD3 and Flux inpainting ControlNets, families nodeflow does not run, refused by the loader)
    get the masked image and the mask; every ControlNet nodeflow loads (SD1.x/SD2.x/SDXL, among
    them AliMama's EcomXL SDXL inpainting ControlNet, a plain 3-channel one) is applied as
    ControlNetApplyAdvanced does, with the image as it is and the mask unused."""
    if mask.ndim not in (2, 3):
        raise NodeInputError("mask", f"expected a mask (B, H, W), got shape {tuple(mask.shape)}")
    logger.info("ControlNetInpaintingAliMamaApply: %s takes no mask channel; applied with the unmasked image, "
                "as ComfyUI does", getattr(control_net, "source", "") or "the ControlNet")
    return controlnet_apply_advanced(positive, negative, control_net, image, strength, start_percent, end_percent,
                                     vae=vae)


# ----- preprocessors ---------------------------------------------------------------------------

def _gray(image: torch.Tensor) -> torch.Tensor:
    rgb = image[..., :3]
    return (rgb * torch.tensor([0.299, 0.587, 0.114])).sum(-1)[:, None]  # (B, 1, H, W)


@node("Canny", display="Canny", category="image/preprocessors",
      inputs=[Input("image", IMAGE), Float("low_threshold", 0.4, min=0.01, max=0.99, step=0.01),
              Float("high_threshold", 0.8, min=0.01, max=0.99, step=0.01)],
      outputs=[Output(IMAGE)])
def canny_node(image: torch.Tensor, low_threshold: float, high_threshold: float):
    """Edge map (white edges on black) for canny ControlNets."""
    from nodeflow.image.canny import canny

    if low_threshold > high_threshold:
        raise NodeInputError("low_threshold", "must not be above high_threshold")
    edges = canny(_gray(image), low_threshold, high_threshold)  # (B, 1, H, W)
    return (edges[:, 0, :, :, None].expand(-1, -1, -1, 3).clone(),)


@node("ImageThreshold", display="Image Threshold", category="image/preprocessors",
      inputs=[Input("image", IMAGE), Float("threshold", 0.5, min=0.0, max=1.0, step=0.01)],
      outputs=[Output(IMAGE)])
def image_threshold(image: torch.Tensor, threshold: float):
    """Binarize: white where the brightness is above the threshold, else black."""
    return ((_gray(image)[:, 0, :, :, None] > threshold).float().expand(-1, -1, -1, 3).clone(),)


@node("ScribblePreprocessor", display="Scribble from Drawing", category="image/preprocessors",
      inputs=[Input("image", IMAGE), Float("threshold", 0.5, min=0.0, max=1.0, step=0.01),
              Int("thickness", 1, min=0, max=16)],
      outputs=[Output(IMAGE)])
def scribble(image: torch.Tensor, threshold: float, thickness: int):
    """Dark strokes on a light drawing -> white strokes on black (thickened), as scribble ControlNets expect."""
    strokes = (_gray(image) < threshold).float()  # (B, 1, H, W)
    if thickness:
        size = 2 * thickness + 1
        strokes = (torch.nn.functional.max_pool2d(strokes, size, stride=1, padding=thickness) > 0).float()
    return (strokes[:, 0, :, :, None].expand(-1, -1, -1, 3).clone(),)


@node("ControlImagePassThrough", display="Control Image (color/segmentation map)", category="image/preprocessors",
      inputs=[Input("image", IMAGE)], outputs=[Output(IMAGE)])
def control_image_pass_through(image: torch.Tensor):
    """Use a color or segmentation map as it is (alpha dropped), for seg/color ControlNets."""
    return (image[..., :3].contiguous(),)
