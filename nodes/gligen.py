"""GLIGEN (grounded generation with text boxes): GLIGENLoader and GLIGENTextBoxApply, with
ComfyUI's ids, inputs and defaults (nodes.py). The model is nodeflow.models.gligen.Gligen; the
boxes reach the U-Net through the conditioning (nodeflow.sampling.gligen)."""

from __future__ import annotations

from nodeflow.loading.embedding_files import embedding_files_fingerprint, embedding_finder
from nodeflow.spec import CLIP, CONDITIONING, Choice, Input, Int, ModelFile, Output, String, node
from nodeflow.types import GLIGEN

MAX_RESOLUTION = 16384


@node("GLIGENLoader", display="GLIGEN Loader", category="loaders",
      inputs=[Choice("gligen_name", lambda paths: paths.list_models("gligen"),
                     tooltip="A GLIGEN text-box model (e.g. gligen_sd14_textbox_pruned) from models/gligen")],
      outputs=[Output(GLIGEN)], fingerprint=ModelFile("gligen", "gligen_name"))
def gligen_loader(gligen_name: str, ctx):
    """Load a GLIGEN model, which places phrases in boxes of an SD1.x image."""
    from nodeflow.loading.gligen import load_gligen

    return (load_gligen(ctx.paths.resolve_model("gligen", gligen_name), device=ctx.device),)


def _pixels(name: str, default: int, low: int, tooltip: str):
    return Int(name, default, min=low, max=MAX_RESOLUTION, step=8, tooltip=tooltip)


@node("GLIGENTextBoxApply", display="GLIGEN Textbox Apply", category="conditioning/gligen",
      inputs=[Input("conditioning_to", CONDITIONING), Input("clip", CLIP),
              Input("gligen_textbox_model", GLIGEN),
              String("text", "", multiline=True, tooltip="What the box shows"),
              _pixels("width", 64, 8, "The box's width in pixels"),
              _pixels("height", 64, 8, "The box's height in pixels"),
              _pixels("x", 0, 0, "The box's left edge in pixels"),
              _pixels("y", 0, 0, "The box's top edge in pixels")],
      outputs=[Output(CONDITIONING)], fingerprint=embedding_files_fingerprint)
def gligen_textbox_apply(conditioning_to, clip, gligen_textbox_model, text: str, width: int, height: int,
                         x: int, y: int, ctx):
    """Ask for ``text`` inside a box of the image: the phrase's pooled text embedding and the box
    are added to every conditioning entry (after boxes added before)."""
    from nodeflow.errors import NodeInputError
    from nodeflow.sampling.gligen import add_box

    if clip is None:
        raise NodeInputError("clip", "no text encoder: the checkpoint given has no CLIP model")
    _, pooled = clip.encode(text, embedding_finder(ctx.paths))  # (1, D)
    if pooled.shape[-1] != gligen_textbox_model.text_dim:
        raise NodeInputError("clip", f"its pooled text embedding is {pooled.shape[-1]} wide, the GLIGEN model reads "
                                     f"{gligen_textbox_model.text_dim} (SD1.x's CLIP ViT-L: 768)")
    return (add_box(conditioning_to, gligen_textbox_model, pooled.cpu(), width, height, x, y),)
