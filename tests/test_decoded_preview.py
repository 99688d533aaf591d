"""Checkpoints with a tiny VAE (the embedded models) preview through the VAE itself: the live
preview shows what the prompt asks for, and the last step's preview is the image that is saved.
Large VAEs keep the cheap linear preview."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nodeflow.engine.executor import Executor
from nodeflow.engine.registry import Registry
from nodeflow.engine.workflow import NodeInstance
from nodeflow.formats import load_workflow
from nodeflow.image.vae import VAE
from nodeflow.models.vae import AutoencoderKL, VAEConfig
from nodeflow.runtime.paths import Paths
from nodeflow.sampling.latent_preview import VaePreview, small_enough_to_preview
from tests.image_checker import read_image
from tests.project import ROOT

WORKFLOWS = {"txt2img": ("red", "blue"), "sdxl_txt2img": ("green", "purple")}


@pytest.fixture(scope="module")
def executor(tmp_path_factory):
    root = tmp_path_factory.mktemp("preview")
    paths = Paths(output_dir=root / "out", temp_dir=root / "tmp")
    return Executor(Registry.load(paths), paths)


@pytest.mark.parametrize("name", WORKFLOWS)
def test_the_embedded_models_preview_what_is_drawn(executor, name):
    workflow = load_workflow(ROOT / "workflows" / f"{name}.json")
    for node_id, node in list(workflow.nodes.items()):
        if node.type == "SaveImage":  # shown, not written
            workflow.nodes[node_id] = NodeInstance(node_id, "PreviewImage")
    events = []
    executor.run(workflow, on_event=events.append)
    images = np.asarray(next(e for e in events if type(e).__name__ == "ImagesShown").images, dtype=np.float32)
    previews = [event.preview for event in events if getattr(event, "preview", None) is not None]
    assert len(previews) == workflow.nodes["3"].inputs["steps"]
    last = np.asarray(previews[-1], dtype=np.float32)
    assert last.shape == images.shape == (1, 64, 64, 3)  # full size: decoded, not 8 x 8 factors
    assert np.abs(last - images).mean() < 0.02  # the last step's estimate is the saved image
    reading = read_image(last[0])  # the independent checker reads the colours the prompt names
    assert (reading.foreground, reading.background) == WORKFLOWS[name]


def test_a_run_nobody_watches_makes_no_previews(executor, monkeypatch):
    """Without an event listener no preview is decoded (it doubled a small txt2img's time)."""
    decoded = []
    original = VaePreview.__call__
    monkeypatch.setattr(VaePreview, "__call__", lambda self, latent: decoded.append(1) or original(self, latent))
    workflow = load_workflow(ROOT / "workflows" / "txt2img.json")
    workflow.nodes["3"].inputs["seed"] = 12345  # not cached by the test above
    executor.run(workflow)
    assert decoded == []
    workflow.nodes["3"].inputs["seed"] = 12346
    executor.run(workflow, on_event=lambda event: None)
    assert len(decoded) == workflow.nodes["3"].inputs["steps"]


def test_the_preview_decoder_undoes_the_latent_scale():
    decoded = []

    class Recorder:
        def decode(self, latent, auto_tile=True):
            decoded.append(latent)
            return torch.zeros(latent.shape[0], 8, 8, 3)

    preview = VaePreview(Recorder(), lambda z: z / 0.5, max_images=1)
    image = preview(torch.ones(3, 4, 1, 1))
    assert image.shape == (1, 8, 8, 3) and torch.equal(decoded[0], torch.full((1, 4, 1, 1), 2.0))


def test_only_tiny_vaes_preview_by_decoding():
    with torch.device("meta"):
        sd_vae = AutoencoderKL(VAEConfig())  # SD's: 84 M parameters
        tiny = AutoencoderKL(VAEConfig(ch=32, ch_mult=(1, 2, 2, 2), num_res_blocks=1))
    device = torch.device("meta")
    assert not small_enough_to_preview(VAE(sd_vae, 0.18215, device, torch.float32))
    assert small_enough_to_preview(VAE(tiny, 0.18215, device, torch.float32))
