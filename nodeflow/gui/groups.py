"""Groups: titled frames around nodes, kept as layout in the workflow's ``ui["groups"]``.

A group is the dict ComfyUI's UI files hold (LiteGraph's): ``{"title", "bounding": [x, y, w, h],
"color": "#rrggbb", "font_size"}``, in workflow units with the title bar inside the bounding's
top. Keeping ComfyUI's shape means a UI file's groups come in and go back out unchanged
(formats/comfy.py copies the list both ways) and our own files save them as they are. A group is
named by its index in the list. Groups do not own nodes: the nodes a group moves are the ones
whose box lies inside it when the move starts, as in ComfyUI.

Execution never reads groups. No dearpygui here: group_frames.py draws them; this module is
tested without a display.
"""

from __future__ import annotations

from typing import Any

from nodeflow.engine.workflow import Workflow
from nodeflow.gui.view import Box, bounds

DEFAULT_TITLE = "Group"
DEFAULT_COLOR = "#3f789e"  # ComfyUI's default group colour
FONT_SIZE = 24  # ComfyUI's default title size
PADDING = 10.0  # room between a new group's frame and the nodes it is made around
TITLE_HEIGHT = 34.0  # the title bar inside a group's top (ComfyUI: the title's size plus padding)
INSIDE_TOLERANCE = 1.0  # a node this close to the frame's edge still counts as inside


def groups(workflow: Workflow) -> list[dict[str, Any]]:
    return workflow.ui.get("groups") or []


def box(group: dict[str, Any]) -> Box:
    """A group's frame as (x0, y0, x1, y1), workflow units."""
    x, y, width, height = (float(v) for v in group["bounding"][:4])
    return x, y, x + width, y + height


def rgb(color: Any) -> tuple[int, int, int]:
    """A "#rgb" / "#rrggbb" colour as (r, g, b); the default colour for anything else."""
    text = color if isinstance(color, str) else DEFAULT_COLOR
    digits = text.lstrip("#")
    if len(digits) == 3:
        digits = "".join(d * 2 for d in digits)
    try:
        return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)
    except ValueError:
        return rgb(DEFAULT_COLOR)


def members(group: dict[str, Any], node_boxes: dict[str, Box]) -> list[str]:
    """The nodes whose box lies inside the group's frame (those a move of the group takes along)."""
    x0, y0, x1, y1 = box(group)
    t = INSIDE_TOLERANCE
    return [node_id for node_id, (a, b, c, d) in node_boxes.items()
            if a >= x0 - t and b >= y0 - t and c <= x1 + t and d <= y1 + t]


def around(node_boxes: list[Box], title: str = DEFAULT_TITLE) -> dict[str, Any]:
    """A new group framing ``node_boxes``, with room for its title above them."""
    x0, y0, x1, y1 = bounds(node_boxes)
    return {"title": title, "bounding": [round(x0 - PADDING, 1), round(y0 - PADDING - TITLE_HEIGHT, 1),
                                         round(x1 - x0 + 2 * PADDING, 1), round(y1 - y0 + 2 * PADDING + TITLE_HEIGHT, 1)],
            "color": DEFAULT_COLOR, "font_size": FONT_SIZE}


# ----- commands (undoable document edits) ------------------------------------------------------
def add_group(document, node_boxes: list[Box], title: str = DEFAULT_TITLE) -> int | None:
    """Frame the nodes with ``node_boxes`` in a new group; its index (None without nodes)."""
    if not node_boxes:
        return None
    group = around(node_boxes, title)
    document.edit_layout("group nodes", lambda workflow: workflow.ui.setdefault("groups", []).append(group))
    return len(groups(document.workflow)) - 1


def move_group(document, index: int, to: tuple[float, float], node_ids: list[str]) -> None:
    """Put the group's corner at ``to`` and move ``node_ids`` (its members) by as much: one edit."""
    group = groups(document.workflow)[index]
    dx, dy = float(to[0]) - float(group["bounding"][0]), float(to[1]) - float(group["bounding"][1])
    if round(dx, 1) == 0 and round(dy, 1) == 0:
        return

    def change(workflow: Workflow) -> None:
        moved = workflow.ui["groups"][index]
        moved["bounding"] = [round(moved["bounding"][0] + dx, 1), round(moved["bounding"][1] + dy, 1),
                             *moved["bounding"][2:]]
        for node_id in node_ids:
            if node_id in workflow.nodes:
                x, y = workflow.ui["nodes"].get(node_id, {}).get("pos") or [0.0, 0.0]
                workflow.ui["nodes"].setdefault(node_id, {})["pos"] = [round(x + dx, 1), round(y + dy, 1)]

    document.edit_layout("move group", change, structural=False)


def rename_group(document, index: int, title: str) -> None:
    """A new title (empty: the default title)."""
    title = (title or "").strip() or DEFAULT_TITLE
    if index >= len(groups(document.workflow)) or groups(document.workflow)[index].get("title") == title:
        return
    document.edit_layout("rename group", lambda workflow: workflow.ui["groups"][index].update(title=title))


def remove_groups(document, indices: list[int]) -> None:
    """Delete the frames; the nodes in them stay."""
    present = sorted({i for i in indices if 0 <= i < len(groups(document.workflow))}, reverse=True)
    if not present:
        return

    def change(workflow: Workflow) -> None:
        for index in present:
            del workflow.ui["groups"][index]
        if not workflow.ui["groups"]:
            del workflow.ui["groups"]

    document.edit_layout(f"delete {len(present)} group(s)", change)
