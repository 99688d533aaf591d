"""The history panel: a window listing the finished runs (history.py), newest first.

Each row shows the run's thumbnail (a click shows the image large, in the run view's image
viewer), its number, status and time, its seeds, a failure's message, and a "load this workflow"
button that hands the entry to the window (app.py), which restores the graph. The panel opens
by itself after the first finished run; closed, it stays closed until View > History.
"""

from __future__ import annotations

import logging
from typing import Callable

import dearpygui.dearpygui as dpg
from PIL import Image

from nodeflow.gui.history import THUMBNAIL_SIZE, HistoryEntry, rgba
from nodeflow.gui.run_view import ERROR_COLOR, VIEWER_SIZE, open_viewer

logger = logging.getLogger(__name__)

PANEL_WIDTH = 340
MARGIN = 12  # between the panel and the canvas's edges
MINIMAP_SHARE = 0.25  # the canvas's bottom part the panel leaves free (the minimap is there)
MESSAGE_CHARS = 300  # a failure's message is cut to this many characters in its row
STATUS_COLORS = {"done": (140, 220, 140), "failed": ERROR_COLOR, "cancelled": (220, 200, 120)}


class HistoryPanel:
    """The history window and the thumbnails' textures (one per row)."""

    def __init__(self, on_load: Callable[[HistoryEntry], None]) -> None:
        self.on_load = on_load  # "load this workflow" pressed on an entry
        self.textures: dict[int, int] = {}  # entry number -> its thumbnail's texture
        self.opened = False  # opened once (by itself or by the user): not reopened by itself

    def build(self) -> None:
        """The (hidden) window; rows are added as runs finish."""
        with dpg.window(label="History", tag="history", show=False, width=PANEL_WIDTH, no_saved_settings=True):
            dpg.add_text("no finished runs yet", tag="history_empty")
            dpg.add_group(tag="history_list")

    def show(self) -> None:
        """View > History: the window, at the canvas's top-right corner."""
        self.opened = True
        (left, top), (right, bottom) = dpg.get_item_rect_min("canvas"), dpg.get_item_rect_max("canvas")
        height = max(int((bottom - top) * (1 - MINIMAP_SHARE)) - 2 * MARGIN, 200)
        x = max(int(right) - PANEL_WIDTH - MARGIN, int(left))
        dpg.configure_item("history", show=True, pos=(x, int(top) + MARGIN), height=height)

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
        height, width = pixels.shape[:2]
        scale = max(1, VIEWER_SIZE // max(height, width))
        for item in ("viewer", "history_viewer_texture"):  # the viewer first: it shows the texture
            if dpg.does_item_exist(item):
                dpg.delete_item(item)
        dpg.add_static_texture(width, height, pixels.ravel(), parent="textures", tag="history_viewer_texture")
        open_viewer("history_viewer_texture", width * scale, height * scale, f"Run #{entry.number}: {entry.seeds_text()}")

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
