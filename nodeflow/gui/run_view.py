"""What a run shows in the window, from the worker's events.

Owns the node states a run leaves (running, cached, failed or invalid: drawn as node themes), the
progress bar, the images shown in output nodes with their textures, the larger image viewer, the
live preview of the sampler, the status line and the log panel. The window drains the worker's
queue once per frame on its own thread and hands each event to ``RunView.handle`` (app.py);
starting and stopping runs is the window's too.
"""

from __future__ import annotations

import dearpygui.dearpygui as dpg
import numpy as np

from nodeflow.engine import events
from nodeflow.gui.canvas import Canvas, images_group
from nodeflow.gui.worker import RunCancelled, RunFailed, RunInvalid, RunProgress

PREVIEW_SIZE = 160  # an image on a node or in the live preview: its longer side, in pixels
SHOWN_IMAGES = 4  # at most this many of an output node's images are shown on it
LIVE_WINDOW_HEIGHT = PREVIEW_SIZE + 44  # the live preview window: its image, title bar and padding
LIVE_MARGIN = 12  # between the live preview window and the canvas's edges
VIEWER_SIZE = 512  # the image viewer enlarges images by whole factors up to about this size
ERROR_COLOR = (255, 110, 110)
STATUS_COLOR = (200, 200, 200)
LOG_COLOR = (190, 190, 190)


def show_status(text: str, error: bool = False) -> None:
    """A message in the toolbar's status line (red for an error)."""
    dpg.set_value("status", text)
    dpg.configure_item("status", color=ERROR_COLOR if error else STATUS_COLOR)


def add_log_line(text: str, error: bool = False) -> None:
    """A line at the end of the log panel, scrolled into view."""
    dpg.add_text(text, parent="log", color=ERROR_COLOR if error else LOG_COLOR, wrap=0)
    dpg.set_y_scroll("log", dpg.get_y_scroll_max("log") + 40)


def open_viewer(texture, width: int, height: int, title: str) -> None:
    """The image viewer (one at a time) showing ``texture`` at ``width`` x ``height``."""
    if dpg.does_item_exist("viewer"):
        dpg.delete_item("viewer")
    with dpg.window(label=title, tag="viewer", autosize=True, pos=(200, 120)):
        dpg.add_image(texture, width=width, height=height)


def view_pixels(pixels, title: str, scale: float, texture_tag: str) -> None:
    """Show ``pixels`` (float RGBA, H x W x 4) in the image viewer, ``scale`` times their size; the
    texture made for them, tagged ``texture_tag``, replaces the one shown before under that tag."""
    height, width = pixels.shape[:2]
    for item in ("viewer", texture_tag):  # the viewer first: it shows the texture
        if dpg.does_item_exist(item):
            dpg.delete_item(item)
    dpg.add_static_texture(width, height, pixels.ravel(), parent="textures", tag=texture_tag)
    open_viewer(texture_tag, int(width * scale), int(height * scale), title)


def build_log_panel() -> None:
    """The log panel, in the current container (under the canvas)."""
    with dpg.child_window(tag="log", height=120, horizontal_scrollbar=True):
        pass


class RunView:
    """The state of the current (or last) run as the canvas, the toolbar and the log show it."""

    def __init__(self, canvas: Canvas) -> None:
        self.canvas = canvas
        self.running_node: str | None = None
        self.failed_node: str | None = None
        self.invalid_nodes: set[str] = set()
        self.cached_nodes: set[str] = set()
        self.shown_images: dict[str, object] = {}  # node id -> IMAGE last shown (kept across rebuilds)
        self.textures: dict[str, tuple[int, tuple[int, int]]] = {}  # key -> (texture, (w, h))
        self.listening = True  # False after forget_run: a run of the graph left behind is not shown
        self.progress = RunProgress(self._progress_label)
        self.handlers = {
            events.NodeStarted: self._node_started, events.NodeCached: self._node_cached,
            events.Progress: self._progress, events.ImagesShown: self._images_shown,
            events.FileSaved: self._file_saved, events.TextShown: self._text_shown, events.NodeFailed: self._node_failed,
            events.RunFinished: self._run_finished, RunFailed: self._run_failed,
            RunInvalid: self._run_invalid, RunCancelled: self._run_cancelled,
        }

    @property
    def document(self):
        return self.canvas.document

    # ----- a run's events ----------------------------------------------------------------------
    def run_started(self) -> None:
        """A run began: the last run's marks go."""
        self.listening = True
        self.failed_node, self.cached_nodes, self.invalid_nodes = None, set(), set()
        for node_id in self.canvas.node_items:
            self.apply_node_theme(node_id)
        show_status("running...")
        dpg.configure_item("progress", overlay="starting")

    def forget_run(self) -> None:
        """Another graph is on screen (File > New, Open): what the last run left (node marks,
        images, progress) goes, since node ids mean other nodes now, and events of a run of the
        graph left behind are no longer shown."""
        self.listening = False
        self.running_node, self.failed_node = None, None
        self.cached_nodes, self.invalid_nodes = set(), set()
        self.shown_images.clear()
        self.show_progress(0.0, "idle")

    def handle(self, event) -> None:
        """Show one event from the worker (other kinds are ignored)."""
        handler = self.handlers.get(type(event))
        if handler is not None and self.listening:
            handler(event)

    def _node_started(self, event: events.NodeStarted) -> None:
        self._set_running(event.node_id)
        self.show_progress(*self.progress.node_started(event.node_id, event.node_type, event.index, event.total))

    def _node_cached(self, event: events.NodeCached) -> None:
        self.cached_nodes.add(event.node_id)
        self.apply_node_theme(event.node_id)

    def _progress(self, event: events.Progress) -> None:
        self.show_progress(*self.progress.step(event.step, event.total))
        if event.preview is not None:
            self._show_live(event.preview[0])

    def _images_shown(self, event: events.ImagesShown) -> None:
        self.show_images(event.node_id, event.images)

    def _file_saved(self, event: events.FileSaved) -> None:
        add_log_line(f"saved {event.path}")

    def _text_shown(self, event: events.TextShown) -> None:
        """PreviewAny's text goes to the log panel, a line per text line (at most 20)."""
        lines = event.text.splitlines() or [""]
        for line in [f"node {event.node_id}: {lines[0]}", *lines[1:20]]:
            add_log_line(line)

    def _node_failed(self, event: events.NodeFailed) -> None:
        self.failed_node = event.node_id
        self.apply_node_theme(event.node_id)

    def _run_finished(self, event: events.RunFinished) -> None:
        """Done (the seeds moved on when the run was queued: run_queue.py)."""
        self._set_running(None)
        dpg.set_value("progress", 1.0)
        dpg.configure_item("progress", overlay=f"done in {event.seconds:.1f} s")
        show_status(f"done: {len(event.executed)} run, {len(event.cached)} cached")

    def _run_failed(self, event: RunFailed) -> None:
        self._set_running(None)
        add_log_line(event.message, error=True)
        show_status("run failed (see the log)", error=True)
        dpg.configure_item("progress", overlay="failed")

    def _run_invalid(self, event: RunInvalid) -> None:
        """Validation refused the workflow: each problem is logged and marked on its node."""
        self._set_running(None)
        for problem in event.problems:
            add_log_line(str(problem), error=True)
            node_id = getattr(problem, "node_id", None)
            if node_id is not None:
                self.invalid_nodes.add(node_id)
                self.apply_node_theme(node_id)
        show_status(f"not run: {len(event.problems)} problem(s), marked on their nodes", error=True)
        dpg.configure_item("progress", overlay="invalid")

    def _run_cancelled(self, event: RunCancelled) -> None:
        self._set_running(None)
        show_status("stopped")
        dpg.configure_item("progress", overlay="stopped")

    # ----- progress bar ------------------------------------------------------------------------
    def show_progress(self, fraction: float, text: str) -> None:
        dpg.set_value("progress", fraction)
        dpg.configure_item("progress", overlay=text)

    def _progress_label(self, node_id: str, node_type: str) -> str:
        """The node's title as on the canvas (the run may outlive the node: then its type)."""
        return self.canvas.node_label(node_id) if node_id in self.document.workflow.nodes else node_type

    # ----- node states ---------------------------------------------------------------------------
    def decorate_node(self, node_id: str) -> None:
        """A node just built on the canvas: its run state, and the images it showed last."""
        self.apply_node_theme(node_id)
        if node_id in self.shown_images:
            self.show_images(node_id, self.shown_images[node_id])

    def _set_running(self, node_id: str | None) -> None:
        previous, self.running_node = self.running_node, node_id
        for item in (previous, node_id):
            if item is not None:
                self.apply_node_theme(item)

    def apply_node_theme(self, node_id: str) -> None:
        self.canvas.set_node_theme(node_id, self.node_state(node_id))

    def node_state(self, node_id: str) -> str:
        """How the node is drawn: failed (or refused), running, its mode, cached, or normal."""
        nodes = self.document.workflow.nodes
        mode = nodes[node_id].mode if node_id in nodes else "normal"
        if node_id == self.failed_node or node_id in self.invalid_nodes:
            return "failed"
        if node_id == self.running_node:
            return "running"
        if mode != "normal":
            return mode
        return "cached" if node_id in self.cached_nodes else "normal"

    # ----- images ----------------------------------------------------------------------------
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

    def show_images(self, node_id: str, images) -> None:
        """``images`` on their output node (kept: shown again when the canvas is rebuilt); a
        click on one opens it larger."""
        self.shown_images[node_id] = images
        group = images_group(node_id)
        if not dpg.does_item_exist(group):
            return
        for button in dpg.get_item_children(group, 1):
            self.canvas.forget_sized(button)
        dpg.delete_item(group, children_only=True)
        for index, image in enumerate(images[:SHOWN_IMAGES]):
            texture, width, height = self._texture(f"{node_id}:{index}", image)
            button = dpg.add_image_button(texture, parent=group, callback=lambda s, a, u: self._open_viewer(*u),
                                          user_data=(node_id, index))
            self.canvas.sized(button, width=width, height=height)

    def _open_viewer(self, node_id: str, index: int) -> None:
        """A larger view of a shown image (click a node's image)."""
        image = self.shown_images[node_id][index]
        height, width = image.shape[0], image.shape[1]
        scale = max(1, VIEWER_SIZE // max(height, width))
        texture, _, _ = self._texture(f"{node_id}:{index}", image)
        open_viewer(texture, width * scale, height * scale, f"Image {index + 1} of node {node_id}")

    def _show_live(self, image) -> None:
        """The sampler's current image in the live preview window (made on the first one; a
        window the user closed stays closed until View > Live preview shows it again)."""
        texture, _, _ = self._texture("live", image)
        if not dpg.does_item_exist("live_preview"):
            self._build_live_preview()
        if dpg.get_item_type("live_image") == "mvAppItemType::mvImage":
            dpg.configure_item("live_image", texture_tag=texture)
        else:  # the placeholder text of a window shown before the first preview
            dpg.delete_item("live_image")
            dpg.add_image(texture, width=PREVIEW_SIZE, height=PREVIEW_SIZE, tag="live_image", parent="live_preview")

    def show_live_preview(self) -> None:
        """View > Live preview: the window again (empty until a run previews an image)."""
        if not dpg.does_item_exist("live_preview"):
            self._build_live_preview()
        dpg.configure_item("live_preview", show=True, pos=self._live_preview_corner())

    def _build_live_preview(self) -> None:
        """The live preview window, in the canvas's bottom-left corner, clear of where graphs
        start (the top-left) and of the minimap (bottom-right); its close button hides it."""
        with dpg.window(label="Live preview", tag="live_preview", pos=self._live_preview_corner(), autosize=True,
                        no_saved_settings=True):
            dpg.add_text("no preview yet", tag="live_image")

    @staticmethod
    def follow_canvas_left(shift: int) -> None:
        """The canvas's left edge is about to move ``shift`` pixels (a panel docked at its left:
        node_library.py). A live preview window in the canvas's corner moves with it, and one the
        panel would cover moves right of it; one the user put elsewhere on the canvas stays."""
        if not dpg.does_item_exist("live_preview"):
            return
        left = int(dpg.get_item_rect_min("canvas")[0])  # as last drawn: before the move
        x, y = dpg.get_item_pos("live_preview")
        if x == left + LIVE_MARGIN or x < left + shift + LIVE_MARGIN:
            dpg.configure_item("live_preview", pos=(left + shift + LIVE_MARGIN, y))

    @staticmethod
    def _live_preview_corner() -> tuple[int, int]:
        """Where the live preview window goes: its bottom-left corner on the canvas's."""
        (left, _), (_, bottom) = dpg.get_item_rect_min("canvas"), dpg.get_item_rect_max("canvas")
        return int(left + LIVE_MARGIN), int(bottom - LIVE_WINDOW_HEIGHT - LIVE_MARGIN)
