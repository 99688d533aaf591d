"""Workflows inside PNG files: tEXt chunks written by SaveImage and read back by `nodeflow run`.

Chunks written: ``nodeflow`` (our workflow JSON), ``prompt`` (ComfyUI API JSON) and
``parameters`` (AUTOMATIC1111 text), so ComfyUI, A1111 and tools reading either show the
settings. Reading prefers ours, then ComfyUI's ``prompt`` (API JSON; node positions are taken
from its ``workflow`` chunk when that one reads too), then ComfyUI's ``workflow`` (UI JSON),
then A1111's ``parameters`` (rebuilt as ComfyUI's default txt2img graph).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from nodeflow.engine.graph import active_links
from nodeflow.engine.workflow import Workflow, dumps
from nodeflow.errors import NodeflowError, WorkflowFormatError
from nodeflow.formats.a1111 import parameters_text, workflow_from_a1111
from nodeflow.formats.comfy import read_comfy_api, read_comfy_ui, to_comfy_api
from nodeflow.formats.json_text import parse_json
from nodeflow.formats.png_text import MAX_TEXT_BYTES, read_png_text

log = logging.getLogger(__name__)

OUR_CHUNK = "nodeflow"
COMFY_API_CHUNK = "prompt"
COMFY_UI_CHUNK = "workflow"
A1111_CHUNK = "parameters"
#: At most this much workflow text goes into an image, so that every saved PNG reads back
#: (png_text reads up to MAX_TEXT_BYTES; the A1111 text is small).
MAX_EMBEDDED_BYTES = MAX_TEXT_BYTES - 2**20


def workflow_text_chunks(workflow: Workflow, registry: Any = None, size: tuple[int, int] | None = None,
                         *, model_hash: str | None = None) -> dict[str, str]:
    """The tEXt chunks describing ``workflow``: ``nodeflow``, ``prompt`` and ``parameters``.

    ``size`` (width, height of the saved image) and ``model_hash`` (see
    ``nodeflow.formats.a1111.model_hash``) refine the A1111 text; ``parameters`` is left out when the
    workflow has no sampler. With a registry, muted nodes are left out of ``prompt`` and the
    A1111 text follows links through bypassed nodes. A workflow too large to read back is
    embedded without its editor layout, or not at all (with a warning in the log).
    """
    links = active_links(workflow, registry) if registry is not None else None
    parameters = parameters_text(workflow, size, model_hash=model_hash, links=links)
    chunks = {A1111_CHUNK: parameters} if parameters else {}
    workflow_chunks = {OUR_CHUNK: dumps(workflow),
                       COMFY_API_CHUNK: json.dumps(to_comfy_api(workflow, registry), ensure_ascii=False)}
    if _text_bytes(workflow_chunks) > MAX_EMBEDDED_BYTES and workflow.ui:
        log.warning("the workflow's editor layout (%.0f MiB) is too large to embed in the image; "
                    "saved without it", len(json.dumps(workflow.ui)) / 2**20)
        workflow_chunks[OUR_CHUNK] = dumps(Workflow(workflow.nodes, workflow.links))
    if _text_bytes(workflow_chunks) > MAX_EMBEDDED_BYTES:
        log.warning("the workflow (%.0f MiB) is too large to embed in the image; saved without it",
                    _text_bytes(workflow_chunks) / 2**20)
        return chunks
    return {**workflow_chunks, **chunks}


def _text_bytes(chunks: dict[str, str]) -> int:
    return sum(len(text.encode("utf-8")) for text in chunks.values())


def read_text_chunks(path: str | os.PathLike) -> dict[str, str]:
    """The text chunks (tEXt, zTXt, iTXt) of a PNG file; its pixels are never decoded."""
    return read_png_text(path)


def read_png_workflow(path: str | os.PathLike, registry: Any = None) -> Workflow:
    """The workflow embedded in a PNG: ours, else ComfyUI's ``prompt``, else its ``workflow``,
    else a txt2img graph rebuilt from A1111 ``parameters``."""

    chunks = read_text_chunks(path)
    if OUR_CHUNK in chunks:
        return Workflow.from_dict(_json(chunks, OUR_CHUNK, path), f"{path} ({OUR_CHUNK} chunk)")
    if COMFY_API_CHUNK in chunks:
        workflow = read_comfy_api(_json(chunks, COMFY_API_CHUNK, path), registry, f"{path} ({COMFY_API_CHUNK} chunk)")
        if COMFY_UI_CHUNK in chunks and registry is not None:
            _take_layout(workflow, chunks[COMFY_UI_CHUNK], registry, path)
        return workflow
    if COMFY_UI_CHUNK in chunks:
        return read_comfy_ui(_json(chunks, COMFY_UI_CHUNK, path), registry, f"{path} ({COMFY_UI_CHUNK} chunk)")
    if A1111_CHUNK in chunks:

        try:
            workflow = workflow_from_a1111(chunks[A1111_CHUNK])
        except ValueError as error:
            raise WorkflowFormatError(f"{path}: its A1111 'parameters' cannot be read ({error})") from None
        log.info("%s: workflow rebuilt from A1111 parameters (a txt2img graph)", path)
        return workflow
    raise WorkflowFormatError(f"{path}: this image has no embedded workflow; expected a '{OUR_CHUNK}', "
                              f"'{COMFY_API_CHUNK}', '{COMFY_UI_CHUNK}' or '{A1111_CHUNK}' text chunk")


def _json(chunks: dict[str, str], key: str, path: str | os.PathLike) -> Any:
    return parse_json(chunks[key], f"{path}: the '{key}' chunk")


def _take_layout(workflow: Workflow, ui_text: str, registry: Any, path: str | os.PathLike) -> None:
    """Positions, groups and seed modes from ComfyUI's UI chunk, for the nodes the API chunk has."""

    try:
        layout = read_comfy_ui(parse_json(ui_text, f"{path}: the 'workflow' chunk"), registry, str(path)).ui
    except NodeflowError as error:
        log.info("%s: node positions not read from the 'workflow' chunk: %s", path, error)
        return
    ui: dict[str, Any] = {}
    for key in ("nodes", "seed_control", "pins"):
        kept = {i: v for i, v in layout.get(key, {}).items() if i in workflow.nodes}
        if kept:
            ui[key] = kept
    if layout.get("groups"):
        ui["groups"] = layout["groups"]
    workflow.ui = ui
