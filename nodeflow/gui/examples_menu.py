"""File > Examples (the example workflows, each with its description) and the dialog listing the
model files an opened workflow lacks, with the folder each belongs in (the lists: examples.py)."""

from __future__ import annotations

from typing import Callable

import dearpygui.dearpygui as dpg

from nodeflow.gui.examples import Example, MissingModel

DIALOG_WIDTH = 560


def fill_examples_menu(menu, examples: list[Example], on_choose: Callable[[Example], None]) -> None:
    """One entry per example in ``menu`` ("name.json: description"); a click calls ``on_choose``."""
    dpg.delete_item(menu, children_only=True)
    for index, example in enumerate(examples):
        dpg.add_menu_item(label=example.label, parent=menu, tag=f"example_{index}", user_data=example,
                          callback=lambda s, a, u: on_choose(u))
    if not examples:
        dpg.add_menu_item(label="(no example workflows found)", parent=menu, enabled=False)


def show_missing_models(missing: list[MissingModel]) -> None:
    """A dialog naming each missing model file and the folder to put it in (replaces an open one)."""
    if dpg.does_item_exist("missing_models"):
        dpg.delete_item("missing_models")
    with dpg.window(label="Missing model files", tag="missing_models", autosize=True, no_saved_settings=True,
                    pos=((dpg.get_viewport_client_width() - DIALOG_WIDTH) // 2, 120),
                    on_close=lambda sender: dpg.delete_item(sender)):
        dpg.add_text(f"This workflow needs {len(missing)} model file(s) that are not in the models folders.")
        dpg.add_text("Put each file in the folder named, then run again:")
        for index, item in enumerate(missing):
            dpg.add_text(f"{item.file}  ->  {item.folder}/", tag=f"missing_model_{index}", bullet=True)
            dpg.add_text(f"    (node {item.node_id}, {item.input_name})", color=(150, 150, 150))
        dpg.add_button(label="OK", tag="missing_models_ok", callback=lambda: dpg.delete_item("missing_models"))
