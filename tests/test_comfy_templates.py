"""ComfyUI's own SDXL example workflows (simple, base + refiner, SDXL Turbo) (tests/data/comfy/templates, unchanged UI exports) with
scaled-down SDXL files of the names they ask for: they validate as they are, and run (at a small
size and few steps, so the suite stays quick; `nodeflow run` on them unchanged takes ~45 s each
on 2 CPU cores) to an image.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from nodeflow.cli import apply_override
from nodeflow.engine.executor import Executor
from nodeflow.engine.registry import Registry
from nodeflow.engine.validate import validate
from nodeflow.formats import load_workflow
from nodeflow.runtime.paths import Paths
from tests.family_files import write_family_checkpoint
from tests.project import ROOT

TEMPLATES = ROOT / "tests" / "data" / "comfy" / "templates"

CASES = {  # template: (files it loads, the overrides that make it small, its SaveImage node)
    "image_sdxl_simple": ({"sd_xl_base_1.0.safetensors": "sdxl"},
                          ["13.width=64", "13.height=64", "12.steps=3"], "7"),
    "sdxl_refiner_prompt_example": ({"sd_xl_base_1.0.safetensors": "sdxl", "sd_xl_refiner_1.0.safetensors": "sdxl-refiner"},
                                    ["5.width=64", "5.height=64", "10.steps=4", "10.end_at_step=3",
                                     "11.steps=4", "11.start_at_step=3"], "19"),
    # SamplerCustom with KSamplerSelect and SDTurboScheduler (custom sampling)
    "sdxlturbo_example": ({"sd_xl_turbo_1.0_fp16.safetensors": "sdxl"}, ["5.width=64", "5.height=64"], "27"),
}


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("templates")
    for seed, (name, family) in enumerate({k: v for files, _, _ in CASES.values() for k, v in files.items()}.items()):
        write_family_checkpoint(root / "models" / "checkpoints" / name, family, seed=seed)
    return Paths(models_dirs=(root / "models",), output_dir=root / "out", input_dir=root / "in",
                 temp_dir=root / "tmp", assets_dir=root / "no-assets")


@pytest.mark.parametrize("template", CASES)
def test_template_validates_unchanged_and_runs(paths, template):
    registry = Registry.load(paths)
    workflow = load_workflow(TEMPLATES / f"{template}.json", registry)
    assert validate(workflow, registry, paths) == []
    _, overrides, save_node = CASES[template]
    for override in overrides:
        apply_override(workflow, override, registry)
    result = Executor(registry, paths).run(workflow)
    [saved] = result.outputs[save_node][0]["images"]
    pixels = np.asarray(Image.open(saved))
    assert pixels.shape == (64, 64, 3) and pixels.std() > 0
