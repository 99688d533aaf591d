"""Live-preview factors fitted to the embedded models' own VAE (nodeflow.training.preview_factors)."""

from __future__ import annotations

import json

import pytest
import torch

from nodeflow.errors import ModelFileError
from nodeflow.loading.checkpoint import META_LATENT_RGB, load_checkpoint, preview_factors
from nodeflow.runtime.paths import project_assets_dir
from nodeflow.sampling.latent_preview import SD1_RGB_FACTORS, latent_preview
from nodeflow.training.preview_factors import fit_factors, shape_images

EMBEDDED = ("nodeflow-tiny.safetensors", "nodeflow-tiny-xl.safetensors")


class LinearVAE(torch.nn.Module):
    """encode: each 8 x 8 block's mean colour through a fixed 4 x 3 map plus an offset."""

    def __init__(self):
        super().__init__()
        self.map = torch.tensor([[1.0, 0.5, 0.0], [0.0, 1.0, -1.0], [0.3, 0.0, 2.0], [-1.0, 1.0, 1.0]])
        self.offset = torch.tensor([0.1, -0.2, 0.3, 0.0])

    def encode(self, images):
        pooled = torch.nn.functional.avg_pool2d(images, 8)  # (B, 3, h, w)
        return torch.einsum("ck,bkhw->bchw", self.map, pooled) + self.offset.view(1, 4, 1, 1)


def test_fit_recovers_an_exactly_linear_vae():
    images = torch.rand(6, 3, 32, 32) * 2 - 1
    vae = LinearVAE()
    fitted = fit_factors(vae, 0.5, images)
    latents = vae.encode(images) * 0.5
    preview = latent_preview(latents, fitted["factors"], fitted["bias"], max_images=6)  # 0..1
    expected = (torch.nn.functional.avg_pool2d(images, 8).permute(0, 2, 3, 1) + 1) / 2
    assert torch.allclose(preview, expected.clamp(0, 1), atol=2e-3)


@pytest.mark.parametrize("name", EMBEDDED)
def test_embedded_models_carry_fitted_factors_that_draw_their_colours_better(name):
    checkpoint = load_checkpoint(project_assets_dir() / name, device="cpu", dtype="fp32")
    stored = json.loads(checkpoint.metadata[META_LATENT_RGB])
    form = checkpoint.model.latent_format
    assert form.rgb_factors == tuple(tuple(row) for row in stored["factors"]) and form.rgb_bias == tuple(stored["bias"])
    images = shape_images(count=64, seed=7)  # not the images the factors were fitted on
    with torch.no_grad():
        latents = checkpoint.vae.model.encode(images) * form.scale_factor
    target = (torch.nn.functional.avg_pool2d(images, 8).permute(0, 2, 3, 1) + 1) / 2

    def error(factors, bias):
        return float(((latent_preview(latents, factors, bias, max_images=64) - target) ** 2).mean().sqrt())

    fitted, default = error(form.rgb_factors, form.rgb_bias), error(SD1_RGB_FACTORS, None)
    assert fitted < 0.75 * default, (fitted, default)


def test_unreadable_factors_name_the_file(tmp_path):
    path = tmp_path / "model.safetensors"
    with pytest.raises(ModelFileError, match="model.safetensors"):
        preview_factors(path, "{not json")
    with pytest.raises(ModelFileError, match="4 x 3"):
        preview_factors(path, json.dumps({"factors": [[1, 2, 3]], "bias": [0, 0, 0]}))
