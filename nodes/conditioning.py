"""Conditioning nodes: text encoding (SD1/SD2, SDXL and its refiner) and the ways conditioning
entries combine (ComfyUI's)."""

from __future__ import annotations

from nodeflow.errors import NodeInputError
from nodeflow.loading.embedding_files import embedding_files_fingerprint, embedding_finder
from nodeflow.sampling.conditioning import average, combine, concat_tokens, with_options, zero_out
from nodeflow.spec import CLIP, CONDITIONING, MASK, Choice, Float, Input, Int, Output, String, node

MAX_RESOLUTION = 16384
SDXL_SIZE = 1024


def _check_not_empty(conditioning: list, name: str) -> None:
    if not conditioning:
        raise NodeInputError(name, "the conditioning is empty (no entries)")


@node("CLIPTextEncode", display="CLIP Text Encode (Prompt)", category="conditioning",
      inputs=[String("text", "", multiline=True,
                     tooltip="The prompt; (word:1.2) changes a word's weight, embedding:name uses a "
                             "textual-inversion embedding from the embeddings folder"),
              Input("clip", CLIP)],
      outputs=[Output(CONDITIONING)], fingerprint=embedding_files_fingerprint)
def clip_text_encode(text: str, clip, ctx):
    """Encode a prompt with the CLIP text encoder into the conditioning a sampler follows."""
    if clip is None:
        raise NodeInputError("clip", "no text encoder: the checkpoint given has no CLIP model")
    cond, pooled = clip.encode(text, embedding_finder(ctx.paths))
    return ([(cond, {"pooled_output": pooled})],)


def sdxl_embedding_files_fingerprint(inputs: dict, paths) -> str:
    """``embedding_files_fingerprint`` of both SDXL prompts."""
    return "||".join(embedding_files_fingerprint(inputs, paths, name) for name in ("text_g", "text_l"))


def _size(name: str, default: int, tooltip: str):
    return Int(name, default, min=0, max=MAX_RESOLUTION, tooltip=tooltip)


@node("CLIPTextEncodeSDXL", display="CLIP Text Encode (SDXL)", category="advanced/conditioning",
      inputs=[Input("clip", CLIP),
              _size("width", SDXL_SIZE, "The original image width the model is told (size conditioning)"),
              _size("height", SDXL_SIZE, "The original image height the model is told"),
              _size("crop_w", 0, "The left crop offset the model is told (0: not cropped)"),
              _size("crop_h", 0, "The top crop offset the model is told (0: not cropped)"),
              _size("target_width", SDXL_SIZE, "The target image width the model is told"),
              _size("target_height", SDXL_SIZE, "The target image height the model is told"),
              String("text_g", "", multiline=True, tooltip="The prompt for the OpenCLIP ViT-bigG encoder"),
              String("text_l", "", multiline=True, tooltip="The prompt for the CLIP ViT-L encoder")],
      outputs=[Output(CONDITIONING)], fingerprint=sdxl_embedding_files_fingerprint)
def clip_text_encode_sdxl(clip, width: int, height: int, crop_w: int, crop_h: int, target_width: int,
                          target_height: int, text_g: str, text_l: str, ctx):
    """Encode two prompts with SDXL's two text encoders, with the sizes SDXL is conditioned on."""
    if clip is None:
        raise NodeInputError("clip", "no text encoder: the checkpoint given has no CLIP model")
    encode_sdxl = getattr(clip, "encode_sdxl", None)
    if encode_sdxl is None:
        raise NodeInputError("clip", "needs an SDXL text encoder (CLIP-L and OpenCLIP-bigG, from an SDXL "
                                     "checkpoint); this CLIP has one encoder: use CLIPTextEncode")
    cond, pooled = encode_sdxl(text_g, text_l, embedding_finder(ctx.paths))
    return ([(cond, {"pooled_output": pooled, "width": width, "height": height, "crop_w": crop_w,
                     "crop_h": crop_h, "target_width": target_width, "target_height": target_height})],)


@node("CLIPTextEncodeSDXLRefiner", display="CLIP Text Encode (SDXL Refiner)", category="advanced/conditioning",
      inputs=[Float("ascore", 6.0, min=0.0, max=1000.0, step=0.01,
                    tooltip="The aesthetic score the refiner is told (high for the positive prompt, low "
                            "for the negative)"),
              _size("width", SDXL_SIZE, "The original image width the model is told"),
              _size("height", SDXL_SIZE, "The original image height the model is told"),
              String("text", "", multiline=True, tooltip="The prompt"),
              Input("clip", CLIP)],
      outputs=[Output(CONDITIONING)], fingerprint=embedding_files_fingerprint)
def clip_text_encode_sdxl_refiner(ascore: float, width: int, height: int, text: str, clip, ctx):
    """Encode a prompt for the SDXL refiner, with the aesthetic score and size it is conditioned on."""
    if clip is None:
        raise NodeInputError("clip", "no text encoder: the checkpoint given has no CLIP model")
    cond, pooled = clip.encode(text, embedding_finder(ctx.paths))
    return ([(cond, {"pooled_output": pooled, "aesthetic_score": ascore, "width": width, "height": height})],)


@node("ConditioningCombine", display="Conditioning (Combine)", category="conditioning",
      inputs=[Input("conditioning_1", CONDITIONING), Input("conditioning_2", CONDITIONING)],
      outputs=[Output(CONDITIONING)])
def conditioning_combine(conditioning_1: list, conditioning_2: list):
    """Use both conditionings: the sampler averages their predictions (weighted by area/mask)."""
    return (combine(conditioning_1, conditioning_2),)


@node("ConditioningConcat", display="Conditioning (Concat)", category="conditioning",
      inputs=[Input("conditioning_to", CONDITIONING), Input("conditioning_from", CONDITIONING)],
      outputs=[Output(CONDITIONING)])
def conditioning_concat(conditioning_to: list, conditioning_from: list):
    """Append the first entry of conditioning_from's tokens to every entry of conditioning_to."""
    _check_not_empty(conditioning_from, "conditioning_from")
    return (concat_tokens(conditioning_to, conditioning_from),)


@node("ConditioningAverage", display="Conditioning (Average)", category="conditioning",
      inputs=[Input("conditioning_to", CONDITIONING), Input("conditioning_from", CONDITIONING),
              Float("conditioning_to_strength", 1.0, min=0.0, max=1.0, step=0.01)],
      outputs=[Output(CONDITIONING)])
def conditioning_average(conditioning_to: list, conditioning_from: list, conditioning_to_strength: float):
    """Blend conditioning_to with the first entry of conditioning_from (tokens padded with zeros)."""
    _check_not_empty(conditioning_from, "conditioning_from")
    return (average(conditioning_to, conditioning_from, conditioning_to_strength),)


@node("ConditioningSetArea", display="Conditioning (Set Area)", category="conditioning",
      inputs=[Input("conditioning", CONDITIONING),
              Int("width", 64, min=64, max=MAX_RESOLUTION, step=8),
              Int("height", 64, min=64, max=MAX_RESOLUTION, step=8),
              Int("x", 0, min=0, max=MAX_RESOLUTION, step=8),
              Int("y", 0, min=0, max=MAX_RESOLUTION, step=8),
              Float("strength", 1.0, min=0.0, max=10.0, step=0.01)],
      outputs=[Output(CONDITIONING)])
def conditioning_set_area(conditioning: list, width: int, height: int, x: int, y: int, strength: float):
    """Apply the conditioning to a rectangle of the image (pixels)."""
    return (with_options(conditioning, area=(height // 8, width // 8, y // 8, x // 8), strength=strength,
                  set_area_to_bounds=False),)


@node("ConditioningSetAreaPercentage", display="Conditioning (Set Area with Percentage)",
      category="conditioning",
      inputs=[Input("conditioning", CONDITIONING),
              Float("width", 1.0, min=0, max=1.0, step=0.01), Float("height", 1.0, min=0, max=1.0, step=0.01),
              Float("x", 0.0, min=0, max=1.0, step=0.01), Float("y", 0.0, min=0, max=1.0, step=0.01),
              Float("strength", 1.0, min=0.0, max=10.0, step=0.01)],
      outputs=[Output(CONDITIONING)])
def conditioning_set_area_percentage(conditioning: list, width: float, height: float, x: float, y: float,
                                     strength: float):
    """Apply the conditioning to a rectangle given as fractions of the image."""
    return (with_options(conditioning, area=("percentage", height, width, y, x), strength=strength,
                  set_area_to_bounds=False),)


@node("ConditioningSetAreaStrength", display="Conditioning (Set Area Strength)", category="conditioning",
      inputs=[Input("conditioning", CONDITIONING), Float("strength", 1.0, min=0.0, max=10.0, step=0.01)],
      outputs=[Output(CONDITIONING)])
def conditioning_set_area_strength(conditioning: list, strength: float):
    """Change how strongly the conditioning weighs against others where they overlap."""
    return (with_options(conditioning, strength=strength),)


@node("ConditioningSetMask", display="Conditioning (Set Mask)", category="conditioning",
      inputs=[Input("conditioning", CONDITIONING), Input("mask", MASK),
              Float("strength", 1.0, min=0.0, max=10.0, step=0.01),
              Choice("set_cond_area", ["default", "mask bounds"])],
      outputs=[Output(CONDITIONING)])
def conditioning_set_mask(conditioning: list, mask: torch.Tensor, strength: float, set_cond_area: str):
    """Apply the conditioning where the mask is white."""
    if mask.ndim == 2:
        mask = mask[None]
    if mask.ndim != 3:
        raise NodeInputError("mask", f"expected a mask (B, H, W), got shape {tuple(mask.shape)}")
    return (with_options(conditioning, mask=mask, mask_strength=strength,
                  set_area_to_bounds=set_cond_area != "default"),)


@node("ConditioningSetTimestepRange", display="Conditioning (Set Timestep Range)", category="conditioning",
      inputs=[Input("conditioning", CONDITIONING),
              Float("start", 0.0, min=0.0, max=1.0, step=0.001), Float("end", 1.0, min=0.0, max=1.0, step=0.001)],
      outputs=[Output(CONDITIONING)])
def conditioning_set_timestep_range(conditioning: list, start: float, end: float):
    """Use the conditioning only from start to end (fractions of the sampling schedule)."""
    return (with_options(conditioning, timestep_start=start, timestep_end=end),)


@node("ConditioningZeroOut", display="Conditioning (Zero Out)", category="conditioning",
      inputs=[Input("conditioning", CONDITIONING)], outputs=[Output(CONDITIONING)])
def conditioning_zero_out(conditioning: list):
    """Replace the conditioning's embeddings (and pooled output) by zeros."""
    return (zero_out(conditioning),)
