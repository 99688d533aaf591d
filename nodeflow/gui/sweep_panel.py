"""The sweep panel (Run > Sweep...): vary one or two literal inputs of the graph on screen and see
the grid.

Each axis (X, and optionally Y) is a combo of the graph's literal inputs ("node title . input")
and a values field in the CLI's syntax (``4,6,8``, ``1..8``, ``0.5..1.0:0.25``). Run sweep checks
the values with the CLI's parser before anything runs (a bad value: the CLI's one-line message in
the panel), then runs the jobs on the editor's worker thread, in its executor (sweep_job.py); the
panel shows "job i/N" as they go, and when the sweep ends the grid opens in the image viewer and
its path goes to the log.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import dearpygui.dearpygui as dpg
from PIL import Image

from nodeflow.gui.history import rgba
from nodeflow.gui.run_view import ERROR_COLOR, STATUS_COLOR, add_log_line, view_pixels
from nodeflow.gui.sweep_job import (SweepDone, SweepJobStarted, SweepTarget, prepare_sweep,
                                    sweep_targets, sweep_task)
from nodeflow.gui.worker import RunFailed
from nodeflow.sweeps.grid import font_file
from nodeflow.sweeps.spec import SweepError

logger = logging.getLogger(__name__)

AXES = ("x", "y")
NONE = "(none)"  # the Y combo's first entry: one axis only
VALUES_HINT = "4,6,8   1..8   0.5..1.0:0.25"
VIEWER_MAX = (900, 560)  # the grid is shown at most this large (shrunk to fit, never enlarged)


class SweepPanel:
    """The sweep window; ``handle`` takes the worker's events while a sweep it started runs."""

    def __init__(self, get_document: Callable, paths, worker, on_started: Callable[[], None]) -> None:
        self.get_document = get_document  # the document on screen (it changes with File > Open)
        self.paths, self.worker = paths, worker
        self.on_started = on_started  # the window resets the last run's marks
        self.targets: dict[str, SweepTarget] = {}  # combo label -> target
        self.running = False

    def build(self) -> None:
        with dpg.window(label="Sweep", tag="sweep_panel", show=False, autosize=True, pos=(220, 90),
                        no_saved_settings=True):
            for axis in AXES:
                with dpg.group(horizontal=True):
                    dpg.add_text(axis.upper())
                    dpg.add_combo([], tag=f"sweep_{axis}_target", width=260)
                    dpg.add_input_text(tag=f"sweep_{axis}_values", hint=VALUES_HINT, width=220)
            dpg.add_button(label="Run sweep", tag="sweep_run", callback=lambda: self.run())
            dpg.add_text("", tag="sweep_message", wrap=520)

    def show(self) -> None:
        """Run > Sweep...: the panel, its combos listing the literal inputs of the graph on screen."""
        document = self.get_document()
        self.targets = {t.label: t for t in sweep_targets(document.workflow, document.registry)}
        labels = list(self.targets)
        for axis, choices in (("x", labels), ("y", [NONE, *labels])):
            tag = f"sweep_{axis}_target"
            kept = dpg.get_value(tag)
            dpg.configure_item(tag, items=choices)
            dpg.set_value(tag, kept if kept in choices else (choices[0] if choices else ""))
        dpg.configure_item("sweep_panel", show=True)
        dpg.focus_item("sweep_panel")

    def chosen_axes(self) -> list[tuple[SweepTarget, str]]:
        """The axes filled in, X first: (target, values text)."""
        axes = []
        for axis in AXES:
            target = self.targets.get(dpg.get_value(f"sweep_{axis}_target"))
            if target is not None:
                axes.append((target, dpg.get_value(f"sweep_{axis}_values")))
        return axes

    def run(self) -> None:
        """Run sweep: check, then start the jobs on the worker (refused while it runs something)."""
        if self.worker.busy:
            self._say("a run is going: wait for it or Stop it first", error=True)
            return
        document = self.get_document()
        name = document.path.stem if document.path else "untitled"
        try:
            prepared = prepare_sweep(document.workflow, document.registry, self.paths, self.chosen_axes(), name)
        except SweepError as error:
            self._say(str(error), error=True)
            return
        total = len(prepared.plan.jobs)
        task = sweep_task(prepared, self.worker.executor, font_file(self.paths.assets_dir), **self.worker.run_options,
                          preview_every=self.worker.preview_every)
        self.worker.start_task(task)
        self.running = True
        self.on_started()
        self._say(f"starting {total} job(s); manifest {prepared.manifest.path}")
        add_log_line(f"sweep of {total} job(s): {prepared.manifest.path.parent}")

    def handle(self, event) -> None:
        """One of the worker's events: a sweep's progress and its end (others are the run view's)."""
        if not self.running:
            return
        if isinstance(event, SweepJobStarted):
            values = ", ".join(f"{key}={value}" for key, value in event.values.items())
            self._say(f"job {event.position}/{event.total}: {values}")
        elif isinstance(event, SweepDone):
            self.running = False
            self._finished(event)
        elif isinstance(event, RunFailed):
            self.running = False
            self._say(f"sweep failed: {event.message}", error=True)

    def _finished(self, event: SweepDone) -> None:
        ended = "stopped" if event.cancelled else "done"
        self._say(f"sweep {ended}: {event.done} of {event.total} jobs done", error=bool(event.errors))
        for line in event.errors:
            add_log_line(f"sweep {line}", error=True)
        for grid in event.grids:
            add_log_line(f"sweep grid: {grid}")
        if event.grids:
            self.show_grid(event.grids[0])

    def show_grid(self, path: Path) -> None:
        """The grid image in the image viewer (shrunk to fit)."""
        try:
            with Image.open(path) as picture:
                pixels = rgba(picture)
        except OSError as error:
            self._say(f"cannot show the grid {path}: {error}", error=True)
            return
        height, width = pixels.shape[:2]
        scale = min(1.0, VIEWER_MAX[0] / width, VIEWER_MAX[1] / height)
        view_pixels(pixels, f"Sweep grid: {path.name}", scale, "sweep_grid_texture")

    @staticmethod
    def _say(text: str, error: bool = False) -> None:
        dpg.set_value("sweep_message", text)
        dpg.configure_item("sweep_message", color=ERROR_COLOR if error else STATUS_COLOR)
