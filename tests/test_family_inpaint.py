"""SD2 and SDXL 9-channel inpainting checkpoints inpaint through KSampler (issue 14): the model
gets its mask and masked-image latent channels from VAEEncodeForInpaint's latent or from
InpaintModelConditioning, the unmasked part of the image stays, the masked part changes."""

from __future__ import annotations

import pytest
import torch

from nodeflow.engine.context import RunContext
from nodeflow.loading.checkpoint import load_checkpoint
from nodeflow.sampling.ksampler import sample
from nodeflow_nodes.conditioning import clip_text_encode
from nodeflow_nodes.inpaint import inpaint_model_conditioning
from nodeflow_nodes.vae import vae_encode_for_inpaint
from tests.family_files import write_family_checkpoint


@pytest.mark.parametrize("family, kind", [("sd2", "sd2-inpaint"), ("sdxl", "sdxl-inpaint")])
@torch.no_grad()
def test_nine_channel_inpainting_model_samples_both_ways(tmp_path, family, kind):
    path, _ = write_family_checkpoint(tmp_path / "inpaint.safetensors", family, in_channels=9)
    loaded = load_checkpoint(path)
    assert loaded.kind == kind and loaded.model.in_channels == 9
    calls = []
    loaded.model.unet.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[1]))
    [positive] = clip_text_encode("a red house", loaded.clip, RunContext())
    [negative] = clip_text_encode("", loaded.clip, RunContext())
    generator = torch.Generator().manual_seed(0)
    pixels = torch.rand(1, 64, 64, 3, generator=generator)
    mask = torch.zeros(1, 64, 64)
    mask[:, 16:48, 16:48] = 1.0
    settings = dict(seed=1, steps=3, cfg=5.0, sampler_name="euler", scheduler="normal")

    [latent] = vae_encode_for_inpaint(pixels, loaded.vae, mask, 0)
    first = sample(loaded.model, positive=positive, negative=negative, latent=latent, **settings)["samples"]
    pos, neg, conditioned = inpaint_model_conditioning(positive, negative, loaded.vae, pixels, mask, True)
    second = sample(loaded.model, positive=pos, negative=neg, latent=conditioned, **settings)["samples"]

    assert set(calls) == {9}
    for result, source in ((first, latent["samples"]), (second, conditioned["samples"])):
        assert torch.isfinite(result).all()
        keep = torch.ones_like(result[:, :1])
        keep[:, :, 2:6, 2:6] = 0  # the latent cells the mask covers
        assert torch.allclose(result * keep, source * keep, atol=1e-5)  # outside the mask: the source
        assert not torch.allclose(result[:, :, 2:6, 2:6], source[:, :, 2:6, 2:6], atol=1e-3)
