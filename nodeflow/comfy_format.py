"""ComfyUI's workflow formats, read into our Workflow (and our workflows written as API JSON).

- API format: ``{"3": {"class_type": "KSampler", "inputs": {"seed": 5, "model": ["4", 0]}}}``;
  a list value [node_id, output_index] is a link.
- UI format (LiteGraph, what ComfyUI's "Save" writes): nodes with positional ``widgets_values``
  in the order of the node's widget inputs, where a seed widget is followed by the frontend-only
  "control after generate" value; links ``[id, from, from_slot, to, to_slot, type]``;
  PrimitiveNode (its value flows into its targets), Reroute (followed through) and Note are
  frontend-only; mode 2 is muted, 4 bypassed.
"""

from __future__ import annotations

from typing import Any

from nodeflow.errors import UnknownNodeType, WorkflowFormatError
from nodeflow.workflow import Link, NodeInstance, Workflow

CONTROL_AFTER_GENERATE = {"fixed", "increment", "decrement", "randomize"}
VIRTUAL_NODES = {"Note", "MarkdownNote", "PrimitiveNode", "Reroute"}
MODES = {0: "normal", 2: "muted", 4: "bypassed"}


def from_comfy_api(data: dict, registry=None) -> Workflow:
    """Read a ComfyUI API-format workflow."""
    nodes, links = {}, []
    for node_id, entry in data.items():
        node_id = str(node_id)
        node_type = entry.get("class_type")
        if not isinstance(node_type, str):
            raise WorkflowFormatError(f"ComfyUI workflow: node {node_id} has no class_type")
        if registry is not None and node_type not in registry:
            raise UnknownNodeType(node_type, node_id)
        literals = {}
        for name, value in (entry.get("inputs") or {}).items():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[1], int) and not isinstance(value[1], bool):
                links.append(Link(str(value[0]), value[1], node_id, name))
            else:
                literals[name] = value
        title = (entry.get("_meta") or {}).get("title")
        nodes[node_id] = NodeInstance(node_id, node_type, literals, title=title)
    for link in links:
        if link.src not in nodes:
            raise WorkflowFormatError(f"ComfyUI workflow: node {link.dst} links to a missing node {link.src}")
    return Workflow(nodes, links)


def to_comfy_api(workflow: Workflow, registry=None) -> dict:
    """Our workflow as ComfyUI API JSON (muted nodes left out, bypassed ones routed through)."""
    from nodeflow.graph import active_links

    links = active_links(workflow, registry) if registry is not None else workflow.links
    data: dict[str, Any] = {}
    for node_id, instance in workflow.nodes.items():
        if instance.mode != "normal":
            continue
        inputs: dict[str, Any] = dict(instance.inputs)
        for link in links:
            if link.dst == node_id:
                inputs[link.dst_input] = [link.src, link.src_output]
        entry: dict[str, Any] = {"inputs": inputs, "class_type": instance.type}
        if instance.title:
            entry["_meta"] = {"title": instance.title}
        data[node_id] = entry
    return data


def from_comfy_ui(data: dict, registry) -> Workflow:
    """Read a ComfyUI UI-format workflow (needs the registry to name positional widget values)."""
    if registry is None:
        raise WorkflowFormatError("reading a ComfyUI UI workflow needs the node registry")
    raw_nodes = {str(n["id"]): n for n in data.get("nodes", [])}
    raw_links = {int(l[0]): l for l in data.get("links", []) if l}
    nodes: dict[str, NodeInstance] = {}
    for node_id, raw in raw_nodes.items():
        node_type = raw.get("type")
        if node_type in VIRTUAL_NODES:
            continue
        if node_type not in registry:
            raise UnknownNodeType(node_type, node_id)
        spec = registry.get(node_type)
        nodes[node_id] = NodeInstance(node_id, node_type, _widget_values(raw, spec, node_id),
                                      mode=MODES.get(raw.get("mode", 0), "normal"), title=raw.get("title"))
    links: list[Link] = []
    for node_id, raw in raw_nodes.items():
        if node_id not in nodes:
            continue
        for socket in raw.get("inputs") or []:
            link_id = socket.get("link")
            if link_id is None:
                continue
            source = _follow(raw_links, raw_nodes, int(link_id))
            if source is None:
                continue
            src_id, src_slot = source
            src = raw_nodes[src_id]
            if src.get("type") == "PrimitiveNode":
                values = src.get("widgets_values") or []
                if values:
                    nodes[node_id].inputs[socket["name"]] = values[0]
                continue
            links.append(Link(src_id, src_slot, node_id, socket["name"]))
    ui = {"nodes": {nid: {"pos": raw.get("pos"), "size": raw.get("size")} for nid, raw in raw_nodes.items()
                    if nid in nodes}}
    if data.get("groups"):
        ui["groups"] = data["groups"]
    return Workflow(nodes, links, ui)


def _follow(raw_links: dict, raw_nodes: dict, link_id: int) -> tuple[str, int] | None:
    """The real source (node id, slot) of a link, through Reroute nodes."""
    seen = set()
    while link_id in raw_links and link_id not in seen:
        seen.add(link_id)
        _, src, slot, *_ = raw_links[link_id]
        src = str(src)
        node = raw_nodes.get(src)
        if node is None:
            return None
        if node.get("type") != "Reroute":
            return src, int(slot)
        inputs = node.get("inputs") or []
        if not inputs or inputs[0].get("link") is None:
            return None
        link_id = int(inputs[0]["link"])
    return None


def _widget_values(raw: dict, spec, node_id: str) -> dict[str, Any]:
    values = list(raw.get("widgets_values") or [])
    if isinstance(raw.get("widgets_values"), dict):
        return dict(raw["widgets_values"])
    converted = {s.get("name") for s in raw.get("inputs") or [] if s.get("widget") and s.get("link") is not None}
    result: dict[str, Any] = {}
    position = 0
    for widget in spec.widget_inputs:
        if position >= len(values):
            break
        value = values[position]
        position += 1
        if widget.seed and position < len(values) and values[position] in CONTROL_AFTER_GENERATE:
            position += 1  # the frontend's "control after generate" value follows a seed
        if widget.name not in converted:
            result[widget.name] = value
    return result
