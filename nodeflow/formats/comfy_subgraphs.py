"""ComfyUI subgraphs and legacy group nodes, flattened into one graph before a UI workflow is read.

Subgraphs (ComfyUI's frontend since 1.24; current templates use them): ``definitions.subgraphs``
lists definitions, each with an ``id`` (a UUID), a ``name``, its ``nodes``, its ``links`` (objects
``{id, origin_id, origin_slot, target_id, target_slot, type}``), its ``inputs`` and ``outputs``
slots, and the virtual ``inputNode`` (id -10) and ``outputNode`` (id -20) that inner links start
from (input slot ``origin_slot``) or end at (output slot ``target_slot``). A node whose ``type`` is
a definition's id is an instance of it; definitions may hold instances of other definitions.
Legacy group nodes (``extra.groupNodes[NAME]``, nodes of type ``workflow>NAME``, in older files
``workflow/NAME``) hold their inner ``nodes`` by index, ``links`` as
``[from_index, from_slot, to_index, to_slot, ...]`` and the outputs used outside as ``external``.

``flatten_subgraphs`` replaces each instance by copies of its inner nodes, as ComfyUI's frontend
does before it queues a workflow:

- inner nodes get the ids ComfyUI gives them when it runs them: ``"<instance id>:<inner id>"``
  (``"12:5"``, nested ``"12:5:3"``; a group node's inner nodes are numbered by index);
- a link into an instance's input slot feeds every inner target of that subgraph input (the
  instance's input is found by its name among the definition's inputs, as the frontend does; its
  ``inputs`` list need not hold every subgraph input, nor in order); a link out of an instance's
  output comes from the inner source of that subgraph output; an output with no inner source, or
  an input slot the definition does not know, connects nothing (ComfyUI skips those too);
- an unlinked input with a widget on the instance (a "promoted" widget) gives the widget's value
  to its inner targets. The instance's ``widgets_values`` hold one value per subgraph input that
  feeds a widget inside, in input order (a list of another length is not used); files saved by
  frontends that promote through ``properties.proxyWidgets`` leave that list empty and keep the
  values on the inner nodes, which then stand. The value reaches its targets through a virtual
  PrimitiveNode (``"<instance id>:in<slot>"``), which the import turns into a literal of each
  target like any PrimitiveNode;
- a group node's ``widgets_values`` are its inner nodes' widgets in order (each seed followed by
  its "control after generate" value, widgets converted to inputs last); with the node registry
  they are written back into the inner nodes, whose own values are only the group's defaults;
- a muted or bypassed instance mutes or bypasses all its inner nodes (ComfyUI runs none of them);
- inner positions move so that the inner nodes' top-left corner is at the instance's position, a
  group titled after the instance frames them, and the definition's own groups move along.

Cycles (a subgraph holding itself), missing definitions and malformed ones are a
``WorkflowFormatError`` naming the subgraph; so is a workflow that would flatten to more than
``MAX_NODES`` nodes. The caller's data is not changed; the result is a UI workflow without
subgraphs or group nodes, read as any other.
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

from nodeflow.errors import WorkflowFormatError

log = logging.getLogger(__name__)

INPUT_NODE = "-10"   # a subgraph's inputNode, as a node id
OUTPUT_NODE = "-20"  # its outputNode
GROUP_NODE_PREFIXES = ("workflow>", "workflow/")  # frontend >= 1.2.63, and before
NOTE_NODES = ("Note", "MarkdownNote")
SEED_NAMES = ("seed", "noise_seed")  # group nodes add a "control after generate" widget after these
MAX_DEPTH = 32         # subgraphs nested deeper than this are refused
MAX_NODES = 50_000     # nor may flattening make more nodes than this (instances can multiply)
FRAME_PADDING = (10.0, 40.0)  # room around the inner nodes in the group that frames them
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
WHAT = "ComfyUI UI workflow"


def flatten_subgraphs(data: Any, registry: Any = None) -> Any:
    """``data`` (UI-format JSON) with every subgraph instance and group node replaced by its inner
    nodes; ``data`` itself when it has none. The registry, when given, maps a group node's widget
    values onto its inner nodes (their order comes from the node types)."""
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
        return data
    definitions = _subgraph_definitions(data)
    group_definitions = _group_definitions(data)
    if not any(_instance_kind(raw, definitions) for raw in data["nodes"]):
        return _without_definitions(data) if definitions or group_definitions else data
    return _Flattener(data, definitions, group_definitions, registry).run()


def _instance_kind(raw: Any, definitions: dict[str, dict]) -> str | None:
    """"subgraph", "group" or "missing" (a subgraph id with no definition) for an instance node."""
    node_type = raw.get("type") if isinstance(raw, dict) else None
    if not isinstance(node_type, str):
        return None
    if node_type in definitions:
        return "subgraph"
    if node_type.startswith(GROUP_NODE_PREFIXES):
        return "group"
    return "missing" if _UUID.fullmatch(node_type) else None


def _subgraph_definitions(data: dict) -> dict[str, dict]:
    """Subgraph definitions by id, from ``definitions.subgraphs`` (and any nested there)."""
    found: dict[str, dict] = {}
    pending = [data.get("definitions")]
    while pending:
        section = pending.pop()
        if not isinstance(section, dict) or section.get("subgraphs") is None:
            continue
        subgraphs = section["subgraphs"]
        if not isinstance(subgraphs, list):
            raise WorkflowFormatError(f"{WHAT}: 'definitions.subgraphs' must be a list")
        for definition in subgraphs:
            if not isinstance(definition, dict) or not isinstance(definition.get("id"), str):
                raise WorkflowFormatError(f"{WHAT}: a subgraph definition has no id ({str(definition):.60})")
            for key in ("nodes", "links", "inputs", "outputs", "groups"):
                if definition.get(key) is not None and not isinstance(definition[key], list):
                    raise WorkflowFormatError(f"{WHAT}: subgraph {_name(definition)}: {key!r} must be a list")
            found.setdefault(definition["id"], definition)
            pending.append(definition.get("definitions"))
    return found


def _group_definitions(data: dict) -> dict[str, Any]:
    extra = data.get("extra")
    groups = extra.get("groupNodes") if isinstance(extra, dict) else None
    return groups if isinstance(groups, dict) else {}


def _without_definitions(data: dict) -> dict:
    """A copy of ``data`` without its subgraph and group node definitions."""
    data = dict(data)
    if isinstance(data.get("definitions"), dict):
        definitions = {k: v for k, v in data["definitions"].items() if k != "subgraphs"}
        if definitions:
            data["definitions"] = definitions
        else:
            del data["definitions"]
    if isinstance(data.get("extra"), dict) and "groupNodes" in data["extra"]:
        data["extra"] = {k: v for k, v in data["extra"].items() if k != "groupNodes"}
    return data


def _name(definition: dict) -> str:
    name = definition.get("name")
    return f"{name!r} ({definition.get('id')})" if isinstance(name, str) and name else str(definition.get("id"))


class _Flattener:
    """The workflow's nodes and links while instances are expanded (depth first, in node order)."""

    def __init__(self, data: dict, definitions: dict[str, dict], group_definitions: dict[str, Any],
                 registry: Any) -> None:
        self.data = _without_definitions(data)
        self.definitions = definitions
        self.group_definitions = group_definitions
        self.registry = registry
        self.nodes: dict[str, dict] = {}
        for raw in data["nodes"]:
            if isinstance(raw, dict) and "id" in raw:
                self._add_node(copy.deepcopy(raw))
        self.links: dict[int, list] = {}
        self.links_of: dict[str, set[int]] = {}  # node id -> ids of the links into and out of it
        for item in data.get("links") or []:
            if item is not None:
                self._store_link(_parse_link(item, WHAT))  # of two with one id the last counts, as on import
        last = data.get("last_link_id")
        last = last if isinstance(last, int) and not isinstance(last, bool) else 0
        self.next_link_id = max([last, *self.links]) + 1
        self.groups: list = list(data["groups"]) if isinstance(data.get("groups"), list) else []

    # ----- the walk -------------------------------------------------------------------------

    def run(self) -> dict:
        order: list[str] = []
        for node_id in list(self.nodes):
            self._visit(node_id, (), order)
        self.data["nodes"] = [self.nodes[node_id] for node_id in order]
        self.data["links"] = [self.links[link_id] for link_id in sorted(self.links)]
        self.data["last_link_id"] = max([0, *self.links])
        if self.groups or "groups" in self.data:
            self.data["groups"] = self.groups
        return self.data

    def _visit(self, node_id: str, chain: tuple[str, ...], order: list[str]) -> None:
        """Expand ``node_id`` if it is an instance (``chain``: the definitions it sits in)."""
        raw = self.nodes[node_id]
        kind = _instance_kind(raw, self.definitions)
        if kind is None:
            order.append(node_id)
            return
        if kind == "missing":
            raise WorkflowFormatError(f"{WHAT}: node {node_id}{_title(raw)} is an instance of subgraph "
                                      f"{raw['type']}, whose definition is missing (definitions.subgraphs)")
        key = raw["type"]
        if key in chain:
            names = [self._chain_name(k) for k in (*chain[chain.index(key):], key)]
            raise WorkflowFormatError(f"{WHAT}: subgraph {names[0]} contains itself ({' > '.join(names)})")
        if len(chain) >= MAX_DEPTH:
            raise WorkflowFormatError(f"{WHAT}: subgraph {self._chain_name(key)} is nested more than "
                                      f"{MAX_DEPTH} deep")
        inner = self._expand_subgraph(node_id) if kind == "subgraph" else self._expand_group(node_id)
        for inner_id in inner:
            self._visit(inner_id, (*chain, key), order)

    def _chain_name(self, key: str) -> str:
        if key in self.definitions:
            return _name(self.definitions[key])
        return repr(key)

    # ----- subgraphs ------------------------------------------------------------------------

    def _expand_subgraph(self, node_id: str) -> list[str]:
        host = self.nodes.pop(node_id)
        definition = self.definitions[host["type"]]
        name = _name(definition)
        inputs = [s if isinstance(s, dict) else {} for s in definition.get("inputs") or []]
        input_names = [s.get("name") for s in inputs]
        originals = {str(raw["id"]): raw for raw in definition.get("nodes") or []
                     if isinstance(raw, dict) and "id" in raw}
        inner_links = [_parse_link(item, f"{WHAT}: subgraph {name}")
                       for item in definition.get("links") or [] if item is not None]
        # a link its target's input does not hold is a leftover, which ComfyUI does not follow
        inner_links = [link for link in inner_links if str(link[3]) not in originals
                       or _socket_holds(originals[str(link[3])].get("inputs"), link)]
        inner = self._copy_inner_nodes(node_id, host, list(originals.items()), definition.get("groups"),
                                       host.get("title") or definition.get("name") or name)
        ids = {old: new for (old, _), new in zip(originals.items(), inner)}

        # Links into the instance: their sources, by subgraph input index.
        sources: dict[int, tuple[Any, int]] = {}
        host_sockets = host.get("inputs") if isinstance(host.get("inputs"), list) else []
        for link in self._take_links(node_id, into=True):
            if not _socket_holds(host_sockets, link):
                continue
            index = _subgraph_input(host_sockets, link[4], input_names)
            if index is None:
                log.warning("%s: link %s goes into slot %s of node %s, which subgraph %s has no input for; "
                            "it is dropped", WHAT, link[0], link[4], node_id, name)
                continue
            sources[index] = (link[1], link[2])
        values = _promoted_values(host, inputs, inner_links, originals, name)
        primitives: list[str] = []

        def source(index: int) -> tuple[Any, int] | None:
            if index in sources:
                return sources[index]
            if index not in values:
                return None
            primitive = f"{node_id}:in{index}"
            slot = inputs[index] if index < len(inputs) else {}
            self._add_node({"id": primitive, "type": "PrimitiveNode", "mode": 0, "pos": host.get("pos"),
                            "title": slot.get("label") or slot.get("name") or "value", "inputs": [],
                            "outputs": [{"name": "connect to widget input", "type": slot.get("type", "*"),
                                         "links": []}],
                            "properties": {"Run widget replace on values": False},
                            "widgets_values": [values[index]]})
            primitives.append(primitive)
            sources[index] = (primitive, 0)
            return sources[index]

        def inner_id(old: str) -> str:
            return ids.get(old, f"{node_id}:{old}")  # a link to a missing node is reported on import

        outputs = [s if isinstance(s, dict) else {} for s in definition.get("outputs") or []]
        output_sources: dict[int, tuple[str, Any, int]] = {}
        for link in inner_links:
            link_id, origin, origin_slot, target, target_slot, link_type = link
            origin, target = str(origin), str(target)
            if target == OUTPUT_NODE:
                listed = outputs[target_slot].get("linkIds") if 0 <= target_slot < len(outputs) else None
                if isinstance(listed, list) and listed and link_id != listed[0]:
                    continue  # the output's first link counts, as in ComfyUI
                output_sources.setdefault(target_slot, ("input", None, origin_slot) if origin == INPUT_NODE
                                          else ("node", inner_id(origin), origin_slot))
                continue
            if origin == INPUT_NODE:
                fed = source(origin_slot)
                if fed is None:
                    continue
                origin, origin_slot = fed
            else:
                origin = inner_id(origin)
            self._add_link(origin, origin_slot, inner_id(target), target_slot, link_type)
        for link in self._take_links(node_id, into=False):
            found = output_sources.get(link[2])
            if found is None:
                continue
            fed = source(found[2]) if found[0] == "input" else (found[1], found[2])
            if fed is not None:
                self._add_link(fed[0], fed[1], link[3], link[4], link[5], link_id=link[0])
        return primitives + inner

    # ----- legacy group nodes ---------------------------------------------------------------

    def _expand_group(self, node_id: str) -> list[str]:
        host = self.nodes[node_id]
        group_name = host["type"][len("workflow") + 1:]
        definition = self.group_definitions.get(group_name)
        if not isinstance(definition, dict):
            raise WorkflowFormatError(f"{WHAT}: node {node_id} is a group node ({host['type']!r}) whose "
                                      "definition is missing from extra.groupNodes")
        what = f"{WHAT}: group node {group_name!r}"
        nodes = definition.get("nodes") or []
        links = definition.get("links") or []
        if not isinstance(nodes, list) or not isinstance(links, list):
            raise WorkflowFormatError(f"{what}: 'nodes' and 'links' must be lists")
        nodes = [raw if isinstance(raw, dict) else {} for raw in nodes]
        inner_links = []
        for item in links:
            try:
                origin, origin_slot, target, target_slot = (int(v) if v is not None else None for v in item[:4])
            except (TypeError, ValueError, OverflowError):
                raise WorkflowFormatError(f"{what}: malformed link {item!r:.80}") from None
            if origin is not None and target is not None:
                inner_links.append((origin, origin_slot, target, target_slot,
                                    item[5] if len(item) > 5 and isinstance(item[5], str) else "*"))
        layout = _GroupLayout(nodes, inner_links, definition.get("external"), definition.get("config"))
        self.nodes.pop(node_id)
        indexed = [(str(index), {**raw, "id": index}) for index, raw in enumerate(nodes)]
        inner = self._copy_inner_nodes(node_id, host, indexed, None, host.get("title") or group_name)
        self._apply_group_widgets(host, nodes, inner, layout, group_name)
        for origin, origin_slot, target, target_slot, link_type in inner_links:
            if 0 <= origin < len(inner) and 0 <= target < len(inner):
                self._add_link(inner[origin], origin_slot, inner[target], target_slot, link_type)
        for link in self._take_links(node_id, into=True):
            if not 0 <= link[4] < len(layout.input_slots):
                log.warning("%s: link %s goes into slot %s of group node %s, which has no such input; "
                            "it is dropped", WHAT, link[0], link[4], node_id)
                continue
            index, slot = layout.input_slots[link[4]]
            self._add_link(link[1], link[2], inner[index], slot, link[5], link_id=link[0])
        for link in self._take_links(node_id, into=False):
            if not 0 <= link[2] < len(layout.output_slots):
                log.warning("%s: link %s comes from output %s of group node %s, which has no such output; "
                            "it is dropped", WHAT, link[0], link[2], node_id)
                continue
            index, slot = layout.output_slots[link[2]]
            self._add_link(inner[index], slot, link[3], link[4], link[5], link_id=link[0])
        return inner

    def _apply_group_widgets(self, host: dict, nodes: list[dict], inner: list[str], layout: "_GroupLayout",
                             group_name: str) -> None:
        """The group node's widget values written into its inner nodes (positionally, by node type)."""
        values = host.get("widgets_values")
        if not isinstance(values, list) or not values or self.registry is None:
            return
        entries = layout.widgets(self.registry)
        if entries is None or len(entries) != len(values):
            log.warning("%s: the widget values of group node %r could not be matched to its inner nodes; "
                        "their own values are kept", WHAT, group_name)
            return
        by_node: dict[int, dict[str, list]] = {}
        for (index, name, is_control), value in zip(entries, values):
            by_node.setdefault(index, {}).setdefault(name, [None, None])[1 if is_control else 0] = value
        for index, named in by_node.items():
            spec = self.registry.specs[nodes[index]["type"]]
            positional: list[Any] = []
            for widget in spec.widget_inputs:
                value, control = named.get(widget.name, (widget.default, None))
                positional.append(value)
                if widget.seed:
                    positional.append(control if isinstance(control, str) else "fixed")
            self.nodes[inner[index]]["widgets_values"] = positional

    # ----- shared ---------------------------------------------------------------------------

    def _copy_inner_nodes(self, node_id: str, host: dict, originals: list[tuple[str, dict]], groups: Any,
                          title: str) -> list[str]:
        """Copies of a definition's nodes as ``"<node_id>:<inner id>"``, placed at the instance,
        with its mode when muted or bypassed; also the groups that frame them. Their ids."""
        mode = host.get("mode")
        copies = []
        for old, raw in originals:
            node = copy.deepcopy(raw)
            node["id"] = f"{node_id}:{old}"
            if mode in (2, 4):
                node["mode"] = mode
            for socket in node.get("inputs") if isinstance(node.get("inputs"), list) else ():
                if isinstance(socket, dict):
                    socket["link"] = None
            for socket in node.get("outputs") if isinstance(node.get("outputs"), list) else ():
                if isinstance(socket, dict):
                    socket["links"] = []
            copies.append(node)
        self._place(copies, host, groups, title)
        for node in copies:
            self._add_node(node)
        return [node["id"] for node in copies]

    def _place(self, copies: list[dict], host: dict, groups: Any, title: str) -> None:
        corners = [p for p in (_point(node.get("pos")) for node in copies) if p is not None]
        anchor = _point(host.get("pos"))
        if not corners or anchor is None:
            return
        dx = anchor[0] - min(x for x, _ in corners)
        dy = anchor[1] - min(y for _, y in corners)
        right, bottom = anchor
        for node in copies:
            pos = _point(node.get("pos"))
            if pos is None:
                continue
            node["pos"] = [pos[0] + dx, pos[1] + dy]
            size = _point(node.get("size")) or (0.0, 0.0)
            right, bottom = max(right, pos[0] + dx + size[0]), max(bottom, pos[1] + dy + size[1])
        for group in groups if isinstance(groups, list) else ():
            bounding = group.get("bounding") if isinstance(group, dict) else None
            if isinstance(bounding, list) and len(bounding) == 4 and all(_is_number(v) for v in bounding):
                self.groups.append({**group, "bounding": [bounding[0] + dx, bounding[1] + dy, *bounding[2:]]})
        pad_x, pad_y = FRAME_PADDING
        self.groups.append({"title": title if isinstance(title, str) else str(title),
                            "bounding": [anchor[0] - pad_x, anchor[1] - pad_y,
                                         right - anchor[0] + 2 * pad_x, bottom - anchor[1] + pad_y + pad_x],
                            "color": "#3f789e", "flags": {}})

    def _add_node(self, node: dict) -> None:
        node_id = str(node["id"])
        if node_id in self.nodes:
            raise WorkflowFormatError(f"{WHAT}: two nodes have the id {node['id']!r}")
        if len(self.nodes) >= MAX_NODES:
            raise WorkflowFormatError(f"{WHAT}: flattening its subgraphs would make more than {MAX_NODES} nodes")
        self.nodes[node_id] = node

    def _store_link(self, link: list) -> None:
        replaced = self.links.get(link[0])
        if replaced is not None:
            self.links_of[str(replaced[1])].discard(link[0])
            self.links_of[str(replaced[3])].discard(link[0])
        self.links[link[0]] = link
        self.links_of.setdefault(str(link[1]), set()).add(link[0])
        self.links_of.setdefault(str(link[3]), set()).add(link[0])

    def _add_link(self, origin: Any, origin_slot: int, target: Any, target_slot: int, link_type: Any,
                  link_id: int | None = None) -> None:
        if link_id is None:
            link_id, self.next_link_id = self.next_link_id, self.next_link_id + 1
        self._store_link([link_id, origin, origin_slot, target, target_slot, link_type])
        socket = _socket(self.nodes.get(str(origin)), "outputs", origin_slot)
        if socket is not None:
            socket["links"] = [*(socket.get("links") if isinstance(socket.get("links"), list) else ()), link_id]
        socket = _socket(self.nodes.get(str(target)), "inputs", target_slot)
        if socket is not None:
            socket["link"] = link_id

    def _take_links(self, node_id: str, into: bool) -> list[list]:
        """Remove and return the links into (or out of) ``node_id``, in id order."""
        taken = []
        for link_id in sorted(self.links_of.get(node_id, ())):
            link = self.links[link_id]
            if str(link[3 if into else 1]) != node_id:
                continue
            taken.append(self.links.pop(link_id))
            self.links_of[str(link[1])].discard(link_id)
            self.links_of[str(link[3])].discard(link_id)
            socket = _socket(self.nodes.get(str(link[1])), "outputs", link[2])
            if socket is not None and isinstance(socket.get("links"), list):
                socket["links"] = [i for i in socket["links"] if i != link_id]
            socket = _socket(self.nodes.get(str(link[3])), "inputs", link[4])
            if socket is not None and socket.get("link") == link_id:
                socket["link"] = None
        return taken


class _GroupLayout:
    """How a legacy group node's input and output slots and widgets map to its inner nodes: as
    ComfyUI's frontend builds the group node's type from the inner nodes, in their order."""

    def __init__(self, nodes: list[dict], links: list[tuple], external: Any, config: Any) -> None:
        self.nodes = nodes
        self.linked_into = {(target, slot) for _, _, target, slot, _ in links}
        self.linked_from: dict[int, set[int]] = {}
        for origin, slot, _, _, _ in links:
            self.linked_from.setdefault(origin, set()).add(slot)
        self.external = {(e[0], e[1]) for e in external or () if isinstance(e, list) and len(e) >= 2}
        self.config = config if isinstance(config, dict) else {}
        self.input_slots: list[tuple[int, int]] = []
        converted: list[tuple[int, int]] = []
        self.output_slots: list[tuple[int, int]] = []
        for index, raw in enumerate(nodes):
            if not self._has_definition(index, raw):
                continue
            for slot, socket in enumerate(_sockets(raw, "inputs")):
                if (index, slot) in self.linked_into:
                    continue
                if socket.get("widget"):
                    converted.append((index, slot))
                elif self._setting(index, "input", socket.get("name"), "visible") is not False:
                    self.input_slots.append((index, slot))
            for slot in range(len(_sockets(raw, "outputs")) or (1 if raw.get("type") == "PrimitiveNode" else 0)):
                linked = slot in self.linked_from.get(index, ()) and (index, slot) not in self.external
                visible = self._setting(index, "output", str(slot), "visible")
                if (not linked if visible is None else visible):
                    self.output_slots.append((index, slot))
        self.converted = converted
        self.input_slots += converted  # widgets converted to inputs come after all other inputs

    def _has_definition(self, index: int, raw: dict) -> bool:
        """Whether the frontend makes slots for the inner node (notes and inner reroutes get none)."""
        node_type = raw.get("type")
        if node_type in NOTE_NODES or not isinstance(node_type, str):
            return False
        if node_type == "PrimitiveNode":
            return index in self.linked_from
        if node_type == "Reroute":
            return not ((index, 0) in self.linked_into and index in self.linked_from
                        and (index, 0) not in self.external)
        return True

    def _setting(self, index: int, kind: str, name: Any, key: str) -> Any:
        entry = self.config.get(str(index))
        section = entry.get(kind) if isinstance(entry, dict) else None
        setting = section.get(name) if isinstance(section, dict) and isinstance(name, str) else None
        return setting.get(key) if isinstance(setting, dict) else None

    def widgets(self, registry: Any) -> list[tuple[int, str, bool]] | None:
        """(inner node index, widget name, is its "control after generate") for each value of the
        group node's ``widgets_values``; None when an inner node's widgets are not known."""
        entries: list[tuple[int, str, bool]] = []
        specs = {}
        for index, raw in enumerate(self.nodes):
            if not self._has_definition(index, raw) or raw.get("type") == "Reroute":
                continue
            spec = getattr(registry, "specs", {}).get(raw.get("type"))
            if spec is None:  # a PrimitiveNode inside, or a type nodeflow lacks
                return None
            specs[index] = spec
            converted = {s["widget"].get("name") for s in _sockets(raw, "inputs") if isinstance(s.get("widget"), dict)}
            for widget in spec.widget_inputs:
                if widget.name not in converted:
                    entries += _widget_entries(index, widget)
        for index, slot in self.converted:
            name = (_sockets(self.nodes[index], "inputs")[slot].get("widget") or {}).get("name")
            widget = specs[index].input(name) if index in specs else None
            if widget is None:
                return None
            entries += _widget_entries(index, widget)
        return entries


def _widget_entries(index: int, widget: Any) -> list[tuple[int, str, bool]]:
    entries = [(index, widget.name, False)]
    if widget.seed or widget.name in SEED_NAMES:
        entries.append((index, widget.name, True))
    return entries


# ----- helpers ----------------------------------------------------------------------------------

def _parse_link(item: Any, what: str) -> list:
    """A link as ``[id, origin, origin_slot, target, target_slot, type]``, from a list (schema
    0.4) or an object (schema 1 and subgraph definitions); node ids as they are."""
    try:
        if isinstance(item, dict):
            values = [item["id"], item["origin_id"], item["origin_slot"], item["target_id"], item["target_slot"],
                      item.get("type", "*")]
        else:
            values = list(item[:6]) + ["*"] * (6 - len(item[:6]))
            if len(item) < 5:
                raise ValueError("too short")
        link_id, origin, origin_slot, target, target_slot, link_type = values
        if not isinstance(origin, (str, int)) or not isinstance(target, (str, int)):
            raise TypeError("node ids must be numbers or text")
        return [int(link_id), origin, int(origin_slot), target, int(target_slot), link_type]
    except (KeyError, TypeError, ValueError, OverflowError):
        raise WorkflowFormatError(f"{what}: malformed link {item!r:.80}") from None


def _subgraph_input(host_sockets: list, slot: int, names: list) -> int | None:
    """The subgraph input a link into instance slot ``slot`` feeds: the one named as the instance's
    socket there (the frontend matches by name), else the one at that index."""
    socket = host_sockets[slot] if 0 <= slot < len(host_sockets) else None
    name = socket.get("name") if isinstance(socket, dict) else None
    if name is not None and name in names:
        return names.index(name)
    return slot if socket is None and 0 <= slot < len(names) else None


def _promoted_values(host: dict, inputs: list[dict], links: list[list], originals: dict[str, dict],
                     name: str) -> dict[int, Any]:
    """The instance's widget values, by subgraph input index: one per input that feeds a widget
    of an inner node, in input order (or, in a ``widgets_values`` object, by input name)."""
    values = host.get("widgets_values")
    if isinstance(values, dict):
        return {index: values[s.get("name")] for index, s in enumerate(inputs) if s.get("name") in values}
    if not isinstance(values, list) or not values:
        return {}
    feeds_widget = set()
    for _, origin, origin_slot, target, target_slot, _ in links:
        if str(origin) == INPUT_NODE and str(target) in originals:
            socket = _socket(originals[str(target)], "inputs", target_slot)
            if socket is not None and socket.get("widget"):
                feeds_widget.add(origin_slot)
    promoted = [index for index in range(len(inputs)) if index in feeds_widget]
    if len(promoted) != len(values):
        log.warning("%s: node %s: %d widget values for the %d widget inputs of subgraph %s; the inner "
                    "nodes' own values are kept", WHAT, host.get("id"), len(values), len(promoted), name)
        return {}
    return dict(zip(promoted, values))


def _socket_holds(sockets: Any, link: list) -> bool:
    """Whether the target's input socket (when the node lists its sockets) holds ``link``: a link
    the socket does not hold is a leftover that ComfyUI does not follow."""
    slot = link[4]
    if not isinstance(sockets, list) or not 0 <= slot < len(sockets) or not isinstance(sockets[slot], dict) \
            or "link" not in sockets[slot]:
        return True
    return sockets[slot]["link"] == link[0]


def _sockets(raw: dict, key: str) -> list[dict]:
    sockets = raw.get(key)
    return [s if isinstance(s, dict) else {} for s in sockets] if isinstance(sockets, list) else []


def _socket(raw: dict | None, key: str, slot: Any) -> dict | None:
    sockets = raw.get(key) if isinstance(raw, dict) else None
    if isinstance(sockets, list) and isinstance(slot, int) and 0 <= slot < len(sockets) \
            and isinstance(sockets[slot], dict):
        return sockets[slot]
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value \
        and abs(value) != float("inf")


def _point(value: Any) -> tuple[float, float] | None:
    """A position or size as ``[x, y]`` (or an old export's ``{"0": x, "1": y}``)."""
    if isinstance(value, dict):
        value = [value.get("0"), value.get("1")]
    if isinstance(value, (list, tuple)) and len(value) >= 2 and _is_number(value[0]) and _is_number(value[1]):
        return float(value[0]), float(value[1])
    return None


def _title(raw: dict) -> str:
    title = raw.get("title")
    return f" ({title!r})" if isinstance(title, str) and title else ""
