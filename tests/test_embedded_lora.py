"""The embedded model's example LoRA does what it was trained for: with workflows/lora.json at
strength 1 the shapes nearly fill the frame; at strength 0 they keep the base model's sizes.
Measured by the independent checker (the foreground region's bounding box)."""

import numpy as np
import pytest

from nodeflow.engine.executor import Executor
from nodeflow.runtime.paths import Paths
from nodeflow.engine.registry import Registry
from nodeflow.training.palette import caption
from nodeflow.formats import load_workflow
from tests.image_checker import read_image
from tests.project import ROOT, run_for_images

LORA = ROOT / "assets" / "loras" / "nodeflow-tiny-big-shapes.safetensors"
pytestmark = pytest.mark.skipif(not LORA.is_file(), reason="the example LoRA is not in assets/")

PROMPTS = [("circle", "red", "blue"), ("square", "yellow", "black"), ("triangle", "white", "green"),
           ("star", "orange", "purple")]


def box_sides(strength: float, tmp_path) -> list[float]:
    """The larger side of each shape's bounding box, as a fraction of the image side."""
    paths = Paths(models_dirs=(tmp_path / "models",), output_dir=tmp_path / "out", temp_dir=tmp_path / "tmp")
    registry = Registry.load(paths)
    executor = Executor(registry, paths)
    sides = []
    for index, (shape, color, background) in enumerate(PROMPTS):
        workflow = load_workflow(ROOT / "workflows" / "lora.json", registry)
        workflow.nodes["10"].inputs.update(strength_model=strength, strength_clip=strength)
        workflow.nodes["6"].inputs["text"] = caption(shape, color, background)
        workflow.nodes["5"].inputs["batch_size"] = 3
        workflow.nodes["3"].inputs["seed"] = 300 + index
        for image in run_for_images(executor, workflow):
            reading = read_image(image)
            x0, y0, x1, y1 = reading.box
            sides.append(max(x1 - x0, y1 - y0) / image.shape[1])
    return sides


def test_the_lora_makes_shapes_fill_the_frame_and_strength_zero_leaves_the_model_alone(tmp_path):
    with_lora, without = box_sides(1.0, tmp_path), box_sides(0.0, tmp_path)
    assert np.median(with_lora) >= 0.78, with_lora  # trained on 0.80 - 0.95 of the side
    assert np.median(without) <= 0.7, without  # the base model draws 0.35 - 0.75
    assert np.mean(with_lora) - np.mean(without) >= 0.2
