"""The editor's run queue and history without a display (gui/run_queue.py, gui/history.py)."""

import os
import random
import subprocess
import sys

import numpy as np
import pytest

from nodeflow.engine import events
from nodeflow.engine.registry import Registry
from nodeflow.gui.document import Document
from nodeflow.gui.history import MAX_ENTRIES, History, HistoryEntry, RunRecorder, thumbnail
from nodeflow.gui.run_queue import RunQueue, run_seeds
from nodeflow.gui.seed_control import set_seed_mode
from nodeflow.gui.worker import RunCancelled, RunFailed
from tests.project import ROOT


@pytest.fixture(scope="module")
def registry():
    return Registry.load()


def sampler_document(registry, mode: str, seed: int = 10) -> tuple[Document, str]:
    document = Document(registry)
    sampler = document.add_node("KSampler")
    document.set_value(sampler, "seed", seed)
    set_seed_mode(document, sampler, "seed", mode)
    return document, sampler


@pytest.mark.parametrize("mode, expected", [("increment", [10, 11, 12]), ("decrement", [10, 9, 8]),
                                            ("fixed", [10, 10, 10])])
def test_each_queued_run_takes_its_seed_and_the_widget_moves_on(registry, mode, expected):
    document, sampler = sampler_document(registry, mode)
    runs = RunQueue().enqueue(document, 3)
    assert [run.seeds for run in runs] == [{f"{sampler}.seed": seed} for seed in expected]
    assert [run.workflow.nodes[sampler].inputs["seed"] for run in runs] == expected  # the snapshots
    step = expected[1] - expected[0]
    assert document.workflow.nodes[sampler].inputs["seed"] == expected[-1] + step
    assert [run.number for run in runs] == [1, 2, 3]


def test_randomized_seeds_differ_and_moving_on_is_undoable(registry):
    document, sampler = sampler_document(registry, "randomize")
    runs = RunQueue().enqueue(document, 3, random.Random(5))
    seeds = [run.seeds[f"{sampler}.seed"] for run in runs]
    assert seeds[0] == 10 and len(set(seeds)) == 3
    for _ in range(3):
        document.undo()
    assert document.workflow.nodes[sampler].inputs["seed"] == 10


def test_a_snapshot_keeps_the_graph_as_it_was_queued(registry):
    document, sampler = sampler_document(registry, "fixed")
    [run] = RunQueue().enqueue(document, 1)
    document.set_value(sampler, "steps", 3)
    document.add_node("EmptyLatentImage")
    assert run.workflow.nodes[sampler].inputs.get("steps") != 3 and len(run.workflow.nodes) == 1


def test_one_run_at_a_time_in_order_and_clear_leaves_the_one_going(registry):
    document, _ = sampler_document(registry, "increment")
    queue, started = RunQueue(), []

    def start(workflow):  # the worker's start: refuses while busy
        started.append(workflow)
        return True

    queue.enqueue(document, 3)
    assert queue.status() == "running 0, queued 3"
    first = queue.start_next(start)
    assert first.number == 1 and queue.status() == "running 1, queued 2"
    assert queue.start_next(start) is None and len(started) == 1  # one at a time
    assert queue.finish() is first
    assert queue.start_next(lambda workflow: False) is None and len(queue.pending) == 2  # worker busy: waits
    assert queue.start_next(start).number == 2
    assert queue.clear() == 1 and queue.status() == "running 1, queued 0"
    queue.finish()
    assert queue.status() == "" and not queue.busy and queue.start_next(start) is None


def test_batch_count_out_of_range_is_refused(registry):
    document, _ = sampler_document(registry, "fixed")
    with pytest.raises(ValueError, match="batch count"):
        RunQueue().enqueue(document, 0)


def test_run_seeds_leave_out_linked_and_muted_seeds(registry):
    document, sampler = sampler_document(registry, "fixed", seed=7)
    muted = document.add_node("KSampler")
    document.set_mode(muted, "muted")
    assert run_seeds(document.workflow, registry) == {f"{sampler}.seed": 7}


def entry(number: int) -> HistoryEntry:
    return HistoryEntry(number, {"3.seed": number}, 0.5, "done")


def test_history_keeps_the_newest_hundred_newest_first():
    history = History()
    dropped = [history.add(entry(number)) for number in range(1, MAX_ENTRIES + 3)]
    assert [e.number for e in history.entries[:2]] == [MAX_ENTRIES + 2, MAX_ENTRIES + 1]
    assert len(history) == MAX_ENTRIES
    assert [[e.number for e in d] for d in dropped[-3:]] == [[], [1], [2]]
    assert history.find(3).number == 3 and history.find(1) is None


def test_thumbnails_are_small_rgba():
    small = thumbnail(np.random.rand(64, 48, 3))
    assert small.shape == (64, 48, 4) and small.dtype == np.float32 and (small[..., 3] == 1).all()
    large = thumbnail(np.random.rand(300, 600, 3))
    assert large.shape == (48, 96, 4)


def test_the_recorder_makes_an_entry_from_a_runs_last_event(registry, tmp_path):
    document, sampler = sampler_document(registry, "fixed", seed=42)
    [run] = RunQueue().enqueue(document, 1)
    recorder = RunRecorder(run, started=100.0)
    image = np.full((1, 64, 64, 3), 0.5, dtype=np.float32)
    assert recorder.observe(events.ImagesShown("9", image, (tmp_path / "a.png",)), 100.5) is None
    assert recorder.observe(events.FileSaved("9", tmp_path / "a.png"), 100.6) is None
    assert recorder.observe(events.FileSaved("9", tmp_path / "b.png"), 100.7) is None  # the first one counts
    done = recorder.observe(events.RunFinished(("9",), (), 1.5), 101.5)
    assert (done.status, done.seconds, done.seeds, done.saved) == ("done", 1.5, {f"{sampler}.seed": 42},
                                                                    tmp_path / "a.png")
    assert done.thumbnail.shape == (64, 64, 4) and done.seeds_text() == "seed 42"
    assert done.summary() == "#1 done in 1.5 s"
    failed = RunRecorder(run, 0.0).observe(RunFailed("node 3 (KSampler): boom"), 2.0)
    assert (failed.status, failed.message, failed.saved, failed.thumbnail) == (
        "failed", "node 3 (KSampler): boom", None, None)
    assert RunRecorder(run, 0.0).observe(RunCancelled(), 1.0).status == "cancelled"


def test_loading_a_runs_workflow_reads_its_png_else_the_snapshot(registry, tmp_path):
    import copy

    from PIL import Image, PngImagePlugin

    from nodeflow.formats.png import workflow_text_chunks

    document, sampler = sampler_document(registry, "fixed", seed=1234)
    [run] = RunQueue().enqueue(document, 1)
    in_png = copy.deepcopy(run.workflow)
    in_png.nodes[sampler].inputs["seed"] = 999  # what the PNG holds differs from the snapshot
    info = PngImagePlugin.PngInfo()
    for key, text in workflow_text_chunks(in_png, registry).items():
        info.add_text(key, text)
    Image.new("RGB", (8, 8)).save(tmp_path / "run.png", pnginfo=info)
    from_png = HistoryEntry(1, {}, 0.1, "done", saved=tmp_path / "run.png", workflow=run.workflow)
    assert from_png.load_workflow(registry).nodes[sampler].inputs["seed"] == 999
    from_snapshot = HistoryEntry(2, {}, 0.1, "failed", workflow=run.workflow)
    assert from_snapshot.load_workflow(registry).nodes[sampler].inputs["seed"] == 1234
    with pytest.raises(Exception, match="no such file"):
        HistoryEntry(3, {}, 0.1, "done", saved=tmp_path / "gone.png").load_workflow(registry)


def test_queue_and_history_models_import_without_dearpygui():
    code = ("import sys; import nodeflow.gui.run_queue, nodeflow.gui.history; "
            "print('dearpygui' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout.split()
    assert out == ["False", "False"]
