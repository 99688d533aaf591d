"""U-Net patches that trade a little fidelity for speed or size (ComfyUI's PatchModelAddDownscale,
HyperTile and TomePatchModel): MODEL in, patched copy out; the maths in nodeflow.sampling.deep_shrink,
nodeflow.sampling.hypertile and nodeflow.sampling.token_merging."""

from __future__ import annotations

from nodeflow.spec import MODEL, Boolean, Choice, Float, Input, Int, Output, node

#: ComfyUI's choices for both resizes, in its order (the first is the default)
RESIZE_METHODS = ["bicubic", "nearest-exact", "bilinear", "area", "bislerp"]


def _percent(name: str, default: float, tooltip: str):
    return Float(name, default, min=0.0, max=1.0, step=0.001, tooltip=tooltip)


@node("PatchModelAddDownscale", display="PatchModelAddDownscale (Kohya Deep Shrink)", category="model_patches/unet",
      inputs=[Input("model", MODEL),
              Int("block_number", 3, min=1, max=32, step=1,
                  tooltip="The input block after which the features shrink (ComfyUI's numbering: 0 is the "
                          "first convolution; 3 is SD1's and SDXL's first downsampling)"),
              Float("downscale_factor", 2.0, min=0.1, max=9.0, step=0.001,
                    tooltip="How many times smaller the deeper features are"),
              _percent("start_percent", 0.0, "Where in the sampling the shrink starts (0: the first step)"),
              _percent("end_percent", 0.35, "Where in the sampling the shrink ends"),
              Boolean("downscale_after_skip", True,
                      tooltip="Shrink after the block's output is kept for the decoder (the skip keeps its "
                              "full size); off: the skip shrinks too"),
              Choice("downscale_method", RESIZE_METHODS), Choice("upscale_method", RESIZE_METHODS)],
      outputs=[Output(MODEL)])
def patch_model_add_downscale(model, block_number: int, downscale_factor: float, start_percent: float,
                              end_percent: float, downscale_after_skip: bool, downscale_method: str,
                              upscale_method: str):
    """Kohya's deep shrink: early in sampling the deep layers work on shrunk features, so an image
    larger than the model's training size keeps one composition."""
    from nodeflow.errors import NodeInputError
    from nodeflow.sampling.deep_shrink import deep_shrink

    for name, method in (("downscale_method", downscale_method), ("upscale_method", upscale_method)):
        if method not in RESIZE_METHODS:
            raise NodeInputError(name, f"{method!r} is not one of {', '.join(RESIZE_METHODS)}")
    hooks = deep_shrink(model.sampling, block_number, downscale_factor, start_percent, end_percent,
                        downscale_method, upscale_method)
    where = "input_block_after_skip" if downscale_after_skip else "input_block"
    return (model.with_unet_patches(**{where: (hooks.downscale,)}, output_block=(hooks.restore,)),)


@node("HyperTile", display="HyperTile", category="model_patches/unet",
      inputs=[Input("model", MODEL),
              Int("tile_size", 256, min=1, max=2048, tooltip="About how many pixels a tile spans (at least 32)"),
              Int("swap_size", 2, min=1, max=128,
                  tooltip="How many tile sizes to choose from at random (1 or 2: always the smallest)"),
              Int("max_depth", 0, min=0, max=10, tooltip="How many levels below the full size are tiled too"),
              Boolean("scale_depth", False, tooltip="Double the tile size at each level down")],
      outputs=[Output(MODEL)])
def hyper_tile(model, tile_size: int, swap_size: int, max_depth: int, scale_depth: bool):
    """HyperTile: the self-attention of the largest feature maps computed within tiles (faster at
    large sizes)."""
    from nodeflow.sampling.hypertile import hypertile

    hooks = hypertile(tile_size, swap_size, max_depth, scale_depth)
    return (model.with_unet_patches(attn1_patch=(hooks.tile,), attn1_output_patch=(hooks.untile,)),)


@node("TomePatchModel", display="TomePatchModel", category="model_patches/unet",
      inputs=[Input("model", MODEL),
              Float("ratio", 0.3, min=0.0, max=1.0, step=0.01,
                    tooltip="The share of the full-size self-attention's queries merged away")],
      outputs=[Output(MODEL)])
def tome_patch_model(model, ratio: float):
    """Token merging (ToMe): the most similar tokens of the full-size self-attentions are merged
    before it and split after (faster, slightly different images)."""
    from nodeflow.sampling.token_merging import token_merging

    hooks = token_merging(ratio)
    return (model.with_unet_patches(attn1_patch=(hooks.merge,), attn1_output_patch=(hooks.unmerge,)),)
