"""The desktop editor's window: menus, toolbar, popups and keys, wiring the editor's parts together.

``EditorApp`` holds a ``Session`` (the open document, its files, the recovery file: session.py), a
``Canvas`` (the node editor drawn from the document: canvas.py), a ``RunView`` (what a run shows:
run_view.py), a ``NodeSearch`` (the search box's matches: search.py), a ``Worker`` (runs on a
thread: worker.py) fed by a ``RunQueue`` (run_queue.py), and the finished runs' ``History``
(history.py, drawn by history_panel.py); the questions it asks are in dialogs.py. ``main`` opens the window and runs
its frame loop.

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

from nodeflow.gui import dialogs
from nodeflow.gui.canvas import Canvas
from nodeflow.gui.document import Document
from nodeflow.gui.examples import list_examples, missing_models, project_examples_dir
from nodeflow.gui.examples_menu import fill_examples_menu, show_missing_models
from nodeflow.gui.history import History, HistoryEntry, RunRecorder
from nodeflow.gui.history_panel import HistoryPanel
from nodeflow.gui.library_index import is_listed
from nodeflow.gui.layout_actions import LayoutActions
from nodeflow.gui.image_picker import ImagePicker
from nodeflow.gui.link_drag import LinkDrag
from nodeflow.gui.native_size import NativeSizes
from nodeflow.gui.native_size_menu import LatentSizeMenu
from nodeflow.gui.node_library import NodeLibrary
from nodeflow.gui.recent import RecentFiles, default_recent_file
from nodeflow.gui.recovery import RecoveryFolder, default_recovery_dir
from nodeflow.gui.run_queue import MAX_BATCH, RunQueue
from nodeflow.gui.run_view import RunView, add_log_line, build_log_panel, show_status
from nodeflow.gui.search import NodeSearch, search_nodes  # noqa: F401 (imported from here)
from nodeflow.gui.session import Session
from nodeflow.gui.sweep_panel import SweepPanel
from nodeflow.gui.theme import Themes
from nodeflow.gui.view import View
from nodeflow.gui.worker import Worker

logger = logging.getLogger(__name__)

KEY_EQUAL = 602  # ImGuiKey_Equal ("=", "+" with shift): dearpygui 2.3 names none (its mvKey_Plus is 61)


def _forwarded(part: str, name: str) -> property:
    """``name`` of the app's ``part`` (its session, canvas or run view), read and set on the app
    itself, where code outside the editor has used it since before the parts were split out."""
    return property(lambda app: getattr(getattr(app, part), name),
                    lambda app, value: setattr(getattr(app, part), name, value))


class EditorApp:
    """The window over a session's document: its menus and keys, and the parts they act on."""

    def __init__(self, document: Document, executor, paths, recovery: RecoveryFolder,
                 recent: RecentFiles | None = None, preview_every: int = 1, native_size=None,
                 **run_options) -> None:
        self.executor, self.paths = executor, paths
        self.session = Session(document, recovery, recent or RecentFiles(default_recent_file()),
                               on_recent_changed=self._fill_recent_menu)
        self.worker = Worker(executor, preview_every, **run_options)
        self.runs = RunQueue()  # Run adds to it; frame() starts the next when the worker is free
        self.recorder: RunRecorder | None = None  # watches the run going, for the history
        self.history = History()
        self.history_panel = HistoryPanel(on_load=lambda entry: self.confirm_discard(lambda: self.load_run(entry)),
                                          make_room=lambda pixels: self.canvas.make_room_right(pixels))
        self.shown_queue = ""
        self.canvas = Canvas(self.session, paths, status=show_status,
                             decorate_node=lambda node_id: (self.run_view.decorate_node(node_id),
                                                            self.image_picker.decorate(node_id)))
        self.run_view = RunView(self.canvas)
        self.layout = LayoutActions(self.canvas, show_status)  # groups and reroute dots
        self.image_picker = ImagePicker(self.canvas, paths)  # Load Image nodes' pictures and file button
        self.search = NodeSearch(self.canvas)
        self.sweep_panel = SweepPanel(lambda: self.document, paths, self.worker,
                                      on_started=lambda: self.run_view.run_started())
        self.link_drag = LinkDrag(self.canvas)  # a link dragged from an output pin, dropped on nothing
        # native_size: nodeflow.loading.native_size, passed in by the caller (the editor may not import loading)
        self.native_sizes = NativeSizes(native_size, paths)
        self.size_menu = LatentSizeMenu(self.native_sizes, lambda: self.document, show_status)
        self.canvas.new_node_values = lambda type_id: self.native_sizes.new_node_values(
            self.document.workflow, self.document.registry, type_id)
        self.library = NodeLibrary(document.registry, lambda type_id: self.add_node(type_id, self.canvas.placement()),
                                   make_room=lambda pixels: (  # the live preview first: it reads the old edge
                                       self.run_view.follow_canvas_left(pixels - self.canvas.room_left),
                                       self.canvas.make_room_left(pixels)))
        self.themes: Themes | None = None  # made by build (they need dearpygui's context)
        self.clipboard = None
        self.menu_node: str | None = None  # the node the node menu acts on
        self.popup_position: list[float] | None = None  # where the add-node menu places a node
        self.shown_title: str | None = None
        self.terminating = False  # set by SIGTERM: the frame loop ends, unsaved work goes to recovery
        self.after_render: list = []  # actions to run once a frame has been drawn (see request_close)
        self.due: list = []  # those of them whose frame was drawn: run as the next frame starts

    # ----- what code outside the editor uses (tests, the screenshot, the benchmark) -----------
    document = _forwarded("session", "document")
    keep_recovery = _forwarded("session", "keep_recovery")
    view = _forwarded("canvas", "view")
    node_items = _forwarded("canvas", "node_items")
    port_to_pin = _forwarded("canvas", "port_to_pin")
    link_items = _forwarded("canvas", "link_items")
    textures = _forwarded("run_view", "textures")

    def autosave(self, now: float) -> None:
        self.session.autosave(now)

    def write_recovery(self) -> None:
        self.session.write_recovery()

    def end_session(self) -> None:
        self.session.end_session()

    def rebuild(self) -> None:
        self.canvas.rebuild()

    def set_view(self, view: View) -> None:
        self.canvas.set_view(view)

    def zoom_to_fit(self) -> None:
        self.canvas.zoom_to_fit()

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
            self._toolbar()
            self.canvas.build(self.themes)
            build_log_panel()
            self.library.build()  # hidden; shown over the room the canvas leaves at its left
        self._add_menu_popup()
        self._node_menu_popup()
        self.layout.build_menu()
        self.search.build_popup(self.themes.hidden_window)
        self.link_drag.build()
        self.history_panel.build()
        self.sweep_panel.build()
        self._input_handlers()
        dpg.set_primary_window("main", True)
        dpg.set_exit_callback(self.request_close)  # the close button (see show_window)
        self.canvas.show_zoom()
        self.canvas.rebuild()

    def _toolbar(self) -> None:
        with dpg.group(horizontal=True, tag="toolbar"):
            dpg.add_button(label="Run (Ctrl+Enter)", tag="run_button", callback=lambda: self.run())
            dpg.add_input_int(tag="batch_count", default_value=1, min_value=1, max_value=MAX_BATCH,
                              min_clamped=True, max_clamped=True, width=50, step=0)
            with dpg.tooltip("batch_count"):
                dpg.add_text("batch count: runs queued by one Run (each with its seeds moved on)")
            dpg.add_button(label="Stop", tag="stop_button", callback=lambda: self.stop())
            dpg.add_input_text(tag="search", hint="add node: type to search, Enter to place", width=320,
                               callback=self.search.text_changed)  # Enter: _on_key
            dpg.add_progress_bar(tag="progress", default_value=0.0, width=300, overlay="idle")
            dpg.add_button(label="Clear queue", tag="clear_queue_button", callback=lambda: self.clear_queue())
            dpg.add_text("", tag="queue_status")
            dpg.add_text("100%", tag="zoom")
            dpg.add_text("", tag="status")

    def _input_handlers(self) -> None:
        with dpg.handler_registry():
            dpg.add_key_press_handler(dpg.mvKey_Delete, callback=lambda: self.delete_selection())
            dpg.add_key_press_handler(callback=self._on_key)
            dpg.add_mouse_click_handler(button=dpg.mvMouseButton_Right, callback=self._on_right_click)
            dpg.add_mouse_click_handler(button=dpg.mvMouseButton_Left, callback=lambda: self.canvas.raise_hovered())
            dpg.add_mouse_double_click_handler(button=dpg.mvMouseButton_Left, callback=self._on_double_click)
            dpg.add_mouse_release_handler(button=dpg.mvMouseButton_Left, callback=self._on_left_release)
            dpg.add_mouse_click_handler(button=dpg.mvMouseButton_Left, callback=lambda: self.link_drag.press())
            dpg.add_mouse_release_handler(button=dpg.mvMouseButton_Left, callback=lambda: self.link_drag.release())
            dpg.add_mouse_wheel_handler(callback=self._on_wheel)

    def _menu(self) -> None:
        with dpg.menu_bar():
            with dpg.menu(label="File", tag="file_menu"):
                self._file_menu()
            with dpg.menu(label="Edit"):
                self._edit_menu()
            with dpg.menu(label="View", tag="view_menu"):
                dpg.add_menu_item(label="Zoom in", shortcut="Ctrl+=", callback=lambda: self.canvas.zoom_by(1))
                dpg.add_menu_item(label="Zoom out", shortcut="Ctrl+-", callback=lambda: self.canvas.zoom_by(-1))
                dpg.add_menu_item(label="Actual size", shortcut="Ctrl+0", callback=lambda: self.canvas.actual_size())
                dpg.add_menu_item(label="Zoom to fit", shortcut="F, Home", callback=lambda: self.zoom_to_fit())
                dpg.add_separator()
                dpg.add_menu_item(label="Live preview", tag="menu_live_preview",
                                  callback=lambda: self.run_view.show_live_preview())
                dpg.add_menu_item(label="History", tag="menu_history", check=True,
                                  callback=lambda: self.history_panel.toggle())
                dpg.add_menu_item(label="Node library", tag="menu_node_library", shortcut="Ctrl+L", check=True,
                                  callback=lambda: self.library.toggle())
            with dpg.menu(label="Run", tag="run_menu"):
                dpg.add_menu_item(label="Run", shortcut="Ctrl+Enter", callback=lambda: self.run())
                dpg.add_menu_item(label="Stop", callback=lambda: self.stop())
                dpg.add_menu_item(label="Clear queue", callback=lambda: self.clear_queue())
                dpg.add_menu_item(label="Sweep...", tag="menu_sweep", callback=lambda: self.sweep_panel.show())
                dpg.add_menu_item(label="Clear cache", callback=lambda: self.clear_cache())

    def _file_menu(self) -> None:
        dpg.add_menu_item(label="New", shortcut="Ctrl+N", callback=lambda: self.confirm_discard(self.new))
        dpg.add_menu_item(label="Open...", shortcut="Ctrl+O", callback=lambda: self.confirm_discard(self.open_dialog))
        with dpg.menu(label="Open Recent", tag="recent_menu"):
            pass
        self._fill_recent_menu(self.session.recent_paths())
        with dpg.menu(label="Examples", tag="examples_menu"):
            pass
        fill_examples_menu("examples_menu", list_examples(project_examples_dir()),
                           lambda example: self.confirm_discard(lambda: self.open_path(example.path)))
        dpg.add_menu_item(label="Save", shortcut="Ctrl+S", callback=lambda: self.save())
        dpg.add_menu_item(label="Save As...", callback=lambda: self.save_dialog())
        dpg.add_separator()
        dpg.add_menu_item(label="Quit", shortcut="Ctrl+Q", callback=lambda: self.request_close())

    def _edit_menu(self) -> None:
        dpg.add_menu_item(label="Undo", shortcut="Ctrl+Z", callback=lambda: self.undo())
        dpg.add_menu_item(label="Redo", shortcut="Ctrl+Shift+Z", callback=lambda: self.redo())
        dpg.add_menu_item(label="Copy", shortcut="Ctrl+C", callback=lambda: self.copy_selection())
        dpg.add_menu_item(label="Paste", shortcut="Ctrl+V", callback=lambda: self.paste())
        dpg.add_menu_item(label="Duplicate", shortcut="Ctrl+D", callback=lambda: self.duplicate_selection())
        dpg.add_menu_item(label="Delete", shortcut="Del", callback=lambda: self.delete_selection())
        dpg.add_menu_item(label="Rename selected...", shortcut="F2", callback=lambda: self.rename_selection())
        dpg.add_menu_item(label="Group selected nodes", shortcut="Ctrl+G", callback=lambda: self.layout.group_selection())
        dpg.add_menu_item(label="Add reroute on selected link", callback=lambda: self.layout.add_reroute_on_selection())
        for label, shortcut, mode in (("Bypass selected", "Ctrl+B", "bypassed"), ("Mute selected", "Ctrl+M", "muted"),
                                      ("Enable selected", "", "normal")):
            dpg.add_menu_item(label=label, shortcut=shortcut, user_data=mode,
                              callback=lambda s, a, u: self.set_selection_mode(u))

    def _add_menu_popup(self) -> None:
        with dpg.window(tag="add_menu", show=False, no_title_bar=True, popup=True, autosize=True):
            categories: dict[str, list] = {}
            for spec in self.document.registry:
                if is_listed(spec):  # not "_for_testing": ComfyUI's experiments
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
            self.size_menu.build()  # "Model's size" on an Empty Latent Image (filled as the menu opens)

    # ----- edits ---------------------------------------------------------------------------
    def add_node(self, type_id: str, position) -> None:
        self.canvas.add_node(type_id, position)
        dpg.configure_item("add_menu", show=False)
        show_status(f"added {self.document.registry.get(type_id).display}")

    def delete_selection(self) -> None:
        if self._typing():  # Delete edits the text
            return
        links, nodes = self.canvas.selected_links(), self.canvas.selected_nodes()
        for link in links:
            self.document.disconnect(link)
        self.document.remove_nodes(nodes)
        layout = self.layout.delete_selection()  # groups (not their nodes) and reroute dots
        if links or nodes:
            show_status(f"deleted {len(nodes)} node(s)" + (f" and {len(links)} link(s)" if links else ""))
        elif layout:
            show_status(f"deleted {layout}")

    def copy_selection(self) -> None:
        self.clipboard = self.document.copy(self.canvas.selected_nodes())

    def paste(self) -> None:
        if self.clipboard is not None and self.clipboard.nodes:
            pasted = self.canvas.paste(self.clipboard)
            show_status(f"pasted {len(pasted)} node(s)")

    def duplicate_selection(self) -> None:
        clipboard = self.document.copy(self.canvas.selected_nodes())
        if clipboard.nodes:
            duplicated = self.canvas.paste(clipboard, label="duplicate")
            show_status(f"duplicated {len(duplicated)} node(s)")

    def set_selection_mode(self, mode: str) -> None:
        for node_id in self.canvas.selected_nodes():
            self.document.set_mode(node_id, mode)

    def undo(self) -> None:
        label = self.document.undo()
        show_status(f"undid {label}" if label else "nothing to undo")

    def redo(self) -> None:
        label = self.document.redo()
        show_status(f"redid {label}" if label else "nothing to redo")

    def rename_selection(self) -> None:
        if self.layout.rename_selected():  # a group
            return
        selected = self.canvas.selected_nodes()
        if len(selected) == 1:
            self.rename_dialog(selected[0])
        else:
            show_status("select one node to rename", error=True)

    def rename_dialog(self, node_id: str | None) -> None:
        """A title for the node (empty: the node type's name); Enter or OK applies it."""
        if node_id not in self.document.workflow.nodes or dialogs.renaming():
            return
        item = self.canvas.node_items.get(node_id)
        x, y = dpg.get_item_rect_min(item) if item is not None else (200, 120)
        dialogs.ask_node_title(self.canvas.node_label(node_id), (max(int(x), 0), max(int(y), 0)),
                               lambda text: self._finish_rename(node_id, text))

    def _finish_rename(self, node_id: str, text: str) -> None:
        if node_id in self.document.workflow.nodes:
            self.document.set_title(node_id, text)

    # ----- mouse and keys ------------------------------------------------------------------------
    def _on_right_click(self) -> None:
        """On a node (not on a widget, which has its own menu): the node menu; elsewhere on the
        canvas: the add-node menu."""
        if not dpg.is_item_hovered("editor"):
            return
        mouse = dpg.get_mouse_pos(local=False)
        if self.layout.open_menu(mouse):  # a group's title or a reroute dot
            return
        node_id = self.canvas.hovered_node()
        if node_id is not None:
            if not self.canvas.widget_hovered():
                self.menu_node = node_id
                self.size_menu.fill(node_id)
                dpg.configure_item("node_menu", show=True, pos=mouse)
            return
        self.popup_position = self.canvas.canvas_point(mouse)
        dpg.configure_item("add_menu", show=True, pos=mouse)

    def _on_left_release(self) -> None:
        """The end of a click or a drag: moved nodes go to the document, covered widgets are found."""
        self.canvas.sync_positions()
        self.canvas.stacking.changed()

    def _on_double_click(self) -> None:
        """Double-click a node's title: rename it."""
        if dpg.is_item_hovered("editor") and self.layout.double_click():  # a group's title
            return
        node_id = self.canvas.hovered_node() if dpg.is_item_hovered("editor") else None
        if node_id is not None and self.canvas.on_title(node_id, dpg.get_mouse_pos(local=False)[1]):
            self.rename_dialog(node_id)

    def _on_wheel(self, sender, delta) -> None:
        """Ctrl + mouse wheel over the canvas zooms around the mouse."""
        if delta and self._ctrl_down() and dpg.is_item_hovered("editor"):
            self.canvas.zoom_by(1 if delta > 0 else -1, dpg.get_mouse_pos(local=False))

    @staticmethod
    def _ctrl_down() -> bool:
        return dpg.is_key_down(dpg.mvKey_ModCtrl) or dpg.is_key_down(dpg.mvKey_LControl)

    def _on_key(self, sender, key) -> None:
        if self._ctrl_down():
            self._shortcut(key)
        elif key in (dpg.mvKey_Return, dpg.mvKey_NumPadEnter) and dpg.is_item_focused("search"):
            self.search.place_first_match()
        elif key == dpg.mvKey_Escape:
            self.close_popups()
        elif key == dpg.mvKey_F2 and not self._typing():
            self.rename_selection()
        elif key in (dpg.mvKey_F, dpg.mvKey_Home) and not self._typing():
            self.zoom_to_fit()

    def close_popups(self) -> None:
        """Escape: the menus, the search's matches and the image viewer close; a question is
        answered Cancel."""
        self.close_menus()
        dialogs.cancel_questions()

    def close_menus(self) -> None:
        """The menus, the search's matches and the image viewer close."""
        for popup in ("add_menu", "node_menu", "viewer", "link_search", "layout_menu"):
            if dpg.does_item_exist(popup):
                dpg.configure_item(popup, show=False)
        self.search.clear()

    @staticmethod
    def _typing() -> bool:
        """Whether a text field or a widget has the keyboard (then a plain key is the field's):
        the rename dialog or the file browser is open, or an item in the toolbar, the canvas or the
        node library's search box is active (a group is active while an item inside it is;
        dearpygui has no "is any item active")."""
        return dialogs.renaming() or dialogs.browsing_files() or \
            any(dpg.get_item_state(tag).get("active") for tag in ("toolbar", "canvas", "library_search"))

    def _shortcut(self, key) -> None:
        shift = dpg.is_key_down(dpg.mvKey_ModShift) or dpg.is_key_down(dpg.mvKey_LShift)
        actions = {dpg.mvKey_S: self.save, dpg.mvKey_C: self.copy_selection, dpg.mvKey_V: self.paste,
                   dpg.mvKey_D: self.duplicate_selection, dpg.mvKey_Return: self.run,
                   dpg.mvKey_B: lambda: self.set_selection_mode("bypassed"), dpg.mvKey_G: self.layout.group_selection,
                   dpg.mvKey_M: lambda: self.set_selection_mode("muted"),
                   dpg.mvKey_N: lambda: self.confirm_discard(self.new), dpg.mvKey_L: self.library.toggle,
                   dpg.mvKey_O: lambda: self.confirm_discard(self.open_dialog), dpg.mvKey_Q: self.request_close,
                   dpg.mvKey_Z: self.redo if shift else self.undo,
                   dpg.mvKey_0: self.canvas.actual_size, dpg.mvKey_NumPad0: self.canvas.actual_size}
        for zoom_in in (KEY_EQUAL, dpg.mvKey_Plus, dpg.mvKey_Add):
            actions[zoom_in] = lambda: self.canvas.zoom_by(1)
        for zoom_out in (dpg.mvKey_Minus, dpg.mvKey_Subtract):
            actions[zoom_out] = lambda: self.canvas.zoom_by(-1)
        action = actions.get(key)
        if action is not None:
            action()

    # ----- files ---------------------------------------------------------------------------
    def _fill_recent_menu(self, paths: list[Path]) -> None:
        """The Open Recent menu shows ``paths`` (newest first)."""
        dpg.delete_item("recent_menu", children_only=True)
        for path in paths:
            dpg.add_menu_item(label=str(path), parent="recent_menu", user_data=path,
                              callback=lambda s, a, u: self.confirm_discard(lambda: self.open_path(u)))
        if paths:
            dpg.add_separator(parent="recent_menu")
            dpg.add_menu_item(label="Clear list", parent="recent_menu", callback=lambda: self.session.clear_recent())
        else:
            dpg.add_menu_item(label="(none yet)", parent="recent_menu", enabled=False)

    def _refresh_title(self) -> None:
        """The window title (checked every frame, so every kind of edit shows)."""
        title = self.session.window_title()
        if title != self.shown_title:
            dpg.set_viewport_title(title)
            self.shown_title = title

    def new(self) -> None:
        self.session.new()
        self._forget_run()
        self.canvas.reset_view()
        self.canvas.rebuild()

    def open_path(self, path: Path, remember: bool = True) -> None:
        try:
            self.session.open(path, remember)
        except Exception as error:  # shown to the user; the current document stays
            show_status(f"cannot open {path}: {error}", error=True)
            return
        self._forget_run()
        self.canvas.rebuild()
        self.zoom_to_fit()  # a workflow whose nodes lie far apart opens fully visible
        show_status(f"opened {path}")
        self.warn_missing_models()

    def warn_missing_models(self) -> None:
        """The model files the workflow on screen names but the models folders lack, in a dialog."""
        missing = missing_models(self.document.workflow, self.document.registry, self.paths)
        if missing:
            show_missing_models(missing)

    def _forget_run(self) -> None:
        """Another graph is on screen: a run of the one left behind stops, the runs queued go,
        and its marks go (the history keeps the runs that ended)."""
        self.runs.clear()
        self.worker.stop()
        self.run_view.forget_run()

    def load_run(self, entry: HistoryEntry) -> None:
        """History's "load this workflow": the graph that made the run (from its PNG, else the
        snapshot kept) replaces the one on screen, as unsaved work without a file."""
        try:
            workflow = entry.load_workflow(self.document.registry)
        except Exception as error:  # a PNG moved or unreadable: shown, the current graph stays
            show_status(f"cannot load run #{entry.number}'s workflow: {error}", error=True)
            return
        self.session.open_workflow(workflow)
        self._forget_run()
        self.canvas.rebuild()
        self.zoom_to_fit()
        show_status(f"loaded the workflow of run #{entry.number}" + (f" from {entry.saved}" if entry.saved else ""))

    def open_dialog(self) -> None:
        dialogs.ask_file("Open workflow", lambda path: self.open_path(Path(path)), save=False)

    def save(self, then=None) -> None:
        """Save to the document's file (asking for one if it has none); then ``then()`` if saved."""
        if self.session.needs_file_name:
            self.save_dialog(then)
        else:
            self._save_to(None, then)

    def save_dialog(self, then=None) -> None:
        dialogs.ask_file("Save workflow as", lambda path: self._save_to(Path(path), then), save=True)

    def _save_to(self, path: Path | None, then) -> None:
        try:
            saved = self.session.save(path)
        except OSError as error:
            show_status(f"cannot save: {error}", error=True)
            return
        show_status(f"saved {saved}")
        if then is not None:
            then()

    def confirm_discard(self, then, discard=None) -> None:
        """Run ``then`` now if nothing is unsaved; else ask: Save (then ``then``), Discard (then
        ``discard``, default ``then``) or Cancel."""
        if not self.session.dirty:
            then()
            return
        dialogs.ask_about_unsaved_changes(on_save=lambda: self.save(then), on_discard=discard or then)

    # ----- closing and recovery --------------------------------------------------------------
    def request_close(self) -> None:
        """The window's close button: the viewport stays open until unsaved changes are saved or
        discarded (or the user cancels). An open menu closes first, and the question comes
        the frame after: asked while a menu was open, it closed with the menu."""
        self.close_menus()
        self.after_render.append(lambda: self.confirm_discard(dpg.stop_dearpygui, discard=self._close_discarding))

    def _close_discarding(self) -> None:
        self.session.close_without_changes()
        dpg.stop_dearpygui()

    def on_terminate(self, signum, frame) -> None:
        """SIGTERM (a logout, ``kill``): the frame loop ends after this frame and the session
        ends as on a close, unsaved work going to the recovery file. Only sets a flag: Python
        runs signal handlers on the main thread between two steps of whatever it is doing."""
        logger.info("terminated (signal %d): closing, unsaved work goes to %s", signum, self.session.recovery_file)
        self.terminating = True

    def offer_recovery(self) -> None:
        """Offer the newest recovery file an earlier editor left (unsaved work), if any."""
        orphan = self.session.orphan_to_offer()
        if orphan is not None:
            self.session.recovery_offer_shown(orphan)
            dialogs.ask_to_restore(orphan, self._recovery_answered)

    def _recovery_answered(self, restore: bool) -> None:
        if restore:
            self.open_path(self.session.offered, remember=False)
            self.session.recovery_restored()
        else:
            self.session.discard_recovery()

    # ----- running -------------------------------------------------------------------------
    def run(self) -> None:
        """Queue the batch count's runs of the graph on screen (their seeds moved on after each);
        the first starts now if nothing is going."""
        self.canvas.sync_positions()
        revision = self.document.revision
        queued = self.runs.enqueue(self.document, self.batch_count())
        if self.document.revision != revision:  # the seed widgets show the next values
            self.canvas.rebuild()
        if self.runs.current is not None:
            show_status(f"queued {len(queued)} run(s)")
        self._start_next()

    def batch_count(self) -> int:
        """The batch count field's value, kept within 1..MAX_BATCH."""
        value = dpg.get_value("batch_count") if dpg.does_item_exist("batch_count") else 1
        return min(max(int(value or 1), 1), MAX_BATCH)

    def stop(self) -> None:
        """Stop: the run going is cancelled (the queued ones go on)."""
        self.worker.stop()

    def clear_queue(self) -> None:
        show_status(f"cleared {self.runs.clear()} queued run(s)")

    def _start_next(self) -> None:
        """The oldest queued run starts when the worker is free."""
        if self.worker.busy:
            return
        run = self.runs.start_next(self.worker.start)
        if run is not None:
            self.recorder = RunRecorder(run, time.monotonic())
            self.run_view.run_started()

    def _record(self, event) -> None:
        """A run's event for the history: its last one ends it there, and frees the queue."""
        if self.recorder is None:
            return
        entry = self.recorder.observe(event, time.monotonic())
        if entry is not None:
            self.recorder = None
            self.runs.finish()
            self.history_panel.add(entry, self.history.add(entry))

    def _refresh_queue_status(self) -> None:
        text = self.runs.status()
        if text != self.shown_queue:
            dpg.set_value("queue_status", text)
            self.shown_queue = text

    def clear_cache(self) -> None:
        self.executor.cache.clear()
        show_status("cache cleared")

    # ----- frame loop ----------------------------------------------------------------------
    def frame(self) -> None:
        self.canvas.measure()
        self.history_panel.follow()  # docked at the canvas's right edge as just measured
        self.canvas.shield_covered_widgets()
        actions, self.due = self.due, []
        self._run_callbacks([(action,) for action in actions])
        self._run_callbacks(dpg.get_callback_queue() or [])
        for event in self.worker.drain():
            self.run_view.handle(event)
            self.sweep_panel.handle(event)
            self._record(event)
        self._start_next()
        self._refresh_queue_status()
        self.canvas.follow_document()
        self.image_picker.follow()
        self.canvas.group_frames.follow()  # a dragged group's nodes follow it; the frames are drawn
        self.canvas.continue_fit()
        self._refresh_title()
        self.session.autosave(time.monotonic())
        self.due, self.after_render = self.due + self.after_render, []  # drawn when this frame renders

    def _run_callbacks(self, jobs) -> None:
        """Run dearpygui's queued callbacks; a failing one is logged, the window stays up."""
        for callback, *args in jobs:
            if callback is None:
                continue
            try:
                callback(*args[:len(inspect.signature(callback).parameters)])
            except Exception as error:  # a bug in a callback: show it, keep the user's work
                logger.exception("callback failed")
                add_log_line(f"internal error: {type(error).__name__}: {error}", error=True)


def main(workflow_path: Path | None, paths, screenshot: Path | None = None, frames: int | None = None,
         cache=None, preview_every: int = 1, native_size=None, **run_options) -> int:
    """Open the editor (``frames``/``screenshot``: render that many frames, save one and quit;
    for tests and documentation; ``native_size``: see EditorApp; ``run_options``: Executor.run's
    device, dtype, compile and vram)."""
    from nodeflow.runtime.preview_folders import preview_session

    with preview_session(paths) as session_paths:  # preview files go when the window closes
        return _run_window(workflow_path, session_paths, screenshot, frames,
                           lambda document, executor, recovery: EditorApp(
                               document, executor, session_paths, recovery, preview_every=preview_every,
                               native_size=native_size, **run_options), cache)


def _run_window(workflow_path: Path | None, paths, screenshot: Path | None, frames: int | None, make_app,
                cache, recovery_dir: Path | None = None) -> int:
    from nodeflow.engine.executor import Executor
    from nodeflow.engine.registry import Registry

    registry = Registry.load(paths)
    recovery = RecoveryFolder(recovery_dir or default_recovery_dir())
    document = Document.open(registry, workflow_path) if workflow_path else Document(registry)
    app = make_app(document, Executor(registry, paths, cache), recovery)
    dpg.create_context()
    previous_handler = signal.signal(signal.SIGTERM, app.on_terminate)
    try:
        show_window(app)
        if workflow_path is not None:  # opened from the command line: in File > Open Recent too
            app.session.remember(workflow_path)
            app.warn_missing_models()
            app.zoom_to_fit()
        app.offer_recovery()  # an earlier editor's unsaved work, whatever was opened
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
