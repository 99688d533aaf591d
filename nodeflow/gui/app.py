"""The desktop editor: a dearpygui window over a ``Document``.

The document is the source of truth. Every edit goes through a document command (so it can be
undone and is checked: link types, cycles); the canvas is rebuilt from the document when its
structure changes. Runs happen on a ``Worker`` thread; its events are drained once per frame, so
dearpygui is only used from this thread and frames keep rendering while the sampler runs. Widget
callbacks are queued by dearpygui and run by ``frame`` on this thread too (manual callback
management), never concurrently with a rebuild.
"""

from __future__ import annotations

import inspect
import logging
import signal
import time
from pathlib import Path

import dearpygui.dearpygui as dpg
import numpy as np

from nodeflow.engine import events
from nodeflow.gui.document import Document, EditRefused
from nodeflow.gui.recent import RecentFiles, default_recent_file
from nodeflow.gui.seed_control import MODES as SEED_MODES
from nodeflow.gui.seed_control import seed_mode, seeds_after_run, set_seed_mode
from nodeflow.gui.worker import RunCancelled, RunFailed, RunInvalid, RunProgress, Worker
from nodeflow.gui.theme import Themes
from nodeflow.gui.view import LEVELS, View, bounds, fit, scaled, step
from nodeflow.spec import BOOLEAN, CHOICE, FLOAT, INT, STRING

logger = logging.getLogger(__name__)

AUTOSAVE_SECONDS = 5.0
PREVIEW_SIZE = 160
NODE_PADDING = 8  # imnodes' default at 100%: a node's content (its reported rect) starts this far inside it
KEY_EQUAL = 602  # ImGuiKey_Equal ("=", "+" with shift): dearpygui 2.3 names none (its mvKey_Plus is 61)
FIT_PASSES = 3  # zoom to fit measures the nodes again at the zoom it chose, and may zoom out further


class EditorApp:
    """Owns the window, the document, the worker and the maps between dearpygui items and ports."""

    def __init__(self, document: Document, executor, paths, recovery_file: Path,
                 recent: RecentFiles | None = None, device: str = "cpu", dtype: str = "auto",
                 preview_every: int = 1) -> None:
        self.document, self.executor, self.paths = document, executor, paths
        self.recent = recent or RecentFiles(default_recent_file())
        self.worker = Worker(executor, device, dtype, preview_every)
        self.recovery_file = recovery_file
        self.pin_to_port: dict[int, tuple[str, str, object]] = {}  # attribute -> (node, "in"/"out", name|index)
        self.port_to_pin: dict[tuple[str, str, object], int] = {}
        self.node_items: dict[str, int] = {}
        self.link_items: dict[int, object] = {}
        self.clipboard = None
        self.built_structure = -1
        self.last_autosave = time.monotonic()
        self.textures: dict[str, tuple[int, tuple[int, int]]] = {}  # key -> (texture, (w, h))
        self.running_node: str | None = None
        self.failed_node: str | None = None
        self.invalid_nodes: set[str] = set()
        self.cached_nodes: set[str] = set()
        self.shown_images: dict[str, object] = {}  # node id -> IMAGE last shown (kept across rebuilds)
        self.widget_popups: set[int] = set()  # widgets with their own right-click menu
        self.sized_items: dict[int, dict[str, int]] = {}  # canvas item -> its sizes at 100% (see _sized)
        self.menu_node: str | None = None  # the node the node menu acts on
        self.shown_title: str | None = None
        self.progress = RunProgress(self._progress_label)
        self.recovered_revision: int | None = None  # the document revision in the recovery file
        self.recovery_offered = False  # an earlier session's recovery file awaits an answer
        self.keep_recovery = True  # False once the user chose to close without the changes
        self.view = View()  # the canvas's zoom and offset (not part of the workflow)
        self.pan = (0.0, 0.0)  # the node editor's own panning, as last measured (see _measure_canvas)
        self.canvas_rect = None  # the canvas's screen rect as last drawn, and whether it was so the frame before
        self.canvas_steady = False
        self.fit_passes = 0  # > 0: zoom to fit is pending (done once the nodes are drawn)
        self.terminating = False  # set by SIGTERM: the frame loop ends, unsaved work goes to recovery

    # ----- building ------------------------------------------------------------------------
    def build(self) -> None:
        dpg.configure_app(manual_callback_management=True)  # callbacks run in frame(), on this thread
        with dpg.texture_registry(tag="textures"):
            pass
        self.themes = Themes()
        if self.themes.fonts:
            dpg.bind_font(self.themes.fonts[1.0])
        with dpg.window(tag="main", no_scrollbar=True):
            self._menu()
            with dpg.group(horizontal=True, tag="toolbar"):
                dpg.add_button(label="Run (Ctrl+Enter)", callback=lambda: self.run())
                dpg.add_button(label="Stop", callback=lambda: self.worker.stop())
                dpg.add_input_text(tag="search", hint="add node: type to search, Enter to place", width=320,
                                   callback=self._search_changed)  # Enter: _on_key
                dpg.add_progress_bar(tag="progress", default_value=0.0, width=300, overlay="idle")
                dpg.add_text("100%", tag="zoom")
                dpg.add_text("", tag="status")
            with dpg.group(tag="canvas"):  # the editor reports no rect; this group's rect is the editor's
                with dpg.node_editor(tag="editor", callback=self._on_link, delink_callback=self._on_delink,
                                     minimap=True, minimap_location=dpg.mvNodeMiniMap_Location_BottomRight,
                                     height=-140):
                    pass
            with dpg.child_window(tag="log", height=120, horizontal_scrollbar=True):
                pass
        self._add_menu_popup()
        self._node_menu_popup()
        self._search_results_popup()
        with dpg.handler_registry():
            dpg.add_key_press_handler(dpg.mvKey_Delete, callback=lambda: self.delete_selection())
            dpg.add_key_press_handler(callback=self._on_key)
            dpg.add_mouse_click_handler(button=dpg.mvMouseButton_Right, callback=self._on_right_click)
            dpg.add_mouse_double_click_handler(button=dpg.mvMouseButton_Left, callback=self._on_double_click)
            dpg.add_mouse_release_handler(button=dpg.mvMouseButton_Left, callback=lambda: self._sync_positions())
            dpg.add_mouse_wheel_handler(callback=self._on_wheel)
        dpg.set_primary_window("main", True)
        dpg.set_exit_callback(self.request_close)  # the close button (see show_window)
        self._show_zoom()
        self.rebuild()

    def _menu(self) -> None:
        with dpg.menu_bar():
            with dpg.menu(label="File"):
                dpg.add_menu_item(label="New", shortcut="Ctrl+N", callback=lambda: self.confirm_discard(self.new))
                dpg.add_menu_item(label="Open...", shortcut="Ctrl+O", callback=lambda: self.confirm_discard(self.open_dialog))
                with dpg.menu(label="Open Recent", tag="recent_menu"):
                    pass
                self._fill_recent_menu()
                dpg.add_menu_item(label="Save", shortcut="Ctrl+S", callback=lambda: self.save())
                dpg.add_menu_item(label="Save As...", callback=lambda: self.save_dialog())
            with dpg.menu(label="Edit"):
                dpg.add_menu_item(label="Undo", shortcut="Ctrl+Z", callback=lambda: self.undo())
                dpg.add_menu_item(label="Redo", shortcut="Ctrl+Shift+Z", callback=lambda: self.redo())
                dpg.add_menu_item(label="Copy", shortcut="Ctrl+C", callback=lambda: self.copy_selection())
                dpg.add_menu_item(label="Paste", shortcut="Ctrl+V", callback=lambda: self.paste())
                dpg.add_menu_item(label="Duplicate", shortcut="Ctrl+D", callback=lambda: self.duplicate_selection())
                dpg.add_menu_item(label="Delete", shortcut="Del", callback=lambda: self.delete_selection())
                dpg.add_menu_item(label="Rename selected...", shortcut="F2", callback=lambda: self.rename_selection())
                dpg.add_menu_item(label="Bypass selected", shortcut="Ctrl+B", callback=lambda: self.set_selection_mode("bypassed"))
                dpg.add_menu_item(label="Mute selected", shortcut="Ctrl+M", callback=lambda: self.set_selection_mode("muted"))
                dpg.add_menu_item(label="Enable selected", callback=lambda: self.set_selection_mode("normal"))
            with dpg.menu(label="View"):
                dpg.add_menu_item(label="Zoom in", shortcut="Ctrl+=", callback=lambda: self.zoom_by(1))
                dpg.add_menu_item(label="Zoom out", shortcut="Ctrl+-", callback=lambda: self.zoom_by(-1))
                dpg.add_menu_item(label="Actual size", shortcut="Ctrl+0", callback=lambda: self.actual_size())
                dpg.add_menu_item(label="Zoom to fit", shortcut="F, Home", callback=lambda: self.zoom_to_fit())
            with dpg.menu(label="Run"):
                dpg.add_menu_item(label="Run", shortcut="Ctrl+Enter", callback=lambda: self.run())
                dpg.add_menu_item(label="Stop", callback=lambda: self.worker.stop())
                dpg.add_menu_item(label="Clear cache", callback=lambda: self.clear_cache())

    def _add_menu_popup(self) -> None:
        with dpg.window(tag="add_menu", show=False, no_title_bar=True, popup=True, autosize=True):
            categories: dict[str, list] = {}
            for spec in self.document.registry:
                categories.setdefault(spec.category.split("/")[0], []).append(spec)
            for category in sorted(categories):
                with dpg.menu(label=category):
                    for spec in categories[category]:
                        dpg.add_menu_item(label=spec.display, user_data=spec.id,
                                          callback=lambda s, a, u: self.add_node(u, self.popup_position))

    def _node_menu_popup(self) -> None:
        with dpg.window(tag="node_menu", show=False, no_title_bar=True, popup=True, autosize=True):
            dpg.add_menu_item(label="Rename...", shortcut="F2", callback=lambda: self.rename_dialog(self.menu_node))
            for mode, label in (("bypassed", "Bypass"), ("muted", "Mute"), ("normal", "Enable")):
                dpg.add_menu_item(label=label, user_data=mode,
                                  callback=lambda s, a, u: self.document.set_mode(self.menu_node, u))

    def _search_results_popup(self) -> None:
        """Matches float under the search box, over the canvas. The window stays shown (drawn as
        nothing while there are no matches): dearpygui focuses a window shown again, ending typing."""
        with dpg.window(tag="search_popup", no_title_bar=True, no_move=True, no_resize=True, autosize=True,
                        no_focus_on_appearing=True, no_saved_settings=True, min_size=(1, 1)):
            dpg.add_listbox(tag="search_results", items=[], num_items=6, width=420,
                            callback=lambda s, a: self._place_from_search(a))
        self._show_search_results([])

    def _show_search_results(self, matches: list[str]) -> None:
        """The first match is highlighted: it is the one Enter places."""
        dpg.configure_item("search_results", items=matches, show=bool(matches))
        if matches:
            dpg.set_value("search_results", matches[0])
        dpg.bind_item_theme("search_popup", 0 if matches else self.themes.hidden_window)
        if matches:  # under the search box
            x, _ = dpg.get_item_rect_min("search")
            _, y = dpg.get_item_rect_max("search")
        else:  # a few invisible pixels in the window's bottom-right margin
            x, y = dpg.get_viewport_client_width() - 6, dpg.get_viewport_client_height() - 6
        dpg.configure_item("search_popup", pos=(x, y + 2 if matches else y))

    def rebuild(self) -> None:
        """Recreate the canvas from the document (after structural edits)."""
        dpg.delete_item("editor", children_only=True)
        self.pin_to_port.clear()
        self.port_to_pin.clear()
        self.node_items.clear()
        self.link_items.clear()
        self.widget_popups.clear()
        self.sized_items.clear()
        for node_id in self.document.workflow.nodes:
            self._build_node(node_id)
        for link in self.document.workflow.links:
            a = self.port_to_pin.get((link.src, "out", link.src_output))
            b = self.port_to_pin.get((link.dst, "in", link.dst_input))
            if a is not None and b is not None:
                self.link_items[dpg.add_node_link(a, b, parent="editor")] = link
        self.built_structure = self.document.structure

    def _build_node(self, node_id: str) -> None:
        instance = self.document.workflow.nodes[node_id]
        spec = self.document.registry.specs.get(instance.type)
        label = self._node_label(node_id)
        if instance.mode != "normal":
            label += f" [{instance.mode}]"
        with dpg.node(label=label, parent="editor", pos=self.view.to_grid(self.document.position(node_id)),
                      user_data=node_id) as item:
            self.node_items[node_id] = item
            if spec is None:
                with dpg.node_attribute(attribute_type=dpg.mvNode_Attr_Static):
                    dpg.add_text(f"unknown node type {instance.type}", color=(255, 90, 90))
                return
            for input_spec in spec.inputs:
                self._build_input(node_id, instance, input_spec)
            for index, output in enumerate(spec.outputs):
                with dpg.node_attribute(attribute_type=dpg.mvNode_Attr_Output) as pin:
                    self._sized(dpg.add_text(output.label), indent=60)
                dpg.bind_item_theme(pin, self.themes.pin(output.type))
                self._map(pin, (node_id, "out", index))
            if spec.output_node:
                with dpg.node_attribute(attribute_type=dpg.mvNode_Attr_Static):
                    dpg.add_group(tag=f"images_{node_id}")
        self._apply_node_theme(node_id)
        if node_id in self.shown_images:
            self._show_images(node_id, self.shown_images[node_id])

    def _build_input(self, node_id: str, instance, spec) -> None:
        pinned = not spec.is_widget or self.document.is_pin(node_id, spec.name)
        kind = dpg.mvNode_Attr_Input if pinned else dpg.mvNode_Attr_Static
        with dpg.node_attribute(attribute_type=kind) as attribute:
            if pinned:
                dpg.add_text(spec.name + ("" if spec.is_widget else f"  ({spec.type})"))
            else:
                self._widget(node_id, instance, spec)
        if pinned:
            dpg.bind_item_theme(attribute, self.themes.pin(spec.type))
            self._map(attribute, (node_id, "in", spec.name))
        children = dpg.get_item_children(attribute, 1)
        if spec.is_widget and children:  # right-click on the widget or its label
            self.widget_popups.add(children[0])
            with dpg.popup(children[0], mousebutton=dpg.mvMouseButton_Right) as popup:
                self._unzoomed(popup)
                dpg.add_menu_item(label="Convert to widget" if pinned else "Convert to input pin",
                                  callback=lambda: self._toggle_pin(node_id, spec.name))

    def _widget(self, node_id: str, instance, spec) -> None:
        value = instance.inputs.get(spec.name, spec.default)

        def changed(sender, app_data):
            self._set_value(node_id, spec.name, app_data)

        width = 180  # pixels at 100% (see _sized)
        if spec.type == INT:
            if spec.seed:
                with dpg.group(horizontal=True):
                    self._sized(dpg.add_input_text(
                        label=spec.name, default_value=str(value), decimal=True,
                        callback=lambda s, a: self._set_value(node_id, spec.name, int(a or 0))), width=width)
                    self._sized(dpg.add_combo(
                        list(SEED_MODES), default_value=seed_mode(self.document.workflow, node_id, spec.name),
                        callback=lambda s, a: set_seed_mode(self.document, node_id, spec.name, a)), width=100)
            else:
                self._sized(dpg.add_drag_int(label=spec.name, default_value=int(value or 0),
                                             min_value=int(spec.min) if spec.min is not None else 0,
                                             max_value=int(spec.max) if spec.max is not None else 0,
                                             clamped=spec.min is not None and spec.max is not None,
                                             speed=max(float(spec.step or 1) / 4, 0.25), callback=changed),
                            width=width)
        elif spec.type == FLOAT:
            self._sized(dpg.add_drag_float(label=spec.name, default_value=float(value or 0.0),
                                           min_value=float(spec.min) if spec.min is not None else 0.0,
                                           max_value=float(spec.max) if spec.max is not None else 0.0,
                                           clamped=spec.min is not None and spec.max is not None,
                                           speed=float(spec.step or 0.01), format="%.3f", callback=changed),
                        width=width)
        elif spec.type == STRING:
            text = dpg.add_input_text(label=spec.name, default_value=str(value or ""), multiline=spec.multiline,
                                      callback=changed)
            self._sized(text, **({"width": 260, "height": 80} if spec.multiline else {"width": width}))
        elif spec.type == BOOLEAN:
            dpg.add_checkbox(label=spec.name, default_value=bool(value), callback=changed)
        elif spec.type == CHOICE:
            items = spec.choices(self.paths)
            self._sized(dpg.add_combo(items, label=spec.name, default_value=str(value or (items[0] if items else "")),
                                      callback=changed), width=width)
        if spec.tooltip:
            with dpg.tooltip(dpg.last_item()) as tooltip:
                self._unzoomed(tooltip)
                dpg.add_text(spec.tooltip)

    def _map(self, attribute: int, port: tuple) -> None:
        self.pin_to_port[attribute] = port
        self.port_to_pin[port] = attribute

    # ----- edits ---------------------------------------------------------------------------
    def _status(self, text: str, error: bool = False) -> None:
        dpg.set_value("status", text)
        dpg.configure_item("status", color=(255, 110, 110) if error else (200, 200, 200))

    def _log(self, text: str, error: bool = False) -> None:
        dpg.add_text(text, parent="log", color=(255, 110, 110) if error else (190, 190, 190), wrap=0)
        dpg.set_y_scroll("log", dpg.get_y_scroll_max("log") + 40)

    def _on_link(self, sender, app_data) -> None:
        out_pin, in_pin = app_data
        src, dst = self.pin_to_port.get(out_pin), self.pin_to_port.get(in_pin)
        if src is None or dst is None or src[1] != "out" or dst[1] != "in":
            return
        try:
            self.document.connect(src[0], src[2], dst[0], dst[2])
            self._status("connected")
        except EditRefused as refused:
            self._status(f"link refused: {refused}", error=True)

    def _on_delink(self, sender, link_item) -> None:
        link = self.link_items.get(link_item)
        if link is not None:
            self.document.disconnect(link)

    def _set_value(self, node_id: str, name: str, value) -> None:
        self.document.set_value(node_id, name, value)

    def _toggle_pin(self, node_id: str, name: str) -> None:
        self.document.toggle_pin(node_id, name)

    def add_node(self, type_id: str, position) -> None:
        self.document.add_node(type_id, tuple(position))
        dpg.configure_item("add_menu", show=False)

    def _selected_nodes(self) -> list[str]:
        return [dpg.get_item_user_data(item) for item in dpg.get_selected_nodes("editor")]

    def delete_selection(self) -> None:
        if self._typing():  # Delete edits the text
            return
        links = [self.link_items[i] for i in dpg.get_selected_links("editor") if i in self.link_items]
        for link in links:
            self.document.disconnect(link)
        self.document.remove_nodes(self._selected_nodes())

    def copy_selection(self) -> None:
        self.clipboard = self.document.copy(self._selected_nodes())

    def paste(self) -> None:
        if self.clipboard is not None:
            self.document.paste(self.clipboard)

    def duplicate_selection(self) -> None:
        self.document.duplicate(self._selected_nodes())

    def set_selection_mode(self, mode: str) -> None:
        for node_id in self._selected_nodes():
            self.document.set_mode(node_id, mode)

    def undo(self) -> None:
        label = self.document.undo()
        self._status(f"undid {label}" if label else "nothing to undo")

    def redo(self) -> None:
        label = self.document.redo()
        self._status(f"redid {label}" if label else "nothing to redo")

    def _sync_positions(self) -> None:
        """Take the nodes' positions from the canvas after a drag: one edit however many moved.
        A node counts as moved when it is not at the grid position the view draws it at (so the
        view's rounding to whole pixels moves nothing); its new position is taken in workflow
        units. Nothing is taken while the canvas is older than the document (an undo this frame)."""
        if self.document.structure != self.built_structure:
            return
        moved = {}
        for node_id, item in self.node_items.items():
            if node_id not in self.document.workflow.nodes or not dpg.does_item_exist(item):
                continue
            grid = tuple(dpg.get_item_pos(item))
            if grid != self.view.to_grid(self.document.position(node_id)):
                x, y = self.view.to_model(grid)
                moved[node_id] = (round(x, 1), round(y, 1))
        self.document.move_nodes(moved)

    def _on_right_click(self) -> None:
        """On a node (not on a widget, which has its own menu): the node menu; elsewhere on the
        canvas: the add-node menu."""
        if not dpg.is_item_hovered("editor"):
            return
        mouse = dpg.get_mouse_pos(local=False)
        node_id = self._hovered_node()
        if node_id is not None:
            if not any(dpg.does_item_exist(i) and dpg.is_item_hovered(i) for i in self.widget_popups):
                self.menu_node = node_id
                dpg.configure_item("node_menu", show=True, pos=mouse)
            return
        self.popup_position = self._canvas_point(mouse)
        dpg.configure_item("add_menu", show=True, pos=mouse)

    def _hovered_node(self) -> str | None:
        for node_id, item in self.node_items.items():
            if dpg.does_item_exist(item) and dpg.is_item_hovered(item):
                return node_id
        return None

    def _node_label(self, node_id: str) -> str:
        instance = self.document.workflow.nodes[node_id]
        spec = self.document.registry.specs.get(instance.type)
        return instance.title or (spec.display if spec else instance.type)

    def _on_double_click(self) -> None:
        """Double-click a node's title: rename it."""
        node_id = self._hovered_node() if dpg.is_item_hovered("editor") else None
        if node_id is not None and self._on_title(node_id, dpg.get_mouse_pos(local=False)[1]):
            self.rename_dialog(node_id)

    def _on_title(self, node_id: str, y: float) -> bool:
        """Whether screen height ``y`` is on the node's title bar (above its first row). The node
        editor hides clicks from the title's own item, so this is measured."""
        item = self.node_items[node_id]
        rows = [row for attribute in dpg.get_item_children(item, 1) for row in dpg.get_item_children(attribute, 1)]
        top = dpg.get_item_rect_min(item)[1]
        first_row = dpg.get_item_rect_min(rows[0])[1] if rows else 0
        return y < (first_row if first_row > top else top + 2 * self._scaled(NODE_PADDING))

    def rename_selection(self) -> None:
        selected = self._selected_nodes()
        if len(selected) == 1:
            self.rename_dialog(selected[0])
        else:
            self._status("select one node to rename", error=True)

    def rename_dialog(self, node_id: str | None) -> None:
        """A title for the node (empty: the node type's name); Enter or OK applies it."""
        if node_id not in self.document.workflow.nodes or dpg.does_item_exist("rename"):
            return
        x, y = dpg.get_item_rect_min(self.node_items[node_id]) if node_id in self.node_items else (200, 120)
        with dpg.window(label="Rename node", modal=True, tag="rename", autosize=True, no_saved_settings=True,
                        pos=(max(int(x), 0), max(int(y), 0)), on_close=lambda sender: dpg.delete_item(sender)):
            dpg.add_input_text(tag="rename_text", default_value=self._node_label(node_id), width=280,
                               on_enter=True, callback=lambda s, a: self._finish_rename(node_id, a))
            dpg.add_text("empty: the node type's name", color=(150, 150, 150))
            with dpg.group(horizontal=True):
                dpg.add_button(label="OK", callback=lambda: self._finish_rename(node_id, dpg.get_value("rename_text")))
                dpg.add_button(label="Cancel", callback=lambda: dpg.delete_item("rename"))
        dpg.focus_item("rename_text")

    def _finish_rename(self, node_id: str, text: str) -> None:
        dpg.delete_item("rename")
        if node_id in self.document.workflow.nodes:
            self.document.set_title(node_id, text)

    # ----- canvas coordinates -----------------------------------------------------------------
    # Nodes sit at grid positions (workflow position * zoom + offset, see view.py); the node
    # editor's middle-drag panning moves the whole grid on the screen.
    def _measure_canvas(self) -> None:
        """The canvas's rect (steady once the window is laid out: its first frames report
        others) and the editor's panning (where the grid's origin is, from the canvas's corner),
        found from a node as it was last drawn: the editor does not report its panning. Done at
        the start of each frame, before anything moves or rebuilds the nodes; the panning is kept
        when no node is drawn."""
        rect = (tuple(dpg.get_item_rect_min("canvas")), tuple(dpg.get_item_rect_max("canvas")))
        self.canvas_steady, self.canvas_rect = rect == self.canvas_rect, rect
        padding, (cx, cy) = self._scaled(NODE_PADDING), rect[0]
        for item in self.node_items.values():
            if dpg.does_item_exist(item) and dpg.get_item_state(item).get("rect_size", [0, 0])[0] > 0:
                (sx, sy), (gx, gy) = dpg.get_item_rect_min(item), dpg.get_item_pos(item)
                self.pan = (sx - gx - padding - cx, sy - gy - padding - cy)
                return

    def _grid_point(self, screen) -> tuple[float, float]:
        """The grid position at a screen position."""
        x, y = dpg.get_item_rect_min("canvas")
        return float(screen[0]) - x - self.pan[0], float(screen[1]) - y - self.pan[1]

    def _canvas_point(self, screen) -> list[float]:
        """The workflow position at a screen position."""
        return list(self.view.to_model(self._grid_point(screen)))

    def _canvas_centre(self) -> tuple[float, float]:
        (x0, y0), (x1, y1) = dpg.get_item_rect_min("canvas"), dpg.get_item_rect_max("canvas")
        return (x0 + x1) / 2, (y0 + y1) / 2

    def _placement(self) -> list[float]:
        """Where a new node goes: at the mouse on the canvas, else at the visible canvas's centre."""
        if dpg.is_item_hovered("editor"):
            return self._canvas_point(dpg.get_mouse_pos(local=False))
        return self._canvas_point(self._canvas_centre())

    # ----- zoom ------------------------------------------------------------------------------
    def _scaled(self, size: float) -> int:
        """A size inside the canvas (widget width, indent, image) at the current zoom."""
        return scaled(size, self.view.zoom)

    def _unzoomed(self, item: int) -> None:
        """Draw ``item`` (a popup or tooltip inside the canvas) at 100% whatever the zoom."""
        dpg.bind_item_theme(item, self.themes.zoom[1.0])
        if self.themes.fonts:
            dpg.bind_item_font(item, self.themes.fonts[1.0])

    def _show_zoom(self) -> None:
        """The canvas's font and sizes for the current zoom, and the zoom in the status bar."""
        level = min(LEVELS, key=lambda candidate: abs(candidate - self.view.zoom))
        dpg.bind_item_theme("canvas", self.themes.zoom[level])
        if self.themes.fonts:
            dpg.bind_item_font("canvas", self.themes.fonts[level])
        dpg.set_value("zoom", f"{round(self.view.zoom * 100)}%")

    def _sized(self, item: int, **sizes: int) -> int:
        """Give a canvas item its ``sizes`` (width, height, indent: pixels at 100%) at the current
        zoom, and again whenever the zoom changes (``_resize``)."""
        self.sized_items[item] = sizes
        self._apply_sizes(item, sizes)
        return item

    def _apply_sizes(self, item: int, sizes: dict[str, int]) -> None:
        dpg.configure_item(item, **{name: self._scaled(size) for name, size in sizes.items()})

    def _resize(self) -> None:
        """The nodes' contents at the current zoom (the font and style sizes follow the canvas's
        theme): kept in place rather than rebuilt, so the selection and any widget in use stay."""
        for item, sizes in self.sized_items.items():
            if dpg.does_item_exist(item):
                self._apply_sizes(item, sizes)

    def set_view(self, view: View) -> None:
        """Show the canvas with ``view``: nodes move to their new grid positions and, at a new
        zoom, take their new sizes. The workflow is not changed (no undo step, not marked unsaved)."""
        if view == self.view:
            return
        self._sync_positions()  # a drag not yet taken, in the old view's units
        zoom_changed = view.zoom != self.view.zoom
        self.view = view
        if zoom_changed:
            self._show_zoom()
            self._resize()
        for node_id, item in self.node_items.items():
            if node_id in self.document.workflow.nodes and dpg.does_item_exist(item):
                dpg.set_item_pos(item, self.view.to_grid(self.document.position(node_id)))

    def zoom_by(self, steps: int, screen=None) -> None:
        """Zoom ``steps`` levels in (out, if negative) around a screen point (default: the
        canvas's centre), which stays where it is."""
        self.zoom_to(step(self.view.zoom, steps), screen)

    def actual_size(self) -> None:
        """Zoom to 100% around the canvas's centre."""
        self.zoom_to(1.0)

    def zoom_to(self, zoom: float, screen=None) -> None:
        """Show the canvas at ``zoom`` around a screen point (default: the canvas's centre),
        which stays where it is."""
        anchor = self._grid_point(self._canvas_centre() if screen is None else screen)
        self.set_view(self.view.zoomed(zoom, anchor))

    def zoom_to_fit(self) -> None:
        """Show the whole graph in the visible canvas (at most at 100%). Done by ``frame`` once
        the nodes are drawn, since it needs their sizes."""
        self.fit_passes = FIT_PASSES

    def _fit(self) -> None:
        """One pass of zoom to fit: the bounding box of the nodes as drawn (in workflow units)
        centred in the visible canvas. Later passes measure the nodes at the zoom the first one
        chose (text does not scale exactly) and may only zoom out further."""
        items = [(node_id, item) for node_id, item in self.node_items.items()
                 if node_id in self.document.workflow.nodes and dpg.does_item_exist(item)]
        sizes = [dpg.get_item_rect_size(item) for _, item in items]
        if not self.canvas_steady or any(width <= 0 for width, _ in sizes):
            return  # not drawn or laid out yet: a later frame
        if not items:
            self.fit_passes = 0
            self.set_view(View())
            return
        self._sync_positions()
        boxes = []
        for (node_id, _), (width, height) in zip(items, sizes):
            x, y = self.document.position(node_id)
            boxes.append((x, y, x + width / self.view.zoom, y + height / self.view.zoom))
        (x0, y0), (x1, y1) = dpg.get_item_rect_min("canvas"), dpg.get_item_rect_max("canvas")
        canvas = (*self._grid_point((x0, y0)), *self._grid_point((x1, y1)))
        view = fit(bounds(boxes), canvas, most=1.0 if self.fit_passes == FIT_PASSES else self.view.zoom)
        self.fit_passes = 0 if view == self.view else self.fit_passes - 1
        self.set_view(view)

    def _on_wheel(self, sender, delta) -> None:
        """Ctrl + mouse wheel over the canvas zooms around the mouse."""
        if delta and self._ctrl_down() and dpg.is_item_hovered("editor"):
            self.zoom_by(1 if delta > 0 else -1, dpg.get_mouse_pos(local=False))

    @staticmethod
    def _ctrl_down() -> bool:
        return dpg.is_key_down(dpg.mvKey_ModCtrl) or dpg.is_key_down(dpg.mvKey_LControl)

    def _on_key(self, sender, key) -> None:
        if self._ctrl_down():
            self._shortcut(key)
        elif key in (dpg.mvKey_Return, dpg.mvKey_NumPadEnter) and dpg.is_item_focused("search"):
            self._place_first_match()
        elif key == dpg.mvKey_F2 and not self._typing():
            self.rename_selection()
        elif key in (dpg.mvKey_F, dpg.mvKey_Home) and not self._typing():
            self.zoom_to_fit()

    @staticmethod
    def _typing() -> bool:
        """Whether a text field or a widget has the keyboard (then a plain key is the field's):
        the rename dialog is open, or an item in the toolbar or the canvas is active (a group is
        active while an item inside it is; dearpygui has no "is any item active")."""
        return dpg.does_item_exist("rename") or any(dpg.get_item_state(tag).get("active")
                                                    for tag in ("toolbar", "canvas"))

    def _shortcut(self, key) -> None:
        shift = dpg.is_key_down(dpg.mvKey_ModShift) or dpg.is_key_down(dpg.mvKey_LShift)
        actions = {dpg.mvKey_S: self.save, dpg.mvKey_C: self.copy_selection, dpg.mvKey_V: self.paste,
                   dpg.mvKey_D: self.duplicate_selection, dpg.mvKey_Return: self.run,
                   dpg.mvKey_B: lambda: self.set_selection_mode("bypassed"),
                   dpg.mvKey_M: lambda: self.set_selection_mode("muted"),
                   dpg.mvKey_N: lambda: self.confirm_discard(self.new),
                   dpg.mvKey_O: lambda: self.confirm_discard(self.open_dialog),
                   dpg.mvKey_Z: self.redo if shift else self.undo,
                   KEY_EQUAL: lambda: self.zoom_by(1), dpg.mvKey_Plus: lambda: self.zoom_by(1),
                   dpg.mvKey_Add: lambda: self.zoom_by(1),
                   dpg.mvKey_Minus: lambda: self.zoom_by(-1), dpg.mvKey_Subtract: lambda: self.zoom_by(-1),
                   dpg.mvKey_0: self.actual_size, dpg.mvKey_NumPad0: self.actual_size}
        action = actions.get(key)
        if action is not None:
            action()

    def _search_changed(self, sender, text: str) -> None:
        matches = [f"{s.display}  [{s.id}]" for s in search_nodes(self.document.registry, text)]
        self._show_search_results(matches[:40])

    def _place_first_match(self) -> None:
        matches = search_nodes(self.document.registry, dpg.get_value("search"))
        if matches:
            self._place_node(matches[0].id)
        else:
            self._status("no node matches the search", error=True)

    def _place_from_search(self, choice: str) -> None:
        self._place_node(choice.rsplit("[", 1)[1].rstrip("]"))

    def _place_node(self, type_id: str) -> None:
        self.document.add_node(type_id, tuple(self._placement()))
        dpg.set_value("search", "")
        self._show_search_results([])
        self._status(f"added {self.document.registry.get(type_id).display}")

    # ----- files ---------------------------------------------------------------------------
    def _fill_recent_menu(self, paths: list[Path] | None = None) -> None:
        dpg.delete_item("recent_menu", children_only=True)
        paths = self.recent.paths() if paths is None else paths
        for path in paths:
            dpg.add_menu_item(label=str(path), parent="recent_menu", user_data=path,
                              callback=lambda s, a, u: self.confirm_discard(lambda: self.open_path(u)))
        if paths:
            dpg.add_separator(parent="recent_menu")
            dpg.add_menu_item(label="Clear list", parent="recent_menu",
                              callback=lambda: (self.recent.clear(), self._fill_recent_menu([])))
        else:
            dpg.add_menu_item(label="(none yet)", parent="recent_menu", enabled=False)

    def _remember(self, path: Path) -> None:
        self._fill_recent_menu(self.recent.add(path))

    def _refresh_title(self) -> None:
        """The window title: the file's name, marked "* " while there are unsaved changes
        (checked every frame, so every kind of edit shows)."""
        name = self.document.path.name if self.document.path else "untitled"
        title = f"{'* ' if self.document.dirty else ''}{name} - nodeflow"
        if title != self.shown_title:
            dpg.set_viewport_title(title)
            self.shown_title = title

    def new(self) -> None:
        self.document = Document(self.document.registry)
        self.view = View()
        self._show_zoom()
        self.rebuild()

    def open_path(self, path: Path, remember: bool = True) -> None:
        try:
            self.document = Document.open(self.document.registry, path)
        except Exception as error:  # shown to the user; the current document stays
            self._status(f"cannot open {path}: {error}", error=True)
            return
        self.rebuild()
        self.zoom_to_fit()  # a workflow whose nodes lie far apart opens fully visible
        if remember:
            self._remember(path)
        self._status(f"opened {path}")

    def open_dialog(self) -> None:
        self._file_dialog("Open workflow", lambda path: self.open_path(Path(path)), save=False)

    def save(self, then=None) -> None:
        """Save to the document's file (asking for one if it has none); then ``then()`` if saved."""
        if self.document.path is None:
            self.save_dialog(then)
        else:
            self._save_to(None, then)

    def save_dialog(self, then=None) -> None:
        self._file_dialog("Save workflow as", lambda path: self._save_to(Path(path), then), save=True)

    def _save_to(self, path: Path | None, then) -> None:
        try:
            saved = self.document.save(path)
        except OSError as error:
            self._status(f"cannot save: {error}", error=True)
            return
        self._remember(saved)
        self._status(f"saved {saved}")
        if then is not None:
            then()

    def _file_dialog(self, title: str, on_choice, save: bool) -> None:
        def callback(sender, app_data):
            path = app_data.get("file_path_name")
            if path:
                on_choice(path)

        with dpg.file_dialog(label=title, callback=callback, width=640, height=420, modal=True,
                             default_filename="workflow" if save else ""):
            dpg.add_file_extension(".json")
            dpg.add_file_extension(".png")
            dpg.add_file_extension(".*")

    def confirm_discard(self, then, discard=None) -> None:
        """Run ``then`` now if nothing is unsaved; else ask: Save (then ``then``), Discard (then
        ``discard``, default ``then``) or Cancel."""
        if not self.document.dirty:
            then()
            return
        if dpg.does_item_exist("confirm"):  # already asking (a modal cannot be replaced in place)
            return
        width = 380
        with dpg.window(label="Unsaved changes", modal=True, tag="confirm", autosize=True, no_saved_settings=True,
                        pos=((dpg.get_viewport_client_width() - width) // 2, dpg.get_viewport_client_height() // 3),
                        on_close=lambda sender: dpg.delete_item(sender)):
            dpg.add_text("The workflow has unsaved changes.")
            with dpg.group(horizontal=True):
                dpg.add_button(label="Save", tag="confirm_save",
                               callback=lambda: (dpg.delete_item("confirm"), self.save(then)))
                dpg.add_button(label="Discard", tag="confirm_discard",
                               callback=lambda: (dpg.delete_item("confirm"), (discard or then)()))
                dpg.add_button(label="Cancel", tag="confirm_cancel", callback=lambda: dpg.delete_item("confirm"))

    # ----- closing and recovery --------------------------------------------------------------
    def request_close(self) -> None:
        """The window's close button: the viewport stays open until unsaved changes are saved or
        discarded (or the user cancels)."""
        self.confirm_discard(dpg.stop_dearpygui, discard=self._close_discarding)

    def _close_discarding(self) -> None:
        self.keep_recovery = False
        dpg.stop_dearpygui()

    def on_terminate(self, signum, frame) -> None:
        """SIGTERM (a logout, ``kill``): the frame loop ends after this frame and the session
        ends as on a close, unsaved work going to the recovery file. Only sets a flag: Python
        runs signal handlers on the main thread between two steps of whatever it is doing."""
        logger.info("terminated (signal %d): closing, unsaved work goes to %s", signum, self.recovery_file)
        self.terminating = True

    def autosave(self, now: float) -> None:
        """Every few seconds: unsaved changes not yet in the recovery file go there."""
        if now - self.last_autosave < AUTOSAVE_SECONDS:
            return
        self.last_autosave = now
        if self.document.dirty and self.document.revision != self.recovered_revision:
            self.write_recovery()

    def write_recovery(self) -> None:
        from nodeflow.engine.workflow import save_workflow

        try:
            save_workflow(self.document.workflow, self.recovery_file)
            self.recovered_revision = self.document.revision
        except OSError:
            logger.exception("cannot write the recovery file %s", self.recovery_file)

    def end_session(self) -> None:
        """The window closes, normally or by a crash: unsaved changes go to the recovery file
        (offered at the next start) unless the user discarded them; otherwise the file goes,
        except an earlier session's file whose offer was not answered."""
        if self.document.dirty and self.keep_recovery:
            self.write_recovery()
        elif not self.recovery_offered:
            self.recovery_file.unlink(missing_ok=True)

    def offer_recovery(self) -> None:
        """Offer the recovery file an earlier session left (unsaved work) for restoring."""
        self.recovery_offered = True

        def answered(restore: bool) -> None:
            dpg.delete_item("recover")
            self.recovery_offered = False
            if restore:
                self.open_path(self.recovery_file, remember=False)
                self.document.path = None
                self.document.dirty = True
            else:
                self.recovery_file.unlink(missing_ok=True)

        with dpg.window(label="Restore", modal=True, tag="recover", autosize=True, no_saved_settings=True,
                        pos=(120, 120)):
            dpg.add_text(f"An unsaved workflow from an earlier session was found ({self.recovery_file}).")
            with dpg.group(horizontal=True):
                dpg.add_button(label="Restore it", callback=lambda: answered(True))
                dpg.add_button(label="Discard", callback=lambda: answered(False))

    # ----- running -------------------------------------------------------------------------
    def run(self) -> None:
        self._sync_positions()
        if not self.worker.start(self.document.workflow):
            self._status("a run is already going", error=True)
            return
        self.failed_node, self.cached_nodes, self.invalid_nodes = None, set(), set()
        for node_id in self.node_items:
            self._apply_node_theme(node_id)
        self._status("running...")
        dpg.configure_item("progress", overlay="starting")

    def clear_cache(self) -> None:
        self.executor.cache.clear()
        self._status("cache cleared")

    def handle(self, event) -> None:
        if isinstance(event, events.NodeStarted):
            self._set_running(event.node_id)
            self._show_progress(*self.progress.node_started(event.node_id, event.node_type, event.index, event.total))
        elif isinstance(event, events.NodeCached):
            self.cached_nodes.add(event.node_id)
            self._apply_node_theme(event.node_id)
        elif isinstance(event, events.Progress):
            self._show_progress(*self.progress.step(event.step, event.total))
            if event.preview is not None:
                self._show_live(event.preview[0])
        elif isinstance(event, events.ImagesShown):
            self._show_images(event.node_id, event.images)
        elif isinstance(event, events.FileSaved):
            self._log(f"saved {event.path}")
        elif isinstance(event, events.NodeFailed):
            self.failed_node = event.node_id
            self._apply_node_theme(event.node_id)
        elif isinstance(event, events.RunFinished):
            self._set_running(None)
            dpg.set_value("progress", 1.0)
            dpg.configure_item("progress", overlay=f"done in {event.seconds:.1f} s")
            self._status(f"done: {len(event.executed)} run, {len(event.cached)} cached")
            seeds_after_run(self.document)
            self.rebuild()
        elif isinstance(event, RunFailed):
            self._set_running(None)
            self._log(event.message, error=True)
            self._status("run failed (see the log)", error=True)
            dpg.configure_item("progress", overlay="failed")
        elif isinstance(event, RunInvalid):
            self._set_running(None)
            for problem in event.problems:
                self._log(str(problem), error=True)
                node_id = getattr(problem, "node_id", None)
                if node_id is not None:
                    self.invalid_nodes.add(node_id)
                    self._apply_node_theme(node_id)
            self._status(f"not run: {len(event.problems)} problem(s), marked on their nodes", error=True)
            dpg.configure_item("progress", overlay="invalid")
        elif isinstance(event, RunCancelled):
            self._set_running(None)
            self._status("stopped")
            dpg.configure_item("progress", overlay="stopped")

    def _show_progress(self, fraction: float, text: str) -> None:
        dpg.set_value("progress", fraction)
        dpg.configure_item("progress", overlay=text)

    def _progress_label(self, node_id: str, node_type: str) -> str:
        """The node's title as on the canvas (the run may outlive the node: then its type)."""
        return self._node_label(node_id) if node_id in self.document.workflow.nodes else node_type

    def _set_running(self, node_id: str | None) -> None:
        previous, self.running_node = self.running_node, node_id
        for item in (previous, node_id):
            if item is not None:
                self._apply_node_theme(item)

    def _apply_node_theme(self, node_id: str) -> None:
        item = self.node_items.get(node_id)
        if item is None or not dpg.does_item_exist(item):
            return
        mode = self.document.workflow.nodes[node_id].mode if node_id in self.document.workflow.nodes else "normal"
        if node_id == self.failed_node or node_id in self.invalid_nodes:
            state = "failed"
        elif node_id == self.running_node:
            state = "running"
        elif mode != "normal":
            state = mode
        elif node_id in self.cached_nodes:
            state = "cached"
        else:
            state = "normal"
        dpg.bind_item_theme(item, self.themes.nodes[state])

    def _texture(self, key: str, image) -> tuple[int, int, int]:
        """(texture, shown width, shown height): a dynamic texture holding ``image`` (H, W, C)
        tensor in 0..1, reused for ``key`` while the size stays; fitted to PREVIEW_SIZE."""
        array = image.detach().cpu().float().clamp(0, 1).numpy()
        height, width = array.shape[:2]
        rgba = np.ones((height, width, 4), dtype=np.float32)
        rgba[..., :3] = array[..., :3]
        item, size = self.textures.get(key, (None, None))
        if item is not None and size == (width, height) and dpg.does_item_exist(item):
            dpg.set_value(item, rgba.ravel())
        else:
            item = dpg.add_dynamic_texture(width, height, rgba.ravel(), parent="textures")
            self.textures[key] = (item, (width, height))
        scale = PREVIEW_SIZE / max(height, width)
        return item, int(width * scale), int(height * scale)

    def _show_images(self, node_id: str, images) -> None:
        self.shown_images[node_id] = images
        group = f"images_{node_id}"
        if not dpg.does_item_exist(group):
            return
        for button in dpg.get_item_children(group, 1):
            self.sized_items.pop(button, None)
        dpg.delete_item(group, children_only=True)
        for index, image in enumerate(images[:4]):
            texture, width, height = self._texture(f"{node_id}:{index}", image)
            self._sized(dpg.add_image_button(texture, parent=group, callback=lambda s, a, u: self._open_viewer(*u),
                                             user_data=(node_id, index)), width=width, height=height)

    def _open_viewer(self, node_id: str, index: int) -> None:
        """A larger view of a shown image (click a node's image)."""
        image = self.shown_images[node_id][index]
        height, width = image.shape[0], image.shape[1]
        scale = max(1, 512 // max(height, width))
        texture, _, _ = self._texture(f"{node_id}:{index}", image)
        if dpg.does_item_exist("viewer"):
            dpg.delete_item("viewer")
        with dpg.window(label=f"Image {index + 1} of node {node_id}", tag="viewer", autosize=True, pos=(200, 120)):
            dpg.add_image(texture, width=width * scale, height=height * scale)

    def _show_live(self, image) -> None:
        texture, width, height = self._texture("live", image)
        if not dpg.does_item_exist("live_preview"):
            with dpg.window(label="Live preview", tag="live_preview", pos=(20, 80), autosize=True):
                dpg.add_image(texture, width=PREVIEW_SIZE, height=PREVIEW_SIZE, tag="live_image")
        else:
            dpg.configure_item("live_image", texture_tag=texture)

    # ----- frame loop ----------------------------------------------------------------------
    def frame(self) -> None:
        self._measure_canvas()
        self._run_callbacks(dpg.get_callback_queue() or [])
        for event in self.worker.drain():
            self.handle(event)
        if self.document.structure != self.built_structure:
            self.rebuild()
        if self.fit_passes:
            self._fit()
        self._refresh_title()
        self.autosave(time.monotonic())

    def _run_callbacks(self, jobs) -> None:
        """Run dearpygui's queued callbacks; a failing one is logged, the window stays up."""
        for callback, *args in jobs:
            if callback is None:
                continue
            try:
                callback(*args[:len(inspect.signature(callback).parameters)])
            except Exception as error:  # a bug in a callback: show it, keep the user's work
                logger.exception("callback failed")
                self._log(f"internal error: {type(error).__name__}: {error}", error=True)


def search_nodes(registry, text: str) -> list:
    """Node types whose name or description contains ``text``: names starting with it first,
    then names containing it, then descriptions."""
    text = text.strip().lower()
    if not text:
        return []

    def rank(spec) -> int:
        names = (spec.display.lower(), spec.id.lower())
        if any(name.startswith(text) for name in names):
            return 0
        return 1 if any(text in name for name in names) else 2

    found = [s for s in registry if rank(s) < 2 or text in s.description.lower()]
    return sorted(found, key=rank)


def main(workflow_path: Path | None, paths, screenshot: Path | None = None, frames: int | None = None,
         cache=None, device: str = "cpu", dtype: str = "auto", preview_every: int = 1) -> int:
    """Open the editor (``frames``/``screenshot``: render that many frames, save one and quit;
    for tests and documentation)."""
    from nodeflow.runtime.preview_folders import preview_session

    with preview_session(paths) as session_paths:  # preview files go when the window closes
        return _run_window(workflow_path, session_paths, screenshot, frames,
                           lambda document, executor, recovery: EditorApp(
                               document, executor, session_paths, recovery, device=device, dtype=dtype,
                               preview_every=preview_every), cache)


def _run_window(workflow_path: Path | None, paths, screenshot: Path | None, frames: int | None, make_app,
                cache) -> int:
    from nodeflow.engine.executor import Executor
    from nodeflow.engine.registry import Registry

    registry = Registry.load(paths)
    recovery = paths.temp_dir / "recovery.json"
    recovery.parent.mkdir(parents=True, exist_ok=True)
    document = Document.open(registry, workflow_path) if workflow_path else Document(registry)
    app = make_app(document, Executor(registry, paths, cache), recovery)
    dpg.create_context()
    previous_handler = signal.signal(signal.SIGTERM, app.on_terminate)
    try:
        show_window(app)
        if workflow_path is None and recovery.is_file():
            app.offer_recovery()
        elif workflow_path is not None:
            app.zoom_to_fit()
        _frame_loop(app, frames, screenshot)
    finally:  # also on a crash or SIGTERM: the user's unsaved work goes to the recovery file
        signal.signal(signal.SIGTERM, previous_handler)
        app.worker.stop()
        app.end_session()
        dpg.destroy_context()
    return 0


def show_window(app: EditorApp, **viewport) -> None:
    """Create the viewport, build ``app`` in it and show it. The close button does not close the
    viewport by itself: it calls ``app.request_close``, which asks about unsaved changes."""
    dpg.create_viewport(**{"title": "nodeflow", "width": 1400, "height": 860, **viewport, "disable_close": True})
    app.build()
    dpg.setup_dearpygui()
    dpg.show_viewport()


def _frame_loop(app: EditorApp, frames: int | None, screenshot: Path | None) -> None:
    count = 0
    while dpg.is_dearpygui_running() and not app.terminating:
        app.frame()
        dpg.render_dearpygui_frame()
        count += 1
        if frames is not None and count == frames:
            if screenshot is not None:
                dpg.output_frame_buffer(file=str(screenshot))
                dpg.render_dearpygui_frame()
                dpg.render_dearpygui_frame()
            return
