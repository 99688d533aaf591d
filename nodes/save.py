"""Output nodes: SaveImage (PNG with the workflow embedded) and PreviewImage (temporary files)."""

from __future__ import annotations

import uuid
from dataclasses import replace

import torch

from nodeflow.errors import NodeInputError
from nodeflow.spec import IMAGE, Boolean, Input, String, node

#: A workflow's ``ui`` entry of extra PNG text chunks, ``{name: text}``, for the images its run saves
#: (a sweep job's values: ``nodeflow.sweeps.run``); written as chunks of their own, not embedded
#: with the workflow (so a workflow read back from the image does not carry them on).
IMAGE_TEXT = "image_text"


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
    provenance = ctx.provenance
    workflow = provenance.workflow if provenance is not None else None
    prefix = expand_prefix(filename_prefix, workflow, size=(images.shape[2], images.shape[1]))
    try:
        folder, name = resolve_output_folder(ctx.paths.output_dir, prefix)
    except ValueError as error:
        raise NodeInputError("filename_prefix", str(error)) from None
    chunks = None
    if embed_workflow and provenance is not None:
        extra = workflow.ui.get(IMAGE_TEXT)
        extra = extra if isinstance(extra, dict) else {}
        if extra:
            workflow = replace(workflow, ui={k: v for k, v in workflow.ui.items() if k != IMAGE_TEXT})
        chunks = {**{str(k): str(v) for k, v in extra.items()},
                  **workflow_text_chunks(workflow, provenance.registry, (images.shape[2], images.shape[1]),
                                         model_hash=_checkpoint_hash(provenance, ctx.paths.temp_dir))}
    saved = _save_all(images, folder, name, chunks, ctx)
    for path in saved:
        ctx.file_saved(path)
    ctx.show_images(images, tuple(saved))
    return {"images": [str(p) for p in saved]}


def _checkpoint_hash(provenance, temp_dir) -> str | None:
    """A1111's short hash of the run's checkpoint (when it loads exactly one single file), for the
    "parameters" text; hashes are cached by path, size and modification time."""
    from nodeflow.formats.a1111 import cached_model_hash

    files = {use.path for use in provenance.model_files_of("checkpoints")}
    if len(files) != 1 or next(iter(files)).is_dir():  # a diffusers folder: A1111 hashes one file
        return None
    return cached_model_hash(files.pop(), temp_dir / "model_hashes.json")


@node("PreviewImage", display="Preview Image", category="image", output_node=True,
      inputs=[Input("images", IMAGE)], outputs=[], idempotent=False)
def preview_image(images: torch.Tensor, ctx):
    """Show images in the editor without keeping them (temporary files, removed when the session ends)."""
    folder = ctx.paths.preview_folder()
    folder.mkdir(parents=True, exist_ok=True)
    saved = _save_all(images, folder, f"preview_{uuid.uuid4().hex[:8]}", None, ctx, compress_level=1)
    ctx.show_images(images, tuple(saved))
    return {"images": [str(p) for p in saved]}

