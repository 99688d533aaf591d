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


def zero_eps_model(scale_factor=0.5):
    """D(x) = x: samplers leave x where it starts, so the output shows the start and the scaling."""
    from nodeflow.sampling.model import LatentFormat
    from tests.toy_models import ZeroUNet

    return toy_model(unet=ZeroUNet(), latent_format=LatentFormat(scale_factor=scale_factor))


def test_start_noise_and_latent_scaling_in_and_out():
    model = zero_eps_model(scale_factor=0.5)
    latent = torch.randn(1, 4, 8, 8)
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))  # seed 3's draw
    full = run(model, {"samples": latent}, seed=3, cfg=1.0)
    sigma_max = float(model.sampling.sigma_max)  # top of the schedule: noise * sqrt(1 + sigma^2)
    torch.testing.assert_close(full, latent + noise * (1 + sigma_max**2) ** 0.5 / 0.5, atol=1e-4, rtol=1e-6)
    partial = run(model, {"samples": latent}, seed=3, cfg=1.0, denoise=0.5)
    sigma0 = float(schedule(model, "euler", "normal", 10, denoise=0.5)[0])  # img2img: noise * sigma
    torch.testing.assert_close(partial, latent + noise * sigma0 / 0.5, atol=1e-5, rtol=1e-6)


def test_batch_index_picks_the_draws_of_the_whole_batch():
    model = zero_eps_model(scale_factor=1.0)
    generator = torch.Generator().manual_seed(5)
    draws = [torch.randn(1, 4, 8, 8, generator=generator) for _ in range(4)]  # images 0..3, one by one
    latent = {"samples": torch.zeros(2, 4, 8, 8), "batch_index": [3, 1]}
    out = run(model, latent, seed=5, cfg=1.0, denoise=0.5)
    sigma0 = float(schedule(model, "euler", "normal", 10, denoise=0.5)[0])
    torch.testing.assert_close(out, torch.cat([draws[3], draws[1]]) * sigma0, atol=1e-5, rtol=1e-6)


def test_denoise_zero_returns_the_input_and_odd_denoise_keeps_steps_plus_one():
    model = toy_model()
    latent = {"samples": torch.randn(1, 4, 8, 8)}
    assert torch.equal(run(model, latent, denoise=0.0), latent["samples"])
    sigmas = schedule(model, "euler", "normal", 10, denoise=0.3)  # int(10 / 0.3) = 33 steps, last 11
    longer = compute_sigmas(model.sampling, "normal", 33)
    assert len(sigmas) == 11 and float(sigmas[-1]) == 0.0 and len(longer) == 34 and float(sigmas[0]) == float(longer[23])


def test_progress_callback_and_cancel():
    model = toy_model()
    seen = []
    sample(model, seed=1, steps=4, cfg=2.0, sampler_name="euler", scheduler="normal", positive=cond(1.0),
           negative=cond(-1.0), latent={"samples": torch.zeros(1, 4, 8, 8)},
           callback=lambda step, total, denoised: seen.append((step, total, tuple(denoised.shape))))
    assert seen == [(i, 4, (1, 4, 8, 8)) for i in range(4)]

    class Stop(Exception):
        pass

    calls = []

    def check_cancel():
        calls.append(1)
        if len(calls) == 3:
            raise Stop

    try:
        sample(model, seed=1, steps=10, cfg=2.0, sampler_name="euler", scheduler="normal", positive=cond(1.0),
               negative=cond(-1.0), latent={"samples": torch.zeros(1, 4, 8, 8)}, check_cancel=check_cancel)
    except Stop:
        pass
    else:
        raise AssertionError("cancel did not stop sampling")
    assert len(calls) == 3 and model.unet.calls.count(2) == 4 + 2  # 4 earlier steps + 2 before the stop


def test_noise_mask_with_leftover_noise_keeps_the_noised_source_outside():
    model = zero_eps_model(scale_factor=1.0)
    source = torch.randn(1, 4, 8, 8)
    mask = torch.zeros(1, 8, 8)
    mask[..., 4:] = 1.0
    out = sample(model, seed=2, steps=10, cfg=1.0, sampler_name="euler", scheduler="normal",
                 positive=cond(1.0), negative=cond(-1.0), latent={"samples": source, "noise_mask": mask},
                 end_step=5, force_full_denoise=False)["samples"]
    sigma_end = float(schedule(model, "euler", "normal", 10)[5])
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(out[..., :4], (source + noise * sigma_end)[..., :4], atol=1e-5, rtol=1e-6)


def test_latent_preview_is_the_linear_projection():
    from nodeflow.sampling.latent_preview import SD1_RGB_FACTORS, latent_preview

    latent = torch.zeros(2, 4, 3, 5)
    latent[:, 1] = 1.0  # channel 1 only: rgb = its factor row
    latent[:, 3, 0, 0] = 10.0  # saturates
    preview = latent_preview(latent)
    assert preview.shape == (1, 3, 5, 3)
    expected = [(f + 1) / 2 for f in SD1_RGB_FACTORS[1]]
    torch.testing.assert_close(preview[0, 2, 4], torch.tensor(expected))
    assert float(preview.min()) >= 0.0 and float(preview.max()) <= 1.0


def test_whole_run_equals_k_diffusion_with_a_hand_written_cfg_denoiser():
    """img2img at denoise 0.6 with karras sigmas, CFG 6, batch of 2, Euler and Euler ancestral,
    against k-diffusion's samplers and get_sigmas_karras driving a CFG function written here."""
    from tests.kdiffusion_ref import load_sampling

    k = load_sampling()
    model = toy_model()
    source = torch.randn(2, 4, 8, 8)
    positive, negative = cond(1.0), cond(-0.5)

    def reference_denoiser(x, sigma):
        c = model.predict_denoised(x, sigma, torch.full((2, 77, 8), 1.0))
        u = model.predict_denoised(x, sigma, torch.full((2, 77, 8), -0.5))
        return u + (c - u) * 6.0

    table = model.sampling.sigmas
    sigmas = k.get_sigmas_karras(int(8 / 0.6), float(table[0]), float(table[-1]))[-9:]
    for sampler_name in ("euler", "euler_ancestral"):
        ours = run(model, {"samples": source}, seed=11, steps=8, cfg=6.0, sampler_name=sampler_name,
                   scheduler="karras", positive=positive, negative=negative, denoise=0.6)
        noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(11))
        x = source * 0.18215 + noise * sigmas[0]
        if sampler_name == "euler":
            x = k.sample_euler(reference_denoiser, x, sigmas, disable=True)
        else:
            generator = torch.Generator().manual_seed(12)  # ancestral noise: seed + 1
            x = k.sample_euler_ancestral(reference_denoiser, x, sigmas, disable=True,
                                         noise_sampler=lambda s, t: torch.randn(x.shape, generator=generator))
        torch.testing.assert_close(ours, x / 0.18215, atol=2e-5, rtol=1e-5)
