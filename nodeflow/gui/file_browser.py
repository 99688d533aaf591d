"""The editor's own file browser: a modal window to choose a file to open, or a name to save to.

It replaces dearpygui's ``file_dialog``, which sorted names in reverse, listed ".." last and gave
sizes in "Ko". What is listed, and in which order, is file_listing.py's (tested without a
display); this module is the window: the folder as an editable path, the rows (".." first, then
folders, then files) with their size and date, an extension filter, a file name box when saving,
and OK / Cancel. A click selects a row; a double-click (or OK) enters a folder or chooses a file.
Escape closes it (the window's key handler calls ``close``, through dialogs.cancel_questions).

Saving to a file that exists asks once, in the browser's message line: pressing Save again
replaces it (the session then writes it atomically, as before). One browser at a time: asking
again while one is open does nothing, as with the editor's other modal questions. Its state lives
in a ``FileBrowser`` object the window's callbacks hold, never in module globals.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Sequence

import dearpygui.dearpygui as dpg

from nodeflow.gui.file_listing import ALL_FILES, Entry, FileFilter, list_folder, save_name, typed_path

logger = logging.getLogger(__name__)

TAG = "file_browser"
WIDTH, HEIGHT = 680, 470
LIST_HEIGHT = 290
NAME_WIDTH = 380
MESSAGE_COLOR = (255, 170, 90)
FOLDER_COLOR = (150, 200, 255)


def is_open() -> bool:
    """Whether a file browser is showing (it has the keyboard: the editor's keys wait)."""
    return dpg.does_item_exist(TAG)


def close() -> None:
    """Cancel: the browser goes without choosing."""
    for tag in (TAG, f"{TAG}_rows", f"{TAG}_folder"):
        if dpg.does_item_exist(tag):
            dpg.delete_item(tag)


def ask_path(title: str, on_choice: Callable[[Path], None], filters: Sequence[FileFilter] = (ALL_FILES,),
             save: bool = False, folder: Path | None = None, name: str = "") -> None:
    """Show the browser in ``folder`` (default: the current folder); ``on_choice(path)`` once a
    file is chosen (``save``: a name to save to, which may not exist yet; ``name`` the proposed one)."""
    if is_open():
        return
    FileBrowser(title, on_choice, filters, save, name).show(Path(folder or Path.cwd()))


class FileBrowser:
    """One browser window's state: its folder, filter, selected row and a pending overwrite."""

    def __init__(self, title: str, on_choice: Callable[[Path], None], filters: Sequence[FileFilter],
                 save: bool, name: str) -> None:
        self.title, self.on_choice, self.save = title, on_choice, save
        self.filters = list(filters) + ([] if ALL_FILES in filters else [ALL_FILES])
        self.filter = self.filters[0]
        self.name = name
        self.folder = Path.cwd()
        self.entries: dict[int, Entry] = {}  # row selectable -> its entry
        self.selected: Entry | None = None
        self.replace: Path | None = None  # a file that exists: Save again replaces it

    # ----- the window ----------------------------------------------------------------------
    def show(self, folder: Path) -> None:
        viewport = (dpg.get_viewport_client_width(), dpg.get_viewport_client_height())
        position = (max((viewport[0] - WIDTH) // 2, 0), max((viewport[1] - HEIGHT) // 3, 0))
        with dpg.theme(tag=f"{TAG}_folder"), dpg.theme_component(dpg.mvSelectable):  # folders' names
            dpg.add_theme_color(dpg.mvThemeCol_Text, FOLDER_COLOR)
        with dpg.item_handler_registry(tag=f"{TAG}_rows"):
            dpg.add_item_double_clicked_handler(button=dpg.mvMouseButton_Left,
                                                callback=lambda s, a: self._double_clicked(a))
        with dpg.window(label=self.title, tag=TAG, modal=True, width=WIDTH, height=HEIGHT, pos=position,
                        no_saved_settings=True, on_close=lambda: close()):
            with dpg.group(horizontal=True):
                dpg.add_button(label="Up", tag=f"{TAG}_up", callback=lambda: self.go(self.folder.parent))
                dpg.add_input_text(tag=f"{TAG}_path", width=-1, on_enter=True,
                                   callback=lambda s, text: self._path_typed(text))
            with dpg.table(tag=f"{TAG}_table", header_row=True, scrollY=True, height=LIST_HEIGHT,
                           row_background=True, borders_innerV=True, policy=dpg.mvTable_SizingStretchProp):
                dpg.add_table_column(label="Name", init_width_or_weight=6)
                dpg.add_table_column(label="Size", init_width_or_weight=1.3)
                dpg.add_table_column(label="Modified", init_width_or_weight=2)
            if self.save:
                with dpg.group(horizontal=True):
                    dpg.add_text("File name")
                    dpg.add_input_text(tag=f"{TAG}_name", default_value=self.name, width=NAME_WIDTH, on_enter=True,
                                       callback=lambda: self.ok())
            with dpg.group(horizontal=True):
                dpg.add_text("Show")
                dpg.add_combo([f.label for f in self.filters], tag=f"{TAG}_filter", default_value=self.filter.label,
                              width=NAME_WIDTH, callback=lambda s, label: self._filter_chosen(label))
            dpg.add_text("", tag=f"{TAG}_message", color=MESSAGE_COLOR, wrap=WIDTH - 30)
            with dpg.group(horizontal=True):
                dpg.add_button(label="Save" if self.save else "Open", tag=f"{TAG}_ok", width=90,
                               callback=lambda: self.ok())
                dpg.add_button(label="Cancel", tag=f"{TAG}_cancel", width=90, callback=lambda: close())
        self.go(folder)
        if self.save:
            dpg.focus_item(f"{TAG}_name")

    def go(self, folder: Path) -> None:
        """List ``folder`` (a folder that cannot be read shows why, and ".." to go back)."""
        self.folder, self.selected, self.replace = Path(folder), None, None
        listing = list_folder(self.folder, self.filter)
        dpg.set_value(f"{TAG}_path", str(self.folder))
        self.say(listing.error or "")
        dpg.delete_item(f"{TAG}_table", children_only=True, slot=1)
        self.entries.clear()
        for entry in listing.entries:
            with dpg.table_row(parent=f"{TAG}_table"):
                label = entry.name if entry.is_parent or not entry.is_dir else entry.name + "/"
                row = dpg.add_selectable(label=label, span_columns=True, callback=lambda s: self._clicked(s))
                if entry.is_dir:
                    dpg.bind_item_theme(row, f"{TAG}_folder")
                dpg.bind_item_handler_registry(row, f"{TAG}_rows")
                dpg.add_text(entry.size_text())
                dpg.add_text(entry.date_text())
            self.entries[row] = entry

    def say(self, text: str) -> None:
        dpg.set_value(f"{TAG}_message", text)

    # ----- what the user does --------------------------------------------------------------
    def _clicked(self, row: int) -> None:
        """A click selects the row (only it); when saving, a file's name goes to the name box."""
        for other in self.entries:
            dpg.set_value(other, other == row)
        self.selected = self.entries.get(row)
        if self.save and self.selected is not None and not self.selected.is_dir:
            dpg.set_value(f"{TAG}_name", self.selected.name)

    def _double_clicked(self, app_data) -> None:
        """A double-click on a row: enter the folder, or choose the file."""
        row = app_data[1] if isinstance(app_data, (list, tuple)) else app_data
        if row in self.entries:
            self._clicked(row)
            self.ok()

    def _filter_chosen(self, label: str) -> None:
        self.filter = next((f for f in self.filters if f.label == label), ALL_FILES)
        self.go(self.folder)

    def _path_typed(self, text: str) -> None:
        """Enter in the path box: a folder is listed; a file is chosen (Open) or named (Save)."""
        path = typed_path(self.folder, text)
        if path.is_dir():
            self.go(path)
        elif path.is_file() and not self.save:
            self._choose(path)
        elif self.save and path.parent.is_dir():
            self.go(path.parent)
            dpg.set_value(f"{TAG}_name", path.name)
        else:
            self.say(f"no such folder: {path}")

    def ok(self) -> None:
        """OK (or a double-click, or Enter in the name box): enter the selected folder, or
        choose the selected file (Open) or the named one (Save)."""
        if self.selected is not None and self.selected.is_dir:
            self.go(self.selected.path)
        elif self.save:
            self._save_named(dpg.get_value(f"{TAG}_name"))
        elif self.selected is not None:
            self._choose(self.selected.path)
        else:
            self.say("choose a file")

    def _save_named(self, name: str) -> None:
        if not name.strip():
            self.say("type a file name")
            return
        target = typed_path(self.folder, save_name(name))
        if target.is_dir():
            self.go(target)
        elif not target.parent.is_dir():
            self.say(f"no such folder: {target.parent}")
        elif target.exists() and target != self.replace:
            self.replace = target
            self.say(f"{target.name} exists: Save again to replace it")
        else:
            self._choose(target)

    def _choose(self, path: Path) -> None:
        """The answer: the browser goes, then ``on_choice`` (which may ask something else)."""
        close()
        logger.debug("file browser chose %s", path)
        self.on_choice(path)
