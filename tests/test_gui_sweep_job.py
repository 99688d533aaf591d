"""The editor's sweeps without a display (sweep_job.py): the inputs the panel offers, the checks
before anything runs (the CLI's messages), and the worker's task running the jobs and drawing
the grid."""

import threading

import pytest
from PIL import Image

from nodeflow.engine.executor import Executor
from nodeflow.engine.registry import Registry
from nodeflow.gui.document import Document
from nodeflow.gui.sweep_job import SweepDone, SweepJobStarted, prepare_sweep, sweep_targets, sweep_task
from nodeflow.gui.worker import Worker
from nodeflow.runtime.paths import Paths
from nodeflow.sweeps.spec import SweepError, parse_spec


@pytest.fixture
def paths(tmp_path):
    return Paths(output_dir=tmp_path / "out", temp_dir=tmp_path / "tmp")


@pytest.fixture
def registry(paths):
    return Registry.load(paths)


def image_document(registry) -> Document:
    """Two Empty Image nodes (one titled) into Image Blend, then Save Image."""
    document = Document(registry)
    first = document.add_node("EmptyImage", (0, 0))
    second = document.add_node("EmptyImage", (0, 200))
    blend = document.add_node("ImageBlend", (300, 0))
    save = document.add_node("SaveImage", (600, 0))
    document.connect(first, 0, blend, "image1")
    document.connect(second, 0, blend, "image2")
    document.connect(blend, 0, save, "images")
    for node_id in (first, second):
        document.set_value(node_id, "width", 8)
        document.set_value(node_id, "height", 8)
    return document


def test_targets_are_the_literal_inputs_labelled_by_title_and_input(registry):
    document = image_document(registry)
    labels = [t.label for t in sweep_targets(document.workflow, document.registry)]
    assert labels[:4] == ["Empty Image (1) . width", "Empty Image (1) . height", "Empty Image (1) . batch_size",
                          "Empty Image (1) . color"]
    assert "Empty Image (2) . color" in labels  # two nodes share a title: the id tells them apart
    assert "Image Blend . blend_factor" in labels and "Save Image . filename_prefix" in labels
    assert not [label for label in labels if "image1" in label or "images" in label]  # links, not values


def test_a_bad_value_is_the_clis_message_for_the_axis_and_nothing_is_written(registry, paths):
    """The CLI's check and words, but naming the panel's axis and input, not CLI syntax."""
    document = image_document(registry)
    [target] = [t for t in sweep_targets(document.workflow, registry) if t.key == "1.width"]
    with pytest.raises(SweepError) as caught:
        prepare_sweep(document.workflow, registry, paths, [(target, "8,abc")], "untitled")
    with pytest.raises(SweepError) as cli:
        parse_spec(["1.width=8,abc"], document.workflow, registry, paths)
    assert str(cli.value).startswith("--sweep '1.width=8,abc': ")
    assert str(caught.value) == str(cli.value).replace("--sweep '1.width=8,abc'", f"X ({target.label})")
    assert "'abc' is not an integer" in str(caught.value)
    with pytest.raises(SweepError, match="is empty"):
        prepare_sweep(document.workflow, registry, paths, [(target, "8..1:2")], "untitled")
    with pytest.raises(SweepError, match="choose a node input"):
        prepare_sweep(document.workflow, registry, paths, [], "untitled")
    assert not (paths.output_dir / "sweeps").exists()


def test_the_task_runs_every_job_on_the_worker_and_draws_the_grid(registry, paths):
    document = image_document(registry)
    targets = {t.key: t for t in sweep_targets(document.workflow, registry)}
    axes = [(targets["1.color"], "0,16711680"), (targets["3.blend_factor"], "0.5..1.0:0.5")]
    prepared = prepare_sweep(document.workflow, registry, paths, axes, "shapes")
    worker = Worker(Executor(registry, paths))
    assert worker.start_task(sweep_task(prepared, worker.executor, None, device="cpu"))
    worker.join(120)
    posted = worker.drain(1000)
    started = [e for e in posted if isinstance(e, SweepJobStarted)]
    [done] = [e for e in posted if isinstance(e, SweepDone)]
    assert [(e.position, e.total) for e in started] == [(i, 4) for i in range(1, 5)]
    assert (done.done, done.total, done.cancelled, done.errors) == (4, 4, False, ())
    assert done.manifest.parent.parent == paths.output_dir / "sweeps" and done.manifest.is_file()
    [grid] = done.grids
    with Image.open(grid) as picture:
        assert picture.width > 2 * 8 and picture.height > 2 * 8  # two by two cells and their labels
    assert len(list(paths.output_dir.glob("*.png"))) == 4


def test_a_stopped_sweep_ends_with_what_finished(registry, paths):
    document = image_document(registry)
    [target] = [t for t in sweep_targets(document.workflow, registry) if t.key == "1.color"]
    prepared = prepare_sweep(document.workflow, registry, paths, [(target, "1..5")], "shapes")
    cancel, posted = threading.Event(), []
    cancel.set()  # Stop before the first job
    sweep_task(prepared, Executor(registry, paths), None)(cancel, posted.append)
    [done] = [e for e in posted if isinstance(e, SweepDone)]
    assert (done.done, done.total, done.cancelled) == (0, 5, True)
