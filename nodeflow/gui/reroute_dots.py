"""Reroute points on the canvas: small dots that links are drawn through.

Each reroute (reroutes.py: layout in the workflow's ``ui``, never a workflow node) is a tiny node
of the editor without a title, with one input and one output pin, in a round, pale style; its
item's user data is ``("reroute", id)``. A link that passes through reroutes is drawn as its
pieces (source -> dot -> ... -> target, reroutes.segments); a piece shared by a fan-out is drawn
once. So imnodes drags and selects the dots itself; a dragged dot's new place becomes one
undoable edit on release (``sync``), Delete on a selected dot removes the dot and keeps the
links, and deleting (or detaching) a drawn piece deletes the links it carries.

The dots' pins are not ports of the document: a link the user draws to or from one is turned
into the document's edit by ``wire`` (reroute_wiring.py). A selected link or piece can take a new
dot (``selected_piece`` finds it and where it is drawn; layout_actions.py adds the dot).
"""

from __future__ import annotations

import dearpygui.dearpygui as dpg

from nodeflow.gui import reroute_wiring, reroutes
from nodeflow.gui.document import EditRefused

DOT_SIZE = 8  # the dot's content at 100%: the pins sit on its edges
DOT_PADDING = (2, 1)  # the dot's node padding (pixels, its theme's)
DOT_HALF = (6, 12)  # pixels at 100% from a dot's corner (its grid position) to its middle, as first drawn
LINK_REACH = 8  # pixels at 100%: a double-click this close to a selected link's curve is on it
CURVE_STEPS = 24  # points along a link's curve when measuring how near the mouse is
DOT_COLOR = (200, 200, 200, 230)


class RerouteDots:
    """The reroute dots of the canvas's document and the link pieces drawn through them."""

    def __init__(self, canvas) -> None:
        self.canvas = canvas
        self.items: dict[str, int] = {}  # reroute id -> its node
        self.pins: dict[tuple, int] = {}  # ("reroute", id, "in"/"out") -> its attribute
        self.pieces: dict[int, list] = {}  # drawn link item -> the workflow links it carries
        self.piece_ends: dict[int, tuple] = {}  # drawn link item -> its ends, as reroutes.segments names them
        self.theme: int | None = None

    @property
    def document(self):
        return self.canvas.document

    def build(self) -> None:
        """A dot per reroute (the canvas was emptied)."""
        self.items.clear()
        self.pins.clear()
        self.pieces.clear()
        self.piece_ends.clear()
        for reroute_id in reroutes.reroutes(self.document.workflow):
            pos = self.canvas.view.to_grid(reroutes.position(self.document.workflow, reroute_id))
            with dpg.node(label="", parent="editor", pos=pos, user_data=("reroute", reroute_id)) as item:
                for kind, side in ((dpg.mvNode_Attr_Input, "in"), (dpg.mvNode_Attr_Output, "out")):
                    with dpg.node_attribute(attribute_type=kind) as pin:
                        self.canvas.sized(dpg.add_spacer(), width=DOT_SIZE, height=1)
                    self.pins[("reroute", reroute_id, side)] = pin
            dpg.bind_item_theme(item, self._theme())
            self.items[reroute_id] = item

    def _theme(self) -> int:
        if self.theme is None:
            with dpg.theme() as theme:
                with dpg.theme_component(dpg.mvNode):
                    for part in (dpg.mvNodeCol_NodeBackground, dpg.mvNodeCol_NodeBackgroundHovered,
                                 dpg.mvNodeCol_NodeBackgroundSelected, dpg.mvNodeCol_NodeOutline,
                                 dpg.mvNodeCol_TitleBar, dpg.mvNodeCol_TitleBarHovered, dpg.mvNodeCol_TitleBarSelected):
                        dpg.add_theme_color(part, DOT_COLOR, category=dpg.mvThemeCat_Nodes)
                    dpg.add_theme_style(dpg.mvNodeStyleVar_NodePadding, *DOT_PADDING, category=dpg.mvThemeCat_Nodes)
                    dpg.add_theme_style(dpg.mvNodeStyleVar_NodeCornerRounding, 6, category=dpg.mvThemeCat_Nodes)
            self.theme = theme
        return self.theme

    def build_links(self) -> set:
        """Draw the links that pass through dots, piece by piece; returns those links (the
        canvas draws the others straight)."""
        drawn = set()
        for (start, end), links in reroutes.segments(self.document.workflow).items():
            a, b = self._pin(start, "out"), self._pin(end, "in")
            source = self.canvas.port_to_pin.get((links[0].src, "out", links[0].src_output))
            if a is None or b is None or source is None:
                continue  # an end not on the canvas (an unknown node type): drawn straight, if at all
            item = dpg.add_node_link(a, b, parent="editor")
            dpg.bind_item_theme(item, self.canvas.themes.link(self.canvas.pin_types[source]))
            self.pieces[item] = list(links)
            self.piece_ends[item] = (start, end)
            drawn.update(links)
        return drawn

    def _pin(self, end: tuple, side: str) -> int | None:
        if end[0] == "reroute":
            return self.pins.get(("reroute", end[1], side))
        return self.canvas.port_to_pin.get((end[1], side, end[2]))

    def place(self) -> None:
        """Dots at their grid positions (the view changed)."""
        for reroute_id, item in self.items.items():
            if dpg.does_item_exist(item):
                dpg.set_item_pos(item, self.canvas.view.to_grid(reroutes.position(self.document.workflow, reroute_id)))

    # ----- after a drag, and what the window asks ----------------------------------------------
    def sync(self) -> None:
        """Dragged dots take their new places: one edit."""
        moved = {}
        for reroute_id, item in self.items.items():
            if not dpg.does_item_exist(item) or reroute_id not in reroutes.reroutes(self.document.workflow):
                continue
            grid = tuple(dpg.get_item_pos(item))
            if grid != self.canvas.view.to_grid(reroutes.position(self.document.workflow, reroute_id)):
                moved[reroute_id] = self.canvas.view.to_model(grid)
        reroutes.move_reroutes(self.document, moved)

    def selected(self) -> list[str]:
        return [data[1] for data in map(dpg.get_item_user_data, dpg.get_selected_nodes("editor"))
                if isinstance(data, tuple) and data[0] == "reroute"]

    def hovered(self) -> str | None:
        for reroute_id, item in self.items.items():
            if dpg.does_item_exist(item) and dpg.is_item_hovered(item):
                return reroute_id
        return None

    def links_of(self, items) -> list:
        """The workflow links carried by the drawn pieces ``items`` (others are ignored)."""
        found = []
        for item in items:
            found.extend(link for link in self.pieces.get(item, []) if link not in found)
        return found

    # ----- wiring through dots and adding dots (reroute_wiring.py, reroutes.add_reroute) -------
    def dot_of(self, pin: int) -> str | None:
        """The reroute whose pin ``pin`` is (None for a node's pin)."""
        return next((key[1] for key, attribute in self.pins.items() if attribute == pin), None)

    def wire(self, out_pin: int, in_pin: int) -> bool:
        """A link drawn from ``out_pin`` to ``in_pin`` with a dot at either end: made through the
        dot (or refused, said in the status bar); True when a dot was involved, so the canvas
        does nothing more with it."""
        out_dot, in_dot = self.dot_of(out_pin), self.dot_of(in_pin)
        if out_dot is None and in_dot is None:
            return False
        try:
            if in_dot is None:
                target = self.canvas.pin_to_port.get(in_pin)
                if target is not None and target[1] == "in":
                    reroute_wiring.connect_from_dot(self.document, out_dot, target[0], target[2])
                    self.canvas.status("connected through the reroute")
                return True
            source = self._source(out_pin, out_dot)
            if source is not None:
                made = reroute_wiring.route_into_dot(self.document, source, in_dot)
                self.canvas.status(f"rerouted {len(made)} link(s)" if made else "that output already feeds the reroute")
        except EditRefused as refused:
            self.canvas.status(f"link refused: {refused}", error=True)
        return True

    def _source(self, out_pin: int, out_dot: str | None):
        """What a link drawn from ``out_pin`` carries: a node's output, or what comes into a dot."""
        if out_dot is not None:
            src, output, before = reroute_wiring.dot_source(self.document.workflow, out_dot)
            return src, output, [*before, out_dot]
        port = self.canvas.pin_to_port.get(out_pin)
        return (port[0], port[2], []) if port is not None and port[1] == "out" else None

    def selected_piece(self, near=None):
        """The selected link or piece as ``(ends, links, (start, end))``: its ends as
        reroutes.segments names them, the workflow links it carries and its ends on the screen.
        With ``near`` (a screen point), only one drawn within reach of it; else only when exactly
        one is selected. None when there is no such link."""
        found = []
        for item in dpg.get_selected_links("editor"):
            if item in self.pieces:
                ends, links = self.piece_ends[item], self.pieces[item]
            elif item in self.canvas.link_items:
                link = self.canvas.link_items[item]
                ends, links = (("node", link.src, link.src_output), ("node", link.dst, link.dst_input)), [link]
            else:
                continue
            points = self._screen(ends[0], "out"), self._screen(ends[1], "in")
            if None not in points:
                found.append((ends, links, points))
        if near is not None:
            reach = self.canvas.scaled(LINK_REACH)
            found = [piece for piece in found if curve_distance(*piece[2], near) <= reach]
        return found[0] if len(found) == 1 else None

    def _screen(self, end: tuple, side: str):
        """Where a piece's end is drawn: a node's pin, or a dot's middle."""
        pin = self._pin(end, side)
        if pin is None or not dpg.does_item_exist(pin):
            return None
        if end[0] == "node":
            return self.canvas.pin_centre(pin)
        (x0, y0), (x1, y1) = dpg.get_item_rect_min(self.items[end[1]]), dpg.get_item_rect_max(self.items[end[1]])
        return (x0 + x1) / 2, (y0 + y1) / 2

    def dot_position(self, screen) -> list[float]:
        """The workflow position for a new dot drawn with its middle at screen point ``screen``."""
        half_x, half_y = self._half_size()
        return self.canvas.canvas_point((screen[0] - half_x, screen[1] - half_y))

    def _half_size(self) -> tuple[float, float]:
        """Half a dot's drawn size, padding included: measured on a drawn dot (its rows' height
        follows the canvas's font and spacing), else as at 100% scaled to the zoom."""
        for item in self.items.values():
            if dpg.does_item_exist(item) and dpg.get_item_state(item).get("rect_size", [0, 0])[0] > 0:
                (x0, y0), (x1, y1) = dpg.get_item_rect_min(item), dpg.get_item_rect_max(item)
                return (x1 - x0) / 2 + DOT_PADDING[0], (y1 - y0) / 2 + DOT_PADDING[1]
        return self.canvas.scaled(DOT_HALF[0]), self.canvas.scaled(DOT_HALF[1])


def curve_point(start, end, t: float) -> tuple[float, float]:
    """The point at ``t`` (0..1) on a link as imnodes draws it: a cubic Bezier leaving the output
    and entering the input horizontally, its handles a quarter of the ends' distance long."""
    handle = 0.25 * ((end[0] - start[0]) ** 2 + (end[1] - start[1]) ** 2) ** 0.5
    controls = (start, (start[0] + handle, start[1]), (end[0] - handle, end[1]), end)
    weights = ((1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t ** 2, t ** 3)
    return (sum(w * p[0] for w, p in zip(weights, controls)), sum(w * p[1] for w, p in zip(weights, controls)))


def curve_distance(start, end, point) -> float:
    """About how far ``point`` is from the link drawn from ``start`` to ``end`` (screen pixels)."""
    samples = (curve_point(start, end, i / CURVE_STEPS) for i in range(CURVE_STEPS + 1))
    return min(((x - point[0]) ** 2 + (y - point[1]) ** 2) ** 0.5 for x, y in samples)
