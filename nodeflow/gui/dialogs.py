"""The editor's questions to the user: small dearpygui windows that call back with the answer.

Owns their layout and their tags (the window tests click ``confirm_save`` and ``confirm_cancel``);
what an answer does is the caller's (app.py). Choosing a file is the file browser's (file_browser.py). No state: each dialog deletes itself when answered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import dearpygui.dearpygui as dpg

from nodeflow.gui import file_browser
from nodeflow.gui.file_listing import WORKFLOWS

HINT_COLOR = (150, 150, 150)
CONFIRM_WIDTH = 380


def ask_file(title: str, on_choice: Callable[[str], None], save: bool) -> None:
    """The editor's file browser (file_browser.py) on workflows (JSON or PNG), in the current
    folder; ``on_choice(path)`` once one is chosen (Save: a name,
    "workflow.json" proposed, ".json" added when missing)."""
    file_browser.ask_path(title, lambda path: on_choice(str(path)), (WORKFLOWS,), save=save,
                          name="workflow.json" if save else "")


def asking_about_unsaved_changes() -> bool:
    return dpg.does_item_exist("confirm")


def ask_about_unsaved_changes(on_save: Callable[[], None], on_discard: Callable[[], None]) -> None:
    """Save, Discard or Cancel; asked once (a modal cannot be replaced in place: while it is
    open, asking again does nothing)."""
    if asking_about_unsaved_changes():
        return
    with dpg.window(label="Unsaved changes", modal=True, tag="confirm", autosize=True, no_saved_settings=True,
                    pos=((dpg.get_viewport_client_width() - CONFIRM_WIDTH) // 2, dpg.get_viewport_client_height() // 3),
                    on_close=lambda sender: dpg.delete_item(sender)):
        dpg.add_text("The workflow has unsaved changes.")
        with dpg.group(horizontal=True):
            dpg.add_button(label="Save", tag="confirm_save",
                           callback=lambda: (dpg.delete_item("confirm"), on_save()))
            dpg.add_button(label="Discard", tag="confirm_discard",
                           callback=lambda: (dpg.delete_item("confirm"), on_discard()))
            dpg.add_button(label="Cancel", tag="confirm_cancel", callback=lambda: dpg.delete_item("confirm"))


def ask_to_restore(recovery_file: Path, on_answer: Callable[[bool], None]) -> None:
    """Restore an earlier editor's unsaved workflow, or discard it: ``on_answer(restore)``."""
    def answered(restore: bool) -> None:
        dpg.delete_item("recover")
        on_answer(restore)

    with dpg.window(label="Restore", modal=True, tag="recover", autosize=True, no_saved_settings=True,
                    pos=(120, 120)):
        dpg.add_text(f"Unsaved work from an earlier editor was found ({recovery_file}).")
        with dpg.group(horizontal=True):
            dpg.add_button(label="Restore it", callback=lambda: answered(True))
            dpg.add_button(label="Discard", callback=lambda: answered(False))


def cancel_questions() -> None:
    """Answer Cancel to the open questions that have one (unsaved changes, a new title, a file)."""
    for tag in ("confirm", "rename"):
        if dpg.does_item_exist(tag):
            dpg.delete_item(tag)
    file_browser.close()


def browsing_files() -> bool:
    """Whether the file browser is open (it has the keyboard: plain keys are its own)."""
    return file_browser.is_open()


def renaming() -> bool:
    return dpg.does_item_exist("rename")


def ask_node_title(title: str, pos: tuple[int, int], on_title: Callable[[str], None]) -> None:
    """A new title for a node (now ``title``); Enter or OK gives it to ``on_title``."""
    def finish(text: str) -> None:
        dpg.delete_item("rename")
        on_title(text)

    with dpg.window(label="Rename node", modal=True, tag="rename", autosize=True, no_saved_settings=True,
                    pos=pos, on_close=lambda sender: dpg.delete_item(sender)):
        dpg.add_input_text(tag="rename_text", default_value=title, width=280,
                           on_enter=True, callback=lambda s, a: finish(a))
        dpg.add_text("empty: the node type's name", color=HINT_COLOR)
        with dpg.group(horizontal=True):
            dpg.add_button(label="OK", callback=lambda: finish(dpg.get_value("rename_text")))
            dpg.add_button(label="Cancel", callback=lambda: dpg.delete_item("rename"))
    dpg.focus_item("rename_text")
