"""CFG++ samplers read the guidance's unconditional estimate (ComfyUI's *_cfg_pp): the KSampler
hands them the CFG denoiser's record, computed even at cfg 1. Without guidance (U = D) they are
their plain samplers, which test_samplers checks against the exact ODE and data statistics."""

from __future__ import annotations

import torch

from nodeflow.sampling.guidance import CFGDenoiser
from nodeflow.sampling.ksampler import sample, schedule
from nodeflow.sampling.noise import initial_noise
from tests.toy_models import cond, toy_model

LATENT = {"samples": torch.zeros(1, 4, 8, 8)}


def run(name: str, cfg: float) -> torch.Tensor:
    return sample(toy_model(), seed=3, steps=2, cfg=cfg, sampler_name=name, scheduler="normal",
                  positive=cond(1.0), negative=cond(-1.0), latent=LATENT)["samples"]


def test_euler_cfg_pp_steps_from_the_guided_estimate_along_the_unconditional_one():
    model = toy_model()
    sigmas = schedule(model, "euler_cfg_pp", "normal", 2)
    denoiser = CFGDenoiser(model, cond(1.0), cond(-1.0), 4.0)
    x = initial_noise((1, 4, 8, 8), 3) * (1 + sigmas[0] ** 2) ** 0.5

    def estimates(x, sigma):
        c, u = denoiser.predict(x, sigma.reshape(1), denoiser.entries(8, 8))
        return u + (c - u) * 4.0, u

    guided, unconditional = estimates(x, sigmas[0])
    x = guided + sigmas[1] * (x - unconditional) / sigmas[0]
    expected = estimates(x, sigmas[1])[0]  # the step to 0 returns D
    got = run("euler_cfg_pp", 4.0)
    assert torch.allclose(got, model.latent_format.process_out(expected), atol=1e-5)
    assert not torch.allclose(got, run("euler", 4.0), atol=1e-3)


def test_at_cfg_1_the_unconditional_estimate_is_still_computed():
    model = toy_model()
    sample(model, seed=3, steps=2, cfg=1.0, sampler_name="euler_cfg_pp", scheduler="normal",
           positive=cond(1.0), negative=cond(-1.0), latent=LATENT)
    assert model.unet.calls == [2, 2]  # cond and uncond in one batch, both steps
    plain = toy_model()
    sample(plain, seed=3, steps=2, cfg=1.0, sampler_name="euler", scheduler="normal",
           positive=cond(1.0), negative=cond(-1.0), latent=LATENT)
    assert plain.unet.calls == [1, 1]
    assert not torch.allclose(run("euler_cfg_pp", 1.0), run("euler", 1.0), atol=1e-4)


def test_every_cfg_pp_sampler_runs_through_the_ksampler_and_differs_from_its_plain_form():
    for name, plain in [("euler_ancestral_cfg_pp", "euler_ancestral"), ("dpmpp_2m_cfg_pp", "dpmpp_2m"),
                        ("dpmpp_2s_ancestral_cfg_pp", "dpmpp_2s_ancestral"), ("res_multistep_cfg_pp", "res_multistep"),
                        ("res_multistep_ancestral_cfg_pp", "res_multistep_ancestral"),
                        ("gradient_estimation_cfg_pp", "gradient_estimation")]:
        got = run(name, 3.0)
        assert torch.isfinite(got).all(), name
        assert not torch.allclose(got, run(plain, 3.0), atol=1e-4), name
