"""The snags a new user hit in the editor's first ten minutes (issue 19's bugs), each in a real
window under Xvfb driven by xdotool (the scenario helpers are test_gui_window's)."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.project import ROOT
from tests.test_gui_window import run_scenario

pytestmark = pytest.mark.gui

# More helpers for the scenarios below: keys held as a person would, and waiting for a run.
HELPERS = r"""
def ctrl(*keys):  # xdotool's "ctrl+n" can end within one frame: hold ctrl over frames
    return [["keydown", "ctrl"], *(["key", key] for key in keys), ["keyup", "ctrl"]]

def run_and_wait():
    drive(["mousemove", *centre("canvas")], *ctrl("Return"))
    started = time.monotonic()
    while (app.worker.busy or not app.worker.events.empty()) and time.monotonic() - started < 60:
        frames(1)
    frames(5)

MENU_BAR_HEIGHT = 20  # the font's 14 pixels and the frame padding's 3 above and below

def menu_point(menu, item=None):  # a menu (in the bar) or its item: they report only their position,
    x, y = dpg.get_item_pos(menu)  # an item's inside the menu's window (once open), which begins
    if item is None:               # 4 pixels left of the menu's label, under the bar
        return x + 16, y + 9
    item_x, item_y = dpg.get_item_pos(item)
    return x - 4 + item_x + 20, MENU_BAR_HEIGHT + item_y + 7

def states(node_ids):  # how each node is drawn: the run view's state, and the theme bound to it
    themes = {theme: state for state, theme in app.themes.nodes.items()}
    return {node_id: [app.run_view.node_state(node_id),
                      themes.get(dpg.get_item_theme(app.node_items[node_id]), "normal")]
            for node_id in node_ids}
"""


RUN_MARKS = r"""
document = Document.open(registry, Path("workflows/shapes_no_model.json"))
open_window(editor_for(document))
run_and_wait()
run_and_wait()  # again: every node comes from the cache
seen = {"status": dpg.get_value("status"), "cached": sorted(states(document.workflow.nodes).items()),
        "images": len(dpg.get_item_children("images_15", 1))}
other = {"format": "nodeflow-workflow", "version": 1,  # other nodes under ids the run marked
         "nodes": {"1": {"type": "EmptyImage", "inputs": {"width": 64, "height": 64}},
                   "15": {"type": "PreviewImage", "inputs": {}}},
         "links": [{"from": ["1", 0], "to": ["15", "images"]}],
         "ui": {"nodes": {"1": {"pos": [40, 40]}, "15": {"pos": [400, 40]}}}}
(tmp / "other.json").write_text(json.dumps(other))
app.open_path(tmp / "other.json")
frames(5)
seen["opened"] = states(["1", "15"])
seen["opened_images"] = len(dpg.get_item_children("images_15", 1))
drive(["mousemove", *centre("canvas")], *ctrl("n"))  # File > New
frames(3)
seen["new_nodes"] = len(app.document.workflow.nodes)
for node_type in ("EmptyImage", "EmptyImage", "EmptyImage", "SolidMask", "SolidMask"):
    app.document.add_node(node_type, (40, 40 + 150 * len(app.document.workflow.nodes)))
frames(5)
seen["new"] = states(app.document.workflow.nodes)
report(**seen)
"""


def test_new_and_open_forget_the_last_runs_marks_and_images(display, tmp_path):
    """Run shapes_no_model twice (every node cached, an image in Save Image, node 15); open a
    workflow with other nodes under ids 1 and 15, then File > New (Ctrl+N) and add nodes with
    ids 1-5: none is drawn cached and node 15 shows no image."""
    result = run_scenario(tmp_path, HELPERS + RUN_MARKS)
    assert result["status"].startswith("done"), result["status"]
    assert all(state == ["cached", "cached"] for _, state in result["cached"]), result["cached"]
    assert result["images"] == 1
    assert result["opened"] == {"1": ["normal", "normal"], "15": ["normal", "normal"]}, result["opened"]
    assert result["opened_images"] == 0
    assert result["new_nodes"] == 0
    assert result["new"] == {str(i): ["normal", "normal"] for i in range(1, 6)}, result["new"]


COMBO = r"""
from nodeflow.engine.validate import validate

for name in ("alpha.safetensors", "beta.safetensors"):
    (tmp / "models" / "checkpoints").mkdir(parents=True, exist_ok=True)
    (tmp / "models" / "checkpoints" / name).write_bytes(b"")
paths = Paths(models_dirs=(tmp / "models",), output_dir=tmp / "out", temp_dir=tmp / "tmp",
              assets_dir=tmp / "no-assets")
registry = Registry.load(paths)
document = Document(registry)
open_window(editor_for(document))
drive(["mousemove", *centre("search")], ["click", 1], ["type", "load checkpoint"], ["key", "Return"])
[loader] = document.workflow.nodes

def combo():  # the ckpt_name combo on the loader node, as drawn now
    for attribute in dpg.get_item_children(app.node_items[loader], 1):
        for item in dpg.get_item_children(attribute, 1):
            if dpg.get_item_label(item) == "ckpt_name":
                return item

def shown():
    if loader not in document.workflow.nodes:
        return "no loader"
    return [document.workflow.nodes[loader].inputs.get("ckpt_name"), dpg.get_value(combo())]

seen = {"added": shown(), "problems": [str(p) for p in validate(document.workflow, registry, paths)]}
(x, _), (_, y) = dpg.get_item_rect_min(combo()), centre(combo())
height = dpg.get_item_rect_size(combo())[1]
drive(["mousemove", x + 20, y], ["click", 1], ["mousemove", x + 20, int(y + 2 * height)], ["click", 1])  # 2nd entry
seen["chosen"] = shown()
drive(*ctrl("z"))
seen["undone"] = shown()
report(**seen)
"""


def test_combos_show_the_stored_value_and_a_new_node_stores_its_default(display, tmp_path):
    """Load Checkpoint placed from the search box stores the first checkpoint it shows (the run
    would otherwise fail with "ckpt_name: required value is missing"); choosing another in the
    combo and undoing shows the stored value again."""
    result = run_scenario(tmp_path, HELPERS + COMBO)
    assert result["added"] == ["alpha.safetensors", "alpha.safetensors"], result
    assert not [p for p in result["problems"] if "ckpt_name" in p], result["problems"]
    assert result["chosen"] == ["beta.safetensors", "beta.safetensors"], result
    assert result["undone"] == ["alpha.safetensors", "alpha.safetensors"], result


LIVE_PREVIEW = r"""
import torch
from nodeflow.engine import events

document = Document.open(registry, Path("workflows/txt2img.json"))
open_window(editor_for(document))

def preview(step):  # what a sampler's step sends
    app.worker.events.put(events.Progress("3", step, 20, torch.rand(1, 64, 64, 3)))
    frames(5)

def rect(tag):  # a window reports its position and size, other items their rect
    state = dpg.get_item_state(tag)
    if "rect_min" in state:
        return [*state["rect_min"], *state["rect_max"]]
    (x, y), (width, height) = dpg.get_item_pos(tag), state["rect_size"]
    return [x, y, x + width, y + height]

preview(1)
seen = {"canvas": rect("canvas"), "preview": rect("live_preview"), "shown": dpg.is_item_shown("live_preview")}
x0, y0, x1, y1 = rect("live_preview")
drive(["mousemove", x1 - 10, y0 + 9], ["click", 1])  # its close button, at the title bar's right end
seen["closed"] = dpg.is_item_shown("live_preview")
preview(2)
seen["next_step"] = dpg.is_item_shown("live_preview")  # closed stays closed
drive(["mousemove", *menu_point("view_menu")], ["click", 1])
drive(["mousemove", *menu_point("view_menu", "menu_live_preview")], ["click", 1])  # View > Live preview
seen["reopened"] = dpg.is_item_shown("live_preview")
preview(3)
seen["image"] = dpg.get_item_type("live_image")
report(**seen)
"""


def test_the_live_preview_stays_clear_of_the_graph_and_comes_back_from_the_view_menu(display, tmp_path):
    """The live preview opens in the canvas's bottom-left corner (not over the top-left, where
    graphs start); closed, it stays closed during the run, and View > Live preview shows it again."""
    result = run_scenario(tmp_path, HELPERS + LIVE_PREVIEW)
    cx0, cy0, cx1, cy1 = result["canvas"]
    x0, y0, x1, y1 = result["preview"]
    assert result["shown"] and cx0 <= x0 < x1 < (cx0 + cx1) / 2, result
    assert (cy0 + cy1) / 2 < y0 < y1 <= cy1, result  # in the canvas's lower half
    assert not result["closed"] and not result["next_step"], result
    assert result["reopened"] and result["image"] == "mvAppItemType::mvImage", result


def _outside_the_users_home(path) -> bool:
    import pwd
    from pathlib import Path

    home = Path(pwd.getpwuid(os.getuid()).pw_dir).resolve()  # the real one, whatever $HOME says
    return home == Path("/") or not Path(path).resolve().is_relative_to(home)


WHERE_FILES_GO = ("from nodeflow.gui.recent import default_recent_file\n"
                  "from nodeflow.gui.recovery import default_recovery_dir\n"
                  "from nodeflow.runtime.config import default_locations\n"
                  "from pathlib import Path\n"
                  "print(default_recent_file()); print(default_recovery_dir()); print(default_locations()[1])\n"
                  "print(Path.home())\n")


def test_tests_never_touch_the_users_home():
    """The recent-files list, the recovery folder, the settings file and ~ itself are outside the
    user's real home (from the password database) in this process and in every process a test
    starts (tests/conftest.py points HOME and the XDG folders at the test run's own folder)."""
    here = subprocess.run([sys.executable, "-c", WHERE_FILES_GO], capture_output=True, text=True, check=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout.split("\n")[:4]
    from nodeflow.gui.recent import default_recent_file
    from nodeflow.gui.recovery import default_recovery_dir
    from nodeflow.runtime.config import default_locations

    for path in [*here, default_recent_file(), default_recovery_dir(), default_locations()[1], Path.home()]:
        assert _outside_the_users_home(path), path


def test_a_workflow_opened_from_the_command_line_goes_to_the_recent_files(display, tmp_path):
    """``nodeflow gui WF`` puts WF first in File > Open Recent ($XDG_CONFIG_HOME/nodeflow/recent.json)."""
    workflow = tmp_path / "mine.json"
    shutil.copy(ROOT / "workflows" / "shapes_no_model.json", workflow)
    recent = tmp_path / "config" / "nodeflow" / "recent.json"
    editor = subprocess.Popen([sys.executable, "-m", "nodeflow.cli", "gui", str(workflow), "--output-dir",
                               str(tmp_path / "out")], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(ROOT), "XDG_CONFIG_HOME": str(tmp_path / "config"),
                                   "XDG_STATE_HOME": str(tmp_path / "state")})
    try:
        started = time.monotonic()
        while not recent.exists() and editor.poll() is None and time.monotonic() - started < 60:
            time.sleep(0.5)
        time.sleep(2.0)  # the window is up and drawing
    finally:
        editor.terminate()  # SIGTERM: the editor closes as on a crash
        _, errors = editor.communicate(timeout=30)
    assert recent.exists(), errors[-2000:]
    assert json.loads(recent.read_text()) == [str(workflow.resolve())]


def overlapping(boxes: dict) -> list:
    """The pairs of node ids whose drawn rects ([x0, y0, x1, y1]) overlap."""
    ids = sorted(boxes)
    return [(a, b) for i, a in enumerate(ids) for b in ids[i + 1:]
            if boxes[a][0] < boxes[b][2] and boxes[b][0] < boxes[a][2]
            and boxes[a][1] < boxes[b][3] and boxes[b][1] < boxes[a][3]]


BOXES = r"""
def boxes():  # every node's rect as drawn
    return {node_id: [*dpg.get_item_rect_min(item), *dpg.get_item_rect_max(item)]
            for node_id, item in app.node_items.items()}
"""

SEARCH_STACK = r"""
open_window(editor_for(document))
for _ in range(3):  # the mouse on the search box: each goes to the canvas's centre, or below
    drive(["mousemove", *centre("search")], ["click", 1], ["type", "empty latent"], ["key", "Return"])
seen = {"boxes": boxes(), "status": dpg.get_value("status")}
first = document.add_node("EmptyLatentImage", (40, 60))
frames(5)
x, y = dpg.get_item_rect_min(app.node_items[first])
drive(["mousemove", x + 12, y - 2], ["click", 1], *ctrl("c"))  # select it by its title, copy
drive(["mousemove", 60, 330], *ctrl("v"))  # paste at the mouse, on free canvas
[pasted] = set(document.workflow.nodes) - set(seen["boxes"]) - {first}
seen.update(pasted_corner=[v - 8 for v in dpg.get_item_rect_min(app.node_items[pasted])],
            selected=app.canvas.selected_nodes(), paste_status=dpg.get_value("status"))
drive(["key", "Delete"])  # removes what is selected: not the copied node
seen.update(left=sorted(document.workflow.nodes), first=first, pasted=pasted, all_boxes=boxes())
report(**seen)
"""


def test_placed_and_pasted_nodes_do_not_stack_and_paste_leaves_the_copy_unselected(display, tmp_path):
    """Three nodes placed from the search box with the mouse off the canvas do not overlap;
    Ctrl+V pastes at the mouse, says so, and leaves the copied node unselected (Delete used to
    remove it)."""
    result = run_scenario(tmp_path, HELPERS + BOXES + SEARCH_STACK)
    assert len(result["boxes"]) == 3 and overlapping(result["boxes"]) == [], result["boxes"]
    assert result["status"] == "added Empty Latent Image"
    assert [abs(a - b) <= 2 for a, b in zip(result["pasted_corner"], [60, 330])] == [True, True], result
    assert result["selected"] == [] and result["paste_status"] == "pasted 1 node(s)"
    assert result["first"] in result["left"] and result["pasted"] in result["left"], result
    assert overlapping(result["all_boxes"]) == [], result["all_boxes"]


OVERLAP = r"""
prompt = document.add_node("CLIPTextEncode", (100, 100))
latent = document.add_node("EmptyLatentImage", (120, 140))  # drawn over the prompt's text box
open_window(editor_for(document))

def text():
    return document.workflow.nodes[prompt].inputs.get("text", "")

x, y = dpg.get_item_rect_min(app.node_items[latent])
away = ["mousemove", 700, 120], ["click", 1]  # a click on the empty canvas ends the typing
drive(["mousemove", x + 40, y + 6], ["click", 1], ["type", "xyz"], *away)  # its title
seen = {"hidden": text()}
px, py = dpg.get_item_rect_min(app.node_items[prompt])
drive(["mousemove", px + 40, py + 6], ["click", 1])  # the prompt's title: it comes on top
drive(["mousemove", x + 200, y + 6], ["click", 1], ["type", "abc"], *away)  # its text box, on top now
seen["on_top"] = text()
report(**seen)
"""


def test_a_click_on_an_overlapping_nodes_title_does_not_type_into_the_hidden_node(display, tmp_path):
    """Empty Latent Image drawn over a prompt's text box: clicking its title and typing leaves
    the hidden prompt alone; once the prompt is clicked to the top, its text box takes the typing."""
    result = run_scenario(tmp_path, HELPERS + OVERLAP)
    assert result["hidden"] == "", result
    assert result["on_top"] == "abc", result


EXAMPLES = r"""
from nodeflow.gui.view import View

open_window(editor_for(document))
drawn = {}
for workflow in sorted(Path("workflows").glob("*.json")):
    app.open_path(workflow.resolve())
    frames(4)
    app.canvas.fit_passes = 0  # measured at 100%, the zoom the file's positions are in
    app.set_view(View())
    frames(4)
    sizes = {node_id: dpg.get_item_rect_size(item) for node_id, item in app.node_items.items()}
    drawn[workflow.name] = {node_id: [*app.document.position(node_id), *size] for node_id, size in sizes.items()}
report(drawn=drawn)
"""


def test_every_example_workflow_opens_without_overlapping_nodes(display, tmp_path):
    """Each workflow in workflows/, drawn at 100%: no two nodes overlap (sizes as the editor
    draws them today; positions from the file)."""
    drawn = run_scenario(tmp_path, HELPERS + EXAMPLES)["drawn"]
    assert len(drawn) == len(list((ROOT / "workflows").glob("*.json"))) >= 10
    found = {}
    for name, nodes in drawn.items():
        assert all(width > 0 and height > 0 for _, _, width, height in nodes.values()), (name, nodes)
        boxes = {node_id: [x, y, x + width, y + height] for node_id, (x, y, width, height) in nodes.items()}
        if overlapping(boxes):
            found[name] = overlapping(boxes)
    assert found == {}, found


SMALLER = r"""
latent = document.add_node("EmptyLatentImage", (40, 60))
open_window(editor_for(document))
seen = {}
drive(["mousemove", 600, 300], ["click", 3])  # the add-node menu
seen["categories"] = [dpg.get_item_label(item) for item in dpg.get_item_children("add_menu", 1)]
seen["menu_open"] = dpg.is_item_shown("add_menu")
drive(["key", "Escape"])
seen["menu_after_escape"] = dpg.is_item_shown("add_menu")
drive(["mousemove", 600, 300], ["click", 3])
app.request_close()  # the window's close button, with the add-node menu open
frames(10)
seen["asked_with_menu_open"] = dpg.does_item_exist("confirm") and dpg.is_item_shown("confirm")
drive(["key", "Escape"])  # Escape answers Cancel
seen["asked_after_escape"] = dpg.does_item_exist("confirm")
drive(["mousemove", *centre("canvas")], *ctrl("q"))  # File > Quit
seen["asked_on_quit"] = dpg.does_item_exist("confirm")
drive(["key", "Escape"])
x, y = dpg.get_item_rect_min(app.node_items[latent])
drive(["mousemove", x + 12, y + 6], ["click", 1], ["key", "Delete"])
seen.update(deleted=latent not in document.workflow.nodes, status=dpg.get_value("status"),
            running=dpg.is_dearpygui_running())
report(**seen)
"""


def test_add_menu_escape_close_request_quit_and_delete_status(display, tmp_path):
    """The add-node menu has no "_for_testing" category; Escape closes it and answers the
    unsaved-changes question with Cancel; a close request while the menu is open still asks;
    Ctrl+Q (File > Quit) asks too; Delete says what it removed."""
    result = run_scenario(tmp_path, HELPERS + SMALLER)
    assert result["menu_open"] and "image" in result["categories"], result
    assert not [c for c in result["categories"] if c.startswith("_")], result["categories"]
    assert not result["menu_after_escape"], result
    assert result["asked_with_menu_open"] and not result["asked_after_escape"], result
    assert result["asked_on_quit"], result
    assert result["deleted"] and result["status"] == "deleted 1 node(s)" and result["running"], result


# The editor's own file browser (issue 19: dearpygui's dialog sorted in reverse, listed ".." last
# and gave sizes in "Ko") and Load Image's picture and "Choose image..." button.
BROWSER_HELPERS = r"""
def browser_rows():  # [name, size] of each row, as shown
    rows = []
    for row in dpg.get_item_children("file_browser_table", 1):
        name, size, _ = dpg.get_item_children(row, 1)
        rows.append([dpg.get_item_label(name), dpg.get_value(size)])
    return rows

def row_point(label):  # on the row's name
    for row in dpg.get_item_children("file_browser_table", 1):
        cell = dpg.get_item_children(row, 1)[0]
        if dpg.get_item_label(cell) == label:
            (x0, y0), (_, y1) = dpg.get_item_rect_min(cell), dpg.get_item_rect_max(cell)
            return int(x0 + 20), int((y0 + y1) / 2)
    raise LookupError(f"no row {label!r} in {browser_rows()}")

def double_click(point):
    return [["mousemove", *point], ["click", "--repeat", 2, "--delay", 80, 1]]

def type_into(tag, text, enter=True):  # click the field, replace its text, then Enter
    drive(["mousemove", *centre(tag)], ["click", 1], *ctrl("a"), ["type", str(text)])
    started = time.monotonic()  # ImGui takes the typed keys a frame or two each: wait for them all
    while dpg.get_value(tag) != str(text) and time.monotonic() - started < 30:
        frames(1)
    if enter:
        drive(["key", "Return"])
"""

BROWSE = r"""
browse = tmp / "browse"
for name in ("beta", "Zed", "alpha"):
    (browse / name).mkdir(parents=True)
for name in ("b.json", "C.png", "notes.txt"):
    (browse / name).write_bytes(b"x" * 2048)
flow = {"format": "nodeflow-workflow", "version": 1, "links": [],
        "nodes": {"1": {"type": "EmptyImage", "inputs": {"width": 64, "height": 64}}}}
(browse / "a.json").write_text(json.dumps(flow))
open_window(editor_for(document))
drive(["mousemove", *centre("canvas")], *ctrl("o"))  # File > Open
seen = {"opened": dpg.does_item_exist("file_browser"), "filter": dpg.get_value("file_browser_filter")}
type_into("file_browser_path", browse)
seen["rows"] = browser_rows()
drive(*double_click(row_point("alpha/")))
seen["entered"] = [dpg.get_value("file_browser_path"), browser_rows()]
drive(*double_click(row_point("..")))
seen["back"] = dpg.get_value("file_browser_path")
drive(*double_click(row_point("a.json")))
seen["closed"] = not dpg.does_item_exist("file_browser")
seen["document"] = [str(app.document.path), [n.type for n in app.document.workflow.nodes.values()]]
drive(*ctrl("o"))
seen["again"] = dpg.does_item_exist("file_browser")
drive(["key", "Escape"])
seen["escaped"] = not dpg.does_item_exist("file_browser")
report(**seen)
"""


def test_file_browser_lists_parent_first_and_names_ascending(display, tmp_path):
    """Ctrl+O opens the editor's file browser; typed into its path box, a folder lists "..",
    then its folders, then its workflow files (.json, .png), each by name ignoring case, with
    sizes in KB; a double-click enters a folder, ".." goes back, a file opens; Escape closes it."""
    result = run_scenario(tmp_path, HELPERS + BROWSER_HELPERS + BROWSE)
    browse = tmp_path / "browse"
    assert result["opened"] and result["filter"].startswith("Workflows"), result
    size = len((browse / "a.json").read_bytes())
    assert result["rows"] == [["..", ""], ["alpha/", ""], ["beta/", ""], ["Zed/", ""], ["a.json", f"{size} B"],
                              ["b.json", "2.0 KB"], ["C.png", "2.0 KB"]], result["rows"]
    assert result["entered"] == [str(browse / "alpha"), [["..", ""]]], result["entered"]
    assert result["back"] == str(browse), result
    assert result["closed"] and result["document"] == [str(browse / "a.json"), ["EmptyImage"]], result
    assert result["again"] and result["escaped"], result


SAVE_AS = r"""
document.add_node("EmptyImage", (40, 40))
open_window(editor_for(document))
folder = tmp / "save here"
folder.mkdir()

def saved_nodes():
    file = folder / "mine.json"
    return len(json.loads(file.read_text())["nodes"]) if file.exists() else 0

drive(["mousemove", *centre("canvas")], *ctrl("s"))  # no file yet: Save asks for one
seen = {"proposed": dpg.get_value("file_browser_name")}
type_into("file_browser_path", folder)
type_into("file_browser_name", "mine")
seen["saved"] = [str(app.document.path), saved_nodes(), dpg.does_item_exist("file_browser")]
document.add_node("EmptyImage", (40, 300))
frames(3)
app.save_dialog()  # File > Save As, onto the same name
frames(3)
type_into("file_browser_path", folder)
type_into("file_browser_name", "mine", enter=False)
drive(["mousemove", *centre("file_browser_ok")], ["click", 1])  # (a slow frame could repeat a held Enter)
seen["asked"] = [dpg.get_value("file_browser_message"), saved_nodes(), dpg.does_item_exist("file_browser")]
drive(["mousemove", *centre("file_browser_ok")], ["click", 1])  # Save again: replace it
seen["replaced"] = [saved_nodes(), dpg.does_item_exist("file_browser"), dpg.get_viewport_title()]
seen["left"] = sorted(p.name for p in folder.iterdir())
report(**seen)
"""


def test_save_as_in_the_file_browser_adds_json_and_asks_before_replacing(display, tmp_path):
    """Ctrl+S on an unsaved workflow opens the browser in save mode ("workflow.json" proposed);
    a typed name gets ".json" and is saved; Save As onto it says it exists, and a second Save
    replaces it (written atomically by the session: no temporary file is left)."""
    result = run_scenario(tmp_path, HELPERS + BROWSER_HELPERS + SAVE_AS)
    mine = tmp_path / "save here" / "mine.json"
    assert result["proposed"] == "workflow.json", result
    assert result["saved"] == [str(mine), 1, False], result
    assert result["asked"] == ["mine.json exists: Save again to replace it", 1, True], result
    assert result["replaced"] == [2, False, "mine.json - nodeflow"], result
    assert result["left"] == ["mine.json"], result


CHOOSE_IMAGE = r"""
import os
from PIL import Image

paths = Paths(input_dir=tmp / "input", output_dir=tmp / "out", temp_dir=tmp / "tmp", assets_dir=tmp / "no-assets")
registry = Registry.load(paths)
document = Document(registry)
pictures = tmp / "pictures"
pictures.mkdir()
picture = Image.new("RGB", (320, 160), (230, 20, 20))
picture.paste((20, 20, 230), (160, 0, 320, 160))  # red left, blue right
picture.save(pictures / "red_blue.png")
(pictures / "notes.txt").write_text("not an image")
(tmp / "input").mkdir()
Image.new("RGB", (8, 8), (0, 255, 0)).save(tmp / "input" / "red_blue.png")  # another file of that name
node = document.add_node("LoadImage", (40, 40), {"image": "red_blue.png"})
open_window(editor_for(document))

def widget(kind, label):
    for attribute in dpg.get_item_children(app.node_items[node], 1):
        for item in dpg.get_item_children(attribute, 1):
            if dpg.get_item_type(item).endswith(kind) and dpg.get_item_label(item) == label:
                return item

def picture_shown():  # what the node shows under its widgets, and its texture's size
    if node not in app.image_picker.shown:
        return None
    children = dpg.get_item_children(app.image_picker.shown[node].group, 1)
    texture = app.image_picker.textures.get(node)
    return [dpg.get_item_type(c).split("::")[-1] for c in children], texture and list(texture.size)

def textures():
    return len(dpg.get_item_children("textures", 1))

seen = {"before": picture_shown(), "textures_before": textures()}
drive(["mousemove", *centre(widget("mvButton", "Choose image..."))], ["click", 1])
seen["browser"] = [dpg.does_item_exist("file_browser"), dpg.get_value("file_browser_filter")]
type_into("file_browser_path", pictures)
seen["rows"] = browser_rows()
drive(*double_click(row_point("red_blue.png")))
seen["value"] = document.workflow.nodes[node].inputs["image"]
seen["inputs"] = sorted(os.listdir(tmp / "input"))
seen["after"] = picture_shown()
seen["choices"] = dpg.get_item_configuration(widget("mvCombo", "image"))["items"]
shot = tmp / "shot.png"
dpg.output_frame_buffer(file=str(shot))
frames(3)
def picture_item():
    return dpg.get_item_children(app.image_picker.shown[node].group, 1)[0]

(x0, y0), (x1, y1) = dpg.get_item_rect_min(picture_item()), dpg.get_item_rect_max(picture_item())
width, height = (dpg.get_item_configuration(picture_item())[key] for key in ("width", "height"))
left, top = int(x0 + x1 - width) // 2, int(y0 + y1 - height) // 2  # the image, inside the frame padding
region = np.asarray(Image.open(shot).convert("RGB"))[top + 2:top + height - 2, left + 2:left + width - 2]
third = region.shape[1] // 3
seen["screen"] = [region[:, :third].mean(axis=(0, 1)).round().tolist(),
                  region[:, -third:].mean(axis=(0, 1)).round().tolist(), [width, height]]
drive(["mousemove", *centre("canvas")], *ctrl("z"))
seen["undone"] = [document.workflow.nodes[node].inputs["image"], picture_shown(), textures()]
corner = app.canvas.canvas_point(dpg.get_item_rect_min(picture_item()))
other = document.add_node("EmptyImage", (corner[0] - 20, corner[1] - 10))  # drawn over the picture
frames(5)
seen["covered"] = dpg.get_item_configuration(picture_item())["enabled"]
document.remove_nodes([other])
document.set_value(node, "image", "missing.png")  # as its combo does
frames(3)
seen["missing"] = [picture_shown(), dpg.get_value(dpg.get_item_children(app.image_picker.shown[node].group, 1)[0])]
document.remove_nodes([node])
frames(3)
seen["deleted"] = [textures(), len(app.image_picker.textures), len(app.image_picker.shown)]
report(**seen)
"""


def test_choose_image_copies_it_into_the_input_folder_and_the_node_shows_it(display, tmp_path):
    """A Load Image node shows its file's picture; "Choose image..." opens the browser on
    images; a double-click on a picture elsewhere copies it into the input folder beside a
    different file of the same name (never over it), sets the node's value (the combo lists it)
    and the node shows it, red left and blue right as on the screen; undo shows the old picture
    (disabled, as widgets are, under a node drawn over it), a missing file a short note, and
    deleting the node frees its texture."""
    result = run_scenario(tmp_path, HELPERS + BROWSER_HELPERS + "import numpy as np\n" + CHOOSE_IMAGE)
    assert result["before"] == [["mvImageButton"], [8, 8]] and result["textures_before"] == 1, result
    assert result["browser"] == [True, "Images (.png, .jpg, .jpeg, .webp, .bmp)"], result
    assert result["rows"] == [["..", ""], ["red_blue.png", result["rows"][1][1]]], result["rows"]
    assert result["value"] == "red_blue (2).png", result
    assert result["inputs"] == ["red_blue (2).png", "red_blue.png"], result
    assert result["after"] == [["mvImageButton"], [160, 80]], result
    assert "red_blue (2).png" in result["choices"], result["choices"]
    left, right, size = result["screen"]
    assert size == [160, 80], result["screen"]
    assert left[0] > 180 and left[2] < 70 and right[2] > 180 and right[0] < 70, result["screen"]
    assert result["undone"] == ["red_blue.png", [["mvImageButton"], [8, 8]], 1], result["undone"]
    assert result["covered"] is False, result  # disabled under the node drawn over it, no crash
    assert result["missing"] == [[["mvText"], None], "missing.png: not in the input folder"], result
    assert result["deleted"] == [0, 0, 0], result
