"""What the embedded model draws, checked by an independent reader of the images.

Over every shape x every foreground color (background rotating through the palette), three
samples each, through the default workflow's graph and settings, the rates of right foreground
color, background color and shape must stay above FLOOR (far above chance, under what the shipped model measures; see the
README), so a broken pipeline (loader, tokenizer,
sampler, VAE) fails here. The floors are the project's target (issue 7).
"""

import itertools

import pytest

from nodeflow.engine.executor import Executor
from nodeflow.runtime.paths import Paths
from nodeflow.engine.registry import Registry
from nodeflow.training.palette import PALETTE, SHAPES, caption
from nodeflow.formats import load_workflow
from tests.image_checker import read_image
from tests.project import ROOT, run_for_images

CHECKPOINT = ROOT / "assets" / "nodeflow-tiny.safetensors"
pytestmark = pytest.mark.skipif(not CHECKPOINT.is_file(), reason="the embedded model is not in assets/ yet")

COLORS = list(PALETTE)
#: Issue 7's target; the shipped model measures 1.0 / 1.0 / 0.969 (tests/bench/bench_embedded_quality.py,
#: 96 images on the CPU). Chance is 0.125 / 0.125 / 0.25.
FLOOR = {"foreground": 0.9, "background": 0.9, "shape": 0.8}


def prompts():
    for (i, shape), (j, color) in itertools.product(enumerate(SHAPES), enumerate(COLORS)):
        background = COLORS[(j + 1 + 2 * i) % len(COLORS)]
        if background == color:
            background = COLORS[(j + 2) % len(COLORS)]
        yield shape, color, background


@pytest.fixture(scope="module")
def readings(tmp_path_factory):
    root = tmp_path_factory.mktemp("embedded")
    paths = Paths(models_dirs=(root / "models",), output_dir=root / "out", temp_dir=root / "tmp")
    registry = Registry.load(paths)
    executor = Executor(registry, paths)
    results = []
    for index, (shape, color, background) in enumerate(prompts()):
        workflow = load_workflow(ROOT / "workflows" / "txt2img.json")
        workflow.nodes["6"].inputs["text"] = caption(shape, color, background)
        workflow.nodes["5"].inputs["batch_size"] = 3
        workflow.nodes["3"].inputs["seed"] = 1000 + index
        for image in run_for_images(executor, workflow):
            results.append(((shape, color, background), read_image(image)))
    return results


def rate(readings, check) -> float:
    return sum(check(expected, reading) for expected, reading in readings) / len(readings)


def test_foreground_color(readings):
    assert rate(readings, lambda e, r: r.foreground == e[1]) >= FLOOR["foreground"]


def test_background_color(readings):
    assert rate(readings, lambda e, r: r.background == e[2]) >= FLOOR["background"]


def test_shape(readings):
    assert rate(readings, lambda e, r: r.shape == e[0]) >= FLOOR["shape"]
