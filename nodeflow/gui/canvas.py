"""The node editor canvas: dearpygui items drawn from the session's document.

Owns the node editor widget and everything inside it: a node item per workflow node with its
widgets and pins, the links, the maps between dearpygui items and the document's ports, the
zoom (a ``View``: grid positions, widget sizes, fonts and themes per level) and reading the
nodes' positions back after a drag. Edits made on the canvas (wiring, widget values) go through
document commands; the canvas is rebuilt from the document when its structure changes.

Groups and reroute points are layout drawn on the canvas by group_frames.py and reroute_dots.py
(their nodes are not workflow nodes: ``selected_nodes`` leaves them out).

Menus, popups and keys are the window's (app.py); what a run shows on a node (its state, its
images) is the run view's (run_view.py), applied through ``decorate_node`` as each node is built.
"""

from __future__ import annotations

from typing import Callable

import dearpygui.dearpygui as dpg

from nodeflow.engine.validate import types_compatible
from nodeflow.gui.document import EditRefused
from nodeflow.gui.group_frames import BACKDROP, GroupFrames, layout_boxes
from nodeflow.gui.placement import NODE_WIDTH, TITLE_HEIGHT, estimated_size, free_spot
from nodeflow.gui.reroute_dots import RerouteDots
from nodeflow.gui.seed_control import MODES as SEED_MODES
from nodeflow.gui.seed_control import seed_mode, set_seed_mode
from nodeflow.gui.stacking import NodeStack
from nodeflow.gui.view import LEVELS, View, bounds, fit, scaled, step
from nodeflow.spec import BOOLEAN, CHOICE, FLOAT, INT, STRING

PIN_HOVER_RADIUS = 10  # imnodes' PinHoverRadius at 100% (theme.py): a press this close to a pin drags from it
NODE_PADDING = 8  # imnodes' default at 100%: a node's content (its reported rect) starts this far inside it
FIT_PASSES = 3  # zoom to fit measures the nodes again at the zoom it chose, and may zoom out further
WIDGET_WIDTH = 180  # pixels at 100% (see sized)
OUTPUT_INDENT = 60
PASTE_OFFSET = 40.0  # a paste with the mouse off the canvas: this far right of and below the copied nodes
UNKNOWN_NODE_COLOR = (255, 90, 90)

Port = tuple  # (node id, "in" or "out", input name or output index)


class Canvas:
    """The node editor and the maps between its items and the document's nodes, ports and links."""

    def __init__(self, session, paths, status: Callable[..., None], decorate_node: Callable[[str], None]) -> None:
        self.session, self.paths = session, paths
        self.status = status  # (text, error=False): a message in the status bar
        self.decorate_node = decorate_node  # a node's run state and images, once it is built
        self.themes = None  # set by build
        self.pin_to_port: dict[int, Port] = {}  # attribute -> (node, "in"/"out", name|index)
        self.port_to_pin: dict[Port, int] = {}
        self.pin_types: dict[int, str] = {}  # attribute -> its socket type
        self.node_items: dict[str, int] = {}
        self.link_items: dict[int, object] = {}
        self.widget_popups: set[int] = set()  # widgets with their own right-click menu
        self.sized_items: dict[int, dict[str, int]] = {}  # canvas item -> its sizes at 100% (see sized)
        self.built_structure = -1
        self.view = View()  # the canvas's zoom and offset (not part of the workflow)
        self.pan = (0.0, 0.0)  # the node editor's own panning, as last measured (see measure)
        self.canvas_rect = None  # the canvas's screen rect as last drawn, and whether it was so the frame before
        self.canvas_steady = False
        self.fit_passes = 0  # > 0: zoom to fit is pending (done once the nodes are drawn)
        self.stacking = NodeStack()  # which node is drawn over which
        self.group_frames = GroupFrames(self)  # groups: frames behind the nodes, titles that drag them
        self.reroute_dots = RerouteDots(self)  # reroute points: dots the links bend through
        #: values a new node of a type takes over its declared defaults (app.py: the model's size)
        self.new_node_values: Callable[[str], dict] = lambda type_id: {}
        self.room_left = 0  # pixels left free at the canvas's left for a panel (make_room_left)
        self.room_right = 0  # and at its right (make_room_right)

    @property
    def document(self):
        return self.session.document

    # ----- building ------------------------------------------------------------------------
    def build(self, themes) -> None:
        """The canvas inside the current container (empty until ``rebuild``)."""
        self.themes = themes
        self.group_frames.build_layer()  # behind the editor: its background and the groups' frames
        with dpg.group(tag="canvas"):  # the editor reports no rect; this group's rect is the editor's
            with dpg.group(tag=BACKDROP):  # the editor's own background transparent (group_frames.py)
                with dpg.node_editor(tag="editor", callback=self._on_link, delink_callback=self._on_delink,
                                     minimap=True, minimap_location=dpg.mvNodeMiniMap_Location_BottomRight,
                                     height=-140):
                    pass
        dpg.bind_item_theme(BACKDROP, self.group_frames.backdrop_theme)

    def follow_document(self) -> None:
        """Rebuild if the document's structure changed since the canvas was built."""
        if self.document.structure != self.built_structure:
            self.rebuild()

    def rebuild(self) -> None:
        """Recreate the canvas from the document (after structural edits). A link selection goes:
        imnodes keeps it by position, so it would land on whichever link the rebuild puts there."""
        dpg.clear_selected_links("editor")
        dpg.delete_item("editor", children_only=True)
        for table in (self.pin_to_port, self.port_to_pin, self.pin_types, self.node_items, self.link_items,
                      self.widget_popups, self.sized_items):
            table.clear()
        self.group_frames.build()  # first: under the nodes
        for node_id in self.document.workflow.nodes:
            self._build_node(node_id)
        self.reroute_dots.build()
        routed = self.reroute_dots.build_links()  # links bent through reroute dots, piece by piece
        for link in self.document.workflow.links:
            if link not in routed:
                self._build_link(link)
        self.built_structure = self.document.structure
        self.stacking.rebuilt(self.node_items)

    def raise_hovered(self) -> None:
        """A left click: the node under the mouse is drawn on top now (a click that went to a
        widget raises nothing, as in the editor)."""
        node_id = self.hovered_node() if dpg.is_item_hovered("editor") else None
        if node_id is not None and not dpg.get_item_state("canvas").get("active"):
            self.stacking.raise_node(node_id)
        self.stacking.changed()

    def shield_covered_widgets(self) -> None:
        """Widgets under a node drawn above theirs take no clicks (see stacking.py); done at the
        start of a frame, from the nodes as last drawn."""
        self.stacking.shield(dict(self._drawn_nodes()))

    def _build_link(self, link) -> None:
        a = self.port_to_pin.get((link.src, "out", link.src_output))
        b = self.port_to_pin.get((link.dst, "in", link.dst_input))
        if a is not None and b is not None:
            item = dpg.add_node_link(a, b, parent="editor")
            dpg.bind_item_theme(item, self.themes.link(self.pin_types[a]))  # the output pin's colour
            self.link_items[item] = link

    def _build_node(self, node_id: str) -> None:
        instance = self.document.workflow.nodes[node_id]
        spec = self.document.registry.specs.get(instance.type)
        label = self.node_label(node_id)
        if instance.mode != "normal":
            label += f" [{instance.mode}]"
        with dpg.node(label=label, parent="editor", pos=self.view.to_grid(self.document.position(node_id)),
                      user_data=node_id) as item:
            self.node_items[node_id] = item
            if spec is None:
                with dpg.node_attribute(attribute_type=dpg.mvNode_Attr_Static):
                    dpg.add_text(f"unknown node type {instance.type}", color=UNKNOWN_NODE_COLOR)
                return
            for input_spec in spec.inputs:
                self._build_input(node_id, instance, input_spec)
            for index, output in enumerate(spec.outputs):
                self._build_output(node_id, index, output)
            if spec.output_node:
                with dpg.node_attribute(attribute_type=dpg.mvNode_Attr_Static):
                    dpg.add_group(tag=images_group(node_id))
        self.decorate_node(node_id)

    def _build_output(self, node_id: str, index: int, output) -> None:
        with dpg.node_attribute(attribute_type=dpg.mvNode_Attr_Output) as pin:
            self.sized(dpg.add_text(output.label), indent=OUTPUT_INDENT)
        dpg.bind_item_theme(pin, self.themes.pin(output.type))
        self._map(pin, (node_id, "out", index), output.type)

    def _build_input(self, node_id: str, instance, spec) -> None:
        pinned = not spec.is_widget or self.document.is_pin(node_id, spec.name)
        kind = dpg.mvNode_Attr_Input if pinned else dpg.mvNode_Attr_Static
        with dpg.node_attribute(attribute_type=kind) as attribute:
            if pinned:
                dpg.add_text(spec.name + ("" if spec.is_widget else f"  ({spec.type})"))
            else:
                self._widget(node_id, instance, spec)
        if pinned:
            dpg.bind_item_theme(attribute, self.themes.pin(spec.type))
            self._map(attribute, (node_id, "in", spec.name), spec.type)
        children = dpg.get_item_children(attribute, 1)
        if spec.is_widget and children:  # right-click on the widget or its label
            self._pin_menu(children[0], node_id, spec.name, pinned)

    def _pin_menu(self, widget: int, node_id: str, name: str, pinned: bool) -> None:
        """The widget's right-click menu: turn the input into a pin, or the pin into a widget."""
        self.widget_popups.add(widget)
        with dpg.popup(widget, mousebutton=dpg.mvMouseButton_Right) as popup:
            self.unzoomed(popup)
            dpg.add_menu_item(label="Convert to widget" if pinned else "Convert to input pin",
                              callback=lambda: self.document.toggle_pin(node_id, name))

    def _map(self, attribute: int, port: Port, socket_type: str) -> None:
        self.pin_to_port[attribute] = port
        self.port_to_pin[port] = attribute
        self.pin_types[attribute] = socket_type

    # ----- widgets (an input's value edited on its node) ---------------------------------------
    def _widget(self, node_id: str, instance, spec) -> None:
        value = instance.inputs.get(spec.name, spec.default)

        def changed(sender, app_data):
            self.document.set_value(node_id, spec.name, app_data)

        if spec.type == INT and spec.seed:
            self._seed_widget(node_id, spec, value)
        elif spec.type == INT:
            self._int_widget(spec, value, changed)
        elif spec.type == FLOAT:
            self._float_widget(spec, value, changed)
        elif spec.type == STRING:
            self._text_widget(spec, value, changed)
        elif spec.type == BOOLEAN:
            dpg.add_checkbox(label=spec.name, default_value=bool(value), callback=changed)
        elif spec.type == CHOICE:
            items = spec.choices(self.paths)
            self.sized(dpg.add_combo(items, label=spec.name, default_value="" if value is None else str(value),
                                     callback=changed), width=WIDGET_WIDTH)  # the stored value, listed or not
        if spec.tooltip:
            with dpg.tooltip(dpg.last_item()) as tooltip:
                self.unzoomed(tooltip)
                dpg.add_text(spec.tooltip)

    def _seed_widget(self, node_id: str, spec, value) -> None:
        """The seed as text (it is too large to drag) and what happens to it after a run."""
        with dpg.group(horizontal=True):
            self.sized(dpg.add_input_text(
                label=spec.name, default_value=str(value), decimal=True,
                callback=lambda s, a: self.document.set_value(node_id, spec.name, int(a or 0))), width=WIDGET_WIDTH)
            self.sized(dpg.add_combo(
                list(SEED_MODES), default_value=seed_mode(self.document.workflow, node_id, spec.name),
                callback=lambda s, a: set_seed_mode(self.document, node_id, spec.name, a)), width=100)

    def _int_widget(self, spec, value, changed) -> None:
        self.sized(dpg.add_drag_int(label=spec.name, default_value=int(value or 0),
                                    min_value=int(spec.min) if spec.min is not None else 0,
                                    max_value=int(spec.max) if spec.max is not None else 0,
                                    clamped=spec.min is not None and spec.max is not None,
                                    speed=max(float(spec.step or 1) / 4, 0.25), callback=changed),
                   width=WIDGET_WIDTH)

    def _float_widget(self, spec, value, changed) -> None:
        self.sized(dpg.add_drag_float(label=spec.name, default_value=float(value or 0.0),
                                      min_value=float(spec.min) if spec.min is not None else 0.0,
                                      max_value=float(spec.max) if spec.max is not None else 0.0,
                                      clamped=spec.min is not None and spec.max is not None,
                                      speed=float(spec.step or 0.01), format="%.3f", callback=changed),
                   width=WIDGET_WIDTH)

    def _text_widget(self, spec, value, changed) -> None:
        text = dpg.add_input_text(label=spec.name, default_value=str(value or ""), multiline=spec.multiline,
                                  callback=changed)
        self.sized(text, **({"width": 260, "height": 80} if spec.multiline else {"width": WIDGET_WIDTH}))

    # ----- what the user did on the canvas -------------------------------------------------------
    def add_node(self, type_id: str, position) -> str:
        """Add a node of ``type_id`` at ``position`` (workflow units), or below it clear of the
        nodes there: its inputs hold their defaults (or ``new_node_values``), and a list of files
        without one (checkpoints, LoRAs...) its first file."""
        spec = self.document.registry.get(type_id)
        values = dict(self.new_node_values(type_id))
        for input_spec in spec.widget_inputs:
            choices = input_spec.choices(self.paths) if input_spec.default is None else []
            if choices:
                values[input_spec.name] = choices[0]
        spot = free_spot(tuple(position), estimated_size(spec), self.node_boxes())
        return self.document.add_node(type_id, spot, values)

    def paste(self, clipboard, label: str = "paste") -> list[str]:
        """Add the clipboard's nodes at the mouse (on the canvas; else next to the copied nodes),
        or below that spot clear of the nodes there; the selection is cleared (it held the
        copied nodes, which Delete would otherwise remove). Returns the new nodes' ids."""
        sizes = {node.id: self._type_size(node.type) for node in clipboard.nodes}
        group = bounds([(x, y, x + sizes[i][0], y + sizes[i][1]) for i, (x, y) in clipboard.positions.items()])
        wanted = (group[0] + PASTE_OFFSET, group[1] + PASTE_OFFSET)
        if dpg.is_item_hovered("editor"):
            wanted = tuple(self.canvas_point(dpg.get_mouse_pos(local=False)))
        spot = free_spot(wanted, (group[2] - group[0], group[3] - group[1]), self.node_boxes())
        dpg.clear_selected_nodes("editor")
        return self.document.paste(clipboard, (spot[0] - group[0], spot[1] - group[1]), label=label)

    def node_boxes(self) -> list[tuple[float, float, float, float]]:
        """Every node's box in workflow units: as drawn, or its type's estimated size if not drawn yet."""
        boxes = []
        for node_id, node in self.document.workflow.nodes.items():
            item = self.node_items.get(node_id)
            drawn = dpg.get_item_rect_size(item) if item is not None and dpg.does_item_exist(item) else (0, 0)
            width, height = ((drawn[0] / self.view.zoom, drawn[1] / self.view.zoom) if drawn[0] > 0
                             else self._type_size(node.type))
            x, y = self.document.position(node_id)
            boxes.append((x, y, x + width, y + height))
        return boxes

    def _type_size(self, type_id: str) -> tuple[float, float]:
        spec = self.document.registry.specs.get(type_id)
        return estimated_size(spec) if spec is not None else (NODE_WIDTH, TITLE_HEIGHT)

    def _on_link(self, sender, app_data) -> None:
        out_pin, in_pin = app_data
        if self.reroute_dots.wire(out_pin, in_pin):  # to or from a reroute dot (reroute_dots.py)
            return
        src, dst = self.pin_to_port.get(out_pin), self.pin_to_port.get(in_pin)
        if src is None or dst is None or src[1] != "out" or dst[1] != "in":
            return
        try:
            self.document.connect(src[0], src[2], dst[0], dst[2])
            self.status("connected")
        except EditRefused as refused:
            self.status(f"link refused: {refused}", error=True)

    def _on_delink(self, sender, link_item) -> None:
        link = self.link_items.get(link_item)
        if link is not None:
            self.document.disconnect(link)
        for routed in self.reroute_dots.links_of([link_item]):
            self.document.disconnect(routed)

    def selected_nodes(self) -> list[str]:
        """The selected workflow nodes' ids (not the groups' handles nor the reroute dots)."""
        return [data for data in map(dpg.get_item_user_data, dpg.get_selected_nodes("editor")) if isinstance(data, str)]

    def selected_links(self) -> list:
        """The selected links: those drawn straight, and those drawn through a selected piece."""
        items = dpg.get_selected_links("editor")
        return [self.link_items[i] for i in items if i in self.link_items] + self.reroute_dots.links_of(items)

    def sync_positions(self) -> None:
        """Take the nodes' positions from the canvas after a drag: one edit however many moved.
        A node counts as moved when it is not at the grid position the view draws it at (so the
        view's rounding to whole pixels moves nothing); its new position is taken in workflow
        units. Nothing is taken while the canvas is older than the document (an undo this frame)."""
        if self.document.structure != self.built_structure:
            return
        self.group_frames.sync()  # first: a group's move takes its nodes along (one edit)
        self.reroute_dots.sync()
        moved = {}
        for node_id, item in self._drawn_nodes():
            grid = tuple(dpg.get_item_pos(item))
            if grid != self.view.to_grid(self.document.position(node_id)):
                x, y = self.view.to_model(grid)
                moved[node_id] = (round(x, 1), round(y, 1))
        self.document.move_nodes(moved)

    def _drawn_nodes(self) -> list[tuple[str, int]]:
        """(node id, item) of the nodes that are both in the document and on the canvas."""
        return [(node_id, item) for node_id, item in self.node_items.items()
                if node_id in self.document.workflow.nodes and dpg.does_item_exist(item)]

    def hovered_node(self) -> str | None:
        for node_id, item in self.node_items.items():
            if dpg.does_item_exist(item) and dpg.is_item_hovered(item):
                return node_id
        return None

    def widget_hovered(self) -> bool:
        """Whether the mouse is on a widget with its own right-click menu."""
        return any(dpg.does_item_exist(i) and dpg.is_item_hovered(i) for i in self.widget_popups)

    def node_label(self, node_id: str) -> str:
        """The node's title as shown: its own, else its type's name."""
        instance = self.document.workflow.nodes[node_id]
        spec = self.document.registry.specs.get(instance.type)
        return instance.title or (spec.display if spec else instance.type)

    def on_title(self, node_id: str, y: float) -> bool:
        """Whether screen height ``y`` is on the node's title bar (above its first row). The node
        editor hides clicks from the title's own item, so this is measured."""
        item = self.node_items[node_id]
        rows = [row for attribute in dpg.get_item_children(item, 1) for row in dpg.get_item_children(attribute, 1)]
        top = dpg.get_item_rect_min(item)[1]
        first_row = dpg.get_item_rect_min(rows[0])[1] if rows else 0
        return y < (first_row if first_row > top else top + 2 * self.scaled(NODE_PADDING))

    def set_node_theme(self, node_id: str, state: str) -> None:
        """Draw the node as ``state`` (a key of ``Themes.nodes``), if it is on the canvas."""
        item = self.node_items.get(node_id)
        if item is not None and dpg.does_item_exist(item):
            dpg.bind_item_theme(item, self.themes.nodes[state])

    # ----- pins under the mouse (the node editor reports no pin hovered nor link being dragged) ---
    def output_pin_at(self, screen) -> int | None:
        """The output pin a press at screen position ``screen`` drags a link from: the nearest
        within imnodes' hover radius, as imnodes picks it (None off the canvas)."""
        if not self._on_canvas(screen):
            return None
        reach = self.scaled(PIN_HOVER_RADIUS)
        outputs = [(self._distance(screen, self.pin_centre(pin)), pin) for pin, port in self.pin_to_port.items()
                   if port[1] == "out" and dpg.does_item_exist(pin)]
        near = [(distance, pin) for distance, pin in outputs if distance <= reach]
        return min(near)[1] if near else None

    def pin_centre(self, attribute: int) -> tuple[float, float]:
        """Where a pin is drawn on the screen: on its node's left (input) or right (output) edge,
        level with its row."""
        row = dpg.get_item_children(attribute, 1)[0]
        (_, top), (_, bottom) = dpg.get_item_rect_min(row), dpg.get_item_rect_max(row)
        node = dpg.get_item_parent(attribute)
        padding = self.scaled(NODE_PADDING)
        if self.pin_to_port[attribute][1] == "out":
            x = dpg.get_item_rect_max(node)[0] + padding
        else:
            x = dpg.get_item_rect_min(node)[0] - padding
        return x, (top + bottom) / 2

    @staticmethod
    def _distance(a, b) -> float:
        return ((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2) ** 0.5

    def on_empty_canvas(self, screen) -> bool:
        """Whether screen position ``screen`` is on the canvas clear of every node and its pins."""
        margin = self.scaled(NODE_PADDING + PIN_HOVER_RADIUS)
        for _, item in self._drawn_nodes():
            (x0, y0), (x1, y1) = dpg.get_item_rect_min(item), dpg.get_item_rect_max(item)
            if x0 - margin <= screen[0] <= x1 + margin and y0 - margin <= screen[1] <= y1 + margin:
                return False
        return self._on_canvas(screen)

    def _on_canvas(self, screen) -> bool:
        (x0, y0), (x1, y1) = dpg.get_item_rect_min("canvas"), dpg.get_item_rect_max("canvas")
        return x0 <= screen[0] <= x1 and y0 <= screen[1] <= y1

    def dim_incompatible_inputs(self, socket_type: str) -> None:
        """While a link of ``socket_type`` is dragged: input pins that cannot take it are dimmed."""
        for pin, port in self.pin_to_port.items():
            if port[1] == "in" and not types_compatible(socket_type, self.pin_types[pin]) and dpg.does_item_exist(pin):
                dpg.bind_item_theme(pin, self.themes.dimmed_pin)

    def undim_inputs(self) -> None:
        """Every input pin in its own colour again."""
        for pin, port in self.pin_to_port.items():
            if port[1] == "in" and dpg.does_item_exist(pin):
                dpg.bind_item_theme(pin, self.themes.pin(self.pin_types[pin]))

    # ----- canvas coordinates -----------------------------------------------------------------
    # Nodes sit at grid positions (workflow position * zoom + offset, see view.py); the node
    # editor's middle-drag panning moves the whole grid on the screen.
    def measure(self) -> None:
        """The canvas's rect (steady once the window is laid out: its first frames report
        others) and the editor's panning (where the grid's origin is, from the canvas's corner),
        found from a node as it was last drawn: the editor does not report its panning. Done at
        the start of each frame, before anything moves or rebuilds the nodes; the panning is kept
        when no node is drawn."""
        rect = (tuple(dpg.get_item_rect_min("canvas")), tuple(dpg.get_item_rect_max("canvas")))
        self.canvas_steady, self.canvas_rect = rect == self.canvas_rect, rect
        padding, (cx, cy) = self.scaled(NODE_PADDING), rect[0]
        for item in self.node_items.values():
            if dpg.does_item_exist(item) and dpg.get_item_state(item).get("rect_size", [0, 0])[0] > 0:
                (sx, sy), (gx, gy) = dpg.get_item_rect_min(item), dpg.get_item_pos(item)
                self.pan = (sx - gx - padding - cx, sy - gy - padding - cy)
                return

    def grid_point(self, screen) -> tuple[float, float]:
        """The grid position at a screen position."""
        x, y = dpg.get_item_rect_min("canvas")
        return float(screen[0]) - x - self.pan[0], float(screen[1]) - y - self.pan[1]

    def canvas_point(self, screen) -> list[float]:
        """The workflow position at a screen position."""
        return list(self.view.to_model(self.grid_point(screen)))

    def centre(self) -> tuple[float, float]:
        """The visible canvas's centre on the screen."""
        (x0, y0), (x1, y1) = dpg.get_item_rect_min("canvas"), dpg.get_item_rect_max("canvas")
        return (x0 + x1) / 2, (y0 + y1) / 2

    def placement(self) -> list[float]:
        """Where a new node goes: at the mouse on the canvas, else at the visible canvas's centre."""
        if dpg.is_item_hovered("editor"):
            return self.canvas_point(dpg.get_mouse_pos(local=False))
        return self.canvas_point(self.centre())

    # ----- zoom ------------------------------------------------------------------------------
    def scaled(self, size: float) -> int:
        """A size inside the canvas (widget width, indent, image) at the current zoom."""
        return scaled(size, self.view.zoom)

    def unzoomed(self, item: int) -> None:
        """Draw ``item`` (a popup or tooltip inside the canvas) at 100% whatever the zoom."""
        dpg.bind_item_theme(item, self.themes.zoom[1.0])
        if self.themes.fonts:
            dpg.bind_item_font(item, self.themes.fonts[1.0])

    def show_zoom(self) -> None:
        """The canvas's font and sizes for the current zoom, and the zoom in the status bar."""
        level = min(LEVELS, key=lambda candidate: abs(candidate - self.view.zoom))
        dpg.bind_item_theme("canvas", self.themes.zoom[level])
        if self.themes.fonts:
            dpg.bind_item_font("canvas", self.themes.fonts[level])
        dpg.set_value("zoom", f"{round(self.view.zoom * 100)}%")

    def sized(self, item: int, **sizes: int) -> int:
        """Give a canvas item its ``sizes`` (width, height, indent: pixels at 100%) at the current
        zoom, and again whenever the zoom changes (``_resize``)."""
        self.sized_items[item] = sizes
        self._apply_sizes(item, sizes)
        return item

    def forget_sized(self, item: int) -> None:
        """``item`` is going: no more resizing it."""
        self.sized_items.pop(item, None)

    def _apply_sizes(self, item: int, sizes: dict[str, int]) -> None:
        dpg.configure_item(item, **{name: self.scaled(size) for name, size in sizes.items()})

    def _resize(self) -> None:
        """The nodes' contents at the current zoom (the font and style sizes follow the canvas's
        theme): kept in place rather than rebuilt, so the selection and any widget in use stay."""
        for item, sizes in self.sized_items.items():
            if dpg.does_item_exist(item):
                self._apply_sizes(item, sizes)

    def make_room_left(self, width: int) -> None:
        """Start ``width`` pixels right of where the canvas normally begins (a panel docked there:
        node_library.py; 0: no room). The nodes keep their place on the screen."""
        shift, self.room_left = width - self.room_left, width
        dpg.configure_item("canvas", indent=width if width else -1)
        self.set_view(View(self.view.zoom, (self.view.offset[0] - shift, self.view.offset[1])))

    def make_room_right(self, width: int) -> None:
        """End ``width`` pixels left of where the canvas normally ends (a panel docked there:
        history_panel.py; 0: no room). The editor is narrowed (a negative width is "all but that
        many pixels"), so its left edge and the nodes stay where they are on the screen, and the
        minimap, drawn in the editor's bottom-right corner, moves with its right edge. A graph
        wholly in view that the narrower canvas would cut is fitted to it again: the history panel
        opens after the first run, and the Save node's new image must not go out of view."""
        right = dpg.get_item_rect_max("canvas")[0]
        edges = [dpg.get_item_rect_max(item)[0] for _, item in self._drawn_nodes()]
        cut = bool(edges) and max(edges) <= right < max(edges) + width - self.room_right
        self.room_right = width
        dpg.configure_item("editor", width=-width if width else 0)
        if cut:  # a graph wholly in view would lose its right part (the first run's image): fit it
            self.canvas_steady = False  # to the narrower canvas, once it is measured
            self.zoom_to_fit()

    def reset_view(self) -> None:
        """Back to 100% without panning, for a new document (the nodes are rebuilt next)."""
        self.view = View()
        self.show_zoom()

    def set_view(self, view: View) -> None:
        """Show the canvas with ``view``: nodes move to their new grid positions and, at a new
        zoom, take their new sizes. The workflow is not changed (no undo step, not marked unsaved)."""
        if view == self.view:
            return
        self.sync_positions()  # a drag not yet taken, in the old view's units
        zoom_changed = view.zoom != self.view.zoom
        self.view = view
        if zoom_changed:
            self.show_zoom()
            self._resize()
        for node_id, item in self._drawn_nodes():
            dpg.set_item_pos(item, self.view.to_grid(self.document.position(node_id)))
        self.group_frames.place()
        self.reroute_dots.place()
        self.stacking.changed()

    def zoom_by(self, steps: int, screen=None) -> None:
        """Zoom ``steps`` levels in (out, if negative) around a screen point (default: the
        canvas's centre), which stays where it is."""
        self.zoom_to(step(self.view.zoom, steps), screen)

    def actual_size(self) -> None:
        """Zoom to 100% around the canvas's centre."""
        self.zoom_to(1.0)

    def zoom_to(self, zoom: float, screen=None) -> None:
        """Show the canvas at ``zoom`` around a screen point (default: the canvas's centre),
        which stays where it is."""
        anchor = self.grid_point(self.centre() if screen is None else screen)
        self.set_view(self.view.zoomed(zoom, anchor))

    def zoom_to_fit(self) -> None:
        """Show the whole graph in the visible canvas (at most at 100%). Done by ``continue_fit``
        (each frame) once the nodes are drawn, since it needs their sizes."""
        self.fit_passes = FIT_PASSES

    def continue_fit(self) -> None:
        """A pass of a pending zoom to fit, if there is one."""
        if self.fit_passes:
            self._fit()

    def _fit(self) -> None:
        """One pass of zoom to fit: the bounding box of the nodes as drawn (in workflow units)
        centred in the visible canvas. Later passes measure the nodes at the zoom the first one
        chose (text does not scale exactly) and may only zoom out further."""
        items = self._drawn_nodes()
        sizes = [dpg.get_item_rect_size(item) for _, item in items]
        if not self.canvas_steady or any(width <= 0 for width, _ in sizes):
            return  # not drawn or laid out yet: a later frame
        if not items:
            self.fit_passes = 0
            self.set_view(View())
            return
        self.sync_positions()
        boxes = []
        for (node_id, _), (width, height) in zip(items, sizes):
            x, y = self.document.position(node_id)
            boxes.append((x, y, x + width / self.view.zoom, y + height / self.view.zoom))
        boxes.extend(layout_boxes(self.document.workflow))  # groups and reroute dots
        (x0, y0), (x1, y1) = dpg.get_item_rect_min("canvas"), dpg.get_item_rect_max("canvas")
        canvas = (*self.grid_point((x0, y0)), *self.grid_point((x1, y1)))
        view = fit(bounds(boxes), canvas, most=1.0 if self.fit_passes == FIT_PASSES else self.view.zoom)
        self.fit_passes = 0 if view == self.view else self.fit_passes - 1
        self.set_view(view)


def images_group(node_id: str) -> str:
    """The tag of the group an output node shows its images in."""
    return f"images_{node_id}"
