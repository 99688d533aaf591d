"""APG (a pre-guidance model patch) and PerpNegGuider (issue 15), against their formulas written
out here independently (per image, with numpy), through the guiders and a sampler."""

from __future__ import annotations

import numpy as np
import torch

from nodeflow.engine.context import RunContext
from nodeflow.sampling.perp_neg import perp_neg
from nodeflow_nodes import custom_sampling as nodes
from nodeflow_nodes.model_advanced import adaptive_projected_guidance, rescale_cfg
from tests.toy_models import ToyUNet, cond, toy_model


def apg_reference(cond_d, uncond_d, cfg, eta, threshold, momentum, average=None):
    """ComfyUI's APG pre-CFG step per image in float64 numpy; returns (modified cond, new average)."""
    c, u = cond_d.double().numpy(), uncond_d.double().numpy()
    g = c - u
    if momentum != 0:
        g = g if average is None else momentum * average + g
        average = g
    out = np.empty_like(c)
    for b in range(len(c)):
        gb = g[b]
        if threshold > 0:
            gb = gb * min(1.0, threshold / np.sqrt((gb ** 2).sum()))
        unit = c[b] / np.sqrt((c[b] ** 2).sum())
        parallel = (gb * unit).sum() * unit
        out[b] = u[b] + (gb - parallel) + eta * parallel + (c[b] - u[b]) / cfg
    return torch.from_numpy(out).float(), average


def estimates(seed=0, shape=(2, 4, 6, 6)):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=generator) for _ in range(3))


def test_apg_is_comfyuis_pre_cfg_step_with_momentum_kept_per_run_and_reset_when_sigma_rises():
    model = toy_model()
    [patched] = adaptive_projected_guidance(model, 0.3, 2.0, 0.6)
    x, c, u = estimates()
    state, average = {}, None
    for sigma in (5.0, 2.0, 0.5):  # one run
        got = patched.guide(x, torch.tensor([sigma, sigma]), c, u, 4.0, run_state=state)
        expected_cond, average = apg_reference(c, u, 4.0, 0.3, 2.0, 0.6, average)
        assert torch.allclose(got, u + (expected_cond - u) * 4.0, atol=1e-5)
    restarted = patched.guide(x, torch.tensor([5.0, 5.0]), c, u, 4.0, run_state=state)  # sigma rose: reset
    fresh = patched.guide(x, torch.tensor([5.0, 5.0]), c, u, 4.0, run_state={})
    assert torch.equal(restarted, fresh)
    assert not torch.allclose(fresh, u + (c - u) * 4.0, atol=1e-3)
    assert model.pre_guidance == () and len(patched.pre_guidance) == 1


def test_apg_without_threshold_or_momentum_and_eta_1_adds_one_guidance_to_cfg():
    """ComfyUI's formulation: uncond + cfg g' + g, so eta 1 (g' = g) gives CFG at cfg + 1."""
    [patched] = adaptive_projected_guidance(toy_model(), 1.0, 0.0, 0.0)
    x, c, u = estimates(1)
    got = patched.guide(x, torch.tensor([1.0, 1.0]), c, u, 3.0)
    assert torch.allclose(got, u + (c - u) * 4.0, atol=1e-5)


def test_apg_composes_with_rescale_cfg_and_applies_before_it():
    model = toy_model()
    [apg] = adaptive_projected_guidance(model, 0.5, 1.0, 0.0)
    [both] = rescale_cfg(apg, 0.7)
    x, c, u = estimates(2)
    sigma = torch.tensor([2.0, 2.0])
    modified, _ = apg_reference(c, u, 5.0, 0.5, 1.0, 0.0)
    expected = rescale_cfg(model, 0.7)[0].guide(x, sigma, modified, u, 5.0)
    assert torch.allclose(both.guide(x, sigma, c, u, 5.0), expected, atol=1e-5)


def run_custom(guider, seed=3, steps=4):
    [noise] = nodes.random_noise(seed)
    [sampler] = nodes.ksampler_select("euler")
    [sigmas] = nodes.basic_scheduler(guider.model, "karras", steps, 1.0)
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    return nodes.sampler_custom_advanced(noise, guider, sampler, sigmas, latent, RunContext())[0]["samples"]


def test_apg_in_a_sampling_run_is_reproducible_and_skipped_by_the_basic_guider():
    model = toy_model()
    [patched] = adaptive_projected_guidance(model, 0.0, 1.0, 0.5)
    [guider] = nodes.cfg_guider(patched, cond(1.0), cond(-1.0), 6.0)
    first, second = run_custom(guider), run_custom(guider)
    assert torch.equal(first, second)  # the running average starts afresh every run
    assert not torch.allclose(first, run_custom(nodes.cfg_guider(model, cond(1.0), cond(-1.0), 6.0)[0]), atol=1e-4)
    # one list only: ComfyUI's APG leaves it alone
    basic, plain = nodes.basic_guider(patched, cond(1.0))[0], nodes.basic_guider(model, cond(1.0))[0]
    assert torch.equal(run_custom(basic), run_custom(plain))


def test_perp_neg_is_the_papers_combination_over_the_whole_batch():
    p, n, e = estimates(4)
    pos, neg = (p - e).double().numpy().ravel(), (n - e).double().numpy().ravel()
    perpendicular = neg - pos.dot(neg) / pos.dot(pos) * pos
    expected = e.double().numpy().ravel() + 7.0 * (pos - 0.8 * perpendicular)
    assert np.allclose(perp_neg(p, n, e, 0.8, 7.0).double().numpy().ravel(), expected, atol=1e-5)
    # a negative parallel to the positive is not pushed away from at all
    assert torch.allclose(perp_neg(p, e + 2 * (p - e), e, 1.0, 7.0), e + 7.0 * (p - e), atol=1e-4)


def test_perp_neg_guider_predicts_the_three_prompts_in_one_batch_and_combines_them():
    unet = ToyUNet()
    model = toy_model(unet=unet)
    x, sigma = torch.randn(1, 4, 8, 8), torch.tensor([3.0])
    positive, negative, empty = cond(1.0), cond(-1.0), cond(0.2)

    def alone(conditioning):
        return nodes.basic_guider(model, conditioning)[0].denoiser()(x, sigma)

    p, n, e = alone(positive), alone(negative), alone(empty)
    [guider] = nodes.perp_neg_guider(model, positive, negative, empty, 6.0, 0.7)
    unet.calls.clear()
    got = guider.denoiser()(x, sigma)
    assert unet.calls == [3]
    assert torch.allclose(got, perp_neg(p, n, e, 0.7, 6.0), atol=1e-5)
    # neg_scale 0 skips the negative (zeros, as ComfyUI); with cfg 1 too, the empty prompt
    unet.calls.clear()
    skipped = nodes.perp_neg_guider(model, positive, negative, empty, 6.0, 0.0)[0].denoiser()(x, sigma)
    assert unet.calls == [2] and torch.allclose(skipped, e + 6.0 * (p - e), atol=1e-5)
    unet.calls.clear()
    nodes.perp_neg_guider(model, positive, negative, empty, 1.0, 0.0)[0].denoiser()(x, sigma)
    assert unet.calls == [1]


def test_perp_neg_guider_runs_the_models_patches_and_a_cfg_pp_sampler():
    model = toy_model()
    [patched] = adaptive_projected_guidance(model, 0.5, 1.0, 0.0)
    positive, negative, empty = cond(1.0), cond(-1.0), cond(0.2)
    [plain] = nodes.perp_neg_guider(model, positive, negative, empty, 5.0, 1.0)
    [with_apg] = nodes.perp_neg_guider(patched, positive, negative, empty, 5.0, 1.0)
    x, sigma = torch.randn(1, 4, 8, 8), torch.tensor([2.0])
    p = nodes.basic_guider(model, positive)[0].denoiser()(x, sigma)
    n = nodes.basic_guider(model, negative)[0].denoiser()(x, sigma)
    e = nodes.basic_guider(model, empty)[0].denoiser()(x, sigma)
    modified, _ = apg_reference(p, n, 5.0, 0.5, 1.0, 0.0)
    assert torch.allclose(with_apg.denoiser()(x, sigma), perp_neg(modified, n, e, 1.0, 5.0), atol=1e-5)
    assert not torch.allclose(with_apg.denoiser()(x, sigma), plain.denoiser()(x, sigma), atol=1e-4)
    [noise] = nodes.random_noise(1)
    [sampler] = nodes.ksampler_select("euler_cfg_pp")
    [sigmas] = nodes.basic_scheduler(model, "normal", 3, 1.0)
    out = nodes.sampler_custom_advanced(noise, plain, sampler, sigmas, {"samples": torch.zeros(1, 4, 8, 8)},
                                        RunContext())[0]["samples"]
    assert torch.isfinite(out).all() and out.abs().sum() > 0
