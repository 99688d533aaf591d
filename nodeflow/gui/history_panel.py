"""The history panel: the finished runs (history.py), newest first, docked at the canvas's right.

Each row shows the run's thumbnail (a click shows the image large, in the run view's image
viewer), its number, status and time, its seeds, a failure's message, and a "load this workflow"
button that hands the entry to the window (app.py), which restores the graph. The panel opens
by itself after the first finished run; closed (its "x" or View > History), it stays closed until
View > History.

Shown, it sits at the right of the canvas, which ends that much further left (``make_room``), as
the node library docks at the left (node_library.py): nothing is hidden under the panel, nodes
keep their place on the screen, the minimap moves with the canvas's edge and zoom to fit sees
the room left. ``follow`` (each frame) keeps the room and the panel's place in step with whether
it is shown (whoever hid it) and with the window's size.
"""

from __future__ import annotations

import logging
from typing import Callable

import dearpygui.dearpygui as dpg
from PIL import Image

from nodeflow.gui.history import THUMBNAIL_SIZE, HistoryEntry, rgba
from nodeflow.gui.run_view import ERROR_COLOR, VIEWER_SIZE, view_pixels

logger = logging.getLogger(__name__)

PANEL_WIDTH = 340
SPACING = 8  # the gap between the canvas and the panel (as the node library's)
BELOW = 140  # room left under the panel: the canvas's own (canvas.py), for the log panel
MESSAGE_CHARS = 300  # a failure's message is cut to this many characters in its row
STATUS_COLORS = {"done": (140, 220, 140), "failed": ERROR_COLOR, "cancelled": (220, 200, 120)}


class HistoryPanel:
    """The history panel (tag ``history``) and the thumbnails' textures (one per row);
    ``make_room(pixels)`` has the canvas end that far left of the window's edge (0: at it)."""

    def __init__(self, on_load: Callable[[HistoryEntry], None], make_room: Callable[[int], None]) -> None:
        self.on_load = on_load  # "load this workflow" pressed on an entry
        self.make_room = make_room
        self.textures: dict[int, int] = {}  # entry number -> its thumbnail's texture
        self.opened = False  # opened once (by itself or by the user): not reopened by itself
        self.room = 0  # the room the canvas leaves for the panel now (what make_room was last given)

    def build(self, parent: int | str = "main") -> None:
        """The (hidden) panel, as the last item of the main window (``parent``): shown, it is
        placed right of the canvas and takes no room from the items around it. Rows are added
        as runs finish."""
        with dpg.child_window(tag="history", parent=parent, show=False, width=PANEL_WIDTH, height=-BELOW):
            with dpg.group(horizontal=True):
                dpg.add_text("History")
                dpg.add_spacer(width=PANEL_WIDTH - 130)  # the button at the right (a scrollbar may come)
                dpg.add_button(label="x", tag="history_close", callback=lambda: self.hide())
            with dpg.tooltip("history_close"):
                dpg.add_text("hide the history (View > History shows it again)")
            dpg.add_separator()
            dpg.add_text("no finished runs yet", tag="history_empty")
            dpg.add_group(tag="history_list")

    # ----- showing -------------------------------------------------------------------------
    @property
    def visible(self) -> bool:
        return dpg.does_item_exist("history") and dpg.is_item_shown("history")

    def toggle(self) -> None:
        """View > History: shown or hidden."""
        if self.visible:
            self.hide()
        else:
            self.show()

    def show(self) -> None:
        """The panel, at the canvas's right, the canvas narrowed to make room for it."""
        self.opened = True
        dpg.configure_item("history", show=True)
        self.follow()

    def hide(self) -> None:
        """The panel goes and the canvas takes the whole width again."""
        dpg.configure_item("history", show=False)
        self.follow()

    def follow(self) -> None:
        """Keep the canvas's room and the panel's place in step with the panel: room while it
        is shown (however it was hidden: its "x", the menu, or code hiding the item), and the
        panel at the canvas's right edge, which moves when the window is resized. Called each
        frame before anything else changes the layout, and after showing or hiding it; cheap
        when nothing changed."""
        shown = self.visible
        if shown:
            self._place()
        room = PANEL_WIDTH + SPACING if shown else 0
        if room != self.room:
            self.room = room
            self.make_room(room)
            if dpg.does_item_exist("menu_history"):  # the View menu's check mark follows the panel
                dpg.set_value("menu_history", shown)

    def _place(self) -> None:
        """The panel's top-left corner at the canvas's top, PANEL_WIDTH left of the window's
        right edge: the canvas's right edge as last drawn, plus the room it left then."""
        (_, top), (right, _) = dpg.get_item_rect_min("canvas"), dpg.get_item_rect_max("canvas")
        pos = [int(right) + self.room - PANEL_WIDTH, int(top)]
        if list(dpg.get_item_pos("history")) != pos:
            dpg.configure_item("history", pos=pos)

    def add(self, entry: HistoryEntry, dropped: list[HistoryEntry]) -> None:
        """A row for ``entry`` at the top; ``dropped`` entries' rows go. The first finished run
        opens the panel."""
        for old in dropped:
            self._remove(old.number)
        dpg.configure_item("history_empty", show=False)
        self._row(entry)
        if not self.opened:
            self.show()

    def _remove(self, number: int) -> None:
        if dpg.does_item_exist(f"history_row_{number}"):
            dpg.delete_item(f"history_row_{number}")
        texture = self.textures.pop(number, None)
        if texture is not None and dpg.does_item_exist(texture):
            dpg.delete_item(texture)

    def _row(self, entry: HistoryEntry) -> None:
        rows = dpg.get_item_children("history_list", 1)
        with dpg.group(parent="history_list", tag=f"history_row_{entry.number}", **({"before": rows[0]} if rows else {})):
            with dpg.group(horizontal=True):
                self._thumbnail(entry)
                with dpg.group():
                    dpg.add_text(entry.summary(), color=STATUS_COLORS.get(entry.status, ERROR_COLOR))
                    dpg.add_text(entry.seeds_text(), wrap=PANEL_WIDTH - THUMBNAIL_SIZE - 40)
                    if entry.message:
                        dpg.add_text(entry.message[:MESSAGE_CHARS], wrap=PANEL_WIDTH - THUMBNAIL_SIZE - 40,
                                     color=ERROR_COLOR)
                    dpg.add_button(label="load this workflow", tag=f"history_load_{entry.number}",
                                   callback=lambda: self.on_load(entry))
            dpg.add_separator()

    def _thumbnail(self, entry: HistoryEntry) -> None:
        """The run's thumbnail as a button that shows the image large (a blank button without one)."""
        tag = f"history_image_{entry.number}"
        if entry.thumbnail is None:
            dpg.add_button(label="no image", tag=tag, width=THUMBNAIL_SIZE, height=THUMBNAIL_SIZE)
            return
        height, width = entry.thumbnail.shape[:2]
        texture = dpg.add_static_texture(width, height, entry.thumbnail.ravel(), parent="textures")
        self.textures[entry.number] = texture
        dpg.add_image_button(texture, tag=tag, width=width, height=height, callback=lambda: self.show_image(entry))

    def show_image(self, entry: HistoryEntry) -> None:
        """The run's first image, large: read from its file, else its thumbnail enlarged."""
        pixels = self._image_pixels(entry)
        if pixels is None:
            return
        scale = max(1, VIEWER_SIZE // max(pixels.shape[:2]))
        view_pixels(pixels, f"Run #{entry.number}: {entry.seeds_text()}", scale, "history_viewer_texture")

    @staticmethod
    def _image_pixels(entry: HistoryEntry):
        if entry.image_file is not None:
            try:
                with Image.open(entry.image_file) as picture:
                    return rgba(picture)
            except OSError as error:  # moved or deleted since: the thumbnail will do
                logger.info("run #%d: cannot read %s (%s); showing its thumbnail", entry.number,
                            entry.image_file, error)
        return entry.thumbnail
