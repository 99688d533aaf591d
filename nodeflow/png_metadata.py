"""Workflows inside PNG files: tEXt chunks written by SaveImage and read back by `nodeflow run`.

Chunks: ``nodeflow`` (our workflow JSON), ``prompt`` (ComfyUI API JSON) and ``parameters``
(AUTOMATIC1111 text), so ComfyUI, A1111 and tools reading either show the settings. Reading
prefers ours, then ComfyUI's ``prompt``, then ComfyUI's ``workflow`` (UI JSON).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from PIL import Image

from nodeflow.errors import WorkflowFormatError
from nodeflow.workflow import Workflow, dumps


def workflow_text_chunks(workflow: Workflow, registry=None, size: tuple[int, int] | None = None) -> dict[str, str]:
    """The tEXt chunks describing ``workflow``."""
    from nodeflow.a1111 import parameters_text
    from nodeflow.comfy_format import to_comfy_api

    chunks = {"nodeflow": dumps(workflow),
              "prompt": json.dumps(to_comfy_api(workflow, registry), ensure_ascii=False)}
    parameters = parameters_text(workflow, size)
    if parameters:
        chunks["parameters"] = parameters
    return chunks


def read_text_chunks(path: str | os.PathLike) -> dict[str, str]:
    try:
        with Image.open(path) as image:
            image.load()
            return {k: v for k, v in (getattr(image, "text", None) or image.info).items() if isinstance(v, str)}
    except OSError as error:
        raise WorkflowFormatError(f"{path}: cannot read this image ({error})") from None


def read_png_workflow(path: str | os.PathLike, registry=None) -> Workflow:
    """The workflow embedded in a PNG (ours, else ComfyUI's prompt, else ComfyUI's workflow)."""
    from nodeflow.comfy_format import from_comfy_api, from_comfy_ui

    chunks = read_text_chunks(path)
    try:
        if "nodeflow" in chunks:
            return Workflow.from_dict(json.loads(chunks["nodeflow"]), str(path))
        if "prompt" in chunks:
            return from_comfy_api(json.loads(chunks["prompt"]), registry)
        if "workflow" in chunks:
            return from_comfy_ui(json.loads(chunks["workflow"]), registry)
    except json.JSONDecodeError as error:
        raise WorkflowFormatError(f"{path}: the embedded workflow is not valid JSON ({error})") from None
    raise WorkflowFormatError(f"{Path(path).name}: this image has no embedded workflow "
                              "(no 'nodeflow', 'prompt' or 'workflow' text chunk)")
