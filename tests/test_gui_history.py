"""The editor's queue and history (issue 19) in a real window under Xvfb, driven by xdotool:
a batch of runs queued with the batch count and Run, the history panel's entries, their large
image and "load this workflow", a failed run, and Stop / Clear queue while runs wait."""

import pytest

from tests.test_gui_window import run_scenario
from tests.test_gui_window_new_user import HELPERS

pytestmark = pytest.mark.gui

QUEUE_HELPERS = r"""
shown_queue = []  # what the status bar's queue part said, frame by frame

def watch_queue():
    refresh = app._refresh_queue_status
    def watched():
        refresh()
        text = dpg.get_value("queue_status")
        if not shown_queue or shown_queue[-1] != text:
            shown_queue.append(text)
    app._refresh_queue_status = watched

def wait_for_queue(limit=120):
    started = time.monotonic()
    while (app.runs.busy or app.worker.busy or not app.worker.events.empty()) and time.monotonic() - started < limit:
        frames(1)
    frames(5)

def widget(item, label):  # the widget labelled ``label`` under ``item`` (a node), searched in depth
    for child in dpg.get_item_children(item, 1) or []:
        if dpg.get_item_label(child) == label:
            return child
        found = widget(child, label)
        if found is not None:
            return found
    return None

def inside(item, window):  # the item's centre lies in the window
    x, y = centre(item)
    (x0, y0), (w, h) = dpg.get_item_pos(window), dpg.get_item_rect_size(window)
    return x0 <= x <= x0 + w and y0 <= y <= y0 + h

def set_batch_count(text):
    (x, _), (_, y) = dpg.get_item_rect_min("batch_count"), centre("batch_count")
    drive(["mousemove", x + 20, y], ["click", 1], *ctrl("a"), ["type", text], ["mousemove", *centre("canvas")],
          ["click", 1])
"""

BATCH = r"""
document = Document.open(registry, Path("workflows/txt2img.json"))  # seeds randomized after each run
open_window(editor_for(document))
watch_queue()
set_batch_count("3")
seen = {"batch_count": dpg.get_value("batch_count"), "panel_before": dpg.is_item_shown("history")}
drive(["mousemove", *centre("run_button")], ["click", 1])
wait_for_queue()
entries = app.history.entries
seen.update(queue=shown_queue, numbers=[e.number for e in entries], statuses=[e.status for e in entries],
            seeds=[e.seeds for e in entries], saved=[str(e.saved) for e in entries],
            pngs=sorted(str(p) for p in (tmp / "out").glob("*.png")),
            panel=dpg.is_item_shown("history"), rows=len(dpg.get_item_children("history_list", 1)),
            thumbnails=[dpg.get_item_type(f"history_image_{e.number}") for e in entries],
            widget_seed=dpg.get_value(widget(app.node_items["3"], "seed")))
drive(["mousemove", *centre("history_image_2")], ["click", 1])  # its image, large
seen["viewer"] = dpg.does_item_exist("viewer") and dpg.is_item_shown("viewer")
seen["viewer_size"] = dpg.get_item_configuration(dpg.get_item_children("viewer", 1)[0])["width"]
drive(["key", "Escape"])
seen["load_visible"] = inside("history_load_2", "history")
drive(["mousemove", *centre("history_load_2")], ["click", 1])  # load this workflow
seen["asked"] = dpg.does_item_exist("confirm")  # the seeds moved on: unsaved changes
drive(["mousemove", *centre("confirm_discard")], ["click", 1])
run2 = app.history.find(2)
seen.update(loaded_seed=app.document.workflow.nodes["3"].inputs["seed"], run2_seed=run2.seeds["3.seed"],
            loaded_widget_seed=dpg.get_value(widget(app.node_items["3"], "seed")),
            same_graph={n: node.inputs for n, node in app.document.workflow.nodes.items()}
                       == {n: node.inputs for n, node in run2.workflow.nodes.items()},
            same_links=sorted(map(str, app.document.workflow.links)) == sorted(map(str, run2.workflow.links)),
            status=dpg.get_value("status"))
report(**seen)
"""


def test_a_batch_of_three_queues_three_runs_with_their_own_seeds_and_reloads_the_second(display, tmp_path):
    """Batch count 3 typed into the field and Run clicked: the status bar says "running 1, queued
    2", then three history entries (newest first) with three different seeds and three PNGs, the
    panel opened by itself; a click on run 2's thumbnail shows it large; its "load this workflow"
    restores the graph from its PNG (after asking about the unsaved seed changes), its seed in the
    KSampler's widget."""
    result = run_scenario(tmp_path, HELPERS + QUEUE_HELPERS + BATCH)
    assert result["batch_count"] == 3 and not result["panel_before"], result
    assert "running 1, queued 2" in result["queue"] and result["queue"][-1] == "", result["queue"]
    assert result["numbers"] == [3, 2, 1] and result["statuses"] == ["done"] * 3, result
    seeds = [seeds["3.seed"] for seeds in result["seeds"]]
    assert len(set(seeds)) == 3 and seeds[-1] == 42, seeds  # the first run: the file's seed
    assert sorted(result["saved"]) == result["pngs"] and len(result["pngs"]) == 3, result
    assert result["panel"] and result["rows"] == 3, result
    assert result["thumbnails"] == ["mvAppItemType::mvImageButton"] * 3, result
    assert int(result["widget_seed"]) not in seeds  # the widget moved on after the third was queued
    assert result["viewer"] and result["viewer_size"] == 512, result  # 64 px shown 8 times larger
    assert result["load_visible"] and result["asked"], result
    assert result["loaded_seed"] == result["run2_seed"] == seeds[1], result
    assert int(result["loaded_widget_seed"]) == seeds[1], result
    assert result["same_graph"] and result["same_links"], result
    assert result["status"].startswith("loaded the workflow of run #2 from") and result["status"].endswith(".png")


FAILED = r"""
document = Document.open(registry, Path("workflows/txt2img.json"))
document.set_value("4", "ckpt_name", "missing.safetensors")
open_window(editor_for(document))
drive(["mousemove", *centre("canvas")], *ctrl("Return"))
wait_for_queue()
[failed] = app.history.entries
row = [dpg.get_value(item) for item in dpg.get_item_children(dpg.get_item_children(
    dpg.get_item_children(f"history_row_{failed.number}", 1)[0], 1)[1], 1) if dpg.get_item_type(item).endswith("mvText")]
seen = {"status": failed.status, "message": failed.message, "row": row, "panel": dpg.is_item_shown("history"),
        "saved": failed.saved}
dpg.configure_item("history", show=False)
drive(["mousemove", *menu_point("view_menu")], ["click", 1])
drive(["mousemove", *menu_point("view_menu", "menu_history")], ["click", 1])  # View > History
seen["reopened"] = dpg.is_item_shown("history")
app.document.set_value("4", "ckpt_name", "other.safetensors")  # an edit since: loading asks first
drive(["mousemove", *centre(f"history_load_{failed.number}")], ["click", 1])
seen["asked"] = dpg.does_item_exist("confirm") and dpg.is_item_shown("confirm")
drive(["mousemove", *centre("confirm_discard")], ["click", 1])
seen["loaded_ckpt"] = app.document.workflow.nodes["4"].inputs["ckpt_name"]
report(**seen)
"""


def test_a_failed_run_shows_as_failed_with_its_message_and_reloads_its_snapshot(display, tmp_path):
    """A run refused for a missing checkpoint (Ctrl+Enter) is a "failed" entry whose row shows the
    message; View > History shows the closed panel again; its "load this workflow" (no PNG) restores
    the queued snapshot, asking first about unsaved changes."""
    result = run_scenario(tmp_path, HELPERS + QUEUE_HELPERS + FAILED)
    assert result["status"] == "failed" and "missing.safetensors" in result["message"], result
    assert result["row"][0].startswith("#1 failed in") and result["message"][:100] in result["row"][2], result
    assert result["panel"] and result["saved"] is None, result
    assert result["reopened"], result
    assert result["asked"], result
    assert result["loaded_ckpt"] == "missing.safetensors", result


STOP = r"""
document = Document.open(registry, Path("workflows/txt2img.json"))
document.set_value("3", "steps", 2000)  # long enough to queue more, clear them and stop it
open_window(editor_for(document))
watch_queue()
drive(["mousemove", *centre("canvas")], *ctrl("Return", "Return", "Return"))  # Run, then twice while it goes
seen = {"queued": dpg.get_value("queue_status"), "pending": len(app.runs.pending)}
drive(["mousemove", *centre("clear_queue_button")], ["click", 1])
seen["cleared"] = dpg.get_value("queue_status")
drive(["mousemove", *centre("stop_button")], ["click", 1])
wait_for_queue(60)
seen.update(queue=shown_queue, statuses=[e.status for e in app.history.entries],
            after=dpg.get_value("queue_status"), seconds=app.history.entries[0].seconds)
report(**seen)
"""


def test_run_while_running_queues_clear_queue_empties_it_and_stop_cancels(display, tmp_path):
    """Ctrl+Enter three times during a long run: "running 1, queued 2"; Clear queue: "running 1,
    queued 0"; Stop: the run ends cancelled, the only history entry, and nothing else runs."""
    result = run_scenario(tmp_path, HELPERS + QUEUE_HELPERS + STOP)
    assert result["queued"] == "running 1, queued 2" and result["pending"] == 2, result
    assert result["cleared"] == "running 1, queued 0", result
    assert result["statuses"] == ["cancelled"] and result["after"] == "", result
    assert result["seconds"] < 40, result


DOCKED = r"""
document = Document.open(registry, Path("workflows/txt2img.json"))  # KSampler (node 3) in the canvas's right part
open_window(editor_for(document))
drive(["mousemove", *centre("canvas")], ["key", "f"])  # zoom to fit: the whole graph in view
frames(10)

def rect(tag):  # a child window reports its position and size, other items their rect
    state = dpg.get_item_state(tag)
    if dpg.get_item_type(tag).endswith("mvChildWindow"):
        (x, y), (width, height) = dpg.get_item_pos(tag), state["rect_size"]
        return [x, y, x + width, y + height]
    return [*state["rect_min"], *state["rect_max"]]

def overlap(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]

def drawn(item):  # a node's rect as drawn: the editor clips it to the canvas
    (x0, y0, x1, y1), (cx0, cy0, cx1, cy1) = rect(item), rect("canvas")
    return [max(x0, cx0), max(y0, cy0), min(x1, cx1), min(y1, cy1)]

def layout():
    panel = rect("history")
    return {"canvas": rect("canvas"), "panel": panel, "shown": dpg.is_item_shown("history"),
            "checked": dpg.get_value("menu_history"),
            "corners": {n: rect(item)[:2] for n, item in app.node_items.items()},
            "rects": {n: rect(item) for n, item in app.node_items.items()},
            "cut": sorted(n for n, item in app.node_items.items() if rect(item)[2] > rect("canvas")[2]),
            "under_panel": sorted(n for n, item in app.node_items.items() if overlap(rect(item), panel)),
            "drawn_under_panel": sorted(n for n, item in app.node_items.items() if overlap(drawn(item), panel))}

seen = {"before": layout()}
drive(["mousemove", *centre("canvas")], *ctrl("Return"))  # the first finished run opens the panel
wait_for_queue()
frames(10)  # a pending zoom to fit takes a few frames
seen["shown"] = layout()
drive(["mousemove", *centre("history_close")], ["click", 1])  # its "x"
seen["hidden"] = layout()
drive(["mousemove", *menu_point("view_menu")], ["click", 1])
drive(["mousemove", *menu_point("view_menu", "menu_history")], ["click", 1])  # View > History
seen["reopened"] = layout()
drive(["mousemove", *centre("canvas")], *ctrl("l"))  # the node library too
seen["both"] = {**layout(), "library": rect("node_library")}
dpg.set_viewport_width(900)  # a narrower window: the panel stays at its right edge
frames(10)
seen["narrower"] = {**layout(), "log": rect("log")}
report(**seen)
"""


def before_panel_place(before, panel):
    """The nodes that, where they were before the panel opened, lay where it now is."""
    return [n for n, (x0, y0, x1, y1) in before["rects"].items() if x0 < panel[2] and panel[0] < x1]


def test_the_history_panel_docks_at_the_canvas_right_and_gives_the_width_back(display, tmp_path):
    """The panel the first run opens sits right of the canvas, which ends left of it. The graph,
    wholly in view before (fitted), would have lost its right part: it is fitted to the narrower
    canvas, nothing drawn under the panel. Its "x" gives the canvas its width back; View > History (checked) docks it
    again; with the node library open both dock, the canvas between them; a narrower window keeps
    the panel at its right edge."""
    result = run_scenario(tmp_path, HELPERS + QUEUE_HELPERS + DOCKED)
    before, shown, hidden, reopened = result["before"], result["shown"], result["hidden"], result["reopened"]
    assert not before["shown"] and shown["shown"] and shown["checked"], result
    canvas, panel = shown["canvas"], shown["panel"]
    assert canvas[2] < panel[0] and panel[2] <= before["canvas"][2] + 1, result  # the canvas ends left of the panel
    assert canvas[:2] == before["canvas"][:2] and canvas[3] == before["canvas"][3], result
    assert panel[1] == canvas[1] and panel[3] == canvas[3], result  # as tall as the canvas
    assert before["cut"] == [] and before_panel_place(before, panel) != [], result  # all in view, some where the panel goes
    assert shown["cut"] == [] and shown["drawn_under_panel"] == [], result  # fitted again: still all in view
    assert not hidden["shown"] and not hidden["checked"] and hidden["canvas"] == before["canvas"], result
    assert reopened["shown"] and reopened["checked"] and reopened["canvas"] == canvas, result
    assert reopened["drawn_under_panel"] == [], result
    both = result["both"]
    library = both["library"]
    assert library[2] < both["canvas"][0] and both["canvas"][2] < both["panel"][0], result
    assert both["panel"] == panel and both["drawn_under_panel"] == [], result
    narrower = result["narrower"]
    assert narrower["canvas"][2] < narrower["panel"][0] and narrower["panel"][2] == narrower["log"][2], result
    assert narrower["panel"][0] < panel[0] and narrower["drawn_under_panel"] == [], result
