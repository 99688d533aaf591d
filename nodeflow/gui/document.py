"""The editor's document: a workflow edited only through commands, which gives undo/redo.

The GUI never changes the workflow directly; every edit is a command applied here, so the same
rules hold for the window, the tests and scripts: links are type-checked and may not form a
cycle, wiring into an occupied input replaces its link, pasted nodes keep the links among
themselves. The whole document is small, so a command's undo record is simply the state before it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx

from nodeflow.engine.validate import types_compatible
from nodeflow.engine.workflow import Link, NodeInstance, Workflow, is_numeric_id, save_workflow
from nodeflow.formats import load_workflow
from nodeflow.formats.auto_layout import default_positions
from nodeflow.gui import reroutes


class EditRefused(ValueError):
    """An edit the model does not allow (the message is for the status bar)."""


@dataclass
class Clipboard:
    nodes: list[NodeInstance] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    positions: dict[str, list[float]] = field(default_factory=dict)


class Document:
    """A workflow plus its file, dirty flag and undo/redo history."""

    def __init__(self, registry, workflow: Workflow | None = None, path: Path | None = None) -> None:
        self.registry = registry
        self.workflow = workflow or Workflow()
        self.workflow.ui.setdefault("nodes", {})
        for node_id, position in default_positions(self.workflow).items():  # files that place no nodes
            self.workflow.ui["nodes"].setdefault(node_id, {})["pos"] = position
        self.path = path
        self.dirty = False
        self._undo: list[tuple[str, Workflow]] = []
        self._redo: list[tuple[str, Workflow]] = []
        self.revision = 0  # increases with every change
        self.structure = 0  # increases when nodes or links change (views rebuild then)

    # ----- history -------------------------------------------------------------------------
    def _record(self, label: str) -> None:
        self._undo.append((label, copy.deepcopy(self.workflow)))
        self._redo.clear()

    def _changed(self, structural: bool = True) -> None:
        if structural:  # only a structural edit removes links: a link gone takes its bends along
            reroutes.prune(self.workflow)
        self.dirty = True
        self.revision += 1
        self.structure += int(structural)

    def undo(self) -> str | None:
        if not self._undo:
            return None
        label, previous = self._undo.pop()
        self._redo.append((label, self.workflow))
        self.workflow = previous
        self._changed()
        return label

    def redo(self) -> str | None:
        if not self._redo:
            return None
        label, following = self._redo.pop()
        self._undo.append((label, self.workflow))
        self.workflow = following
        self._changed()
        return label

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    # ----- queries -------------------------------------------------------------------------
    def position(self, node_id: str) -> list[float]:
        return list(self.workflow.ui.get("nodes", {}).get(node_id, {}).get("pos") or [0.0, 0.0])

    def _new_id(self) -> str:
        numbers = [int(i) for i in self.workflow.nodes if is_numeric_id(i)]
        return str(max(numbers, default=0) + 1)

    # ----- commands ------------------------------------------------------------------------
    def add_node(self, type_id: str, position: tuple[float, float] = (0.0, 0.0),
                 values: dict[str, Any] | None = None) -> str:
        """A node of ``type_id`` whose inputs hold their defaults, or ``values`` where given."""
        spec = self.registry.get(type_id)
        self._record(f"add {spec.display}")
        node_id = self._new_id()
        values = {**{s.name: s.default for s in spec.widget_inputs if s.default is not None}, **(values or {})}
        self.workflow.nodes[node_id] = NodeInstance(node_id, type_id, values, spec.version)
        self.workflow.ui["nodes"][node_id] = {"pos": [float(position[0]), float(position[1])]}
        self._changed()
        return node_id

    def remove_nodes(self, node_ids: list[str]) -> None:
        present = [i for i in node_ids if i in self.workflow.nodes]
        if not present:
            return
        self._record(f"delete {len(present)} node(s)")
        for node_id in present:
            del self.workflow.nodes[node_id]
            self.workflow.ui["nodes"].pop(node_id, None)
        self.workflow.links = [l for l in self.workflow.links if l.src not in present and l.dst not in present]
        self._changed()

    def connect(self, src: str, src_output: int, dst: str, dst_input: str) -> Link:
        """Link an output to an input; refuses type mismatches and cycles, replaces an old link."""
        link = self.check_connect(src, src_output, dst, dst_input)
        self._record("connect")
        self.workflow.links = linked(self.workflow.links, link)
        self._changed()
        return link

    def check_connect(self, src: str, src_output: int, dst: str, dst_input: str,
                      links: list[Link] | None = None) -> Link:
        """The link ``connect`` would make, or EditRefused saying why not; nothing changes.
        ``links``: the links to check a cycle against (default: the workflow's), for callers that
        plan several links at once (reroute_wiring)."""
        source = self.registry.get(self.workflow.nodes[src].type)
        target = self.registry.get(self.workflow.nodes[dst].type)
        input_spec = target.input(dst_input)
        if input_spec is None:
            raise EditRefused(f"{target.display} has no input {dst_input!r}")
        out_type = source.outputs[src_output].type
        if not types_compatible(out_type, input_spec.type):
            raise EditRefused(f"cannot connect {out_type} to {target.display}.{dst_input} ({input_spec.type})")
        if src == dst or _reaches(self.workflow.links if links is None else links, dst, src):
            raise EditRefused("that link would make a cycle")
        return Link(src, src_output, dst, dst_input)

    def disconnect(self, link: Link) -> None:
        if link not in self.workflow.links:
            return
        self._record("disconnect")
        self.workflow.links.remove(link)
        self._changed()

    def set_value(self, node_id: str, input_name: str, value: Any) -> None:
        node = self.workflow.nodes[node_id]
        if node.inputs.get(input_name) == value:
            return
        self._record(f"set {input_name}")
        node.inputs[input_name] = value
        self._changed(structural=False)

    def set_values(self, node_id: str, values: dict[str, Any], label: str) -> None:
        """Set several inputs of a node as one edit (one undo step: a width and height chosen
        together). Structural, unlike ``set_value``: no widget shows these values yet, so the
        canvas rebuilds to show them."""
        node = self.workflow.nodes[node_id]
        if all(node.inputs.get(name) == value for name, value in values.items()):
            return
        self._record(label)
        node.inputs.update(values)
        self._changed()

    def move(self, node_id: str, position: tuple[float, float]) -> None:
        self.move_nodes({node_id: position})

    def move_nodes(self, positions: dict[str, tuple[float, float]]) -> None:
        """Move nodes as one edit: dragging a selection is one undo step. Unmoved ones are skipped."""
        moved = {node_id: [float(position[0]), float(position[1])] for node_id, position in positions.items()
                 if node_id in self.workflow.nodes and
                 [round(v, 1) for v in self.position(node_id)] != [round(float(v), 1) for v in position]}
        if not moved:
            return
        self._record("move" if len(moved) == 1 else f"move {len(moved)} nodes")
        for node_id, position in moved.items():
            self.workflow.ui["nodes"].setdefault(node_id, {})["pos"] = position
        self._changed(structural=False)

    def set_title(self, node_id: str, title: str | None) -> None:
        """Name the node; an empty title or the node type's own name means no title."""
        node = self.workflow.nodes[node_id]
        title = (title or "").strip() or None
        spec = self.registry.specs.get(node.type)
        if spec is not None and title == spec.display:
            title = None
        if node.title == title:
            return
        self._record("rename")
        node.title = title
        self._changed()

    def set_mode(self, node_id: str, mode: str) -> None:
        if self.workflow.nodes[node_id].mode == mode:
            return
        self._record(mode)
        self.workflow.nodes[node_id].mode = mode
        self._changed()

    def toggle_pin(self, node_id: str, input_name: str) -> bool:
        """Show a widget input as a pin (so it can be linked) or back as a widget; True if pinned."""
        self._record("toggle pin")  # before touching the UI section, so undo restores it exactly
        pins = self.workflow.ui.setdefault("pins", {})
        names = set(pins.get(node_id, []))
        if input_name in names:
            names.discard(input_name)
            self.workflow.links = [l for l in self.workflow.links
                                   if (l.dst, l.dst_input) != (node_id, input_name)]
        else:
            names.add(input_name)
        pins[node_id] = sorted(names)
        self._changed()
        return input_name in names

    def edit_layout(self, label: str, change, structural: bool = True) -> None:
        """An undoable edit of the workflow's layout (groups, reroutes: groups.py, reroutes.py):
        ``change(workflow)`` edits it in place; ``structural`` when the canvas must be rebuilt."""
        self._record(label)
        change(self.workflow)
        self._changed(structural)

    def set_node_setting(self, section: str, node_id: str, name: str, value: Any) -> None:
        """An editor setting of one node input kept in the workflow's UI section
        (``ui[section][node_id][name]``, e.g. a seed widget's "after run" mode); undoable."""
        settings = self.workflow.ui.get(section, {}).get(node_id, {})
        if name in settings and settings[name] == value:
            return
        self._record(f"set {section.replace('_', ' ')} of {name}")
        self.workflow.ui.setdefault(section, {}).setdefault(node_id, {})[name] = value
        self._changed(structural=False)

    def is_pin(self, node_id: str, input_name: str) -> bool:
        return input_name in self.workflow.ui.get("pins", {}).get(node_id, []) or \
            self.workflow.input_link(node_id, input_name) is not None

    # ----- clipboard -----------------------------------------------------------------------
    def copy(self, node_ids: list[str]) -> Clipboard:
        chosen = set(node_ids) & set(self.workflow.nodes)
        return Clipboard([copy.deepcopy(self.workflow.nodes[i]) for i in sorted(chosen)],
                         [l for l in self.workflow.links if l.src in chosen and l.dst in chosen],
                         {i: self.position(i) for i in chosen})

    def paste(self, clipboard: Clipboard, offset: tuple[float, float] = (40.0, 40.0),
              label: str = "paste") -> list[str]:
        """Add copies of the clipboard's nodes (and the links among them); returns the new ids."""
        if not clipboard.nodes:
            return []
        self._record(label)
        mapping = {}
        for node in clipboard.nodes:
            new_id = self._new_id()
            mapping[node.id] = new_id
            self.workflow.nodes[new_id] = NodeInstance(new_id, node.type, copy.deepcopy(node.inputs),
                                                       node.version, node.mode, node.title)
            x, y = clipboard.positions.get(node.id, [0.0, 0.0])
            self.workflow.ui["nodes"][new_id] = {"pos": [x + offset[0], y + offset[1]]}
        for link in clipboard.links:
            self.workflow.links.append(Link(mapping[link.src], link.src_output, mapping[link.dst], link.dst_input))
        self._changed()
        return [mapping[n.id] for n in clipboard.nodes]

    def duplicate(self, node_ids: list[str]) -> list[str]:
        return self.paste(self.copy(node_ids), label="duplicate")

    # ----- files ---------------------------------------------------------------------------
    def save(self, path: Path | None = None) -> Path:
        target = Path(path or self.path or "workflow.json")
        save_workflow(self.workflow, target)
        self.path, self.dirty = target, False
        return target

    @classmethod
    def open(cls, registry, path: Path) -> Document:
        workflow = load_workflow(path, registry)
        is_ours = Path(path).suffix.lower() == ".json" and _is_our_format(path)
        return cls(registry, workflow, Path(path) if is_ours else None)


def _is_our_format(path: Path) -> bool:
    import json

    try:
        return json.loads(Path(path).read_text(encoding="utf-8")).get("format") == "nodeflow-workflow"
    except (OSError, ValueError, AttributeError):
        return False


def linked(links: list[Link], link: Link) -> list[Link]:
    """``links`` with ``link`` added, replacing the link that fed its input before (one per input)."""
    return [old for old in links if (old.dst, old.dst_input) != (link.dst, link.dst_input)] + [link]


def _reaches(links: list[Link], start: str, goal: str) -> bool:
    graph = nx.DiGraph([(l.src, l.dst) for l in links])
    return start in graph and goal in graph and nx.has_path(graph, start, goal)
