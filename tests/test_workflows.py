"""Every example in workflows/ validates and runs end to end (on a tiny random checkpoint standing
in for the embedded model, so the test does not depend on the shipped weights)."""

import pytest

from nodeflow.engine.executor import Executor
from nodeflow.runtime.paths import Paths
from nodeflow.engine.registry import Registry
from nodeflow.engine.validate import validate
from nodeflow.formats import load_workflow
from tests.factories import write_tiny_checkpoint, write_tiny_controlnet, write_tiny_lora
from tests.family_files import write_family_checkpoint
from tests.project import ROOT

WORKFLOWS = sorted((ROOT / "workflows").glob("*.json"))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("workflows")
    write_tiny_checkpoint(root / "models" / "checkpoints" / "nodeflow-tiny.safetensors")
    write_tiny_controlnet(root / "models" / "controlnet" / "nodeflow-tiny-mask.safetensors")
    write_tiny_lora(root / "models" / "loras" / "nodeflow-tiny-big-shapes.safetensors")
    write_family_checkpoint(root / "models" / "checkpoints" / "nodeflow-tiny-xl.safetensors", "sdxl")
    paths = Paths(models_dirs=(root / "models",), output_dir=root / "out", input_dir=root / "in",
                  temp_dir=root / "tmp", assets_dir=ROOT / "assets")
    registry = Registry.load(paths)
    return paths, registry, Executor(registry, paths)


def test_there_are_examples():
    names = {path.stem for path in WORKFLOWS}
    assert {"txt2img", "img2img", "inpaint", "outpaint", "area_composition", "hires_fix", "controlnet", "lora",
            "sdxl_txt2img"} <= names


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_example_validates_and_runs(setup, path):
    paths, registry, executor = setup
    workflow = load_workflow(path, registry)
    assert validate(workflow, registry, paths) == []
    for node in workflow.nodes.values():  # keep the test fast: few steps
        if node.type in ("KSampler", "KSamplerAdvanced"):
            node.inputs["steps"] = 2
    result = executor.run(workflow)
    saved = [p for outputs in result.outputs.values() for report in outputs if isinstance(report, dict)
             for p in report.get("images", [])]
    assert saved and all(p.endswith(".png") for p in saved)
