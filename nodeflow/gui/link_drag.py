"""Dragging a link from an output pin: input pins that cannot take it are dimmed while it is
dragged, and a link dropped on empty canvas opens a search of the node types that can take it,
placed at the drop point and wired when chosen (as in ComfyUI).

dearpygui's node editor reports neither a link being dragged nor one dropped on nothing (its
link callback fires only from pin to pin), so the drag is found as ComfyUI's canvas finds it: a
left press on an output pin (``press``), then the release (``release``) away from every node.
"""

from __future__ import annotations

import dearpygui.dearpygui as dpg

from nodeflow.engine.validate import types_compatible
from nodeflow.gui.canvas import Canvas
from nodeflow.gui.document import EditRefused
from nodeflow.gui.library_index import is_listed
from nodeflow.gui.run_view import show_status
from nodeflow.gui.search import MAX_MATCHES, search_nodes

POPUP = "link_search"  # the search's window (Escape closes it with the other menus, app.py)
POPUP_SIZE = (340, 290)  # about its size: it opens at the drop point, moved in to fit in the window


def linkable_nodes(registry, socket_type: str, text: str = "") -> list:
    """Node types with an input that takes ``socket_type``: those matching ``text`` as the
    search box ranks them, or all of them by name when ``text`` is empty. ComfyUI's testing
    nodes (category ``_for_testing``) are left out, as in the add-node menu."""
    found = search_nodes(registry, text) if text.strip() else sorted(registry, key=lambda spec: spec.display)
    return [spec for spec in found if is_listed(spec) and first_input(spec, socket_type)]


def first_input(spec, socket_type: str) -> str | None:
    """The name of ``spec``'s first input that takes ``socket_type`` (None if none does)."""
    return next((i.name for i in spec.inputs if types_compatible(socket_type, i.type)), None)


class LinkDrag:
    """A link dragged from an output pin, and the search opened where it was dropped."""

    def __init__(self, canvas: Canvas) -> None:
        self.canvas = canvas
        self.source = None  # the port a link is being dragged from: (node id, "out", index)
        self.dropped = None  # (port, workflow position) of the link the search is open for

    @property
    def registry(self):
        return self.canvas.document.registry

    def build(self) -> None:
        """The search's window: a filter box over the matching node types (hidden until a drop)."""
        with dpg.window(tag=POPUP, show=False, no_title_bar=True, popup=True, autosize=True):
            dpg.add_text("", tag="link_search_title")
            dpg.add_input_text(tag="link_search_text", hint="type to filter, Enter to place", width=320,
                               on_enter=True, callback=lambda: self.place_first_match())
            with dpg.item_handler_registry() as typing:
                dpg.add_item_edited_handler(callback=lambda: self._show_matches())
            dpg.bind_item_handler_registry("link_search_text", typing)
            dpg.add_listbox(tag="link_search_results", items=[], num_items=10, width=320,
                            callback=lambda sender, choice: self._place(choice.rsplit("[", 1)[1].rstrip("]")))

    def press(self) -> None:
        """A left press: on an output pin, a link drag starts and the inputs it cannot go to dim
        (not through a menu or this search shown over the canvas)."""
        if not dpg.is_item_hovered("editor") or dpg.is_item_shown(POPUP):
            return
        pin = self.canvas.output_pin_at(dpg.get_mouse_pos(local=False))
        if pin is not None:
            self.source = self.canvas.pin_to_port[pin]
            self.canvas.dim_incompatible_inputs(self.canvas.pin_types[pin])

    def release(self) -> None:
        """The left button released: a drag ends; dropped on empty canvas, the search opens there."""
        if self.source is None:
            return
        source, self.source = self.source, None
        self.canvas.undim_inputs()
        mouse = dpg.get_mouse_pos(local=False)
        if source[0] in self.canvas.document.workflow.nodes and self.canvas.on_empty_canvas(mouse):
            self.open_search(source, self.canvas.canvas_point(mouse), mouse)

    def socket_type(self, port) -> str:
        node = self.canvas.document.workflow.nodes[port[0]]
        return self.registry.get(node.type).outputs[port[2]].type

    def open_search(self, source, position, screen) -> None:
        """The search for a link from ``source`` dropped at ``position`` (workflow units), shown at
        screen position ``screen``."""
        self.dropped = (source, position)
        dpg.set_value("link_search_title", f"add a node taking {self.socket_type(source)}")
        dpg.set_value("link_search_text", "")
        self._show_matches()
        x = min(screen[0], dpg.get_viewport_client_width() - POPUP_SIZE[0])
        y = min(screen[1], dpg.get_viewport_client_height() - POPUP_SIZE[1])
        dpg.configure_item(POPUP, show=True, pos=[int(max(x, 0)), int(max(y, 0))])
        dpg.focus_item("link_search_text")

    def matches(self) -> list:
        if self.dropped is None:
            return []
        text = dpg.get_value("link_search_text")
        return linkable_nodes(self.registry, self.socket_type(self.dropped[0]), text)[:MAX_MATCHES]

    def _show_matches(self) -> None:
        items = [f"{spec.display}  [{spec.id}]" for spec in self.matches()]
        dpg.configure_item("link_search_results", items=items)
        if items:
            dpg.set_value("link_search_results", items[0])

    def place_first_match(self) -> None:
        """Enter in the filter box: the first match is placed and wired."""
        matches = self.matches()
        if matches:
            self._place(matches[0].id)
        else:
            show_status("no node takes that link", error=True)

    def _place(self, type_id: str) -> None:
        """A node of ``type_id`` at the drop point (below it clear of other nodes), with the
        dropped link wired to its first input that takes it."""
        (src, _, index), position = self.dropped
        self.close()
        spec = self.registry.get(type_id)
        node_id = self.canvas.add_node(type_id, position)
        try:
            self.canvas.document.connect(src, index, node_id, first_input(spec, self.socket_type((src, "out", index))))
            show_status(f"added {spec.display}, connected")
        except EditRefused as refused:
            show_status(f"added {spec.display}; link refused: {refused}", error=True)

    def close(self) -> None:
        self.dropped = None
        dpg.configure_item(POPUP, show=False)
