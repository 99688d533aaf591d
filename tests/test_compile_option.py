"""``--compile`` and ``--vram``: the command line hands them to every run (Executor.run ->
RunContext), and with --compile the loaders compile the U-Net in place (torch.compile), which
must not change the image. Compiling with inductor takes minutes on this CPU, so the test compiles
with dynamo's "eager" backend: the same graph capture of our U-Net, run by torch's own kernels;
test_cuda.py compiles with inductor on a GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nodeflow import cli
from nodeflow.engine.executor import Executor
from nodeflow.engine.registry import Registry
from nodeflow.formats import load_workflow
from nodeflow.runtime.paths import Paths
from tests.project import ROOT


def _image(executor: Executor, **options) -> np.ndarray:
    from PIL import Image

    workflow = load_workflow(ROOT / "workflows" / "txt2img.json")
    workflow.nodes["3"].inputs["steps"] = 4
    result = executor.run(workflow, **options)
    [saved] = result.outputs["9"][0]["images"]
    return np.asarray(Image.open(saved), dtype=np.int16)


def test_compile_compiles_the_unet_in_place_and_keeps_the_image(tmp_path, monkeypatch):
    compiled = []
    original = torch.nn.Module.compile

    def compile_eagerly(module, *args, **kwargs):
        compiled.append(module)
        return original(module, backend="eager")

    monkeypatch.setattr(torch.nn.Module, "compile", compile_eagerly)
    images = {}
    for flag in (False, True):
        paths = Paths(output_dir=tmp_path / f"out-{flag}", temp_dir=tmp_path / f"tmp-{flag}")
        images[flag] = _image(Executor(Registry.load(paths), paths), device="cpu", compile=flag)
    [unet] = compiled  # only the compiled run compiled, and only its U-Net
    assert type(unet).__name__ == "UNetModel" and unet._compiled_call_impl is not None
    assert np.abs(images[True] - images[False]).max() <= 2  # same kernels, graph order: rounding at most


@pytest.mark.parametrize("arguments, expected", [
    ([], dict(compile=False, vram="auto")),
    (["--compile", "--vram", "low"], dict(compile=True, vram="low")),
])
def test_the_command_line_hands_the_model_options_to_the_run(tmp_path, monkeypatch, arguments, expected):
    seen = {}
    original = Executor.run

    def recording_run(self, workflow, **options):
        seen.update(options)
        return original(self, workflow, **options)

    monkeypatch.setattr(Executor, "run", recording_run)
    code = cli.main(["run", str(ROOT / "workflows" / "txt2img.json"), "--device", "cpu", "--quiet",
                     "--output-dir", str(tmp_path), *arguments])
    assert code == 0
    assert {key: seen[key] for key in expected} == expected and seen["device"] == "cpu"


def test_an_unknown_vram_mode_is_refused_on_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", str(ROOT / "workflows" / "txt2img.json"), "--vram", "tiny"])
    assert exit_info.value.code == 2 and "--vram" in capsys.readouterr().err
