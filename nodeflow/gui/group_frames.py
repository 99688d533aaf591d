"""Groups on the canvas: a tinted frame behind the nodes, with a title bar that drags the group.

dearpygui's node editor (imnodes) draws only nodes and links, and has no way to draw behind
them. The design chosen, after trying the others:

- The frame's body is drawn on the main window's own draw list (a draw layer, ``LAYER``), which
  ImGui paints before the node editor's child window; the editor's background is made
  transparent (``BACKDROP`` bound to a group around it) and the layer paints that background
  itself, then each group's tinted rectangle, clipped to the canvas. So frames are truly behind
  the grid, the links and the nodes, and a click inside a group's body is a click on the empty
  canvas (box selection, the add-node menu) as before.
- The title bar is a small node of the editor (a "handle": the group's title, the group's width,
  in its colour, built before the workflow's nodes so it lies under them). So imnodes itself
  drags it, selects it, and the right-click and Delete see it like a node; its item's user data
  is ``("group", index)``, never a workflow node id. Making the whole frame a node was the other
  candidate, rejected because imnodes raises a clicked node over the others and drags a node by
  its body: the frame would cover its nodes and take their clicks.

While a handle is dragged, the nodes inside the group (found when the drag starts, from their
boxes as drawn: groups.members) follow it on the screen each frame; on release ``sync`` makes the
move one undoable document edit (groups.move_group). The frame's screen place follows the view's
zoom and the editor's panning (canvas.py measures both).
"""

from __future__ import annotations

import dearpygui.dearpygui as dpg

from nodeflow.gui import groups, reroutes

LAYER = "group_layer"
BACKDROP = "editor_backdrop"  # the group around the node editor that makes its background transparent
CANVAS_COLOR = (40, 40, 50, 200)  # imnodes' grid background, painted by the layer instead
BODY_ALPHA = 70
BORDER_ALPHA = 200
TITLE_ROW_HEIGHT = 1  # the handle's content below its title: as little as dearpygui allows
NODE_PADDING = 8  # imnodes' node padding at 100% (as canvas.py's): the handle is its content plus twice this


class GroupFrames:
    """The groups of the canvas's document: their handles (nodes) and frames (the layer)."""

    def __init__(self, canvas) -> None:
        self.canvas = canvas
        self.handles: dict[int, int] = {}  # group index -> its handle node
        self.dragging: dict[int, list[str]] = {}  # group index -> the nodes it takes along, while dragged
        self.themes: dict[tuple[int, int, int], int] = {}
        self.drawn: list[tuple] | None = None  # the layer's rectangles as last drawn (draw)

    @property
    def document(self):
        return self.canvas.document

    # ----- building ------------------------------------------------------------------------
    def build_layer(self) -> None:
        """The draw layer in the window being built (drawn on that window's own draw list, which
        only a window has), and the transparent background's theme."""
        window = dpg.top_container_stack()
        while not dpg.get_item_type(window).endswith("mvWindowAppItem"):
            window = dpg.get_item_parent(window)
        dpg.add_draw_layer(tag=LAYER, parent=window)
        self.drawn = None  # a new layer: nothing drawn on it yet
        with dpg.theme() as backdrop:
            with dpg.theme_component(dpg.mvAll):
                dpg.add_theme_color(dpg.mvNodeCol_GridBackground, (0, 0, 0, 0), category=dpg.mvThemeCat_Nodes)
                dpg.add_theme_color(dpg.mvThemeCol_ChildBg, (0, 0, 0, 0))
        self.backdrop_theme = backdrop

    def build(self) -> None:
        """A handle node per group (the canvas was emptied; called before its nodes are built)."""
        self.handles.clear()
        self.dragging.clear()
        for index, group in enumerate(groups.groups(self.document.workflow)):
            x0, y0, x1, _ = groups.box(group)
            with dpg.node(label=str(group.get("title") or ""), parent="editor", user_data=("group", index),
                          pos=self.canvas.view.to_grid((x0, y0))) as handle:
                with dpg.node_attribute(attribute_type=dpg.mvNode_Attr_Static):
                    self.canvas.sized(dpg.add_spacer(), width=max(x1 - x0 - 2 * NODE_PADDING, 1),
                                      height=TITLE_ROW_HEIGHT)
            dpg.bind_item_theme(handle, self._theme(groups.rgb(group.get("color"))))
            self.handles[index] = handle

    def _theme(self, color: tuple[int, int, int]) -> int:
        """A handle in its group's colour (title bar and body), its outline stronger."""
        if color not in self.themes:
            with dpg.theme() as theme:
                with dpg.theme_component(dpg.mvNode):
                    for part in (dpg.mvNodeCol_TitleBar, dpg.mvNodeCol_TitleBarHovered, dpg.mvNodeCol_TitleBarSelected):
                        dpg.add_theme_color(part, (*color, 230), category=dpg.mvThemeCat_Nodes)
                    for part in (dpg.mvNodeCol_NodeBackground, dpg.mvNodeCol_NodeBackgroundHovered,
                                 dpg.mvNodeCol_NodeBackgroundSelected):
                        dpg.add_theme_color(part, (*color, BODY_ALPHA), category=dpg.mvThemeCat_Nodes)
                    dpg.add_theme_color(dpg.mvNodeCol_NodeOutline, (*color, BORDER_ALPHA), category=dpg.mvThemeCat_Nodes)
            self.themes[color] = theme
        return self.themes[color]

    def place(self) -> None:
        """Handles at their groups' grid positions (the view changed)."""
        for index, handle in self.handles.items():
            if dpg.does_item_exist(handle) and index < len(groups.groups(self.document.workflow)):
                x0, y0, _, _ = groups.box(groups.groups(self.document.workflow)[index])
                dpg.set_item_pos(handle, self.canvas.view.to_grid((x0, y0)))

    # ----- each frame --------------------------------------------------------------------------
    def follow(self) -> None:
        """Members follow a dragged handle on the screen, and the frames are drawn again."""
        if self.document.structure != self.canvas.built_structure:
            return  # the canvas is older than the document: rebuilt this frame
        for index, handle in self.handles.items():
            shift = self._shift(index, handle)
            if shift == (0, 0):
                continue
            if index not in self.dragging:
                self.dragging[index] = self._members(index)
            for node_id in self.dragging[index]:
                item = self.canvas.node_items.get(node_id)
                if item is not None and dpg.does_item_exist(item):
                    x, y = self.canvas.view.to_grid(self.document.position(node_id))
                    dpg.set_item_pos(item, (x + shift[0], y + shift[1]))
        self.draw()

    def _shift(self, index: int, handle: int) -> tuple[int, int]:
        """How far (grid pixels) the handle is from where the document puts its group."""
        if not dpg.does_item_exist(handle) or index >= len(groups.groups(self.document.workflow)):
            return 0, 0
        x0, y0, _, _ = groups.box(groups.groups(self.document.workflow)[index])
        gx, gy = self.canvas.view.to_grid((x0, y0))
        px, py = dpg.get_item_pos(handle)
        return int(px - gx), int(py - gy)

    def _members(self, index: int) -> list[str]:
        boxes = dict(zip(self.document.workflow.nodes, self.canvas.node_boxes()))
        return groups.members(groups.groups(self.document.workflow)[index], boxes)

    def draw(self) -> None:
        """The canvas's background and each group's frame (at its handle, so a dragged frame
        moves with it), on the layer, clipped to the canvas; drawn again only when one of them
        moved or changed (a frame's draw calls are otherwise the same every frame)."""
        if not dpg.does_item_exist(LAYER):
            return
        rectangles = self._rectangles()
        if rectangles == self.drawn:
            return
        dpg.delete_item(LAYER, children_only=True)
        for corner, far_corner, options in rectangles:
            dpg.draw_rectangle(corner, far_corner, **dict(options), parent=LAYER)
        self.drawn = rectangles

    def _rectangles(self) -> list[tuple]:
        """(corner, far corner, draw options) of the background and of each group's frame in view,
        in the layer's coordinates."""
        (cx0, cy0), (cx1, cy1) = dpg.get_item_rect_min("canvas"), dpg.get_item_rect_max("canvas")
        ox, oy = self._origin()
        rectangles = [((cx0 - ox, cy0 - oy), (cx1 - ox, cy1 - oy),
                       (("fill", CANVAS_COLOR), ("color", (0, 0, 0, 0)), ("thickness", 0)))]
        zoom = self.canvas.view.zoom
        for index, group in enumerate(groups.groups(self.document.workflow)):
            x0, y0, x1, y1 = groups.box(group)
            gx, gy = self.canvas.view.to_grid((x0, y0))
            sx, sy = self._shift(index, self.handles.get(index, -1))
            left, top = cx0 + self.canvas.pan[0] + gx + sx, cy0 + self.canvas.pan[1] + gy + sy
            clipped = _clip((left, top, left + (x1 - x0) * zoom, top + (y1 - y0) * zoom), (cx0, cy0, cx1, cy1))
            if clipped is None:
                continue
            color = groups.rgb(group.get("color"))
            rectangles.append(((clipped[0] - ox, clipped[1] - oy), (clipped[2] - ox, clipped[3] - oy),
                               (("fill", (*color, BODY_ALPHA)), ("color", (*color, BORDER_ALPHA)), ("thickness", 1))))
        return rectangles

    @staticmethod
    def _origin() -> tuple[float, float]:
        """Where the window's draw list puts (0, 0) on the screen: the start of its content, which
        is where its first widget (after the menu bar) is laid out."""
        window = dpg.get_item_parent(LAYER)
        for child in dpg.get_item_children(window, 1):
            if not dpg.get_item_type(child).endswith("mvMenuBar") and dpg.is_item_shown(child):
                return tuple(dpg.get_item_rect_min(child))
        return tuple(dpg.get_item_pos(window))

    # ----- after a drag, and what the window asks ----------------------------------------------
    def sync(self) -> None:
        """Dragged handles' groups take their new place, with their members: one edit each."""
        for index, handle in list(self.handles.items()):
            shift = self._shift(index, handle)
            if shift == (0, 0):
                continue
            members = self.dragging.get(index)
            if members is None:
                members = self._members(index)
            to = self.canvas.view.to_model(tuple(dpg.get_item_pos(handle)))
            groups.move_group(self.document, index, (round(to[0], 1), round(to[1], 1)), members)
        self.dragging.clear()

    def selected(self) -> list[int]:
        """The indices of the selected groups (their handles)."""
        return [data[1] for data in map(dpg.get_item_user_data, dpg.get_selected_nodes("editor"))
                if isinstance(data, tuple) and data[0] == "group"]

    def hovered(self) -> int | None:
        """The group whose handle is under the mouse."""
        for index, handle in self.handles.items():
            if dpg.does_item_exist(handle) and dpg.is_item_hovered(handle):
                return index
        return None

    def handle_rect(self, index: int) -> tuple[float, float]:
        """A group handle's top-left corner on the screen (for its rename dialog)."""
        handle = self.handles.get(index)
        return tuple(dpg.get_item_rect_min(handle)) if handle is not None and dpg.does_item_exist(handle) else (200, 120)


def layout_boxes(workflow) -> list[tuple[float, float, float, float]]:
    """The groups' frames and the reroute dots (a small box each), workflow units: zoom to fit
    shows them too."""
    dots = [(x, y, x + 20.0, y + 20.0) for x, y in
            (reroutes.position(workflow, rid) for rid in reroutes.reroutes(workflow))]
    return [groups.box(group) for group in groups.groups(workflow)] + dots


def _clip(box, limits):
    """``box`` cut to ``limits`` (both x0, y0, x1, y1); None when nothing is left."""
    x0, y0 = max(box[0], limits[0]), max(box[1], limits[1])
    x1, y1 = min(box[2], limits[2]), min(box[3], limits[3])
    return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None
