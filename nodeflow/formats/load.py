"""One entry point for workflow files: ``load_workflow`` reads nodeflow JSON, ComfyUI API or UI
JSON, and PNGs with an embedded workflow (nodeflow's, ComfyUI's or A1111's parameters)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from nodeflow.engine.workflow import FORMAT_NAME, Workflow
from nodeflow.errors import WorkflowFormatError
from nodeflow.formats.comfy import read_comfy_api, read_comfy_ui
from nodeflow.formats.json_text import read_json_file
from nodeflow.formats.png import read_png_workflow

logger = logging.getLogger(__name__)


def parse_workflow_data(data: Any, registry: Any, source: str = "workflow") -> Workflow:
    """Our format, ComfyUI's API format or ComfyUI's UI format, told apart by their shape. A
    ComfyUI ``/prompt`` request body ({"prompt": API workflow, "client_id": ...}) reads as its
    API workflow."""
    if isinstance(data, dict) and isinstance(data.get("prompt"), dict) and "class_type" not in data["prompt"] \
            and set(data) <= {"prompt", "client_id", "extra_data", "front", "number", "prompt_id"}:
        data = data["prompt"]
    if isinstance(data, dict) and data.get("format") == FORMAT_NAME:
        return Workflow.from_dict(data, source)
    if isinstance(data, dict) and isinstance(data.get("nodes"), list) and "links" in data:
        return read_comfy_ui(data, registry, source)
    if isinstance(data, dict) and data and all(
            isinstance(v, dict) and "class_type" in v for v in data.values()):
        return read_comfy_api(data, registry, source)
    raise WorkflowFormatError(
        f"{source}: not a workflow (expected nodeflow JSON, ComfyUI API JSON or ComfyUI UI JSON)")


def load_workflow(path: str | os.PathLike, registry: Any = None) -> Workflow:
    """Read a workflow file: our JSON, ComfyUI API/UI JSON, or a PNG with an embedded workflow."""
    path = Path(path)
    if not path.is_file():
        raise WorkflowFormatError(f"{path}: no such file")
    with path.open("rb") as file:
        magic = file.read(8)
    if magic == b"\x89PNG\r\n\x1a\n":
        return read_png_workflow(path, registry)
    return parse_workflow_data(read_json_file(path), registry, str(path))
