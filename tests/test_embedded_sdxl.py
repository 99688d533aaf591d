"""The SDXL sibling of the embedded model (assets/nodeflow-tiny-xl.safetensors) draws what
workflows/sdxl_txt2img.json asks, read by the independent checker: one prompt per shape x color
(32 images; measured 100 / 100 / 100% on 2026-12-02), floors as the SD1 model's."""

import itertools

import pytest

from nodeflow.engine.executor import Executor
from nodeflow.engine.registry import Registry
from nodeflow.formats import load_workflow
from nodeflow.runtime.paths import Paths
from nodeflow.training.palette import PALETTE, SHAPES, caption
from tests.image_checker import read_image
from tests.project import ROOT, run_for_images

CHECKPOINT = ROOT / "assets" / "nodeflow-tiny-xl.safetensors"
pytestmark = pytest.mark.skipif(not CHECKPOINT.is_file(), reason="the SDXL sibling is not in assets/")
FLOOR = {"foreground": 0.9, "background": 0.9, "shape": 0.8}


def test_sdxl_sibling_draws_the_prompt(tmp_path):
    from nodeflow.loading.checkpoint import load_checkpoint

    assert load_checkpoint(CHECKPOINT).kind == "sdxl"
    paths = Paths(models_dirs=(tmp_path / "models",), output_dir=tmp_path / "out", temp_dir=tmp_path / "tmp")
    registry = Registry.load(paths)
    executor = Executor(registry, paths)
    colors = list(PALETTE)
    hits = {"foreground": 0, "background": 0, "shape": 0}
    count = 0
    for index, (shape, color) in enumerate(itertools.product(SHAPES, colors)):
        background = colors[(colors.index(color) + 3) % len(colors)]
        workflow = load_workflow(ROOT / "workflows" / "sdxl_txt2img.json", registry)
        workflow.nodes["6"].inputs["text"] = caption(shape, color, background)
        workflow.nodes["3"].inputs["seed"] = 1000 + index
        for image in run_for_images(executor, workflow):
            reading = read_image(image)
            count += 1
            hits["foreground"] += reading.foreground == color
            hits["background"] += reading.background == background
            hits["shape"] += reading.shape == shape
    rates = {k: v / count for k, v in hits.items()}
    assert all(rates[k] >= FLOOR[k] for k in FLOOR), rates
