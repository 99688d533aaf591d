"""Model merging as weight patches (ComfyUI's ModelMerge* and CLIPMerge* nodes).

A merge gives model1 one patch per weight that model2 also has (same name, ComfyUI's
``add_patches(model2.get_key_patches(), strength_patch, strength_model)``):

    w = strength_model * w1 + strength_patch * w2

where ``w1`` is model1's weight after its earlier patches (LoRAs, merges) and ``w2`` model2's
weight with all of model2's own patches applied. The nodes' strengths, as ComfyUI's:

=======================  ==============  ==============  ==================================
node                     strength_model  strength_patch  result
=======================  ==============  ==============  ==================================
ModelMergeSimple         ratio           1 - ratio       ratio 1: model1 exactly
ModelMergeAdd            1               1               w1 + w2
ModelMergeSubtract       multiplier      -multiplier     multiplier (w1 - w2)
ModelMergeBlocks, SD1..  block ratio     1 - that        as Simple, per block (``block_ratio``)
=======================  ==============  ==============  ==================================

The CLIP merges are the same over the text encoders' weights, ``position_ids`` and ``logit_scale``
left alone. A weight whose shapes differ (an inpainting U-Net's 9-channel input beside a 4-channel
one) is scaled by strength_model without model2's part and logged, as ComfyUI does.

Lazy: a ``MergePatch`` holds model2's (unpatched, shared) module and its patches of that one
weight, never a tensor. Nothing is computed when the merge is made; the merged weight of a layer is
computed when the model runs (``PatchedModule`` computes its weights once per device, as for
LoRAs) or when it is saved (``effective_weight``, one weight at a time). The inputs are never
changed: merging returns a new PatchedModule over model1's shared base module. Merges compose with
LoRAs and with each other in the order the nodes apply them.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from nodeflow.loading.lora import PatchedModule, base_of

logger = logging.getLogger(__name__)

#: Text-encoder weights the CLIP merges leave alone (ComfyUI's CLIPMerge* skip them).
CLIP_SKIPPED = (".position_ids", ".logit_scale")


@dataclass(frozen=True, eq=False)
class MergePatch:
    """One weight's merge: ``strength_model * w + strength_patch * (source's weight)``.

    ``source`` is model2's unpatched module (shared, never copied) and ``source_patches`` model2's
    patches of ``source_parameter``, in order. ``matches``: the shapes agree (else model2's part
    is left out, as ComfyUI does)."""

    parameter: str  # the weight's name in model1's module
    source: nn.Module
    source_parameter: str
    source_patches: tuple
    strength_patch: float
    strength_model: float
    matches: bool = True

    def new_weight(self, weight: torch.Tensor) -> torch.Tensor:
        """The merged weight for model1's current ``weight``, computed in float32 and returned in
        ``weight``'s dtype and device (ComfyUI computes patches in float32 too)."""
        adds = self.matches and self.strength_patch != 0.0
        if self.strength_model == 1.0 and not adds:
            return weight  # ratio 1: model1's weight itself, nothing allocated
        with torch.no_grad():
            merged = weight.float() * self.strength_model
            if adds:
                other = effective_weight(self.source, self.source_parameter, self.source_patches)
                merged = merged + self.strength_patch * other.to(weight.device, torch.float32)
            return merged.to(weight.dtype)


def effective_weight(module: nn.Module, name: str, patches: tuple | None = None) -> torch.Tensor:
    """Parameter ``name`` of ``module`` as the model runs with it: the unpatched module's tensor
    with the patches of that parameter applied in order. ``patches``: that parameter's patches
    when ``module`` is already the unpatched one (else they are read from the PatchedModule)."""
    if patches is None:
        module, all_patches = base_of(module)
        patches = tuple(patch for patch in all_patches if patch.parameter == name)
    weight = module.get_parameter(name)
    with torch.no_grad():
        for patch in patches:
            weight = patch.new_weight(weight)
    return weight.detach()


def patches_by_parameter(patches: tuple) -> dict[str, tuple]:
    """{parameter name: its patches, in order}."""
    found: dict[str, list] = defaultdict(list)
    for patch in patches:
        found[patch.parameter].append(patch)
    return {name: tuple(found_patches) for name, found_patches in found.items()}


Strengths = Callable[[str], "tuple[float, float] | None"]  # key -> (strength_patch, strength_model), None: skip


def merge_modules(first: nn.Module, second: nn.Module, strengths: Strengths,
                  keys_first: Callable[[str], str] = lambda name: name,
                  keys_second: Callable[[str], str] = lambda name: name, what: str = "model") -> PatchedModule:
    """``first`` (possibly a PatchedModule) with a MergePatch for every parameter ``second`` also
    has. Parameters are matched by key: ``keys_first`` / ``keys_second`` map each module's
    parameter names to shared keys (the identity for U-Nets; the tower-qualified names for text
    encoders, see ``text_key_names``). ``strengths(key)`` gives (strength_patch, strength_model),
    or None to leave that weight alone. Nothing is computed or copied here."""
    base, done = base_of(first)
    source, source_done = base_of(second)
    ours = {keys_first(name): (name, parameter) for name, parameter in base.named_parameters()}
    theirs_patches = patches_by_parameter(source_done)
    patches, mismatched = [], []
    for source_name, source_parameter in source.named_parameters():
        key = keys_second(source_name)
        if key not in ours:
            continue  # as ComfyUI: model2's weights that model1 lacks are ignored
        strength = strengths(key)
        if strength is None:
            continue
        name, parameter = ours[key]
        matches = parameter.shape == source_parameter.shape
        if not matches:
            mismatched.append(f"{key} {tuple(source_parameter.shape)} != {tuple(parameter.shape)}")
        patches.append(MergePatch(name, source, source_name, theirs_patches.get(source_name, ()),
                                  float(strength[0]), float(strength[1]), matches))
    if not patches:
        logger.warning("merging %ss: the two have no weights in common (different families?); "
                       "the result is the first %s", what, what)
    if mismatched:
        logger.warning("merging %ss: %d weights differ in shape and keep the first %s's values only "
                       "(times its strength, as ComfyUI does), e.g. %s", what, len(mismatched), what,
                       "; ".join(mismatched[:3]))
    return PatchedModule(base, done + tuple(patches))


def merge_models(model1, model2, strengths: Strengths):
    """MODEL: a copy of ``model1`` (its sampling, patches and options) whose U-Net is merged with
    ``model2``'s; keys are the U-Net's own parameter names (the original checkpoint's, without
    ``model.diffusion_model.``)."""
    return model1.clone_with(unet=merge_modules(model1.unet, model2.unet, strengths, what="model"))


def merge_clips(clip1, clip2, strengths: Strengths):
    """CLIP: a copy of ``clip1`` whose text encoder(s) are merged with ``clip2``'s, tower by tower
    (CLIP-L with CLIP-L, CLIP-G with CLIP-G ...); ``position_ids`` and ``logit_scale`` are skipped."""
    keys1, keys2 = text_key_names(clip1), text_key_names(clip2)

    def clip_strengths(key: str):
        return None if key.endswith(CLIP_SKIPPED) else strengths(key)

    model = merge_modules(clip1.model, clip2.model, clip_strengths, lambda name: keys1.get(name, name),
                          lambda name: keys2.get(name, name), what="CLIP")
    return clip1.clone_with(model=model)


def block_ratio(key: str, ratios: dict[str, float]) -> float:
    """ModelMergeBlocks' ratio for a U-Net key: the ratio of the longest input name that the key
    starts with (the first of equally long ones); none: the first input's ratio."""
    ratio, longest = next(iter(ratios.values())), 0
    for prefix, value in ratios.items():
        if key.startswith(prefix) and len(prefix) > longest:
            ratio, longest = value, len(prefix)
    return ratio


# ----- text encoders: which towers, under which names ----------------------------------------

def text_towers(clip) -> dict[str, str]:
    """{tower: the prefix of its parameters in the CLIP's (unpatched) model}: SDXL's two-tower
    CLIP ``{"clip_l": "clip_l.", "clip_g": "clip_g."}``; a single encoder ``{tower: ""}`` where
    the tower is CLIP-G for the refiner's (it takes CLIP-G's embeddings), OpenCLIP ViT-H for SD2's
    (a projected pooled output) and CLIP-L for SD1's."""
    from nodeflow.text.families import DualTextEncoder

    if isinstance(clip, DualTextEncoder):
        return {name: f"{name}." for name, _ in base_of(clip.model)[0].named_children()}
    tower = getattr(clip, "embedding_key", None) or ("clip_h" if getattr(clip, "projected_pooled", False) else "clip_l")
    return {tower: ""}


def text_key_names(clip) -> dict[str, str]:
    """{parameter name in the CLIP's model: tower-qualified key} (``clip_g.encoder.layers.0...``,
    without transformers' ``text_model.`` segment), so towers match across CLIP values built
    differently (SDXL's CLIP-G beside the refiner's, SD1's CLIP-L beside SDXL's)."""
    base, _ = base_of(clip.model)
    names = {}
    for tower, prefix in text_towers(clip).items():
        for name, _ in base.named_parameters():
            if name.startswith(prefix):
                names[name] = f"{tower}.{name[len(prefix):].removeprefix('text_model.')}"
    return names
