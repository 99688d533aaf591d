"""ComfyUI's workflow formats, read into our Workflow (and our workflows written as API JSON).

- API format (what ComfyUI queues and stores in a PNG's ``prompt`` chunk):
  ``{"3": {"class_type": "KSampler", "inputs": {"seed": 5, "model": ["4", 0]}, "_meta": {...}}}``;
  a list value ``[node_id, output_index]`` is a link, anything else a literal.
- UI format (LiteGraph, what ComfyUI's "Save" writes and its ``workflow`` PNG chunk holds):
  nodes with positional ``widgets_values`` in the order of the node type's widget inputs, where a
  seed widget is followed by the frontend-only "control after generate" value (absent in old
  files); links ``[id, from, from_slot, to, to_slot, type]`` (or, in schema 1, objects with
  ``origin_id``/``target_id``...); a widget converted to a socket is an input with a ``widget``
  field. PrimitiveNode (its value flows into its targets as a literal), Reroute (followed through)
  and Note/MarkdownNote are frontend-only; mode 2 is muted, 4 bypassed. Positions, sizes,
  groups, seed modes and converted widgets go into our ``ui`` section; so do Reroutes, as layout
  (``ui["reroutes"]`` and the ``ui["routes"]`` links take through them: see nodeflow/gui/reroutes.py)
  while the links themselves go straight from source to target.

``to_comfy_api`` and ``to_comfy_ui`` write our workflows back out in either format.

ComfyUI's constant nodes (PrimitiveInt, PrimitiveFloat, PrimitiveString(Multiline),
PrimitiveBoolean), in either format, become literals of their targets unless a node pack
provides them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from nodeflow.errors import UnknownNodeType, WorkflowFormatError
from nodeflow.spec import CHOICE, FLOAT, INT, STRING
from nodeflow.engine.graph import active_links
from nodeflow.engine.workflow import Link, NodeInstance, Workflow, is_numeric_id, link_order, node_id_order
from nodeflow.formats.auto_layout import default_positions
from nodeflow.formats.comfy_subgraphs import flatten_subgraphs
from nodeflow.formats.reroute_layout import routes

log = logging.getLogger(__name__)

CONTROL_AFTER_GENERATE = ("fixed", "increment", "decrement", "randomize")
NOTE_NODES = {"Note", "MarkdownNote"}
VIRTUAL_NODES = NOTE_NODES | {"PrimitiveNode", "Reroute"}
CONSTANT_NODES = {"PrimitiveInt", "PrimitiveFloat", "PrimitiveString", "PrimitiveStringMultiline",
                  "PrimitiveBoolean"}
#: ComfyUI's "_gpu" samplers are its SDE samplers with the Brownian noise drawn on the GPU; ours
#: draw it from their own seeded tree wherever they run, so these names are the same samplers.
SAMPLER_ALIASES = {"dpmpp_sde_gpu": "dpmpp_sde", "dpmpp_2m_sde_gpu": "dpmpp_2m_sde",
                   "dpmpp_2m_sde_heun_gpu": "dpmpp_2m_sde_heun", "dpmpp_3m_sde_gpu": "dpmpp_3m_sde"}
MODES = {0: "normal", 2: "muted", 4: "bypassed"}  # LiteGraph: 2 = NEVER; ComfyUI: 4 = bypass


# ----- API format ---------------------------------------------------------------------------

def read_comfy_api(data: Any, registry: Any, source: str) -> Workflow:
    """``from_comfy_api`` for data from a file: a malformed one is a ``WorkflowFormatError``."""
    return _malformed_is_format_error(from_comfy_api, data, registry, f"{source}: ComfyUI API workflow")


def read_comfy_ui(data: Any, registry: Any, source: str) -> Workflow:
    """``from_comfy_ui`` for data from a file: a malformed one is a ``WorkflowFormatError``."""
    return _malformed_is_format_error(from_comfy_ui, data, registry, f"{source}: ComfyUI workflow")


def _malformed_is_format_error(parse: Any, data: Any, registry: Any, what: str) -> Workflow:
    try:
        return parse(data, registry)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as error:
        log.debug("%s could not be read", what, exc_info=True)
        raise WorkflowFormatError(f"{what} is malformed ({type(error).__name__}: {error})") from None


#: ComfyUI frontend buttons that older exports wrote among a node's API inputs (LoadImage's
#: ``"choose file to upload": "image"``); ComfyUI's server ignores them, and so does the import.
UPLOAD_WIDGETS = frozenset({"choose file to upload", "upload"})


def from_comfy_api(data: dict, registry: Any = None) -> Workflow:
    """Read a ComfyUI API-format workflow; node ids are kept.

    Also accepts the body of a ``/prompt`` request (``{"prompt": {...}, "client_id": ...}``).
    With a registry, node type versions are filled in and a ``_meta`` title equal to the type's
    display name is dropped. Unknown node types and links to missing nodes are kept for
    validation to report, with every other problem.
    """
    if isinstance(data, dict) and isinstance(data.get("prompt"), dict) and "class_type" not in data["prompt"]:
        data = data["prompt"]
    if not isinstance(data, dict):
        raise WorkflowFormatError("ComfyUI API workflow: expected an object of nodes by id")
    nodes: dict[str, NodeInstance] = {}
    links: list[Link] = []
    constants = _api_constants(data, registry)
    for raw_id, entry in data.items():
        node_id = str(raw_id)
        if not isinstance(entry, dict) or not isinstance(entry.get("class_type"), str):
            raise WorkflowFormatError(f"ComfyUI API workflow: node {node_id} has no class_type")
        if node_id in constants:
            continue
        spec = _spec(registry, entry["class_type"], node_id, unknown_ok=True)
        inputs = entry.get("inputs") or {}
        if not isinstance(inputs, dict):
            raise WorkflowFormatError(f"ComfyUI API workflow: node {node_id}: 'inputs' must be an object")
        literals = {}
        for name, value in inputs.items():
            if name in UPLOAD_WIDGETS and spec is not None and spec.input(name) is None:
                continue  # the frontend's upload button, written as an input by older exports
            if _is_api_link(value) and str(value[0]) in constants:
                literals[name] = _normalise(spec, name, constants[str(value[0])])
            elif _is_api_link(value):
                links.append(Link(str(value[0]), int(value[1]), node_id, name))
            else:
                literals[name] = _normalise(spec, name, value)
        title = _title(node_id, (entry.get("_meta") or {}).get("title"))
        if spec is not None and title == spec.display:
            title = None
        nodes[node_id] = NodeInstance(node_id, entry["class_type"], literals,
                                      version=spec.version if spec else 1, title=title)
    # Dangling links and unknown node types stay: validation reports them with every other problem.
    return Workflow(nodes, sorted(links, key=link_order))


def _api_constants(data: dict, registry: Any) -> dict[str, Any]:
    """Values of ComfyUI's constant nodes that no installed pack provides, by node id."""
    if registry is None:
        return {}
    constants = {}
    for node_id, entry in data.items():
        node_type = entry.get("class_type") if isinstance(entry, dict) else None
        value = (entry.get("inputs") or {}).get("value") if node_type in CONSTANT_NODES else None
        if node_type not in registry and value is not None and not _is_api_link(value):
            constants[str(node_id)] = value
    return constants


def _is_api_link(value: Any) -> bool:
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int))
            and isinstance(value[1], int) and not isinstance(value[1], bool))


def to_comfy_api(workflow: Workflow, registry: Any = None) -> dict:
    """Our workflow as ComfyUI API JSON.

    Muted nodes are left out and bypassed ones routed through (with a registry; see
    ``nodeflow.engine.graph.active_links``). With a registry, required widget inputs the workflow leaves
    at their default get it written out (ComfyUI wants every required input) and every node gets a
    ``_meta`` title (its own, else the type's display name), as ComfyUI writes them.
    """
    if registry is not None:
        links = active_links(workflow, registry)
    else:  # without node specs bypassed nodes cannot be routed through: their links are dropped
        links = [l for l in workflow.links if workflow.nodes[l.src].mode == "normal"]
    links_into: dict[str, dict[str, Link]] = {}
    for link in links:
        links_into.setdefault(link.dst, {})[link.dst_input] = link
    data: dict[str, Any] = {}
    for node_id, instance in workflow.nodes.items():
        if instance.mode != "normal":
            continue
        spec = registry.specs.get(instance.type) if registry is not None else None
        inputs: dict[str, Any] = {}
        linked = links_into.get(node_id, {})
        for input_spec in spec.inputs if spec is not None else ():
            name = input_spec.name
            if name in linked or name in instance.inputs:
                continue
            if input_spec.is_widget and not input_spec.optional and input_spec.default is not None:
                inputs[name] = input_spec.default
        inputs.update(instance.inputs)
        for name, link in linked.items():
            inputs[name] = [link.src, link.src_output]
        entry: dict[str, Any] = {"inputs": _in_declared_order(inputs, spec), "class_type": instance.type}
        title = instance.title or (spec.display if spec is not None else None)
        if title:
            entry["_meta"] = {"title": title}
        data[node_id] = entry
    return data


def _in_declared_order(inputs: dict[str, Any], spec: Any) -> dict[str, Any]:
    if spec is None:
        return inputs
    order = {s.name: i for i, s in enumerate(spec.inputs)}
    return dict(sorted(inputs.items(), key=lambda item: order.get(item[0], len(order))))


# ----- UI format ----------------------------------------------------------------------------

@dataclass(frozen=True)
class _UILink:
    id: int
    src: str
    src_slot: int
    dst: str
    dst_slot: int


def from_comfy_ui(data: dict, registry: Any) -> Workflow:
    """Read a ComfyUI UI-format (LiteGraph) workflow; needs the registry to name widget values."""
    if registry is None:
        raise WorkflowFormatError("reading a ComfyUI UI workflow needs the node registry")
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
        raise WorkflowFormatError("ComfyUI UI workflow: expected an object with a 'nodes' list")
    data = flatten_subgraphs(data, registry)  # subgraphs and group nodes become their inner nodes
    raw_nodes: dict[str, dict] = {}
    for raw in data["nodes"]:
        if isinstance(raw, dict) and "id" in raw:
            if str(raw["id"]) in raw_nodes:
                raise WorkflowFormatError(f"ComfyUI UI workflow: two nodes have the id {raw['id']!r}")
            raw_nodes[str(raw["id"])] = raw
    ui_links = {link.id: link for link in map(_parse_ui_link, filter(None, data.get("links") or []))}
    nodes: dict[str, NodeInstance] = {}
    ui: dict[str, Any] = {"nodes": {}}
    for node_id, raw in raw_nodes.items():
        node_type = raw.get("type")
        if _is_virtual(node_type, registry):
            continue
        if not isinstance(node_type, str):
            raise WorkflowFormatError(f"ComfyUI UI workflow: node {node_id} has no type")
        spec = _spec(registry, node_type, node_id)
        values, seed_modes = _widget_values(raw, spec)
        mode = raw.get("mode", 0)
        if mode not in MODES:
            log.debug("node %s: LiteGraph mode %r read as normal", node_id, mode)
        title = _title(node_id, raw.get("title"))
        title = title if title != spec.display else None
        nodes[node_id] = NodeInstance(node_id, node_type, values, version=spec.version,
                                      mode=MODES.get(mode, "normal"), title=title or None)
        if _layout(raw):
            ui["nodes"][node_id] = _layout(raw)
        if seed_modes:
            ui.setdefault("seed_control", {})[node_id] = seed_modes
    links = _resolve_links(raw_nodes, ui_links, nodes, registry, ui)
    reroutes = {node_id: {"pos": _layout(raw).get("pos", [0.0, 0.0])}
                for node_id, raw in raw_nodes.items() if raw.get("type") == "Reroute"}
    if reroutes:
        ui["reroutes"] = reroutes
    if ui.get("routes"):
        ui["routes"].sort(key=lambda route: link_order(Link(*route["link"])))
    if data.get("groups"):
        ui["groups"] = data["groups"]
    return Workflow(nodes, sorted(links, key=link_order), ui)


def _title(node_id: str, title: Any) -> str | None:
    """A node's title, which must be text (our format reads no other: what runs must save and
    read back)."""
    if title is not None and not isinstance(title, str):
        raise WorkflowFormatError(f"ComfyUI workflow: node {node_id} has a title that is not text ({title!r:.40})")
    return title


def _is_virtual(node_type: Any, registry: Any) -> bool:
    return node_type in VIRTUAL_NODES or (node_type in CONSTANT_NODES and node_type not in registry)


def _parse_ui_link(item: Any) -> _UILink:
    """A LiteGraph link, as a list (schema 0.4) or an object (schema 1)."""
    try:
        if isinstance(item, dict):
            return _UILink(int(item["id"]), str(item["origin_id"]), int(item["origin_slot"]),
                           str(item["target_id"]), int(item["target_slot"]))
        link_id, src, src_slot, dst, dst_slot, *_ = item
        return _UILink(int(link_id), str(src), int(src_slot), str(dst), int(dst_slot))
    except (KeyError, TypeError, ValueError, OverflowError):  # OverflowError: int(Infinity)
        raise WorkflowFormatError(f"ComfyUI UI workflow: malformed link {item!r}") from None


def _resolve_links(raw_nodes: dict, ui_links: dict[int, _UILink], nodes: dict[str, NodeInstance],
                   registry: Any, ui: dict) -> list[Link]:
    """Links between real nodes: Reroutes followed, PrimitiveNode values turned into literals."""
    links = []
    for ui_link in sorted(ui_links.values(), key=lambda link: link.id):
        if ui_link.dst not in nodes:
            continue  # into a Reroute or a note: reached from the real target instead
        name, is_widget = _input_name(raw_nodes[ui_link.dst], ui_link.dst_slot,
                                      registry.get(nodes[ui_link.dst].type), ui_link)
        source, via = _follow_reroutes(ui_link, raw_nodes, ui_links)
        if source is None:
            continue
        src_raw = raw_nodes[source.src]
        if src_raw.get("type") == "PrimitiveNode" or (src_raw.get("type") in CONSTANT_NODES
                                                       and source.src not in nodes):
            _apply_primitive(src_raw, nodes[ui_link.dst], name, registry.get(nodes[ui_link.dst].type), ui)
            continue
        if source.src not in nodes:
            raise WorkflowFormatError(f"ComfyUI UI workflow: link {ui_link.id} into node {ui_link.dst} "
                                      f"comes from node {source.src} ({src_raw.get('type')}), "
                                      "which has no outputs here")
        links.append(Link(source.src, source.src_slot, ui_link.dst, name))
        if via:  # drawn through Reroute dots: layout only
            ui.setdefault("routes", []).append({"link": [source.src, source.src_slot, ui_link.dst, name], "via": via})
        nodes[ui_link.dst].inputs.pop(name, None)
        if is_widget:
            pins = ui.setdefault("pins", {}).setdefault(ui_link.dst, [])
            pins.append(name)
    return links


def _input_name(raw: dict, slot: int, spec: Any, ui_link: _UILink) -> tuple[str, bool]:
    """The input name at ``slot`` of a node, and whether it is a widget shown as a socket."""
    sockets = raw.get("inputs") or []
    if slot < len(sockets) and isinstance(sockets[slot], dict):
        socket = sockets[slot]
        widget = socket.get("widget") or {}
        name = widget.get("name") or socket.get("name")
        if name:
            return str(name), bool(widget)
    linked_inputs = [s.name for s in spec.inputs if not s.is_widget]  # minimal files: no "inputs"
    if slot < len(linked_inputs):
        return linked_inputs[slot], False
    raise WorkflowFormatError(f"ComfyUI UI workflow: link {ui_link.id} goes into slot {slot} of node "
                              f"{ui_link.dst} ({spec.id}), which has no such input")


def _follow_reroutes(link: _UILink, raw_nodes: dict,
                     ui_links: dict[int, _UILink]) -> tuple[_UILink | None, list[str]]:
    """The link's real source (through Reroute nodes; None for a Reroute fed by nothing) and the
    Reroutes it passes, source side first."""
    seen: list[str] = []
    while True:
        src = raw_nodes.get(link.src)
        if src is None:
            raise WorkflowFormatError(f"ComfyUI UI workflow: link {link.id} comes from a missing node {link.src}")
        if src.get("type") != "Reroute":
            return link, seen[::-1]
        if link.src in seen:
            raise WorkflowFormatError(f"ComfyUI UI workflow: Reroute nodes in a loop at node {link.src}")
        seen.append(link.src)
        upstream = next((l for l in ui_links.values() if l.dst == link.src), None)
        if upstream is None:
            return None, []
        link = upstream


def _apply_primitive(primitive: dict, target: NodeInstance, name: str, spec: Any, ui: dict) -> None:
    """A PrimitiveNode's value becomes a literal of its target (its seed mode travels along)."""
    values = primitive.get("widgets_values") or []
    if not values:
        return
    target.inputs[name] = _normalise(spec, name, values[0])
    if len(values) > 1 and values[1] in CONTROL_AFTER_GENERATE:
        ui.setdefault("seed_control", {}).setdefault(target.id, {})[name] = values[1]


def _widget_values(raw: dict, spec: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """Positional ``widgets_values`` named by the spec's widget order; also the seed modes."""
    values = raw.get("widgets_values")
    if isinstance(values, dict):  # some custom frontends store widgets by name
        return {k: _normalise(spec, k, v) for k, v in values.items()}, {}
    values = list(values or [])
    widgets = spec.widget_inputs
    result: dict[str, Any] = {}
    seed_modes: dict[str, str] = {}
    position = 0
    for index, widget in enumerate(widgets):
        if position >= len(values):
            break
        result[widget.name] = _normalise(spec, widget.name, values[position])
        position += 1
        following = widgets[index + 1] if index + 1 < len(widgets) else None
        if position < len(values) and _is_control_value(widget, values[position], following):
            seed_modes[widget.name] = values[position]
            position += 1
    if position < len(values):
        log.debug("node %s (%s): %d extra widget values ignored", raw.get("id"), spec.id, len(values) - position)
    return result, seed_modes


def _is_control_value(widget: Any, value: Any, following: Any) -> bool:
    """Whether ``value`` is the frontend's "control after generate" for ``widget``."""
    if value not in CONTROL_AFTER_GENERATE or widget.type != INT:
        return False
    return widget.seed or following is None or following.type not in (STRING, CHOICE)


def _layout(raw: dict) -> dict[str, Any]:
    """Position, size and look of a node, for our UI section."""
    layout: dict[str, Any] = {}
    for key in ("pos", "size"):
        value = raw.get(key)
        if isinstance(value, dict):  # old exports: {"0": x, "1": y}
            value = [value.get("0"), value.get("1")]
        if isinstance(value, list) and len(value) >= 2 and all(isinstance(v, (int, float)) for v in value[:2]):
            layout[key] = [float(value[0]), float(value[1])]
    for key in ("color", "bgcolor"):
        if raw.get(key):
            layout[key] = raw[key]
    if (raw.get("flags") or {}).get("collapsed"):
        layout["collapsed"] = True
    return layout


# ----- shared -------------------------------------------------------------------------------

def _spec(registry: Any, node_type: str, node_id: str, unknown_ok: bool = False) -> Any:
    """The node type's spec; None without a registry, or for an unknown type when ``unknown_ok``
    (the API format names inputs, so such a node can be kept for validation to report)."""
    if registry is None:
        return None
    if node_type.startswith(("workflow/", "workflow>")):
        raise WorkflowFormatError(f"ComfyUI workflow: node {node_id} is a group node ({node_type!r}); "
                                  "convert it back to nodes in ComfyUI first")
    if node_type not in registry:
        if unknown_ok:
            return None
        raise UnknownNodeType(node_type, node_id)
    return registry.get(node_type, node_id)


def _normalise(spec: Any, name: str, value: Any) -> Any:
    """Integral numbers for FLOAT widgets become floats (ComfyUI's UI writes ``8`` for 8.0);
    ComfyUI's "_gpu" sampler names become the samplers they are (SAMPLER_ALIASES)."""
    if name == "sampler_name" and value in SAMPLER_ALIASES:
        return SAMPLER_ALIASES[value]
    input_spec = spec.input(name) if spec is not None else None
    if input_spec is not None and input_spec.type == FLOAT and isinstance(value, int) \
            and not isinstance(value, bool):
        return float(value)
    return value



# ----- UI format out ------------------------------------------------------------------------

def to_comfy_ui(workflow: Workflow, registry: Any) -> dict:
    """Our workflow as a ComfyUI UI-format (LiteGraph, schema 0.4) graph, layout included.

    Node ids must be integers there: numeric ids are kept, others get the next free numbers.
    Widget values are positional, with the "control after generate" value (our
    ``ui["seed_control"]``, else "randomize") after each seed; linked or pinned widgets are
    also listed as inputs with a ``widget`` field. Nodes without a position are laid out in
    columns by depth. Reroute dots (``ui["reroutes"]``) become Reroute nodes, and the links drawn
    through them (``ui["routes"]``) pass through those.
    """
    if registry is None:
        raise WorkflowFormatError("writing a ComfyUI UI workflow needs the node registry")
    ids = _integer_ids(workflow)
    specs = {node_id: registry.get(node.type, node_id) for node_id, node in workflow.nodes.items()}
    ordered = sorted(workflow.links, key=link_order)
    link_ids = {link: index for index, link in enumerate(ordered, start=1)}
    reroute_ids = _reroute_ids(workflow, ids)
    wires = _wires(workflow, ordered, link_ids, reroute_ids)
    out_links: dict[tuple, list[int]] = {}
    for wire_id, (start, _, _) in sorted(wires.items()):
        out_links.setdefault(start, []).append(wire_id)
    layout = workflow.ui.get("nodes", {})
    missing = default_positions(workflow)
    nodes, sockets_of = [], {}
    for order, (node_id, node) in enumerate(sorted(workflow.nodes.items(), key=lambda item: node_id_order(item[0]))):
        spec, pinned = specs[node_id], set(workflow.ui.get("pins", {}).get(node_id, []))
        into = {link.dst_input: link for link in workflow.links if link.dst == node_id}
        shown = [s for s in spec.inputs if not s.is_widget or s.name in into or s.name in pinned]
        sockets_of[node_id] = [s.name for s in shown]
        inputs = [_socket(s, link_ids.get(into.get(s.name))) for s in shown]
        outputs = [{"name": out.label, "type": out.type, "slot_index": index,
                    "links": out_links.get(("node", node_id, index), [])}
                   for index, out in enumerate(spec.outputs)]
        place = layout.get(node_id, {})
        entry = {"id": ids[node_id], "type": node.type, "pos": place.get("pos") or missing[node_id],
                 "size": place.get("size") or [315, 60 + 26 * len(spec.inputs)],
                 "flags": {"collapsed": True} if place.get("collapsed") else {}, "order": order,
                 "mode": {v: k for k, v in MODES.items()}[node.mode], "inputs": inputs, "outputs": outputs,
                 "properties": {"Node name for S&R": node.type},
                 "widgets_values": _positional_widgets(workflow, node_id, spec)}
        entry.update({key: place[key] for key in ("color", "bgcolor") if place.get(key)})
        if node.title:
            entry["title"] = node.title
        nodes.append(entry)
    def end(point: tuple) -> tuple[int, int]:  # a wire's end: (LiteGraph node id, slot)
        if point[0] == "reroute":
            return reroute_ids[point[1]], 0
        _, node_id, slot = point
        return ids[node_id], slot if isinstance(slot, int) else sockets_of[node_id].index(slot)

    def link_type(l: Link) -> str:
        return specs[l.src].outputs[l.src_output].type if l.src_output < len(specs[l.src].outputs) else "*"

    links = [[wire_id, *end(start), *end(finish), link_type(l)] for wire_id, (start, finish, l) in sorted(wires.items())]
    nodes.extend(_reroute_nodes(workflow, reroute_ids, wires, link_type, len(nodes)))
    return {"last_node_id": max([*ids.values(), *reroute_ids.values()], default=0), "last_link_id": len(links),
            "nodes": nodes,
            "links": links, "groups": list(workflow.ui.get("groups", [])), "config": {},
            "extra": {"ds": {"scale": 1, "offset": [0, 0]}}, "version": 0.4}


def _socket(input_spec: Any, link_id: int | None) -> dict[str, Any]:
    socket = {"name": input_spec.name, "type": "COMBO" if input_spec.type == CHOICE else input_spec.type,
              "link": link_id}
    if input_spec.is_widget:
        socket["widget"] = {"name": input_spec.name}
    return socket


def _integer_ids(workflow: Workflow) -> dict[str, int]:
    ids = {node_id: int(node_id) for node_id in workflow.nodes if is_numeric_id(node_id)}
    next_id = max(ids.values(), default=0) + 1
    for node_id in sorted(set(workflow.nodes) - set(ids)):
        ids[node_id], next_id = next_id, next_id + 1
    return ids


def _positional_widgets(workflow: Workflow, node_id: str, spec: Any) -> list[Any]:
    values = []
    for widget in spec.widget_inputs:
        values.append(workflow.nodes[node_id].inputs.get(widget.name, widget.default))
        if widget.seed:
            values.append(workflow.ui.get("seed_control", {}).get(node_id, {}).get(widget.name, "randomize"))
    return values


def _reroute_ids(workflow: Workflow, ids: dict[str, int]) -> dict[str, int]:
    """LiteGraph ids for the reroute dots: their own where numeric and free, else the next free."""
    taken = set(ids.values())
    chosen: dict[str, int] = {}
    for reroute_id in sorted(workflow.ui.get("reroutes") or {}, key=node_id_order):
        if is_numeric_id(reroute_id) and int(reroute_id) not in taken:
            chosen[reroute_id] = int(reroute_id)
            taken.add(int(reroute_id))
    for reroute_id in sorted(set(workflow.ui.get("reroutes") or {}) - set(chosen), key=node_id_order):
        chosen[reroute_id] = max(taken, default=0) + 1
        taken.add(chosen[reroute_id])
    return chosen


def _wires(workflow: Workflow, ordered: list[Link], link_ids: dict[Link, int],
           reroute_ids: dict[str, int]) -> dict[int, tuple[tuple, tuple, Link]]:
    """LiteGraph's links by id: (start, end, the workflow link they carry). A link drawn through
    reroutes is several wires (the last keeps the link's own id; those before it are shared by
    the links fanning out from the same reroute); ends are ("node", id, output index or input
    name) or ("reroute", id)."""
    via_of = routes(workflow)  # reroute_ids holds every reroute the workflow has
    wires = {}
    shared: dict[tuple, int] = {}
    for link in ordered:
        points = [("node", link.src, link.src_output), *(("reroute", r) for r in via_of.get(link, [])),
                  ("node", link.dst, link.dst_input)]
        for start, finish in zip(points[:-2], points[1:-1]):
            if (start, finish) not in shared:
                shared[start, finish] = len(ordered) + len(shared) + 1
                wires[shared[start, finish]] = (start, finish, link)
        wires[link_ids[link]] = (points[-2], points[-1], link)
    return wires


def _reroute_nodes(workflow: Workflow, reroute_ids: dict[str, int], wires: dict, link_type: Any,
                   order: int) -> list[dict[str, Any]]:
    """The reroute dots as LiteGraph Reroute nodes, wired as ``wires`` says."""
    into_dot, out_of_dot = {}, {}
    for wire_id, (start, finish, _) in sorted(wires.items()):
        if finish[0] == "reroute":
            into_dot.setdefault(finish[1], wire_id)
        if start[0] == "reroute":
            out_of_dot.setdefault(start[1], []).append(wire_id)
    nodes = []
    for offset, (reroute_id, number) in enumerate(sorted(reroute_ids.items(), key=lambda item: item[1])):
        into, out = into_dot.get(reroute_id), out_of_dot.get(reroute_id, [])
        kind = link_type(wires[into][2]) if into is not None else "*"
        nodes.append({"id": number, "type": "Reroute",
                      "pos": list(workflow.ui["reroutes"][reroute_id].get("pos") or [0.0, 0.0]), "size": [75, 26],
                      "flags": {}, "order": order + offset, "mode": 0,
                      "inputs": [{"name": "", "type": "*", "link": into}],
                      "outputs": [{"name": "", "type": kind, "links": out, "slot_index": 0}],
                      "properties": {"showOutputText": False, "horizontal": False}})
    return nodes
