"""Editor frame times: a 200-node graph idle at 100% and 50% zoom, the time a zoom change takes
(it resizes and moves the nodes), the graph with the history panel holding 100 thumbnails, and the
default workflow while it runs (the history panel still open).

    xvfb-run -a python tests/bench/bench_gui_frames.py      (or with DISPLAY set)

Goal (issues 8 and 19): under 33 ms per frame under Xvfb on the 2-core CPU machine.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def fill_history(app, count: int = 100) -> None:
    """``count`` finished runs in the history panel, each with a 96 px thumbnail (numbered from
    1001, clear of the runs the benchmark queues)."""
    import numpy as np

    from nodeflow.gui.history import HistoryEntry, thumbnail

    rng = np.random.default_rng(0)
    for number in range(1001, 1001 + count):
        entry = HistoryEntry(number, {"3.seed": number}, 0.5, "done", thumbnail=thumbnail(rng.random((128, 128, 3))))
        app.history_panel.add(entry, app.history.add(entry))


def main() -> None:
    import dearpygui.dearpygui as dpg

    from nodeflow.engine.executor import Executor
    from nodeflow.gui.app import EditorApp
    from nodeflow.gui.document import Document
    from nodeflow.gui.recovery import RecoveryFolder
    from nodeflow.gui.view import View
    from nodeflow.runtime.paths import Paths
    from nodeflow.engine.registry import Registry

    folder = Path(tempfile.mkdtemp())
    paths = Paths(output_dir=folder / "out", temp_dir=folder / "tmp")
    registry = Registry.load(paths)
    document = Document(registry)
    previous = None
    for i in range(200):  # chains of latent nodes, 10 per row
        kind = "EmptyLatentImage" if i % 10 == 0 else "LatentFlip"
        node_id = document.add_node(kind, (40 + (i % 10) * 260, 40 + (i // 10) * 160))
        if kind == "LatentFlip":
            document.connect(previous, 0, node_id, "samples")
        previous = node_id
    app = EditorApp(document, Executor(registry, paths), paths, RecoveryFolder(folder / "recovery"))
    dpg.create_context()
    dpg.create_viewport(title="nodeflow", width=1400, height=860)
    app.build()
    dpg.setup_dearpygui()
    dpg.show_viewport()

    def idle_frames() -> tuple[list[float], list[float]]:
        """Frame times (sorted, the first 20 frames left out) and the editor's own part."""
        times, ours = [], []
        for _ in range(120):
            started = time.perf_counter()
            app.frame()
            middle = time.perf_counter()
            dpg.render_dearpygui_frame()
            times.append(time.perf_counter() - started)
            ours.append(middle - started)
        return sorted(times[20:]), ours[20:]

    idle, ours = idle_frames()
    zoom_changes = []
    for level in (0.5, 1.0, 0.5):  # a zoom change resizes the 200 nodes' widgets and moves the nodes
        started = time.perf_counter()
        app.set_view(app.view.zoomed(level, (0.0, 0.0)))
        resized = time.perf_counter()
        app.frame()
        dpg.render_dearpygui_frame()  # the first frame lays the resized items out
        zoom_changes.append((resized - started, time.perf_counter() - resized))
    half, half_ours = idle_frames()
    app.set_view(View())
    fill_history(app)
    app.history_panel.show()
    with_history, with_history_ours = idle_frames()
    run_times = []
    if (ROOT / "assets" / "nodeflow-tiny.safetensors").is_file():
        app.document = Document.open(registry, ROOT / "workflows" / "txt2img.json")
        app.rebuild()
        app.run()
        while app.worker.busy or not app.worker.events.empty():
            started = time.perf_counter()
            app.frame()
            dpg.render_dearpygui_frame()
            run_times.append(time.perf_counter() - started)
    dpg.destroy_context()
    for label, frames, own in (("at 100%", idle, ours), ("at 50%", half, half_ours),
                               ("at 100% with the history panel holding 100 thumbnails", with_history,
                                with_history_ours)):
        print(f"200-node graph idle {label}: median {statistics.median(frames) * 1000:.1f} ms/frame, "
              f"95th percentile {frames[int(len(frames) * 0.95)] * 1000:.1f} ms "
              f"(of which the editor's own per-frame work {statistics.median(own) * 1000:.2f} ms)")
    print("zoom change, the 200 nodes resized and moved / the next frame: "
          + ", ".join(f"{resize * 1000:.1f} / {frame * 1000:.0f} ms" for resize, frame in zoom_changes))
    if run_times:
        run_times.sort()
        print(f"while the default workflow runs: median {statistics.median(run_times) * 1000:.1f} ms/frame, "
              f"95th percentile {run_times[int(len(run_times) * 0.95)] * 1000:.1f} ms ({len(run_times)} frames)")


if __name__ == "__main__":
    main()
