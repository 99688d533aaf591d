"""One entry point for workflow files: ``load_workflow`` reads nodeflow JSON, ComfyUI API or UI
JSON, and PNGs with an embedded workflow (nodeflow's, ComfyUI's or A1111's parameters)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from nodeflow.engine.workflow import FORMAT_NAME, Workflow
from nodeflow.errors import WorkflowFormatError
from nodeflow.formats.comfy import from_comfy_api, from_comfy_ui
from nodeflow.formats.png import read_png_workflow

logger = logging.getLogger(__name__)


def parse_workflow_data(data: Any, registry: Any, source: str = "workflow") -> Workflow:
    """Our format, ComfyUI's API format or ComfyUI's UI format, told apart by their shape."""
    if isinstance(data, dict) and data.get("format") == FORMAT_NAME:
        return Workflow.from_dict(data, source)
    if isinstance(data, dict) and isinstance(data.get("nodes"), list) and "links" in data:
        return _foreign(from_comfy_ui, data, registry, f"{source}: ComfyUI workflow")
    if isinstance(data, dict) and data and all(
            isinstance(v, dict) and "class_type" in v for v in data.values()):
        return _foreign(from_comfy_api, data, registry, f"{source}: ComfyUI API workflow")
    raise WorkflowFormatError(
        f"{source}: not a workflow (expected nodeflow JSON, ComfyUI API JSON or ComfyUI UI JSON)")


def _foreign(parse: Any, data: dict, registry: Any, what: str) -> Workflow:
    """Run a foreign-format parser; a malformed file is a ``WorkflowFormatError``, not a crash."""
    try:
        return parse(data, registry)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
        logger.debug("%s could not be read", what, exc_info=True)
        raise WorkflowFormatError(f"{what} is malformed ({type(error).__name__}: {error})") from None


def load_workflow(path: str | os.PathLike, registry: Any = None) -> Workflow:
    """Read a workflow file: our JSON, ComfyUI API/UI JSON, or a PNG with an embedded workflow."""
    path = Path(path)
    if not path.is_file():
        raise WorkflowFormatError(f"{path}: no such file")
    with path.open("rb") as file:
        magic = file.read(8)
    if magic == b"\x89PNG\r\n\x1a\n":
        return read_png_workflow(path, registry)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise WorkflowFormatError(f"{path}: not valid JSON (not UTF-8 text: {error})") from None
    except json.JSONDecodeError as error:
        raise WorkflowFormatError(f"{path}: not valid JSON: {error.msg} at line {error.lineno} "
                                  f"column {error.colno}") from None
    return parse_workflow_data(data, registry, str(path))
