"""The editor's sweep panel (issue 18) in a real window under Xvfb, driven by xdotool: Run >
Sweep..., two inputs picked in its combos, values typed in the CLI's syntax, a bad value refused
with the CLI's check, naming the axis, before anything runs, then the sweep run on the worker and its grid shown."""

import pytest

from tests.test_gui_window import run_scenario
from tests.test_gui_window_new_user import HELPERS

pytestmark = pytest.mark.gui

SWEEP = r"""
image = document.add_node("EmptyImage", (40, 60))
save = document.add_node("SaveImage", (400, 60))
document.connect(image, 0, save, "images")
document.set_value(image, "width", 8)
document.set_value(image, "height", 8)
open_window(editor_for(document))

def pick(combo, index):  # open the combo and click its entry ``index`` (18 px apart under it)
    (x, _), (_, bottom) = dpg.get_item_rect_min(combo), dpg.get_item_rect_max(combo)
    drive(["mousemove", x + 20, *centre(combo)[1:]], ["click", 1])
    drive(["mousemove", x + 20, int(bottom + 6 + 18 * index + 9)], ["click", 1])

def type_into(field, text):
    drive(["mousemove", *centre(field)], ["click", 1], *ctrl("a"), ["type", text], ["key", "Tab"])

def wait_for_worker(limit=120):
    started = time.monotonic()
    while (app.worker.busy or not app.worker.events.empty()) and time.monotonic() - started < limit:
        frames(1)
    frames(5)

seen = {"panel_before": dpg.is_item_shown("sweep_panel")}
drive(["mousemove", *menu_point("run_menu")], ["click", 1])
drive(["mousemove", *menu_point("run_menu", "menu_sweep")], ["click", 1])  # Run > Sweep...
seen["panel"] = dpg.is_item_shown("sweep_panel")
seen["x_items"] = dpg.get_item_configuration("sweep_x_target")["items"]
pick("sweep_x_target", 3)
pick("sweep_y_target", 5)
seen["x"], seen["y"] = dpg.get_value("sweep_x_target"), dpg.get_value("sweep_y_target")
type_into("sweep_x_values", "0,red")
type_into("sweep_y_values", "a,b")
drive(["mousemove", *centre("sweep_run")], ["click", 1])
seen["bad"] = dpg.get_value("sweep_message")
seen["bad_busy"] = app.worker.busy
seen["bad_folder"] = (tmp / "out" / "sweeps").exists()
type_into("sweep_x_values", "0,16711680")
drive(["mousemove", *centre("sweep_run")], ["click", 1])
wait_for_worker()
log = [dpg.get_value(line) for line in dpg.get_item_children("log", 1)]
seen.update(message=dpg.get_value("sweep_message"), log=log,
            grids=sorted(str(p) for p in (tmp / "out" / "sweeps").glob("*/grid*.png")),
            pngs=sorted(p.name for p in (tmp / "out").glob("*.png")),
            viewer=dpg.does_item_exist("viewer") and dpg.is_item_shown("viewer"),
            viewer_title=dpg.get_item_label("viewer") if dpg.does_item_exist("viewer") else None)
report(**seen)
"""


def test_the_sweep_panel_checks_values_runs_the_jobs_and_shows_the_grid(display, tmp_path):
    """Run > Sweep... opens the panel; X: Empty Image's color (0,red first: refused with the CLI's
    message naming the axis, nothing run), then 0,16711680; Y: Save Image's filename_prefix a,b. Run sweep: four
    images, a grid in output/sweeps/, its path in the log and the grid in the image viewer."""
    result = run_scenario(tmp_path, HELPERS + SWEEP)
    assert not result["panel_before"] and result["panel"], result
    assert result["x_items"][:4] == ["Empty Image . width", "Empty Image . height", "Empty Image . batch_size",
                                     "Empty Image . color"], result["x_items"]
    assert (result["x"], result["y"]) == ("Empty Image . color", "Save Image . filename_prefix"), result
    assert result["bad"] == ("X (Empty Image . color): node 1 (EmptyImage), input 'color': 'red' is not an "
                             "integer"), result["bad"]
    assert not result["bad_busy"] and not result["bad_folder"], result
    assert result["message"] == "sweep done: 4 of 4 jobs done", result
    [grid] = result["grids"]
    assert f"sweep grid: {grid}" in result["log"], result["log"]
    assert [name[:2] for name in result["pngs"]] == ["a_", "a_", "b_", "b_"], result["pngs"]
    assert result["viewer"] and result["viewer_title"] == "Sweep grid: grid.png", result
