"""Nodes drawn over other nodes: which node is on top, and the widgets that a node above covers.

The node editor draws the node clicked last on top, but ImGui hands a click to any widget under
the mouse, also to one of a node drawn underneath: a click on the top node's title typed into the
hidden node's text box. So the widgets that a node stacked above theirs covers are disabled (they
are hidden anyway) until they are uncovered. The editor does not report its stacking: it is
followed here (the build order, then each clicked node to the top).
"""

from __future__ import annotations

import dearpygui.dearpygui as dpg

from nodeflow.gui.placement import overlaps

NOT_WIDGETS = ("mvText", "mvTooltip", "mvWindowAppItem")  # a node's labels, tooltips and menus


class NodeStack:
    """The canvas's nodes, bottom first, and whether covered widgets are to be found again."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.pending = False

    def rebuilt(self, node_ids) -> None:
        """The canvas was rebuilt: the editor stacks the nodes as they were first drawn."""
        self.order, self.pending = list(node_ids), True

    def changed(self) -> None:
        """Nodes moved: their covered widgets are found again at the next frame."""
        self.pending = True

    def raise_node(self, node_id: str) -> None:
        """A click on ``node_id``: the editor draws it on top now."""
        if node_id in self.order:
            self.order.remove(node_id)
            self.order.append(node_id)
        self.pending = True

    def shield(self, drawn: dict[str, int]) -> None:
        """Disable the widgets that a node stacked above theirs covers and enable the others,
        if anything changed (``drawn``: node id -> its item, as drawn last frame)."""
        if not self.pending:
            return
        self.pending = False
        boxes = {node_id: _rect(item) for node_id, item in drawn.items()}
        stack = [node_id for node_id in self.order if node_id in drawn]
        for index, node_id in enumerate(stack):
            above = [boxes[other] for other in stack[index + 1:]]
            for widget in _widgets(drawn[node_id]):
                covered = any(overlaps(_rect(widget), box) for box in above)
                if dpg.get_item_configuration(widget).get("enabled", True) == covered:
                    dpg.configure_item(widget, enabled=not covered)


def _widgets(node_item: int) -> list[int]:
    """The widgets of a node (inside its attributes, and inside groups there)."""
    found, pending = [], list(dpg.get_item_children(node_item, 1))
    while pending:
        item = pending.pop()
        kind = dpg.get_item_type(item)
        if kind.endswith(("mvNodeAttribute", "mvGroup")):
            pending.extend(dpg.get_item_children(item, 1))
        elif not kind.endswith(NOT_WIDGETS):
            found.append(item)
    return found


def _rect(item: int) -> tuple[float, float, float, float]:
    """An item's rect on the screen as last drawn."""
    (x0, y0), (x1, y1) = dpg.get_item_rect_min(item), dpg.get_item_rect_max(item)
    return x0, y0, x1, y1
