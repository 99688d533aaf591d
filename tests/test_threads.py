"""The CPU thread count follows the work (nodeflow.runtime.threads), and the default workflow
starts without transformers' modelling code (issue 20: whole process under 3 s)."""

import subprocess
import sys

import pytest
import torch

from nodeflow.engine.executor import Executor
from nodeflow.engine.registry import Registry
from nodeflow.formats import load_workflow
from nodeflow.runtime import threads
from nodeflow.runtime.paths import Paths
from nodeflow.runtime.threads import SMALL_WORK, cpu_threads, network_work, threads_for
from tests.project import ROOT


def test_small_work_gets_one_thread_large_work_all():
    assert threads_for(SMALL_WORK / 2, available=8) == 1
    assert threads_for(SMALL_WORK * 2, available=8) == 8
    assert threads_for(SMALL_WORK * 2, available=0) == 1


def test_network_work_counts_parameters_times_positions():
    linear = torch.nn.Linear(10, 3)  # 33 parameters
    assert network_work(linear, 7) == 33 * 7


def test_cpu_threads_sets_and_restores():
    before = torch.get_num_threads()
    with cpu_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(KeyError), cpu_threads(1):
        raise KeyError("inside")
    assert torch.get_num_threads() == before


def _sampler_threads(monkeypatch, tmp_path, small_work: float) -> set[int]:
    """Thread counts seen by the sampler, the text encoder and the VAE on the default workflow."""
    seen = set()
    real = threads.cpu_threads

    def watching(count):
        seen.add(count)
        return real(count)

    monkeypatch.setattr(threads, "SMALL_WORK", small_work)
    for module in ("nodeflow.sampling.ksampler", "nodeflow.image.vae", "nodeflow.text.text_encoder"):
        monkeypatch.setattr(f"{module}.cpu_threads", watching)
    paths = Paths(output_dir=tmp_path / "out", temp_dir=tmp_path / "tmp")
    workflow = load_workflow(ROOT / "workflows" / "txt2img.json")
    workflow.nodes["3"].inputs["steps"] = 2
    Executor(Registry.load(paths), paths).run(workflow)
    return seen


def test_the_embedded_model_runs_on_one_thread(monkeypatch, tmp_path):
    assert _sampler_threads(monkeypatch, tmp_path, SMALL_WORK) == {1}


def test_large_work_runs_on_torchs_threads(monkeypatch, tmp_path):
    with cpu_threads(2):  # whatever the machine: two available, so "all" differs from one
        assert _sampler_threads(monkeypatch, tmp_path, 0.0) == {2}


def test_attention_scores_count_every_transformer_block():
    """SD1.5's U-Net: transformers at levels 0-2 (2 input and 3 output blocks each) and the middle
    (level 3), 8 heads; tokens (h/2^l x w/2^l) squared."""
    from nodeflow.models.unet import UNetConfig

    expected = sum(5 * ((64 >> level) ** 2) ** 2 * 8 for level in range(3)) + ((64 >> 3) ** 2) ** 2 * 8
    assert UNetConfig().attention_scores(64, 64) == expected


def test_a_small_unet_on_a_large_latent_is_not_small_work():
    """Parameters x positions call the scaled-down U-Net at 32x32 small work; its attention (1024
    tokens) makes it large enough for all threads, while the embedded size (8x8) stays on one."""
    from nodeflow.models.unet import UNetConfig, UNetModel
    from nodeflow.sampling.ksampler import _sampling_threads

    # bench_pipeline.py --tiny's U-Net (test_single_file_parity's, which needs diffusers to import)
    config = UNetConfig(model_channels=32, channel_mult=(1, 2, 2), transformer_depth=(1, 1, 0), context_dim=128)
    model = type("Model", (), {"unet": UNetModel(config)})()
    assert threads.threads_for(threads.network_work(model.unet, 32 * 32), available=2) == 1
    with cpu_threads(2):
        assert _sampling_threads(model, torch.zeros(1, 4, 32, 32)) == 2
        assert _sampling_threads(model, torch.zeros(1, 4, 8, 8)) == 1


def test_default_workflow_does_not_import_transformers(tmp_path):
    """transformers' modelling code costs about 2 s of imports; the CLIP text model is ours."""
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from nodeflow.engine.executor import Executor\n"
        "from nodeflow.engine.registry import Registry\n"
        "from nodeflow.formats import load_workflow\n"
        "from nodeflow.runtime.paths import Paths\n"
        f"paths = Paths(output_dir=Path({str(tmp_path / 'out')!r}), temp_dir=Path({str(tmp_path / 'tmp')!r}))\n"
        f"workflow = load_workflow(Path({str(ROOT / 'workflows' / 'txt2img.json')!r}))\n"
        "workflow.nodes['3'].inputs['steps'] = 2\n"
        "Executor(Registry.load(paths), paths).run(workflow)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('transformers', 'diffusers', 'scipy')))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    assert list((tmp_path / "out").glob("*.png"))
