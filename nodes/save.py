"""Output nodes: SaveImage (PNG with the workflow embedded) and PreviewImage (temporary files)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import torch

from nodeflow.errors import NodeInputError
from nodeflow.spec import IMAGE, Boolean, Input, String, node


def _validate_prefix(prefix: str) -> None:
    from nodeflow.image_files import check_prefix

    check_prefix(prefix)


def _save_all(images: torch.Tensor, folder, name: str, chunks: dict | None, ctx, compress_level: int = 4) -> list:
    """Save each image of the batch; ``%batch_num%`` in ``name`` becomes its index in the batch."""
    from nodeflow.image_files import save_png, tensor_to_pil

    if images.ndim != 4:
        raise NodeInputError("images", f"expected images (B, H, W, C), got shape {tuple(images.shape)}")
    saved = []
    for index, image in enumerate(images):
        ctx.check_cancel()
        file_name = name.replace("%batch_num%", str(index))
        saved.append(save_png(tensor_to_pil(image), folder, file_name, chunks, compress_level))
    return saved


@node("SaveImage", display="Save Image", category="image", output_node=True,
      inputs=[Input("images", IMAGE),
              String("filename_prefix", "nodeflow", validate=_validate_prefix,
                     tooltip="File name prefix; may hold sub-folders and %date:yyyy-MM-dd% or "
                             "%KSampler.seed% placeholders; stays inside the output folder"),
              Boolean("embed_workflow", True, optional=True,
                      tooltip="Store the workflow in the PNG (nodeflow, ComfyUI and A1111 readable)")],
      outputs=[])
def save_image(images: torch.Tensor, filename_prefix: str, ctx, embed_workflow: bool = True):
    """Save images as PNG files in the output folder, never overwriting one."""
    from nodeflow.image_files import expand_prefix, resolve_output_folder
    from nodeflow.png_metadata import workflow_text_chunks

    if images.ndim != 4:
        raise NodeInputError("images", f"expected images (B, H, W, C), got shape {tuple(images.shape)}")
    prefix = expand_prefix(filename_prefix, ctx.workflow, size=(images.shape[2], images.shape[1]))
    try:
        folder, name = resolve_output_folder(ctx.paths.output_dir, prefix)
    except ValueError as error:
        raise NodeInputError("filename_prefix", str(error)) from None
    chunks = None
    if embed_workflow and ctx.workflow is not None:
        chunks = workflow_text_chunks(ctx.workflow, ctx.registry, (images.shape[2], images.shape[1]))
    saved = _save_all(images, folder, name, chunks, ctx)
    for path in saved:
        ctx.file_saved(path)
    ctx.show_images(images, tuple(saved))
    return {"images": [str(p) for p in saved]}


PREVIEW_LIFETIME_S = 3600.0


def _remove_stale_previews(folder: Path, now: float | None = None) -> None:
    """Delete preview files older than an hour (those of earlier runs and sessions)."""
    limit = (now or time.time()) - PREVIEW_LIFETIME_S
    for path in folder.glob("preview_*.png"):
        try:
            if path.stat().st_mtime < limit:
                path.unlink()
        except FileNotFoundError:  # removed by a concurrent run
            pass


@node("PreviewImage", display="Preview Image", category="image", output_node=True,
      inputs=[Input("images", IMAGE)], outputs=[], idempotent=False)
def preview_image(images: torch.Tensor, ctx):
    """Show images in the editor without keeping them (temporary files, removed later)."""
    folder = ctx.paths.temp_dir / "previews"
    folder.mkdir(parents=True, exist_ok=True)
    _remove_stale_previews(folder)
    saved = _save_all(images, folder, f"preview_{uuid.uuid4().hex[:8]}", None, ctx, compress_level=1)
    ctx.show_images(images, tuple(saved))
    return {"images": [str(p) for p in saved]}

