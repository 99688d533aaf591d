"""The workflow model and nodeflow's own JSON format.

A workflow is nodes (type, literal inputs by name, type version, mode) plus explicit links from
an output index to an input name, plus a UI section that execution ignores. Our file format:

```json
{"format": "nodeflow-workflow", "version": 1,
 "nodes": {"1": {"type": "EmptyLatentImage", "version": 1, "inputs": {"width": 512}}},
 "links": [{"from": ["1", 0], "to": ["2", "latent_image"]}],
 "ui": {"nodes": {"1": {"pos": [10, 20]}}}}
```

Saving is deterministic (sorted keys, links in a stable order) and atomic (a temporary file in
the same folder, then ``os.replace``). Loading never executes code: it is plain JSON.
Reading files of every format is ``nodeflow.formats.load_workflow``.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nodeflow.errors import WorkflowFormatError
from nodeflow.runtime.atomic import write_text_atomic

logger = logging.getLogger(__name__)

FORMAT_NAME = "nodeflow-workflow"
FORMAT_VERSION = 1
MODES = ("normal", "muted", "bypassed")


@dataclass
class NodeInstance:
    """One node of a workflow."""

    id: str
    type: str
    inputs: dict[str, Any] = field(default_factory=dict)  # literal widget values by input name
    version: int = 1
    mode: str = "normal"  # "normal" | "muted" | "bypassed"
    title: str | None = None


@dataclass(frozen=True)
class Link:
    """Output ``src_output`` of node ``src`` feeds input ``dst_input`` of node ``dst``."""

    src: str
    src_output: int
    dst: str
    dst_input: str


@dataclass
class Workflow:
    """Nodes, links and an optional UI section."""

    nodes: dict[str, NodeInstance] = field(default_factory=dict)
    links: list[Link] = field(default_factory=list)
    ui: dict[str, Any] = field(default_factory=dict)

    def input_link(self, node_id: str, input_name: str) -> Link | None:
        """The link feeding ``input_name`` of ``node_id``, if any."""
        return next((link for link in self.links
                     if link.dst == node_id and link.dst_input == input_name), None)

    def links_into(self, node_id: str) -> list[Link]:
        return [link for link in self.links if link.dst == node_id]

    def links_out_of(self, node_id: str) -> list[Link]:
        return [link for link in self.links if link.src == node_id]

    def copy(self) -> Workflow:
        return copy.deepcopy(self)

    def to_dict(self) -> dict[str, Any]:
        """Our JSON format (see the module docstring), in a stable order."""
        nodes = {}
        for node_id in sorted(self.nodes, key=node_id_order):
            instance = self.nodes[node_id]
            entry: dict[str, Any] = {"type": instance.type, "version": instance.version,
                                     "inputs": dict(sorted(instance.inputs.items()))}
            if instance.mode != "normal":
                entry["mode"] = instance.mode
            if instance.title:
                entry["title"] = instance.title
            nodes[node_id] = entry
        links = [{"from": [link.src, link.src_output], "to": [link.dst, link.dst_input]}
                 for link in sorted(self.links, key=link_order)]
        data: dict[str, Any] = {"format": FORMAT_NAME, "version": FORMAT_VERSION,
                                "nodes": nodes, "links": links}
        if self.ui:
            data["ui"] = self.ui
        return data

    @classmethod
    def from_dict(cls, data: Any, source: str = "workflow") -> Workflow:
        """Parse our format; problems raise ``WorkflowFormatError`` naming ``source``."""
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise WorkflowFormatError(f"{source}: not a nodeflow workflow")
        version = data.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise WorkflowFormatError(f"{source}: bad format version {version!r}")
        if version > FORMAT_VERSION:
            raise WorkflowFormatError(
                f"{source}: format version {version!r} is newer than this nodeflow reads "
                f"({FORMAT_VERSION}); update nodeflow")
        nodes = {}
        for node_id, entry in _mapping(data.get("nodes", {}), source, "nodes").items():
            nodes[str(node_id)] = _parse_node(str(node_id), entry, source)
        raw_links = data.get("links", [])
        if not isinstance(raw_links, list):
            raise WorkflowFormatError(f"{source}: 'links' must be a list")
        links = [_parse_link(item, source) for item in raw_links]
        # Links to missing nodes and unknown node types are kept: validation reports them with
        # every other problem of the workflow at once.
        return cls(nodes, links, dict(_mapping(data.get("ui") or {}, source, "ui")))


MAX_NUMERIC_ID_DIGITS = 15  # longer digit strings are ids like any other text, never made ints


def is_numeric_id(node_id: str) -> bool:
    """Whether ``node_id`` is a plain number like "12": ASCII digits ("²" is not one), short."""
    return node_id.isascii() and node_id.isdigit() and len(node_id) <= MAX_NUMERIC_ID_DIGITS


def node_id_order(node_id: str) -> tuple:
    """Sort key for node ids: numeric ids in numeric order, then the others as text."""
    return (0, int(node_id), node_id) if is_numeric_id(node_id) else (1, 0, node_id)


def link_order(link: Link) -> tuple:
    """The order links are saved in: by target node and input, then by source."""
    return (node_id_order(link.dst), link.dst_input, node_id_order(link.src), link.src_output)


def _mapping(value: Any, source: str, what: str) -> dict:
    if not isinstance(value, dict):
        raise WorkflowFormatError(f"{source}: {what!r} must be an object")
    return value


def _parse_node(node_id: str, entry: Any, source: str) -> NodeInstance:
    entry = _mapping(entry, source, f"nodes.{node_id}")
    node_type = entry.get("type")
    if not isinstance(node_type, str) or not node_type:
        raise WorkflowFormatError(f"{source}: node {node_id} has no type")
    mode = entry.get("mode", "normal")
    if not isinstance(mode, str) or mode not in MODES:
        raise WorkflowFormatError(f"{source}: node {node_id} has an unknown mode {mode!r}")
    inputs = dict(_mapping(entry.get("inputs", {}), source, f"nodes.{node_id}.inputs"))
    version = entry.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise WorkflowFormatError(f"{source}: node {node_id} has a bad type version {version!r}")
    title = entry.get("title")
    if title is not None and not isinstance(title, str):
        raise WorkflowFormatError(f"{source}: node {node_id} has a title that is not text")
    return NodeInstance(node_id, node_type, inputs, version, mode, title)


def _parse_link(item: Any, source: str) -> Link:
    try:
        (src, src_output), (dst, dst_input) = item["from"], item["to"]
        if not all(isinstance(v, (str, int)) and not isinstance(v, bool)
                   for v in (src, src_output, dst, dst_input)):
            raise TypeError("link ends must be ids, an output index and an input name")
        return Link(str(src), int(src_output), str(dst), str(dst_input))
    except (KeyError, TypeError, ValueError) as error:
        raise WorkflowFormatError(f"{source}: malformed link {item!r}") from error


def dumps(workflow: Workflow) -> str:
    """The workflow as our JSON text, deterministic."""
    return json.dumps(workflow.to_dict(), indent=2, sort_keys=False, ensure_ascii=False) + "\n"


def save_workflow(workflow: Workflow, path: str | os.PathLike) -> None:
    """Write ``workflow`` to ``path`` atomically: a crash leaves the old file or the new one."""
    write_text_atomic(Path(path), dumps(workflow))
