"""Where new nodes go: at the spot asked for, moved down past the nodes already there, so that
a node added, pasted or duplicated never lands hidden under (or over) another.

Pure arithmetic on boxes in workflow units (x0, y0, x1, y1): no dearpygui, tested without a display.
"""

from __future__ import annotations

from nodeflow.gui.view import Box, Point

GAP = 20.0  # room kept between a placed node and its neighbours
TITLE_HEIGHT = 40.0  # a node's size on the canvas before it is drawn, at 100%: its title,
ROW_HEIGHT = 22.0  # one row per input and output,
MULTILINE_HEIGHT = 80.0  # more for a multiline text box,
NODE_WIDTH = 340.0  # and about the widest node's width


def estimated_size(spec) -> tuple[float, float]:
    """A node type's size before it is drawn (generous, so a placed node clears its neighbours)."""
    rows = len(spec.inputs) + len(spec.outputs)
    extra = sum(MULTILINE_HEIGHT for s in spec.inputs if getattr(s, "multiline", False))
    return NODE_WIDTH, TITLE_HEIGHT + ROW_HEIGHT * rows + extra


def overlaps(a: Box, b: Box, gap: float = 0.0) -> bool:
    """Whether boxes ``a`` and ``b`` overlap, or come closer than ``gap``."""
    return a[0] < b[2] + gap and b[0] < a[2] + gap and a[1] < b[3] + gap and b[1] < a[3] + gap


def free_spot(spot: Point, size: tuple[float, float], boxes: list[Box], gap: float = GAP) -> Point:
    """The top-left corner for a box of ``size`` at ``spot``, or straight below it past every box
    in ``boxes`` it would overlap."""
    x, y = spot
    while True:
        blocking = [box for box in boxes if overlaps((x, y, x + size[0], y + size[1]), box, gap)]
        if not blocking:
            return x, y
        y = max(box[3] for box in blocking) + gap
