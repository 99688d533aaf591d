"""Latent files: SaveLatent and LoadLatent, ComfyUI's ``.latent`` format (safetensors holding
``latent_tensor`` and the ``latent_format_version_0`` marker; never pickles)."""

from __future__ import annotations

from nodeflow.errors import NodeInputError
from nodeflow.spec import LATENT, Choice, Input, Output, String, node

LATENT_SUFFIX = ".latent"


def _validate_prefix(prefix: str, paths=None) -> None:
    """Before anything runs: no absolute paths, no '..', no way out of the output folder."""
    from nodeflow.image.files import check_prefix, check_prefix_folder

    check_prefix(prefix)
    if paths is not None:
        check_prefix_folder(paths.output_dir, prefix)


def _metadata(provenance) -> dict[str, str]:
    """The workflow as ComfyUI's API JSON (``prompt``) and as ours (``nodeflow``), for the file's
    safetensors metadata (ComfyUI stores ``prompt`` and ``workflow`` there)."""
    if provenance is None:
        return {}
    from nodeflow.formats.png import COMFY_API_CHUNK, OUR_CHUNK, workflow_text_chunks

    chunks = workflow_text_chunks(provenance.workflow, provenance.registry)
    return {key: chunks[key] for key in (COMFY_API_CHUNK, OUR_CHUNK) if key in chunks}


@node("SaveLatent", display="Save Latent", category="_for_testing", output_node=True,
      inputs=[Input("samples", LATENT),
              String("filename_prefix", "latents/ComfyUI", validate=_validate_prefix,
                     tooltip="File name prefix in the output folder; may hold sub-folders and "
                             "%date:yyyy-MM-dd% or %KSampler.seed% placeholders")],
      outputs=[])
def save_latent(samples: dict, filename_prefix: str, ctx):
    """Save latents as a .latent file (ComfyUI's format) in the output folder, never overwriting one."""
    from nodeflow.image.files import expand_prefix, resolve_output_folder
    from nodeflow.image.latent_ops import write_latent_file

    tensor = samples.get("samples") if isinstance(samples, dict) else None
    if tensor is None or tensor.ndim < 3:
        raise NodeInputError("samples", "expected a LATENT holding samples (B, C, h, w)")
    provenance = ctx.provenance
    prefix = expand_prefix(filename_prefix, provenance.workflow if provenance is not None else None)
    try:
        folder, name = resolve_output_folder(ctx.paths.output_dir, prefix)
    except ValueError as error:
        raise NodeInputError("filename_prefix", str(error)) from None
    path = write_latent_file(tensor, folder, name, _metadata(provenance))
    ctx.file_saved(path)
    return {"latents": [str(path)]}


def _latent_files(paths) -> list[str]:
    return [name for name in paths.list_inputs() if name.endswith(LATENT_SUFFIX)]


def _latent_hash(inputs: dict, paths) -> str:
    """The file's content (SHA-256): a replaced file is read again, a copy elsewhere hits the cache."""
    from nodeflow.image.files import file_hash

    return file_hash(paths.resolve_input(inputs["latent"]))


@node("LoadLatent", display="Load Latent", category="_for_testing",
      inputs=[Choice("latent", _latent_files, tooltip="A .latent file in the input folder")],
      outputs=[Output(LATENT)], fingerprint=_latent_hash)
def load_latent(latent: str, ctx):
    """Load a .latent file from the input folder (files without the format marker are scaled by
    1 / 0.18215, as ComfyUI reads them)."""
    import torch

    from nodeflow.image.latent_ops import latent_from_file
    from nodeflow.loading.files import read_safetensors_converted

    path = ctx.paths.resolve_input(latent)
    tensors, _ = read_safetensors_converted(path, lambda key: torch.float32)
    try:
        loaded = latent_from_file(tensors)
    except ValueError as error:
        raise NodeInputError("latent", f"{path}: {error}") from None
    if loaded["samples"].ndim < 3:
        raise NodeInputError("latent", f"{path}: latent_tensor has shape {tuple(loaded['samples'].shape)}, "
                                       "expected (B, C, h, w)")
    return (loaded,)
