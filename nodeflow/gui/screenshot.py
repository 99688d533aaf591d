"""A screenshot of the editor after a finished run (the README's assets/editor.png):

    xvfb-run -a -s "-screen 0 1400x900x24" python -m nodeflow.gui.screenshot assets/editor.png

Opens the workflow (default: workflows/txt2img.json, on the embedded model) fitted to the window,
runs it on the CPU, waits for the run to finish, fits the graph again (with its image) and saves
the window, the live preview moved to the canvas's bottom-left corner. Outputs of the run go to a
temporary folder.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from nodeflow.runtime.paths import project_assets_dir

logger = logging.getLogger(__name__)


def take(out: Path, workflow: Path, width: int = 1400, height: int = 860, timeout: float = 300.0) -> None:
    """Save a ``width`` x ``height`` window showing ``workflow`` after a successful run to ``out``
    (needs a display)."""
    import dearpygui.dearpygui as dpg

    from nodeflow.errors import NodeflowError
    from nodeflow.engine.executor import Executor
    from nodeflow.gui.app import EditorApp, show_window
    from nodeflow.gui.document import Document
    from nodeflow.gui.recent import RecentFiles
    from nodeflow.gui.recovery import RecoveryFolder
    from nodeflow.runtime.paths import Paths
    from nodeflow.engine.registry import Registry

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        paths = Paths(output_dir=folder / "out", temp_dir=folder / "tmp")
        registry = Registry.load(paths)
        app = EditorApp(Document.open(registry, workflow), Executor(registry, paths), paths,
                        RecoveryFolder(folder / "recovery"), RecentFiles(folder / "recent.json"))
        dpg.create_context()
        try:
            show_window(app, width=width, height=height, x_pos=0, y_pos=0)

            def frames(count: int) -> None:
                for _ in range(count):
                    app.frame()
                    dpg.render_dearpygui_frame()

            app.zoom_to_fit()
            frames(10)
            app.run()
            started = time.monotonic()
            while app.worker.busy or not app.worker.events.empty():
                if time.monotonic() - started > timeout:
                    raise NodeflowError(f"the run of {workflow} did not finish in {timeout:.0f} s")
                frames(1)
            dpg.configure_item("history", show=False)  # opened by the run: the graph is the subject here
            app.zoom_to_fit()  # again, with the image shown in the Save node
            frames(10)
            if dpg.does_item_exist("live_preview"):  # to the canvas's bottom-left corner, off the nodes
                (left, _), (_, bottom) = dpg.get_item_rect_min("canvas"), dpg.get_item_rect_max("canvas")
                preview_height = dpg.get_item_rect_size("live_preview")[1]
                dpg.configure_item("live_preview", pos=(left + 12, bottom - preview_height - 12))
                frames(3)
            if not dpg.get_value("status").startswith("done"):
                raise NodeflowError(f"the run of {workflow} did not succeed: {dpg.get_value('status')}")
            out.parent.mkdir(parents=True, exist_ok=True)
            dpg.output_frame_buffer(file=str(out))
            frames(3)  # the frame buffer is written while the next frames render
        finally:
            app.worker.stop()
            dpg.destroy_context()
    logger.info("saved %s", out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--workflow", type=Path, default=project_assets_dir().parent / "workflows" / "txt2img.json")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=860)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    take(args.out, args.workflow, args.width, args.height)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
