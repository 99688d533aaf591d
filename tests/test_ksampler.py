"""KSampler semantics: denoise truncation, advanced start/end, noise masks, seeds."""

import torch

from nodeflow.sampling.ksampler import sample, schedule
from nodeflow.sampling.schedulers import compute_sigmas
from tests.toy_models import cond, toy_model


def run(model, latent, **changes):
    settings = dict(seed=1, steps=10, cfg=5.0, sampler_name="euler", scheduler="normal",
                    positive=cond(1.0), negative=cond(-1.0), latent=latent)
    return sample(model, **(settings | changes))["samples"]


def test_denoise_keeps_the_tail_of_a_longer_schedule():
    model = toy_model()
    full = compute_sigmas(model.sampling, "karras", 20)
    assert torch.equal(schedule(model, "euler", "karras", 10, denoise=0.5), full[-11:])
    assert len(schedule(model, "euler", "karras", 10, denoise=0.0)) == 0


def test_dpm_2_drops_the_penultimate_sigma():
    model = toy_model()
    longer = compute_sigmas(model.sampling, "karras", 11)
    got = schedule(model, "dpm_2", "karras", 10)
    assert torch.equal(got, torch.cat([longer[:-2], longer[-1:]]))


def test_same_seed_same_latent_and_seed_matters():
    model = toy_model()
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    a = run(model, latent, sampler_name="euler_ancestral")
    assert torch.equal(a, run(model, latent, sampler_name="euler_ancestral"))
    assert not torch.allclose(a, run(model, latent, sampler_name="euler_ancestral", seed=2))


def test_advanced_split_with_leftover_noise_equals_one_run():
    model = toy_model()
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    whole = run(model, latent)
    first = sample(model, seed=1, steps=10, cfg=5.0, sampler_name="euler", scheduler="normal",
                   positive=cond(1.0), negative=cond(-1.0), latent=latent, start_step=0,
                   end_step=4, force_full_denoise=False)
    second = sample(model, seed=1, steps=10, cfg=5.0, sampler_name="euler", scheduler="normal",
                    positive=cond(1.0), negative=cond(-1.0), latent=first, add_noise=False,
                    start_step=4, end_step=10000)
    assert torch.allclose(second["samples"], whole, atol=1e-5)


def test_start_past_the_end_returns_the_input():
    model = toy_model()
    latent = {"samples": torch.ones(1, 4, 8, 8)}
    out = sample(model, seed=1, steps=5, cfg=1.0, sampler_name="euler", scheduler="normal",
                 positive=cond(1.0), negative=cond(-1.0), latent=latent, start_step=5)
    assert torch.equal(out["samples"], latent["samples"])


def test_noise_mask_keeps_the_unmasked_region():
    model = toy_model()
    source = torch.randn(1, 4, 8, 8)
    mask = torch.zeros(64, 64)
    mask[:, 32:] = 1.0  # repaint the right half (pixels)
    out = run(model, {"samples": source, "noise_mask": mask}, denoise=0.8)
    assert torch.allclose(out[..., :3], source[..., :3], atol=1e-5)
    assert not torch.allclose(out[..., 6:], source[..., 6:], atol=1e-2)


def test_img2img_starts_from_the_noised_latent():
    model = toy_model()
    source = torch.randn(1, 4, 8, 8)
    low = run(model, {"samples": source}, denoise=0.05, cfg=1.0)
    high = run(model, {"samples": source}, denoise=1.0, cfg=1.0)
    assert (low - source).abs().mean() < (high - source).abs().mean()


def test_input_latent_is_not_modified():
    model = toy_model()
    latent = {"samples": torch.zeros(1, 4, 8, 8), "batch_index": [0]}
    before = latent["samples"].clone()
    out = sample(model, seed=1, steps=3, cfg=2.0, sampler_name="euler", scheduler="normal",
                 positive=cond(1.0), negative=cond(-1.0), latent=latent)
    assert torch.equal(latent["samples"], before) and out["batch_index"] == [0]
