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
