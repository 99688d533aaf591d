"""Reroute points on the canvas: small dots that links are drawn through.

Each reroute (reroutes.py: layout in the workflow's ``ui``, never a workflow node) is a tiny node
of the editor without a title, with one input and one output pin, in a round, pale style; its
item's user data is ``("reroute", id)``. A link that passes through reroutes is drawn as its
pieces (source -> dot -> ... -> target, reroutes.segments); a piece shared by a fan-out is drawn
once. So imnodes drags and selects the dots itself; a dragged dot's new place becomes one
undoable edit on release (``sync``), Delete on a selected dot removes the dot and keeps the
links, and deleting (or detaching) a drawn piece deletes the links it carries.

New links cannot be drawn through a dot yet: the dots' pins are not ports of the document.
"""

from __future__ import annotations

import dearpygui.dearpygui as dpg

from nodeflow.gui import reroutes

DOT_SIZE = 8  # the dot's content at 100%: the pins sit on its edges
DOT_COLOR = (200, 200, 200, 230)


class RerouteDots:
    """The reroute dots of the canvas's document and the link pieces drawn through them."""

    def __init__(self, canvas) -> None:
        self.canvas = canvas
        self.items: dict[str, int] = {}  # reroute id -> its node
        self.pins: dict[tuple, int] = {}  # ("reroute", id, "in"/"out") -> its attribute
        self.pieces: dict[int, list] = {}  # drawn link item -> the workflow links it carries
        self.theme: int | None = None

    @property
    def document(self):
        return self.canvas.document

    def build(self) -> None:
        """A dot per reroute (the canvas was emptied)."""
        self.items.clear()
        self.pins.clear()
        self.pieces.clear()
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
                    dpg.add_theme_style(dpg.mvNodeStyleVar_NodePadding, 2, 1, category=dpg.mvThemeCat_Nodes)
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
