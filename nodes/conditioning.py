"""Conditioning nodes: text encoding and the ways conditioning entries combine (ComfyUI's)."""

from __future__ import annotations

from nodeflow.errors import NodeInputError
from nodeflow.sampling.conditioning import average, combine, concat_tokens, with_options, zero_out
from nodeflow.spec import CLIP, CONDITIONING, MASK, Choice, Float, Input, Int, Output, String, node

MAX_RESOLUTION = 16384


def _check_not_empty(conditioning: list, name: str) -> None:
    if not conditioning:
        raise NodeInputError(name, "the conditioning is empty (no entries)")


def embedding_files_fingerprint(inputs: dict, paths) -> str:
    """Cache fingerprint of the embedding files a prompt names (size and modification time), so
    replacing one re-encodes the prompt."""
    from nodeflow.loading.embeddings import find_embedding_file
    from nodeflow.text.prompt_weights import EMBEDDING_PREFIX, embedding_name, embedding_references

    text = inputs.get("text")
    if not isinstance(text, str) or EMBEDDING_PREFIX not in text:
        return ""
    folders = paths.kind_dirs("embeddings")
    found = []
    for reference in embedding_references(text):
        name = embedding_name(reference, lambda candidate: find_embedding_file(folders, candidate) is not None)
        if name is not None:
            path = find_embedding_file(folders, name)
            stat = path.stat()
            found.append(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}")
    return "|".join(found)


@node("CLIPTextEncode", display="CLIP Text Encode (Prompt)", category="conditioning",
      inputs=[String("text", "", multiline=True,
                     tooltip="The prompt; (word:1.2) changes a word's weight, embedding:name uses a "
                             "textual-inversion embedding from the embeddings folder"),
              Input("clip", CLIP)],
      outputs=[Output(CONDITIONING)], fingerprint=embedding_files_fingerprint)
def clip_text_encode(text: str, clip, ctx):
    """Encode a prompt with the CLIP text encoder into the conditioning a sampler follows."""
    from nodeflow.loading.embeddings import EmbeddingFinder

    if clip is None:
        raise NodeInputError("clip", "no text encoder: the checkpoint given has no CLIP model")
    cond, pooled = clip.encode(text, EmbeddingFinder(ctx.paths.kind_dirs("embeddings")))
    return ([(cond, {"pooled_output": pooled})],)


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
