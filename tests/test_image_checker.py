"""The image checker reads the dataset's own renders right (sharp and blurred), so the rates that
tests/test_embedded_model.py measures are about the model, not the checker."""

import numpy as np
import pytest
from scipy import ndimage

from nodeflow.training.shapes import ShapeDataset
from tests.image_checker import STAR_SOLIDITY, mask_iou, read_image


@pytest.fixture(scope="module")
def renders():
    batch = ShapeDataset(resolution=64).sample(np.random.default_rng(1234), 240)
    return [(image, caption.split(), mask) for image, caption, mask in zip(batch.images, batch.captions, batch.masks)]


@pytest.mark.parametrize("blur", [0.0, 1.0])
def test_reads_every_render(renders, blur):
    wrong = []
    for image, words, mask in renders:  # "a red circle on a blue background"
        seen = ndimage.gaussian_filter(image, (blur, blur, 0)) if blur else image
        reading = read_image(seen)
        if (reading.foreground, reading.shape, reading.background) != (words[1], words[2], words[5]):
            wrong.append((" ".join(words), reading.foreground, reading.shape, reading.background))
        if blur == 0:
            assert mask_iou(reading.region, mask > 0.5) > 0.95
    assert len(wrong) <= 2, wrong


def test_star_threshold_separates_the_renders(renders):
    stars = [read_image(image).solidity for image, words, _ in renders if words[2] == "star"]
    convex = [read_image(image).solidity for image, words, _ in renders if words[2] != "star"]
    assert stars and convex and max(stars) < STAR_SOLIDITY < min(convex)


def test_empty_image_has_no_foreground():
    reading = read_image(np.full((64, 64, 3), 0.5, dtype=np.float32))
    assert reading.foreground is None and reading.shape is None
