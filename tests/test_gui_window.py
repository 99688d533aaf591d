"""A real editor window under Xvfb: it opens a workflow, runs it while frames keep rendering,
and shows the saved image inside the SaveImage node."""

import os
import shutil
import subprocess
import time

import pytest

from tests.factories import write_tiny_checkpoint
from tests.project import ROOT

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def display():
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed")
    number = 90 + os.getpid() % 8
    server = subprocess.Popen(["Xvfb", f":{number}", "-screen", "0", "1400x900x24"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    previous = os.environ.get("DISPLAY")
    os.environ["DISPLAY"] = f":{number}"
    yield f":{number}"
    server.terminate()
    if previous is None:
        os.environ.pop("DISPLAY", None)
    else:
        os.environ["DISPLAY"] = previous


def test_run_in_the_window(display, tmp_path):
    import dearpygui.dearpygui as dpg
    import numpy as np
    from PIL import Image

    from nodeflow.executor import Executor
    from nodeflow.gui.app import EditorApp
    from nodeflow.gui.document import Document
    from nodeflow.paths import Paths
    from nodeflow.registry import Registry

    write_tiny_checkpoint(tmp_path / "models" / "checkpoints" / "tiny.safetensors")
    paths = Paths(models_dirs=(tmp_path / "models",), output_dir=tmp_path / "out", temp_dir=tmp_path / "tmp",
                  assets_dir=tmp_path / "no-assets")
    registry = Registry.load(paths)
    document = Document.open(registry, ROOT / "workflows" / "txt2img.json")
    document.set_value("4", "ckpt_name", "tiny.safetensors")
    document.set_value("3", "steps", 4)
    app = EditorApp(document, Executor(registry, paths), paths, tmp_path / "recovery.json")
    dpg.create_context()
    try:
        dpg.create_viewport(title="nodeflow", width=1400, height=860)
        app.build()
        dpg.setup_dearpygui()
        dpg.show_viewport()
        for _ in range(5):
            app.frame()
            dpg.render_dearpygui_frame()
        assert "* txt2img.json" in dpg.get_viewport_title()  # edited, not saved
        app.run()
        frames, started = 0, time.monotonic()
        while (app.worker.busy or not app.worker.events.empty()) and time.monotonic() - started < 120:
            app.frame()
            dpg.render_dearpygui_frame()
            frames += 1
        for _ in range(5):
            app.frame()
            dpg.render_dearpygui_frame()
        assert frames > 5  # the window kept rendering while the run went on
        assert dpg.get_value("status").startswith("done"), dpg.get_value("status")
        saved = list((tmp_path / "out").glob("txt2img_*.png"))
        assert len(saved) == 1
        assert dpg.get_item_children("images_9", 1)  # the image is shown in the SaveImage node
        assert document.workflow.nodes["3"].inputs["seed"] != 42  # randomize after the run
        shot = tmp_path / "shot.png"
        dpg.output_frame_buffer(file=str(shot))
        for _ in range(3):
            dpg.render_dearpygui_frame()
        pixels = np.asarray(Image.open(shot).convert("RGB"))
        assert pixels.std() > 10  # a drawn window, not a blank frame
    finally:
        app.worker.stop()
        dpg.destroy_context()
