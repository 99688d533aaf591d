"""What the window does with groups and reroute dots: Edit > Group selected nodes (Ctrl+G),
their right-click menu, Delete, renaming a group (F2, a double-click on its title), adding a
reroute on the selected link (Edit > Add reroute on selected link, or a double-click on the link).

Kept out of app.py, which calls these from its menus, keys and mouse handlers; the edits
themselves are document commands (groups.py, reroutes.py), drawn by group_frames.py and
reroute_dots.py.
"""

from __future__ import annotations

from typing import Callable

import dearpygui.dearpygui as dpg

from nodeflow.gui import dialogs, groups, reroutes

MENU = "layout_menu"


class LayoutActions:
    """Group and reroute commands for the canvas's selection and the item under the mouse."""

    def __init__(self, canvas, status: Callable[..., None]) -> None:
        self.canvas, self.status = canvas, status
        self.menu_target: tuple | None = None  # ("group", index) or ("reroute", id): what the menu acts on

    @property
    def document(self):
        return self.canvas.document

    def build_menu(self) -> None:
        """The right-click menu of a group's title or a reroute dot."""
        with dpg.window(tag=MENU, show=False, no_title_bar=True, popup=True, autosize=True):
            dpg.add_menu_item(label="Rename group...", tag="layout_menu_rename", callback=lambda: self._menu_rename())
            dpg.add_menu_item(label="Delete", tag="layout_menu_delete", callback=lambda: self._menu_delete())

    def open_menu(self, mouse) -> bool:
        """A right-click: on a group's title or a reroute dot, its menu opens (True)."""
        index, reroute_id = self.canvas.group_frames.hovered(), self.canvas.reroute_dots.hovered()
        if index is None and reroute_id is None:
            return False
        self.menu_target = ("group", index) if index is not None else ("reroute", reroute_id)
        dpg.configure_item("layout_menu_rename", show=index is not None)
        dpg.configure_item("layout_menu_delete", label="Delete group (keep its nodes)" if index is not None
                           else "Delete reroute (keep its links)")
        dpg.configure_item(MENU, show=True, pos=mouse)
        return True

    def _menu_rename(self) -> None:
        dpg.configure_item(MENU, show=False)
        if self.menu_target and self.menu_target[0] == "group":
            self.rename_group(self.menu_target[1])

    def _menu_delete(self) -> None:
        dpg.configure_item(MENU, show=False)
        if self.menu_target and self.menu_target[0] == "group":
            groups.remove_groups(self.document, [self.menu_target[1]])
            self.status("deleted 1 group")
        elif self.menu_target:
            reroutes.remove_reroutes(self.document, [self.menu_target[1]])
            self.status("deleted 1 reroute")

    def group_selection(self) -> None:
        """Edit > Group selected nodes: a group titled "Group" around them."""
        selected = set(self.canvas.selected_nodes())
        boxes = [box for node_id, box in zip(self.document.workflow.nodes, self.canvas.node_boxes())
                 if node_id in selected]
        if groups.add_group(self.document, boxes) is None:
            self.status("select the nodes to group", error=True)
        else:
            self.status(f"grouped {len(boxes)} node(s)")

    def delete_selection(self) -> str:
        """Delete the selected groups (frames only) and reroute dots (their links stay); what
        was deleted, for the status bar ("" for nothing)."""
        chosen_groups, chosen_dots = self.canvas.group_frames.selected(), self.canvas.reroute_dots.selected()
        groups.remove_groups(self.document, chosen_groups)
        reroutes.remove_reroutes(self.document, chosen_dots)
        parts = [f"{len(chosen_groups)} group(s)" if chosen_groups else "",
                 f"{len(chosen_dots)} reroute(s)" if chosen_dots else ""]
        return " and ".join(part for part in parts if part)

    def rename_selected(self) -> bool:
        """F2 with one group selected: rename it (True); anything else is the nodes' business."""
        chosen = self.canvas.group_frames.selected()
        if len(chosen) == 1 and not self.canvas.selected_nodes():
            self.rename_group(chosen[0])
            return True
        return False

    def double_click(self) -> bool:
        """A double-click on a group's title renames the group; one on a link (its first click
        selected it: imnodes reports no link under the mouse) adds a reroute there (True)."""
        index = self.canvas.group_frames.hovered()
        if index is not None:
            self.rename_group(index)
            return True
        if self.canvas.hovered_node() is not None or self.canvas.reroute_dots.hovered() is not None:
            return False
        mouse = dpg.get_mouse_pos(local=False)
        piece = self.canvas.reroute_dots.selected_piece(near=mouse)
        return piece is not None and self._add_reroute(piece, mouse)

    def add_reroute_on_selection(self) -> None:
        """Edit > Add reroute on selected link: a dot at the middle of the selected link (or piece
        of a link drawn through dots), which the link is then drawn through."""
        piece = self.canvas.reroute_dots.selected_piece()
        if piece is None:
            self.status("select one link (click it) to add a reroute on", error=True)
            return
        (x0, y0), (x1, y1) = piece[2]
        self._add_reroute(piece, ((x0 + x1) / 2, (y0 + y1) / 2))  # on the curve: it is symmetric

    def _add_reroute(self, piece, screen) -> bool:
        ends, links, _ = piece
        added = reroutes.add_reroute(self.document, ends, links, self.canvas.reroute_dots.dot_position(screen))
        if added is not None:
            self.status("added a reroute" + (f" on {len(links)} links" if len(links) > 1 else ""))
        return added is not None

    def rename_group(self, index: int) -> None:
        if dialogs.renaming() or index >= len(groups.groups(self.document.workflow)):
            return
        x, y = self.canvas.group_frames.handle_rect(index)
        title = groups.groups(self.document.workflow)[index].get("title") or ""
        dialogs.ask_node_title(title, (max(int(x), 0), max(int(y), 0)),
                               lambda text: groups.rename_group(self.document, index, text))
