"""The node library panel and Empty Latent Image's "Model's size" entry in a real window under
Xvfb, driven by xdotool (issue 19; the scenario helpers are test_gui_window's)."""

import pytest

from tests.test_gui_window import run_scenario
from tests.test_gui_window_new_user import HELPERS

pytestmark = pytest.mark.gui

LIBRARY = r"""
document.add_node("EmptyLatentImage", (40, 60))
open_window(editor_for(document))
canvas_before = dpg.get_item_rect_min("canvas")
node_before = dpg.get_item_rect_min(app.node_items["1"])
drive(["mousemove", *centre("canvas")], *ctrl("l"))  # View > Node library's shortcut
seen = {"shown": dpg.is_item_shown("node_library"), "checked": dpg.get_value("menu_node_library"),
        "canvas_moved": dpg.get_item_rect_min("canvas")[0] - canvas_before[0],
        "node_moved": dpg.get_item_rect_min(app.node_items["1"])[0] - node_before[0]}

def listed():  # the entries drawn in the panel now
    return sorted(type_id for type_id, item in app.library.entry_items.items() if dpg.is_item_visible(item))

seen["listed_before"] = len(listed())
drive(["mousemove", *centre("library_search")], ["click", 1], ["type", "flip lat"])
seen["listed"] = listed()
flip = app.library.entry_items["LatentFlip"]
drive(["mousemove", *centre(flip)])
seen["described"] = dpg.get_value("library_description")
drive(["click", 1])
seen["types"] = sorted(node.type for node in document.workflow.nodes.values())
seen["undo"] = document.undo()
drive(["mousemove", *centre("library_search")], ["click", 1], *ctrl("a"), ["key", "BackSpace"])
seen["listed_after_clear"] = len(listed())
drive(["mousemove", *centre("library_search")], ["click", 1], ["type", "empty latent image"], ["key", "Return"])
seen["after_enter"] = sorted(node.type for node in document.workflow.nodes.values())
drive(["mousemove", *centre("canvas")], *ctrl("l"))
seen["hidden"] = not dpg.is_item_shown("node_library")
seen["node_back"] = dpg.get_item_rect_min(app.node_items["1"])[0] - node_before[0]
report(**seen)
"""


def test_library_search_filters_and_a_click_adds_the_node(display, tmp_path):
    """Ctrl+L shows the panel (the canvas makes room, nodes keep their place on the screen);
    typing "flip lat" leaves Flip Latent listed; pointing at it shows its declaration's
    description; clicking adds it (one undo step); Enter adds the first match; Ctrl+L hides it."""
    from nodeflow.engine.registry import Registry

    result = run_scenario(tmp_path, HELPERS + LIBRARY)
    assert result["shown"] and result["checked"]
    assert result["canvas_moved"] > 250 and abs(result["node_moved"]) <= 1, result
    assert result["listed_before"] < 20  # categories start closed
    assert result["listed"] == ["LatentFlip"]
    assert result["described"] == Registry.load().get("LatentFlip").description
    assert result["types"] == ["EmptyLatentImage", "LatentFlip"]
    assert result["undo"] == "add Flip Latent"
    assert result["listed_after_clear"] == result["listed_before"]  # the tree as it was
    assert result["after_enter"] == ["EmptyLatentImage", "EmptyLatentImage"]
    assert result["hidden"] and abs(result["node_back"]) <= 1


MODEL_SIZE = r"""
from nodeflow.loading.native_size import native_size

document = Document.open(registry, Path("workflows/txt2img.json"))
open_window(EditorApp(document, Executor(registry, paths), paths, RecoveryFolder(tmp / "recovery"),
                      RecentFiles(tmp / "recent.json"), native_size=native_size))
app.zoom_to_fit()
frames(10)
seen = {"before": [document.workflow.nodes["5"].inputs[name] for name in ("width", "height")]}
document.set_values("5", {"width": 512, "height": 512}, label="ComfyUI's default")
frames(5)
x, y = dpg.get_item_rect_min(app.node_items["5"])
drive(["mousemove", int(x + 12), int(y + 6)], ["click", 3])  # the node's title: its menu
[entry] = dpg.get_item_children("node_menu_sizes", 1)
seen["label"] = dpg.get_item_label(entry)
menu_x, menu_y = dpg.get_item_pos("node_menu")
entry_x, entry_y = dpg.get_item_pos(entry)
drive(["mousemove", int(menu_x + entry_x + 30), int(menu_y + entry_y + 7)], ["click", 1])
seen["after"] = [document.workflow.nodes["5"].inputs[name] for name in ("width", "height")]
widgets = {dpg.get_item_label(item): item for attribute in dpg.get_item_children(app.node_items["5"], 1)
           for item in dpg.get_item_children(attribute, 1)}
seen["shown"] = [dpg.get_value(widgets[name]) for name in ("width", "height")]  # the node as drawn
seen["undo"] = [document.undo(), [document.workflow.nodes["5"].inputs[name] for name in ("width", "height")]]
x, y = dpg.get_item_rect_min(app.node_items["3"])
drive(["mousemove", int(x + 12), int(y + 6)], ["click", 3])  # KSampler's menu has no size entry
seen["ksampler_entries"] = len(dpg.get_item_children("node_menu_sizes", 1))
drive(["key", "Escape"], ["mousemove", *centre("search")], ["click", 1], ["type", "empty latent image"],
      ["key", "Return"])
[added] = set(document.workflow.nodes) - {"3", "4", "5", "6", "7", "8", "9"}
seen["added"] = [document.workflow.nodes[added].inputs[name] for name in ("width", "height")]
report(**seen)
"""


def test_empty_latent_menu_sets_the_models_size(display, tmp_path):
    """txt2img.json loads the embedded 64 px model: Empty Latent Image's menu offers "Model's
    size: 64 x 64", which sets width and height in one undoable step; KSampler's menu has no
    such entry; a new Empty Latent Image starts at 64 x 64."""
    result = run_scenario(tmp_path, MODEL_SIZE)
    assert result["before"] == [64, 64]  # the workflow's own values
    assert result["label"] == "Model's size: 64 x 64"
    assert result["after"] == [64, 64] and result["shown"] == [64, 64]
    assert result["undo"] == ["set the model's size", [512, 512]]
    assert result["ksampler_entries"] == 0
    assert result["added"] == [64, 64]


LIVE_PREVIEW = r"""
import torch
from nodeflow.engine import events

document = Document.open(registry, Path("workflows/txt2img.json"))
open_window(editor_for(document))

def rect(tag):  # a window or child window reports its position and size, other items their rect
    state = dpg.get_item_state(tag)
    if dpg.get_item_type(tag).endswith(("mvChildWindow", "mvWindowAppItem")):
        (x, y), (width, height) = dpg.get_item_pos(tag), state["rect_size"]
        return [x, y, x + width, y + height]
    return [*state["rect_min"], *state["rect_max"]]

def layout():
    return {"canvas": rect("canvas"), "preview": rect("live_preview"), "library": rect("node_library")}

app.worker.events.put(events.Progress("3", 1, 20, torch.rand(1, 64, 64, 3)))  # a sampler's step: the preview opens
frames(5)
seen = {"alone": layout()}
drive(["mousemove", *centre("canvas")], *ctrl("l"))
seen["library"] = layout()
drive(["mousemove", *centre("canvas")], *ctrl("l"))
seen["closed"] = layout()
dpg.configure_item("live_preview", pos=(500, 300))  # put elsewhere by the user
frames(3)
drive(["mousemove", *centre("canvas")], *ctrl("l"))
seen["moved"] = layout()
report(**seen)
"""


def test_the_live_preview_moves_right_of_the_docked_library(display, tmp_path):
    """The live preview in the canvas's bottom-left corner would be under the node library: Ctrl+L
    moves it right of the library (still inside the canvas, still at its bottom), Ctrl+L again back
    to the window's corner; a preview the user put elsewhere on the canvas stays there."""
    result = run_scenario(tmp_path, HELPERS + LIVE_PREVIEW)

    def inside(inner, outer):
        return outer[0] <= inner[0] and outer[1] <= inner[1] and inner[2] <= outer[2] and inner[3] <= outer[3]

    alone, library, closed = result["alone"], result["library"], result["closed"]
    assert inside(alone["preview"], alone["canvas"]) and alone["preview"][0] < library["library"][2], result
    assert library["library"][2] < library["preview"][0] and inside(library["preview"], library["canvas"]), result
    assert library["preview"][0] - library["canvas"][0] == alone["preview"][0] - alone["canvas"][0], result
    assert library["preview"][1] == alone["preview"][1], result
    assert closed["preview"] == alone["preview"], result
    assert result["moved"]["preview"][:2] == [500, 300], result
