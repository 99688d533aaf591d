"""Classifier-free guidance and the combination of conditioning entries."""

import torch

from nodeflow.sampling.guidance import CFGDenoiser
from tests.toy_models import cond, toy_model


def test_cfg_formula_and_one_batched_forward():
    model = toy_model()
    x = torch.randn(2, 4, 8, 8)
    sigma = torch.full((2,), 3.0)
    guided = CFGDenoiser(model, cond(1.0), cond(-1.0), cfg=7.5)
    out = guided(x, sigma)
    positive = model.predict_denoised(x, sigma, torch.full((2, 77, 8), 1.0))
    negative = model.predict_denoised(x, sigma, torch.full((2, 77, 8), -1.0))
    assert torch.allclose(out, negative + (positive - negative) * 7.5, atol=1e-5)
    assert guided.calls == 1 and model.unet.calls[0] == 4  # cond and uncond in one batch


def test_cfg_one_skips_the_negative():
    model = toy_model()
    guided = CFGDenoiser(model, cond(1.0), cond(-1.0), cfg=1.0)
    x, sigma = torch.randn(1, 4, 8, 8), torch.full((1,), 2.0)
    out = guided(x, sigma)
    assert guided.calls == 1 and model.unet.calls == [1]
    assert torch.allclose(out, model.predict_denoised(x, sigma, torch.full((1, 77, 8), 1.0)))


def test_different_context_lengths_run_separately_and_combine():
    model = toy_model()
    guided = CFGDenoiser(model, cond(1.0, tokens=154), cond(-1.0), cfg=2.0)
    guided(torch.randn(1, 4, 8, 8), torch.full((1,), 2.0))
    assert guided.calls == 2


def test_area_entries_are_weighted_with_feathered_borders():
    model = toy_model()
    x, sigma = torch.randn(1, 4, 32, 32), torch.full((1,), 1.5)
    whole = cond(0.0)
    left = cond(2.0, area=(32, 16, 0, 0), strength=1.0)
    guided = CFGDenoiser(model, whole + left, cond(0.0), cfg=1.0)
    out = guided(x, sigma)
    d_whole = model.predict_denoised(x, sigma, torch.zeros(1, 77, 8))
    d_left = model.predict_denoised(x[:, :, :, :16], sigma, torch.full((1, 77, 8), 2.0))
    # the left area's inner border (x = 15) is ramped to 1/8, x = 0..7 inside: full weight
    w = 1.0 / 8
    expected_border = (d_whole[..., 15] + d_left[..., 15] * w) / (1 + w)
    assert torch.allclose(out[..., 15], expected_border, atol=1e-5)
    assert torch.allclose(out[..., 3], (d_whole[..., 3] + d_left[..., 3]) / 2, atol=1e-5)
    assert torch.allclose(out[..., 20], d_whole[..., 20], atol=1e-5)


def test_mask_entries_weight_by_mask_and_strength():
    model = toy_model()
    x, sigma = torch.randn(1, 4, 8, 8), torch.full((1,), 1.0)
    mask = torch.zeros(1, 64, 64)
    mask[:, :, :32] = 1.0  # left half, in pixels
    guided = CFGDenoiser(model, cond(0.0) + cond(3.0, mask=mask, mask_strength=1.0, strength=0.5),
                         cond(0.0), cfg=1.0)
    out = guided(x, sigma)
    d0 = model.predict_denoised(x, sigma, torch.zeros(1, 77, 8))
    d3 = model.predict_denoised(x, sigma, torch.full((1, 77, 8), 3.0))
    assert torch.allclose(out[..., 1], (d0[..., 1] + 0.5 * d3[..., 1]) / 1.5, atol=1e-5)
    assert torch.allclose(out[..., 6], d0[..., 6], atol=1e-5)


def test_timestep_range_switches_entries():
    model = toy_model()
    late_only = cond(5.0, timestep_start=0.5, timestep_end=1.0)
    guided = CFGDenoiser(model, cond(0.0) + late_only, cond(0.0), cfg=1.0)
    x = torch.randn(1, 4, 4, 4)
    early, late = torch.full((1,), 14.0), torch.full((1,), 0.1)
    d0_early = model.predict_denoised(x, early, torch.zeros(1, 77, 8))
    assert torch.allclose(guided(x, early), d0_early, atol=1e-6)  # only the first entry
    d0_late = model.predict_denoised(x, late, torch.zeros(1, 77, 8))
    assert not torch.allclose(guided(x, late), d0_late, atol=1e-4)
