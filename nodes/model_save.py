"""Model saving nodes (ComfyUI's CheckpointSave, ModelSave, CLIPSave and VAESave): single-file
.safetensors in the original layout, under the output folder, named like ComfyUI's
(``<prefix>_00001_.safetensors``, the counter after the highest one there), never overwriting,
written atomically (nodeflow.loading.save_checkpoint). The workflow goes into the metadata as
ComfyUI's ``prompt`` (API format) and ``workflow`` (UI format) and nodeflow's own ``nodeflow``.

Files land in the output folder as in ComfyUI (``checkpoints/ComfyUI`` -> ``output/checkpoints/``);
move them into the models folders to load them. A prefix that leaves the output folder is refused
as SaveImage refuses it.
"""

from __future__ import annotations

import functools
import json
import logging

from nodeflow.errors import NodeInputError
from nodeflow.spec import CLIP, MODEL, VAE, Input, String, node

logger = logging.getLogger(__name__)

CATEGORY = "advanced/model_merging"
PREFIX_TOOLTIP = ("File name prefix inside the output folder; may hold sub-folders and %date:yyyy-MM-dd% "
                  "placeholders")


def _validate_prefix(prefix: str, paths=None) -> None:
    from nodeflow.image.files import check_prefix, check_prefix_folder

    check_prefix(prefix)
    if paths is not None:
        check_prefix_folder(paths.output_dir, prefix)


def _prefix(default: str):
    return String("filename_prefix", default, validate=_validate_prefix, tooltip=PREFIX_TOOLTIP)


def _folder(ctx, filename_prefix: str):
    """(folder, file name) of the prefix inside the output folder; an escape is an input error."""
    from nodeflow.image.files import expand_prefix, resolve_output_folder

    provenance = ctx.provenance
    prefix = expand_prefix(filename_prefix, provenance.workflow if provenance is not None else None)
    try:
        return resolve_output_folder(ctx.paths.output_dir, prefix)
    except ValueError as error:
        raise NodeInputError("filename_prefix", str(error)) from None


def workflow_metadata(ctx) -> dict[str, str]:
    """The run's workflow as ComfyUI writes it into saved models (``prompt``: API format,
    ``workflow``: UI format) and as nodeflow's JSON (``nodeflow``); empty without provenance."""
    from nodeflow.engine.workflow import dumps
    from nodeflow.errors import NodeflowError
    from nodeflow.formats.comfy import to_comfy_api, to_comfy_ui

    provenance = ctx.provenance
    if provenance is None:
        return {}
    workflow, registry = provenance.workflow, provenance.registry
    metadata = {"nodeflow": dumps(workflow)}
    for key, write in (("prompt", to_comfy_api), ("workflow", to_comfy_ui)):
        try:
            metadata[key] = json.dumps(write(workflow, registry), ensure_ascii=False)
        except (NodeflowError, KeyError, ValueError, TypeError) as error:
            logger.warning("the saved model's %r metadata is left out: %s", key, error)
    return metadata


def _save(ctx, filename_prefix: str, tensors: dict, metadata) -> str:
    """Write one file; ``metadata``: a dict, or a function of (file name, counter)."""
    from nodeflow.loading.save_checkpoint import save_new_file

    folder, name = _folder(ctx, filename_prefix)
    ctx.check_cancel()
    if callable(metadata):
        metadata = functools.partial(metadata, name)  # a function of the counter
    path = save_new_file(folder, name, tensors, metadata)
    ctx.file_saved(path)
    return str(path)


def _model_metadata(model, ctx):
    """A function of (file name, counter) giving the model's metadata (ComfyUI's modelspec title
    is "<name> <counter>") and the workflow's."""
    from nodeflow.loading.save_checkpoint import SaveError, model_metadata

    extra = workflow_metadata(ctx)
    try:
        model_metadata(model, "")  # a model of a family nodeflow cannot save is refused before writing
    except SaveError as error:
        raise NodeInputError("model", str(error)) from None
    return lambda name, counter: {**model_metadata(model, f"{name} {counter}"), **extra}


@node("CheckpointSave", display="Save Checkpoint", category=CATEGORY, output_node=True,
      inputs=[Input("model", MODEL), Input("clip", CLIP), Input("vae", VAE), _prefix("checkpoints/ComfyUI")],
      outputs=[])
def checkpoint_save(model, clip, vae, filename_prefix: str, ctx):
    """Save the model, text encoder and VAE as one checkpoint file (merges and LoRAs baked in)."""
    from nodeflow.loading.save_checkpoint import SaveError, checkpoint_tensors

    metadata = _model_metadata(model, ctx)
    try:
        tensors = checkpoint_tensors(model, clip, vae)
    except SaveError as error:  # a CLIP of another family than the model's
        raise NodeInputError("clip", str(error)) from None
    return {"files": [_save(ctx, filename_prefix, tensors, metadata)]}


@node("ModelSave", category=CATEGORY, output_node=True,
      inputs=[Input("model", MODEL), _prefix("diffusion_models/ComfyUI")], outputs=[])
def model_save(model, filename_prefix: str, ctx):
    """Save the diffusion model (U-Net) alone, loadable with UNETLoader."""
    from nodeflow.loading.save_checkpoint import checkpoint_tensors

    metadata = _model_metadata(model, ctx)
    return {"files": [_save(ctx, filename_prefix, checkpoint_tensors(model), metadata)]}


@node("CLIPSave", category=CATEGORY, output_node=True,
      inputs=[Input("clip", CLIP), _prefix("clip/ComfyUI")], outputs=[])
def clip_save(clip, filename_prefix: str, ctx):
    """Save the text encoder(s), one file per tower (``<prefix>_clip_l``, ``<prefix>_clip_g`` ...),
    loadable with CLIPLoader / DualCLIPLoader."""
    from nodeflow.loading.save_checkpoint import clip_file_tensors

    metadata = {"format": "pt", **workflow_metadata(ctx)}
    saved = [_save(ctx, f"{filename_prefix}_{tower}", tensors, metadata)
             for tower, tensors in clip_file_tensors(clip).items()]
    return {"files": saved}


@node("VAESave", category=CATEGORY, output_node=True,
      inputs=[Input("vae", VAE), _prefix("vae/ComfyUI_vae")], outputs=[])
def vae_save(vae, filename_prefix: str, ctx):
    """Save the VAE alone (keys without ``first_stage_model.``), loadable with VAELoader."""
    from nodeflow.loading.save_checkpoint import vae_metadata, vae_tensors

    metadata = {**vae_metadata(vae), **workflow_metadata(ctx)}
    return {"files": [_save(ctx, filename_prefix, vae_tensors(vae, prefix=""), metadata)]}
