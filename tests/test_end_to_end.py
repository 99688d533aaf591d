"""Whole workflows on a tiny random checkpoint: run, cache, re-run from a PNG, img2img, inpaint."""

import pytest
import torch

from nodeflow.cli import apply_override
from nodeflow.engine.executor import Executor
from nodeflow.runtime.paths import Paths
from nodeflow.engine.registry import Registry
from nodeflow.engine.workflow import Link, NodeInstance
from nodeflow.formats import load_workflow
from tests.factories import write_tiny_checkpoint
from tests.project import ROOT


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    write_tiny_checkpoint(root / "models" / "checkpoints" / "tiny.safetensors")
    paths = Paths(models_dirs=(root / "models",), output_dir=root / "out", input_dir=root / "in",
                  temp_dir=root / "tmp", assets_dir=root / "no-assets")
    registry = Registry.load(paths)
    return paths, registry, Executor(registry, paths)


def txt2img(steps=3, seed=42):
    workflow = load_workflow(ROOT / "workflows" / "txt2img.json")
    apply_override(workflow, "4.ckpt_name=tiny.safetensors")
    apply_override(workflow, f"3.steps={steps}")
    apply_override(workflow, f"3.seed={seed}")
    return workflow


def test_txt2img_runs_and_saves_a_png_with_the_workflow(setup):
    paths, registry, executor = setup
    workflow = txt2img()
    result = executor.run(workflow)
    [saved] = result.outputs["9"][0]["images"]
    again = load_workflow(saved, registry)
    assert again.nodes["3"].inputs["seed"] == 42 and again.nodes["4"].inputs["ckpt_name"] == "tiny.safetensors"


def test_changing_the_seed_reruns_only_the_sampler_and_after(setup):
    _, _, executor = setup
    executor.run(txt2img(seed=1))
    result = executor.run(txt2img(seed=2))
    assert sorted(result.executed) == ["3", "8", "9"]
    assert sorted(result.cached) == ["4", "5", "6", "7"]


def test_same_seed_same_image_across_executors(setup):
    paths, registry, _ = setup
    runs = []
    for _ in range(2):
        workflow = txt2img(seed=7)
        workflow.nodes["9"] = NodeInstance("9", "PreviewImage")
        workflow.links = [l for l in workflow.links if l.dst != "9"] + [Link("8", 0, "9", "images")]
        events = []
        Executor(registry, paths).run(workflow, on_event=events.append)
        runs.append(next(e.images for e in events if type(e).__name__ == "ImagesShown"))
    assert torch.equal(runs[0], runs[1])


def test_img2img_and_inpainting_graphs(setup):
    paths, registry, executor = setup
    workflow = txt2img()
    # image -> VAEEncodeForInpaint (mask from SolidMask) -> KSampler at denoise 0.6
    workflow.nodes["20"] = NodeInstance("20", "EmptyImage", {"width": 64, "height": 64, "batch_size": 1, "color": 0xFF0000})
    workflow.nodes["21"] = NodeInstance("21", "SolidMask", {"value": 1.0, "width": 64, "height": 64})
    workflow.nodes["22"] = NodeInstance("22", "VAEEncodeForInpaint", {"grow_mask_by": 6})
    workflow.links = [l for l in workflow.links if l.dst_input != "latent_image"]
    workflow.links += [Link("20", 0, "22", "pixels"), Link("4", 2, "22", "vae"), Link("21", 0, "22", "mask"),
                       Link("22", 0, "3", "latent_image")]
    apply_override(workflow, "3.denoise=0.6")
    result = executor.run(workflow)
    assert len(result.outputs["9"][0]["images"]) == 1


@pytest.mark.parametrize("every, shown", [(1, [1, 2, 3, 4, 5]), (2, [2, 4, 5]), (0, [])])
def test_sampler_reports_every_step_and_previews_at_the_chosen_interval(setup, every, shown):
    from nodeflow.engine.events import Progress

    _, _, executor = setup
    events = []
    executor.run(txt2img(steps=5, seed=100 + every), on_event=events.append, preview_every=every)
    progress = [event for event in events if isinstance(event, Progress)]
    assert [event.step for event in progress] == [1, 2, 3, 4, 5]
    assert [event.step for event in progress if event.preview is not None] == shown
    previews = [event.preview for event in progress if event.preview is not None]
    assert all(preview.shape[-1] == 3 for preview in previews)  # an RGB IMAGE from the latent
