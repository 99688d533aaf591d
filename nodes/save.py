"""Output nodes: SaveImage (PNG with the workflow embedded) and PreviewImage (temporary files)."""

from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path

import torch

from nodeflow.errors import ModelFileError, NodeInputError
from nodeflow.spec import IMAGE, Boolean, Input, String, node

log = logging.getLogger(__name__)


def _validate_prefix(prefix: str, paths=None) -> None:
    """Before anything runs: no absolute paths, no '..', and (with the folders known) no
    sub-folder that leads out of the output folder through a symlink."""
    from nodeflow.image.files import check_prefix, check_prefix_folder

    check_prefix(prefix)
    if paths is not None:
        check_prefix_folder(paths.output_dir, prefix)


def _save_all(images: torch.Tensor, folder, name: str, chunks: dict | None, ctx, compress_level: int = 4) -> list:
    """Save each image of the batch; ``%batch_num%`` in ``name`` becomes its index in the batch."""
    from nodeflow.image.files import save_png, tensor_to_pil

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
    from nodeflow.image.files import expand_prefix, resolve_output_folder
    from nodeflow.formats.png import workflow_text_chunks

    if images.ndim != 4:
        raise NodeInputError("images", f"expected images (B, H, W, C), got shape {tuple(images.shape)}")
    prefix = expand_prefix(filename_prefix, ctx.workflow, size=(images.shape[2], images.shape[1]))
    try:
        folder, name = resolve_output_folder(ctx.paths.output_dir, prefix)
    except ValueError as error:
        raise NodeInputError("filename_prefix", str(error)) from None
    chunks = None
    if embed_workflow and ctx.workflow is not None:
        chunks = workflow_text_chunks(ctx.workflow, ctx.registry, (images.shape[2], images.shape[1]),
                                      model_hash=_checkpoint_hash(ctx))
    saved = _save_all(images, folder, name, chunks, ctx)
    for path in saved:
        ctx.file_saved(path)
    ctx.show_images(images, tuple(saved))
    return {"images": [str(p) for p in saved]}


def _checkpoint_hash(ctx) -> str | None:
    """A1111's short hash of the workflow's checkpoint (when it loads exactly one), for the
    "parameters" text. Hashing reads the whole file, so hashes are kept in
    ``temp_dir/model_hashes.json`` by path, size and modification time."""
    from nodeflow.formats.a1111 import model_hash

    names = {str(n.inputs["ckpt_name"]) for n in ctx.workflow.nodes.values()
             if n.type == "CheckpointLoaderSimple" and n.mode == "normal" and isinstance(n.inputs.get("ckpt_name"), str)}
    if len(names) != 1:
        return None
    try:
        path = ctx.paths.resolve_model("checkpoints", names.pop())
        if path.is_dir():  # a diffusers folder: A1111's hash is of a single file
            return None
        stat = path.stat()
    except (OSError, ValueError, ModelFileError) as error:  # its loader reports a missing model
        log.debug("no model hash: %s", error)
        return None
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    cache_file = ctx.paths.temp_dir / "model_hashes.json"
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    if key not in cache:
        cache[key] = model_hash(path)
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        partial = cache_file.with_name(f".{cache_file.name}.{uuid.uuid4().hex}")
        partial.write_text(json.dumps(cache, sort_keys=True))
        os.replace(partial, cache_file)  # atomic: concurrent runs never read half a file
    return cache[key]


@node("PreviewImage", display="Preview Image", category="image", output_node=True,
      inputs=[Input("images", IMAGE)], outputs=[], idempotent=False)
def preview_image(images: torch.Tensor, ctx):
    """Show images in the editor without keeping them (temporary files, removed when the session ends)."""
    folder = ctx.paths.preview_folder()
    folder.mkdir(parents=True, exist_ok=True)
    saved = _save_all(images, folder, f"preview_{uuid.uuid4().hex[:8]}", None, ctx, compress_level=1)
    ctx.show_images(images, tuple(saved))
    return {"images": [str(p) for p in saved]}

