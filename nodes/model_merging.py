"""Model merging nodes (ComfyUI's comfy_extras/nodes_model_merging.py and
nodes_model_merging_model_specific.py): ids, inputs, defaults and ranges as ComfyUI's.

Merges are weight patches on a copy of model1 (clip1), computed lazily when the model runs or is
saved; the inputs never change (nodeflow.loading.merge). ModelMergeSimple's ratio is model1's
share: 1 keeps model1, 0 gives model2. ModelMergeBlocks and the family-specific nodes take a ratio
per block, named by the start of the U-Net keys it covers (the longest matching name wins; keys no
name matches take the first ratio).
"""

from __future__ import annotations

from nodeflow.spec import CLIP, MODEL, Float, Input, Output, node

CATEGORY = "advanced/model_merging"


def _ratio(name: str):
    return Float(name, 1.0, min=0.0, max=1.0, step=0.01)


def _multiplier():
    return Float("multiplier", 1.0, min=-10.0, max=10.0, step=0.01)


def _merge_by_blocks(model1, model2, ratios: dict[str, float], names: list[str]):
    """Merge with a ratio per block; ``names``: the ratio inputs in declared order (the first is
    the default, whichever inputs came linked)."""
    from nodeflow.loading.merge import block_ratio, merge_models

    ratios = {name: ratios[name] for name in names}

    def strengths(key: str):
        ratio = block_ratio(key, ratios)
        return 1.0 - ratio, ratio

    return (merge_models(model1, model2, strengths),)


@node("ModelMergeSimple", category=CATEGORY,
      inputs=[Input("model1", MODEL), Input("model2", MODEL), _ratio("ratio")], outputs=[Output(MODEL)])
def model_merge_simple(model1, model2, ratio: float):
    """Blend two models' U-Nets: ratio x model1 + (1 - ratio) x model2."""
    from nodeflow.loading.merge import merge_models

    return (merge_models(model1, model2, lambda key: (1.0 - ratio, ratio)),)


@node("ModelMergeSubtract", category=CATEGORY,
      inputs=[Input("model1", MODEL), Input("model2", MODEL), _multiplier()], outputs=[Output(MODEL)])
def model_merge_subtract(model1, model2, multiplier: float):
    """The difference of two U-Nets: multiplier x (model1 - model2) (for 'add difference' merges)."""
    from nodeflow.loading.merge import merge_models

    return (merge_models(model1, model2, lambda key: (-multiplier, multiplier)),)


@node("ModelMergeAdd", category=CATEGORY,
      inputs=[Input("model1", MODEL), Input("model2", MODEL)], outputs=[Output(MODEL)])
def model_merge_add(model1, model2):
    """The sum of two U-Nets' weights: model1 + model2."""
    from nodeflow.loading.merge import merge_models

    return (merge_models(model1, model2, lambda key: (1.0, 1.0)),)


@node("CLIPMergeSimple", category=CATEGORY,
      inputs=[Input("clip1", CLIP), Input("clip2", CLIP), _ratio("ratio")], outputs=[Output(CLIP)])
def clip_merge_simple(clip1, clip2, ratio: float):
    """Blend two text encoders: ratio x clip1 + (1 - ratio) x clip2."""
    from nodeflow.loading.merge import merge_clips

    return (merge_clips(clip1, clip2, lambda key: (1.0 - ratio, ratio)),)


@node("CLIPMergeSubtract", category=CATEGORY,
      inputs=[Input("clip1", CLIP), Input("clip2", CLIP), _multiplier()], outputs=[Output(CLIP)])
def clip_merge_subtract(clip1, clip2, multiplier: float):
    """The difference of two text encoders: multiplier x (clip1 - clip2)."""
    from nodeflow.loading.merge import merge_clips

    return (merge_clips(clip1, clip2, lambda key: (-multiplier, multiplier)),)


@node("CLIPMergeAdd", category=CATEGORY,
      inputs=[Input("clip1", CLIP), Input("clip2", CLIP)], outputs=[Output(CLIP)])
def clip_merge_add(clip1, clip2):
    """The sum of two text encoders' weights: clip1 + clip2."""
    from nodeflow.loading.merge import merge_clips

    return (merge_clips(clip1, clip2, lambda key: (1.0, 1.0)),)


@node("ModelMergeBlocks", category=CATEGORY,
      inputs=[Input("model1", MODEL), Input("model2", MODEL), _ratio("input"), _ratio("middle"), _ratio("out")],
      outputs=[Output(MODEL)])
def model_merge_blocks(model1, model2, **ratios: float):
    """Blend two U-Nets with a ratio (model1's share) for the input blocks, the middle block and
    the output blocks (with the final layers, ``out``); the time embedding takes the input ratio."""
    return _merge_by_blocks(model1, model2, ratios, ["input", "middle", "out"])


#: The block names of ModelMergeSD1 / SD2 (the same U-Net layout) and ModelMergeSDXL, in ComfyUI's order.
SD1_BLOCKS = (["time_embed.", "label_emb."] + [f"input_blocks.{i}." for i in range(12)]
              + [f"middle_block.{i}." for i in range(3)] + [f"output_blocks.{i}." for i in range(12)] + ["out."])
SDXL_BLOCKS = (["time_embed.", "label_emb."] + [f"input_blocks.{i}" for i in range(9)]
               + [f"middle_block.{i}" for i in range(3)] + [f"output_blocks.{i}" for i in range(9)] + ["out."])
SPECIFIC = CATEGORY + "/model_specific"


@node("ModelMergeSD1", category=SPECIFIC,
      inputs=[Input("model1", MODEL), Input("model2", MODEL)] + [_ratio(name) for name in SD1_BLOCKS],
      outputs=[Output(MODEL)])
def model_merge_sd1(model1, model2, **ratios: float):
    """Blend two SD1.x U-Nets block by block (each ratio is model1's share of that block)."""
    return _merge_by_blocks(model1, model2, ratios, SD1_BLOCKS)


@node("ModelMergeSD2", category=SPECIFIC,
      inputs=[Input("model1", MODEL), Input("model2", MODEL)] + [_ratio(name) for name in SD1_BLOCKS],
      outputs=[Output(MODEL)])
def model_merge_sd2(model1, model2, **ratios: float):
    """Blend two SD2.x U-Nets block by block (SD2's blocks are SD1's)."""
    return _merge_by_blocks(model1, model2, ratios, SD1_BLOCKS)


@node("ModelMergeSDXL", category=SPECIFIC,
      inputs=[Input("model1", MODEL), Input("model2", MODEL)] + [_ratio(name) for name in SDXL_BLOCKS],
      outputs=[Output(MODEL)])
def model_merge_sdxl(model1, model2, **ratios: float):
    """Blend two SDXL U-Nets block by block (each ratio is model1's share of that block)."""
    return _merge_by_blocks(model1, model2, ratios, SDXL_BLOCKS)
