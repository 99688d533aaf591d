"""A real editor window under Xvfb: it opens a workflow, runs it while frames keep rendering,
and shows the saved image inside the SaveImage node."""

import os
import shutil
import subprocess
import time

import pytest

from tests.factories import write_tiny_checkpoint
from tests.project import ROOT

pytestmark = pytest.mark.gui


def test_run_in_the_window(display, tmp_path):
    import dearpygui.dearpygui as dpg
    import numpy as np
    from PIL import Image

    from nodeflow.engine.executor import Executor
    from nodeflow.gui.app import EditorApp, show_window
    from nodeflow.gui.document import Document
    from nodeflow.gui.recent import RecentFiles
    from nodeflow.gui.recovery import RecoveryFolder
    from nodeflow.gui.seed_control import set_seed_mode
    from nodeflow.runtime.paths import Paths
    from nodeflow.engine.registry import Registry

    write_tiny_checkpoint(tmp_path / "models" / "checkpoints" / "tiny.safetensors")
    paths = Paths(models_dirs=(tmp_path / "models",), output_dir=tmp_path / "out", temp_dir=tmp_path / "tmp",
                  assets_dir=tmp_path / "no-assets")
    registry = Registry.load(paths)
    document = Document.open(registry, ROOT / "workflows" / "txt2img.json")
    document.set_value("4", "ckpt_name", "tiny.safetensors")
    document.set_value("3", "steps", 4)
    document.move("9", (800, 0))  # SaveImage in view, clear of the minimap, to see its image
    app = EditorApp(document, Executor(registry, paths), paths, RecoveryFolder(tmp_path / "recovery"),
                    RecentFiles(tmp_path / "recent.json"))
    dpg.create_context()
    try:
        show_window(app)
        for _ in range(5):
            app.frame()
            dpg.render_dearpygui_frame()
        assert "* txt2img.json" in dpg.get_viewport_title()  # edited, not saved
        shown_progress = []
        show_progress = app.run_view.show_progress
        app.run_view.show_progress = lambda fraction, text: (shown_progress.append(text), show_progress(fraction, text))
        app.run()
        frames, started = 0, time.monotonic()
        while (app.worker.busy or not app.worker.events.empty()) and time.monotonic() - started < 120:
            app.frame()
            dpg.render_dearpygui_frame()
            frames += 1
        for _ in range(5):
            app.frame()
            dpg.render_dearpygui_frame()
        assert frames > 5  # the window kept rendering while the run went on
        assert dpg.get_value("status").startswith("done"), dpg.get_value("status")
        assert "KSampler (5/7) step 2/4" in shown_progress, shown_progress  # the node and its step
        saved = list((tmp_path / "out").glob("txt2img_*.png"))
        assert len(saved) == 1
        assert dpg.get_item_children("images_9", 1)  # the image is shown in the SaveImage node
        assert document.workflow.nodes["3"].inputs["seed"] != 42  # randomize after the run
        shot = tmp_path / "shot.png"
        dpg.output_frame_buffer(file=str(shot))
        for _ in range(3):
            dpg.render_dearpygui_frame()
        pixels = np.asarray(Image.open(shot).convert("RGB"))
        assert pixels.std() > 10  # a drawn window, not a blank frame
        assert_node_shows(app, pixels, np.asarray(Image.open(saved[0]).convert("RGB")))
        app.document.path = tmp_path / "mine.json"
        app.save()
        app.frame()
        recent = [dpg.get_item_label(item) for item in dpg.get_item_children("recent_menu", 1)]
        assert recent[0] == str((tmp_path / "mine.json").resolve()) and "Clear list" in recent
        assert dpg.get_viewport_title() == "mine.json - nodeflow"
        set_seed_mode(document, "3", "seed", "fixed")  # an edit without a rebuild still marks the title
        app.frame()
        assert dpg.get_viewport_title() == "* mine.json - nodeflow"
    finally:
        app.worker.stop()
        dpg.destroy_context()


def assert_node_shows(app, screenshot, image) -> None:
    """The SaveImage node's texture holds the saved PNG's pixels, and the screenshot shows them
    where its image button is (scaled by the GPU: compared with a bilinear resize)."""
    import dearpygui.dearpygui as dpg
    import numpy as np
    from PIL import Image

    texture, (width, height) = app.textures["9:0"]
    data = np.asarray(dpg.get_value(texture), dtype=np.float32).reshape(height, width, 4)
    assert (height, width) == image.shape[:2]
    assert np.abs(data[..., :3] - image / 255.0).max() <= 1 / 255 + 1e-6  # 8-bit rounding at most
    [button] = dpg.get_item_children("images_9", 1)
    (x0, y0), (x1, y1) = dpg.get_item_rect_min(button), dpg.get_item_rect_max(button)
    shown_w, shown_h = dpg.get_item_configuration(button)["width"], dpg.get_item_configuration(button)["height"]
    left, top = (x0 + x1 - shown_w) // 2, (y0 + y1 - shown_h) // 2  # the image, inside the frame padding
    region = screenshot[top:top + shown_h, left:left + shown_w].astype(np.float32)
    expected = np.asarray(Image.fromarray(image).resize((shown_w, shown_h), Image.BILINEAR), dtype=np.float32)
    difference = np.abs(region - expected).mean()
    assert difference < 8, difference  # out of 255
    assert np.abs(region - (255 - expected)).mean() > 8 * difference  # an image that differs would fail


# Each scenario runs in its own process (dearpygui allows one context per process) under the
# module's Xvfb display; SCENARIO_HEAD gives it a 1000x700 window at the screen's corner and
# helpers to render, drive the real mouse and keyboard with xdotool, and report JSON.
SCENARIO_HEAD = r"""
import json, subprocess, sys, threading, time
from pathlib import Path
import dearpygui.dearpygui as dpg
from nodeflow.engine.executor import Executor
from nodeflow.gui.app import EditorApp, show_window
from nodeflow.gui.document import Document
from nodeflow.gui.recent import RecentFiles
from nodeflow.gui.recovery import RecoveryFolder
from nodeflow.runtime.paths import Paths
from nodeflow.engine.registry import Registry

tmp = Path(sys.argv[1])
paths = Paths(output_dir=tmp / "out", temp_dir=tmp / "tmp")
registry = Registry.load(paths)
document = Document(registry)
app = None

def editor_for(document):  # its recovery and recent files in the scenario's folder, never the home
    return EditorApp(document, Executor(registry, paths), paths, RecoveryFolder(tmp / "recovery"),
                     RecentFiles(tmp / "recent.json"))

def open_window(editor):
    global app
    app = editor
    dpg.create_context()
    show_window(app, width=1000, height=700, x_pos=0, y_pos=0)
    frames(10)

def frames(count):
    for _ in range(count):
        app.frame()
        dpg.render_dearpygui_frame()

def drive(*commands):
    # xdotool commands on a thread while this thread keeps rendering (the viewport is at 0, 0)
    def run():
        for command in commands:
            subprocess.run(["xdotool", *map(str, command)], check=True)
            time.sleep(0.3)
    mover = threading.Thread(target=run)
    mover.start()
    while mover.is_alive():
        frames(1)
    frames(5)

def centre(item):
    (x0, y0), (x1, y1) = dpg.get_item_rect_min(item), dpg.get_item_rect_max(item)
    return int((x0 + x1) / 2), int((y0 + y1) / 2)

def report(**values):
    print(json.dumps(values))
    dpg.destroy_context()
"""


def run_scenario(tmp_path, body: str) -> dict:
    """Run SCENARIO_HEAD + ``body`` in a new process; returns what it reported."""
    import json
    import sys

    if shutil.which("xdotool") is None:
        pytest.skip("xdotool is not installed")
    script = tmp_path / "scenario.py"
    script.write_text(SCENARIO_HEAD + body)
    try:
        out = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True,
                             timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT),
                                                         "XDG_STATE_HOME": str(tmp_path / "state"),
                                                         "XDG_CONFIG_HOME": str(tmp_path / "config")})
    except subprocess.TimeoutExpired as error:
        printed = [text.decode(errors="replace") if isinstance(text, bytes) else text or ""
                   for text in (error.stdout, error.stderr)]
        pytest.fail(f"the scenario ran past 120 s; it printed: {printed[0][-1000:]!r} {printed[1][-2000:]!r}")
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


DRAG = r"""
latent = document.add_node("EmptyLatentImage", (40, 60))
decode = document.add_node("VAEDecode", (420, 60))
open_window(editor_for(document))

def text_center_y(attribute):
    state = dpg.get_item_state(dpg.get_item_children(attribute, 1)[0])
    return (state["rect_min"][1] + state["rect_max"][1]) / 2

source = dpg.get_item_state(app.node_items[latent])
target = dpg.get_item_state(app.node_items[decode])
start = (int(source["rect_max"][0]), int(text_center_y(app.port_to_pin[(latent, "out", 0)])))
end = (int(target["rect_min"][0]), int(text_center_y(app.port_to_pin[(decode, "in", "samples")])))
drive(["mousemove", *start], ["mousedown", 1], ["mousemove", (start[0] + end[0]) // 2, start[1]],
      ["mousemove", *end], ["mouseup", 1])
report(links=[[l.src, l.src_output, l.dst, l.dst_input] for l in document.workflow.links],
       drawn=len(app.link_items), latent=latent, decode=decode)
"""


def test_real_mouse_drag_wires_an_output_to_an_input(display, tmp_path):
    """xdotool drags from EmptyLatentImage's LATENT pin to VAEDecode's samples pin; the model
    gets the link and the canvas draws it."""
    result = run_scenario(tmp_path, DRAG)
    assert result["links"] == [[result["latent"], 0, result["decode"], "samples"]]
    assert result["drawn"] == 1


SEARCH = r"""
document.add_node("EmptyLatentImage", (40, 60))
open_window(editor_for(document))

def added(before):
    [node_id] = set(document.workflow.nodes) - before
    corner = dpg.get_item_rect_min(app.node_items[node_id])  # content corner: NODE_PADDING inside
    return {"id": node_id, "type": document.workflow.nodes[node_id].type, "corner": corner}

before = set(document.workflow.nodes)
search = centre("search")
drive(["mousemove", *search], ["click", 1], ["type", "flip latent"], ["key", "Return"])
first = added(before)  # the mouse was on the search box: the node goes to the canvas's centre
canvas = centre("canvas")
drive(["mousemove", 500, 450], ["mousedown", 2], ["mousemove", 560, 480], ["mousemove", 620, 510],
      ["mouseup", 2])  # pan the canvas (middle button)
panned = dpg.get_item_rect_min(app.node_items[first["id"]])
before = set(document.workflow.nodes)
drive(["mousemove", *search], ["click", 1], ["type", "empty latent"], ["mousemove", 700, 120],
      ["key", "Return"])
second = added(before)  # the mouse was on the canvas, clear of the nodes: the node goes under it
report(first=first, canvas=canvas, panned=panned, second=second, search=dpg.get_value("search"),
       count=len(document.workflow.nodes), undo=document.undo())
"""


def test_search_enter_places_the_first_match(display, tmp_path):
    """Type in the search box and press Enter: the first match is added at the canvas's centre
    (mouse elsewhere) or under the mouse (mouse on the canvas, also after panning)."""
    result = run_scenario(tmp_path, SEARCH)
    assert result["first"]["type"] == "LatentFlip" and result["second"]["type"] == "EmptyLatentImage"
    assert result["count"] == 3 and result["search"] == ""
    padding = 8
    assert [b - a for a, b in zip(result["first"]["corner"], result["panned"])] == [120, 60]
    for got, want in ((result["first"]["corner"], result["canvas"]), (result["second"]["corner"], (700, 120))):
        assert abs(got[0] - padding - want[0]) <= 2 and abs(got[1] - padding - want[1]) <= 2, (got, want)
    assert result["undo"] == "add Empty Latent Image"


RENAME = r"""
latent = document.add_node("EmptyLatentImage", (40, 60))
decode = document.add_node("VAEDecode", (420, 60))
open_window(editor_for(document))

def title_point(node_id):  # on the title text (a node's reported rect starts at its title)
    x, y = dpg.get_item_rect_min(app.node_items[node_id])
    return int(x + 12), int(y + 6)

drive(["mousemove", *title_point(latent)], ["click", 3])
menu_shown = dpg.is_item_shown("node_menu")
menu_x, menu_y = dpg.get_item_pos("node_menu")  # menu items report no rect: the first is "Rename..."
drive(["mousemove", int(menu_x + 30), int(menu_y + 14)], ["click", 1])
dialog = dpg.does_item_exist("rename") and dpg.get_value("rename_text")
drive(["key", "ctrl+a"], ["type", "base latent"], ["key", "Return"])
after_menu = [document.workflow.nodes[latent].title, dpg.get_item_label(app.node_items[latent])]
drive(["mousemove", *title_point(decode)], ["click", "--repeat", 2, "--delay", 80, 1])
drive(["key", "ctrl+a"], ["type", "decoder"], ["key", "Return"])
after_double_click = document.workflow.nodes[decode].title
undone = [document.undo(), document.workflow.nodes[decode].title]
report(menu_shown=menu_shown, dialog=dialog, after_menu=after_menu, after_double_click=after_double_click,
       undone=undone, dialog_left=dpg.does_item_exist("rename"))
"""


def test_rename_a_node_from_its_menu_or_by_double_clicking_its_title(display, tmp_path):
    result = run_scenario(tmp_path, RENAME)
    assert result["menu_shown"] and result["dialog"] == "Empty Latent Image"
    assert result["after_menu"] == ["base latent", "base latent"]
    assert result["after_double_click"] == "decoder"
    assert result["undone"] == ["rename", None] and not result["dialog_left"]


MOVE = r"""
first = document.add_node("EmptyLatentImage", (60, 60))
second = document.add_node("VAEDecode", (420, 60))
document.save(tmp / "moved.json")
open_window(editor_for(document))
history = len(document._undo)
titles = [dpg.get_viewport_title()]
(x0, y0), (x1, _) = dpg.get_item_rect_min(app.node_items[first]), dpg.get_item_rect_max(app.node_items[second])
drive(["mousemove", int(x0 - 30), int(y0 - 30)], ["mousedown", 1], ["mousemove", int(x1 / 2), int(y0 + 60)],
      ["mousemove", int(x1 + 30), int(y0 + 120)], ["mouseup", 1])  # box-select both nodes
selected = sorted(app.canvas.selected_nodes())
drive(["mousemove", int(x0 + 12), int(y0 + 6)], ["mousedown", 1], ["mousemove", int(x0 + 62), int(y0 + 36)],
      ["mousemove", int(x0 + 112), int(y0 + 56)], ["mouseup", 1])  # drag the first by its title
moved = [document.position(first), document.position(second)]
titles.append(dpg.get_viewport_title())  # moving is an unsaved change
entries = len(document._undo) - history
label = document.undo()
frames(3)
report(titles=titles, selected=selected, expected=sorted([first, second]), moved=moved, entries=entries, label=label,
       undone=[document.position(first), document.position(second)],
       drawn=list(dpg.get_item_pos(app.node_items[first])))
"""


def test_dragging_a_selection_is_one_undo_step(display, tmp_path):
    result = run_scenario(tmp_path, MOVE)
    assert result["selected"] == result["expected"]
    (fx, fy), (sx, sy) = result["moved"]
    assert (fx - 60, fy - 60) == (sx - 420, sy - 60) == (100, 50)  # both moved by the drag
    assert result["entries"] == 1 and result["label"] == "move 2 nodes"
    assert result["undone"] == [[60, 60], [420, 60]] and result["drawn"] == [60, 60]
    assert result["titles"] == ["moved.json - nodeflow", "* moved.json - nodeflow"]


# The real main loop (nodeflow.gui.app._run_window) with a thread acting as the user and the window
# manager: WM_DELETE_WINDOW is what the title bar's close button sends (there is no window
# manager under Xvfb to press it).
SESSION_HEAD = r"""
import ctypes, os
from nodeflow.gui import app as editor
from nodeflow.formats import load_workflow

def close_button():
    x11 = ctypes.cdll.LoadLibrary("libX11.so.6")
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XInternAtom.restype = ctypes.c_ulong
    x11.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]

    class ClientMessage(ctypes.Structure):
        _fields_ = [("type", ctypes.c_int), ("serial", ctypes.c_ulong), ("send_event", ctypes.c_int),
                    ("display", ctypes.c_void_p), ("window", ctypes.c_ulong), ("message_type", ctypes.c_ulong),
                    ("format", ctypes.c_int), ("data", ctypes.c_long * 5)]

    class Event(ctypes.Union):
        _fields_ = [("xclient", ClientMessage), ("pad", ctypes.c_long * 24)]

    x11.XSendEvent.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_long, ctypes.POINTER(Event)]
    display = x11.XOpenDisplay(None)
    window = shown_window()
    event = Event()
    event.xclient.type, event.xclient.window, event.xclient.format = 33, int(window), 32  # ClientMessage
    event.xclient.message_type = x11.XInternAtom(display, b"WM_PROTOCOLS", 0)
    event.xclient.data[0] = x11.XInternAtom(display, b"WM_DELETE_WINDOW", 0)
    x11.XSendEvent(display, int(window), 0, 0, ctypes.byref(event))
    x11.XFlush(ctypes.c_void_p(display))
    time.sleep(1.0)

SCENARIO_DEADLINE = time.monotonic() + 80.0  # every wait ends by then: the session is ended and reported
                                             # well inside run_scenario's 120 s

def shown_window():  # the viewport's X window, once it is shown
    found = []

    def search():
        command = ["xdotool", "search", "--all", "--pid", str(os.getpid()), "--name", "nodeflow"]
        found[:] = subprocess.run(command, capture_output=True, text=True).stdout.split()
        return found

    if not wait_until(search, seconds=60.0):
        raise RuntimeError("no nodeflow window was shown")
    return found[0]

def wait_until(check, seconds=15.0):  # a busy machine draws frames late: wait for the state, not a fixed time
    deadline = min(time.monotonic() + seconds, SCENARIO_DEADLINE)
    while not check() and time.monotonic() < deadline:
        time.sleep(0.1)
    return check()

def settled_centre(tag):  # a new dialog is laid out over a frame or two: wait until it stays put
    last = None
    def still():
        nonlocal last
        now = centre(tag) if dpg.does_item_exist(tag) and dpg.is_item_visible(tag) else None
        settled, last = now is not None and now == last and now != (0, 0), now
        return settled
    wait_until(still)
    return last

def click(tag, done, tries=3):  # the session's viewport is not at the screen's corner
    for _ in range(tries):  # a click a loaded machine drops (seen once in CI) is clicked again
        if done():  # the last click did it, only late
            return True
        where = settled_centre(tag)
        if where is None:
            return done()
        (vx, vy), (x, y) = dpg.get_viewport_pos(), where
        subprocess.run(["xdotool", "mousemove", str(vx + x), str(vy + y)], check=True)
        time.sleep(0.3)
        subprocess.run(["xdotool", "click", "1"], check=True)
        if wait_until(done, seconds=10.0):
            return True
    return False

seen = {}
workflow = tmp / "mine.json"
recovery_folder = tmp / "state" / "nodeflow" / "recovery"  # XDG_STATE_HOME, see run_scenario

def recovery_files():
    return sorted(recovery_folder.glob("unsaved-*.json"))

ended = threading.Event()  # set when the session ends, before its window goes: then the user stops acting

def session(user, edit=lambda document: None, app_class=EditorApp):
    def act():  # the user acts on the shown window; a session left open is ended and reported
        try:
            shown_window()
            user()
        except Exception as error:
            seen["user_error"] = repr(error)
        if not ended.wait(1.0 if "user_error" in seen else max(1.0, SCENARIO_DEADLINE - time.monotonic())):
            seen["left_open"] = True
            dpg.stop_dearpygui()

    user_thread = threading.Thread(target=act, daemon=True)

    def make_app(document, executor, recovery):
        global app
        app = app_class(document, executor, paths, recovery, RecentFiles(tmp / "recent.json"))
        end_session = app.end_session

        def ending(*args, **kwargs):
            ended.set()
            return end_session(*args, **kwargs)

        app.end_session = ending
        edit(document)
        user_thread.start()
        return app
    try:
        editor._run_window(workflow, paths, None, None, make_app, None)
    finally:
        ended.set()
        user_thread.join(timeout=10.0)  # what the user saw last is in the report
"""

CLOSE = r"""
document.add_node("EmptyLatentImage", (40, 60))
document.save(workflow)

def user():
    time.sleep(2.0)
    close_button()
    seen["asked"] = wait_until(lambda: dpg.does_item_exist("confirm"))
    close_button()  # pressed again while asking: still the one question
    seen["asked_once"] = dpg.does_item_exist("confirm")
    seen["kept_open"] = click("confirm_cancel", lambda: not dpg.does_item_exist("confirm"))
    close_button()
    seen["saved"] = click("confirm_save", ended.is_set)

def edit(document):
    document.set_value("1", "width", 640)

started = time.monotonic()
session(user, edit)
seen["closed_after"] = time.monotonic() - started
seen["saved_width"] = load_workflow(workflow).nodes["1"].inputs["width"]
seen["recovery_left"] = bool(recovery_files())
print(json.dumps(seen))
"""


def test_close_button_asks_about_unsaved_changes(display, tmp_path):
    import json

    """Closing with unsaved changes asks: Cancel keeps the window, Save saves and closes."""
    result = run_scenario(tmp_path, SESSION_HEAD + CLOSE)
    assert result["asked"] and result["asked_once"] and result["kept_open"], json.dumps(result)
    assert result["saved"] and result["saved_width"] == 640 and not result["recovery_left"], json.dumps(result)


CRASH = r"""
document.add_node("EmptyLatentImage", (40, 60))
document.save(workflow)

class Crashing(EditorApp):
    frames = 0

    def frame(self):
        super().frame()
        self.frames += 1
        if self.frames == 20:
            raise RuntimeError("a bug")

try:
    session(lambda: None, lambda document: document.set_value("1", "width", 768), Crashing)
except RuntimeError as error:
    seen["raised"] = str(error)
[recovery] = recovery_files()
seen["recovered_width"] = load_workflow(recovery).nodes["1"].inputs["width"]
print(json.dumps(seen))
"""


def test_a_crash_leaves_the_unsaved_work_in_the_recovery_file(display, tmp_path):
    result = run_scenario(tmp_path, SESSION_HEAD + CRASH)
    assert result == {"raised": "a bug", "recovered_width": 768}


# Zoom: a view transform of the editor's own (nodeflow/gui/view.py); the workflow keeps unzoomed
# positions. Spread wider than the window: Load Checkpoint at x = 0, Save Image at x = 6000.
FIT = r"""
from nodeflow.engine.workflow import save_workflow
from nodeflow.formats import load_workflow

wide = load_workflow(Path("workflows/txt2img.json"), registry)
wide.ui["nodes"]["4"]["pos"][0] = 0
wide.ui["nodes"]["9"]["pos"][0] = 6000
save_workflow(wide, tmp / "wide.json")
stored = json.loads((tmp / "wide.json").read_text())["ui"]["nodes"]
document = Document.open(registry, tmp / "wide.json")
open_window(editor_for(document))

def outside():  # the nodes whose drawn rect is not inside the canvas
    (cx0, cy0), (cx1, cy1) = dpg.get_item_rect_min("canvas"), dpg.get_item_rect_max("canvas")
    found = []
    for node_id, item in app.node_items.items():
        (x0, y0), (x1, y1) = dpg.get_item_rect_min(item), dpg.get_item_rect_max(item)
        if not (cx0 <= x0 and x1 <= cx1 and cy0 <= y0 and y1 <= cy1):
            found.append(node_id)
    return sorted(found)

seen = {"outside_before": outside(), "zoom_before": app.view.zoom}
drive(["mousemove", *centre("canvas")], ["key", "f"])  # zoom to fit
frames(5)
seen.update(outside_fitted=outside(), zoom_fitted=app.view.zoom, label=dpg.get_value("zoom"),
            dirty=document.dirty, history=len(document._undo), title=dpg.get_viewport_title())
(cx0, cy0), (cx1, cy1) = dpg.get_item_rect_min("canvas"), dpg.get_item_rect_max("canvas")
padding = round(8 * app.view.zoom)  # a node's reported rect starts this far inside it
corners = [[v - padding for v in dpg.get_item_rect_min(item)] for item in app.node_items.values()]
ends = [[a + b for a, b in zip(corner, dpg.get_item_rect_size(item))]
        for corner, item in zip(corners, app.node_items.values())]
seen["room"] = [min(x for x, _ in corners) - cx0, cx1 - max(x for x, _ in ends),
                min(y for _, y in corners) - cy0, cy1 - max(y for _, y in ends)]
document.save(tmp / "saved.json")
seen["saved_equal"] = json.loads((tmp / "saved.json").read_text())["ui"]["nodes"] == stored
drive(["keydown", "ctrl"], ["key", "0"], ["keyup", "ctrl"])
seen.update(zoom_actual=app.view.zoom, outside_actual=outside())
app.open_path(tmp / "wide.json")  # opening a workflow fits it once
frames(8)
seen.update(outside_opened=outside(), zoom_opened=app.view.zoom, opened_dirty=app.document.dirty)
report(**seen)
"""


def test_zoom_to_fit_shows_a_wide_workflow_and_keeps_its_positions(display, tmp_path):
    """Nodes 6000 px apart: at 100% the Save Image node is off the canvas; after F (zoom to fit)
    every node's rect is inside it, centred, nothing is marked unsaved or undoable, and the saved
    file has the original positions. Ctrl+0 goes back to 100%; opening the file fits it again."""
    result = run_scenario(tmp_path, FIT)
    assert result["zoom_before"] == 1.0 and "9" in result["outside_before"]
    assert result["outside_fitted"] == [] and result["zoom_fitted"] < 0.25, result
    assert result["label"] == f"{round(result['zoom_fitted'] * 100)}%"
    left, right, top, bottom = result["room"]
    assert min(result["room"]) > 0 and abs(left - right) <= 2 and abs(top - bottom) <= 2, result["room"]  # centred
    assert not result["dirty"] and result["history"] == 0 and not result["title"].startswith("*")
    assert result["saved_equal"]
    assert result["zoom_actual"] == 1.0 and "9" in result["outside_actual"]
    assert result["outside_opened"] == [] and result["zoom_opened"] < 0.25 and not result["opened_dirty"]


ZOOM = r"""
latent = document.add_node("EmptyLatentImage", (100, 100))
decode = document.add_node("VAEDecode", (500, 100))
document.save(tmp / "zoom.json")
open_window(editor_for(document))
seen = {"keys": [app.view.zoom]}
history = len(document._undo)  # the two additions

def ctrl(*keys):  # held down as a person would: xdotool's "ctrl+minus" can end within one frame
    return [["keydown", "ctrl"], *(["key", key] for key in keys), ["keyup", "ctrl"]]

drive(["mousemove", *centre("canvas")], *ctrl("minus", "minus"))
seen["keys"].append(app.view.zoom)
drive(*ctrl("equal"))
seen["keys"].append(app.view.zoom)
drive(*ctrl("0"))
seen["keys"].append(app.view.zoom)

def corner(node_id):  # the node's top-left corner on the screen
    x, y = dpg.get_item_rect_min(app.node_items[node_id])
    padding = round(8 * app.view.zoom)
    return x - padding, y - padding

mouse = (330, 260)
drive(["mousemove", *mouse])
before = corner(decode)
drive(["keydown", "ctrl"], ["click", 5], ["keyup", "ctrl"])  # wheel down: zoom out around the mouse
seen["wheel_out"] = app.view.zoom
after = corner(decode)
seen["distances"] = [[b - m for b, m in zip(before, mouse)], [a - m for a, m in zip(after, mouse)]]
drive(["keydown", "ctrl"], ["click", 4], ["click", 4], ["keyup", "ctrl"])  # wheel up: in, twice
seen["wheel_in"] = app.view.zoom
drive(*ctrl("0", "minus", "minus", "minus", "minus"))
seen["zoom"] = app.view.zoom
seen["clean"] = [document.dirty, len(document._undo) - history, dpg.get_viewport_title()]
x, y = corner(latent)
drive(["mousemove", x + 6, y + 3], ["mousedown", 1], ["mousemove", x + 36, y + 23], ["mousemove", x + 66, y + 43],
      ["mouseup", 1])  # drag the latent node by its title, 60 x 40 screen pixels
seen["moved"] = [document.position(latent), document.position(decode), document._undo[-1][0]]
drive(*ctrl("equal"))
seen["selected"] = [app.canvas.selected_nodes(), app.view.zoom]  # zooming keeps the selection
drive(*ctrl("minus"))
before = set(document.workflow.nodes)
drive(["mousemove", *centre("search")], ["click", 1], ["type", "flip"], ["mousemove", 700, 300], ["key", "Return"])
[added] = set(document.workflow.nodes) - before
seen["placed"] = corner(added)
drive(["mousemove", *centre("search")], ["click", 1], ["type", "f"])  # typed into the search box: no fit
seen["typed"] = [dpg.get_value("search"), app.view.zoom]
x, y = corner(added)
drive(["mousemove", x + 6, y + 3], ["click", 1], ["key", "Delete"])  # select the new node, delete it
seen["deleted"] = added not in document.workflow.nodes
drive(["mousemove", 900, 500], ["click", 1], ["key", "f"])  # on the canvas: F fits
seen["fitted"] = app.view.zoom
report(latent=latent, **seen)
"""


def test_zoom_keys_and_ctrl_wheel_keep_the_workflow_in_unzoomed_units(display, tmp_path):
    """Ctrl+- / Ctrl+= / Ctrl+0 step the zoom; Ctrl+wheel zooms around the mouse (a node keeps
    its direction from the mouse, its distance scaled); at 50% a drag of 60 x 40 screen pixels
    moves the node by 120 x 80 workflow units and a node placed at the mouse lands under it."""
    result = run_scenario(tmp_path, ZOOM)
    assert result["keys"] == [1.0, 0.75, 0.9, 1.0]
    assert result["wheel_out"] == 0.9 and result["wheel_in"] == 1.25
    (bx, by), (ax, ay) = result["distances"]
    assert abs(ax - bx * 0.9) <= 2 and abs(ay - by * 0.9) <= 2, result["distances"]
    assert result["zoom"] == 0.5
    dirty, history, title = result["clean"]
    assert not dirty and history == 0 and not title.startswith("*")  # zooming is no edit
    latent, decode, label = result["moved"]
    assert abs(latent[0] - 220) <= 2 and abs(latent[1] - 180) <= 2 and label == "move", result["moved"]
    assert decode == [500, 100]  # untouched, however the view rounds
    assert result["selected"] == [[result["latent"]], 0.67]
    assert abs(result["placed"][0] - 700) <= 2 and abs(result["placed"][1] - 300) <= 2, result["placed"]
    assert result["typed"] == ["f", 0.5] and result["deleted"] and result["fitted"] == 1.0


TERM = r"""
import signal

document.add_node("EmptyLatentImage", (40, 60))
document.save(workflow)

def user():
    time.sleep(2.0)
    seen["handler_installed"] = signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    os.kill(os.getpid(), signal.SIGTERM)  # a logout or kill: no window left to ask in

session(user, lambda document: document.set_value("1", "width", 896))
[recovery] = recovery_files()
seen["recovered_width"] = load_workflow(recovery).nodes["1"].inputs["width"]
seen["handler_restored"] = signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
print(json.dumps(seen))
"""


def test_sigterm_closes_the_window_and_keeps_the_unsaved_work_in_the_recovery_file(display, tmp_path):
    """Without the editor's handler SIGTERM kills the process and the edit is lost (the scenario
    would exit with -15); with it the frame loop ends and the edit is in the recovery file."""
    result = run_scenario(tmp_path, SESSION_HEAD + TERM)
    assert result == {"handler_installed": True, "recovered_width": 896, "handler_restored": True}
