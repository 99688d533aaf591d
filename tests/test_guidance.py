"""Classifier-free guidance and the combination of conditioning entries, against hand computation.

Every expected value is built here from single ``predict_denoised`` calls on the toy model and
weight maps written out by hand (ComfyUI's rules: strength x mask, or strength with feathered
inner borders over min(8, size // 4) pixels; sum of weighted predictions / sum of weights).
"""

import pytest
import torch

from nodeflow.sampling.conditioning import mask_bounds, resize_mask
from nodeflow.sampling.guidance import CFGDenoiser, is_out_of_memory
from nodeflow.sampling.samplers import SAMPLERS
from nodeflow.sampling.schedulers import karras
from tests.toy_models import ConstantHook, ToyUNet, cond, context, toy_model


def predict(model, x, sigma, value, area=None, tokens=77):
    """D on the crop ``area`` (h, w, y, x) for a constant context ``value``."""
    if area is not None:
        h, w, y, x0 = area
        x = x[:, :, y:y + h, x0:x0 + w]
    return model.predict_denoised(x, sigma, context(value, x.shape[0], tokens))


def test_cfg_formula_and_one_batched_forward():
    model = toy_model()
    x, sigma = torch.randn(2, 4, 8, 8), torch.full((2,), 3.0)
    guided = CFGDenoiser(model, cond(1.0), cond(-1.0), cfg=7.5)
    out = guided(x, sigma)
    positive, negative = predict(model, x, sigma, 1.0), predict(model, x, sigma, -1.0)
    torch.testing.assert_close(out, negative + (positive - negative) * 7.5, atol=1e-5, rtol=0)
    assert guided.calls == 1 and model.unet.calls[0] == 4  # cond and uncond in one batch of 2 x 2


def test_cfg_one_skips_the_negative():
    model = toy_model()
    guided = CFGDenoiser(model, cond(1.0), cond(-1.0), cfg=1.0)
    x, sigma = torch.randn(1, 4, 8, 8), torch.full((1,), 2.0)
    out = guided(x, sigma)
    assert guided.calls == 1 and model.unet.calls == [1]
    torch.testing.assert_close(out, predict(model, x, sigma, 1.0))


def test_77_and_154_tokens_batch_together_by_repetition():
    model = toy_model()
    x, sigma = torch.randn(1, 4, 8, 8), torch.full((1,), 2.0)
    guided = CFGDenoiser(model, cond(1.0, tokens=154), cond(-1.0), cfg=2.0)
    out = guided(x, sigma)
    assert guided.calls == 1 and model.unet.calls == [2]
    positive, negative = predict(model, x, sigma, 1.0, tokens=154), predict(model, x, sigma, -1.0)
    torch.testing.assert_close(out, negative + (positive - negative) * 2.0, atol=1e-5, rtol=0)


def test_lengths_too_far_apart_run_separately():
    model = toy_model()
    guided = CFGDenoiser(model, cond(1.0, tokens=77 * 5), cond(-1.0), cfg=2.0)
    guided(torch.randn(1, 4, 8, 8), torch.full((1,), 2.0))
    assert guided.calls == 2  # lcm / 77 = 5 > 4: ComfyUI does not pad that far


def feathered(h, w, rows_ramp_start, rows_ramp_end, cols_ramp_start, cols_ramp_end, strength=1.0):
    """The weight map of a plain area, written out with explicit loops."""
    weight = torch.full((h, w), strength)
    sides = ((h, rows_ramp_start, rows_ramp_end, 0), (w, cols_ramp_start, cols_ramp_end, 1))
    for size, at_start, at_end, axis in sides:
        r = min(8, size // 4)
        for t in range(r):
            f = (t + 1) / r
            index_start, index_end = t, size - 1 - t
            if axis == 0:
                if at_start:
                    weight[index_start, :] *= f
                if at_end:
                    weight[index_end, :] *= f
            else:
                if at_start:
                    weight[:, index_start] *= f
                if at_end:
                    weight[:, index_end] *= f
    return weight


def test_area_entry_weighted_with_feathered_inner_borders():
    model = toy_model()
    x, sigma = torch.randn(1, 4, 32, 40), torch.full((1,), 1.5)
    area = (20, 16, 4, 8)  # h, w, y, x: all four borders inside the latent
    guided = CFGDenoiser(model, cond(0.0) + cond(2.0, area=area, strength=0.7), cond(0.0), cfg=1.0)
    out = guided(x, sigma)
    weight = feathered(20, 16, True, True, True, True, strength=0.7)  # ramps of 5 rows, 4 columns
    assert abs(float(weight[0, 8]) - 0.7 / 5) < 1e-7 and abs(float(weight[10, 0]) - 0.7 / 4) < 1e-7
    d_whole, d_area = predict(model, x, sigma, 0.0), predict(model, x, sigma, 2.0, area)
    expected = d_whole.clone()
    inside = d_whole[:, :, 4:24, 8:24]
    expected[:, :, 4:24, 8:24] = (inside + d_area * weight) / (1 + weight)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_area_at_the_edge_is_clipped_and_not_feathered_there():
    model = toy_model()
    x, sigma = torch.randn(1, 4, 16, 16), torch.full((1,), 1.5)
    guided = CFGDenoiser(model, cond(3.0, area=(64, 10, 0, 8)), cond(0.0), cfg=1.0)
    out = guided(x, sigma)
    # clipped to (16, 8, 0, 8); only its left border is inside: ramp over min(8, 8 // 4) = 2
    d = predict(model, x, sigma, 3.0, (16, 8, 0, 8))
    torch.testing.assert_close(out[..., 8:], d, atol=1e-5, rtol=0)  # sole entry: weights cancel
    assert torch.all(out[..., :8] == 0)  # no entry covers the left half: ComfyUI predicts 0 there


def test_negative_gets_an_entry_on_the_positive_area():
    """ComfyUI adds, for a positive area without an equal negative one, a negative entry on that
    area with the smallest enclosing negative entry's context."""
    model = toy_model()
    x, sigma = torch.randn(1, 4, 16, 16), torch.full((1,), 2.0)
    area = (8, 8, 0, 0)
    guided = CFGDenoiser(model, cond(0.5) + cond(2.0, area=area), cond(-1.0), cfg=3.0)
    positive, negative = guided.entries(16, 16)
    assert len(negative) == 2 and negative[1].area == area and float(negative[1].context.mean()) == -1.0
    out = guided(x, sigma)
    weight = feathered(8, 8, False, True, False, True)
    cond_full, cond_area = predict(model, x, sigma, 0.5), predict(model, x, sigma, 2.0, area)
    unc_full, unc_area = predict(model, x, sigma, -1.0), predict(model, x, sigma, -1.0, area)
    c, u = cond_full.clone(), unc_full.clone()
    c[:, :, :8, :8] = (cond_full[:, :, :8, :8] + cond_area * weight) / (1 + weight)
    u[:, :, :8, :8] = (unc_full[:, :, :8, :8] + unc_area * weight) / (1 + weight)
    torch.testing.assert_close(out, u + (c - u) * 3.0, atol=1e-5, rtol=0)


def test_mask_entries_weight_by_mask_strength_and_strength():
    model = toy_model()
    x, sigma = torch.randn(1, 4, 8, 8), torch.full((1,), 1.0)
    mask = torch.zeros(1, 64, 64)
    mask[:, :, :32] = 1.0  # left half, in pixels: columns 0..3 of the latent exactly
    masked = cond(3.0, mask=mask, mask_strength=2.0, strength=0.25)
    guided = CFGDenoiser(model, cond(0.0) + masked, cond(0.0), cfg=1.0)
    out = guided(x, sigma)
    d0, d3 = predict(model, x, sigma, 0.0), predict(model, x, sigma, 3.0)
    torch.testing.assert_close(out[..., :4], (d0[..., :4] + 0.5 * d3[..., :4]) / 1.5, atol=1e-5, rtol=0)
    torch.testing.assert_close(out[..., 4:], d0[..., 4:], atol=1e-5, rtol=0)


def test_mask_resized_bilinearly_and_bounds_at_least_8():
    mask = torch.zeros(1, 4, 4)
    mask[0, 1, 2] = 1.0
    resized = resize_mask(mask, 8, 8)
    assert resized.shape == (1, 8, 8)
    torch.testing.assert_close(resized, torch.nn.functional.interpolate(
        mask[:, None], size=(8, 8), mode="bilinear", align_corners=False)[:, 0])
    small = torch.zeros(2, 32, 32)
    small[0, 3:6, 4:20] = 1.0
    small[1, 10, 25] = -0.5  # the bounds cover the whole batch, |mask| != 0
    assert mask_bounds(small) == (8, 22, 3, 4)  # rows 3..10 (8), columns 4..25 (22)
    assert mask_bounds(torch.zeros(1, 16, 16)) == (8, 8, 0, 0)


def test_mask_bounds_area_crops_the_forward():
    model = toy_model()
    x, sigma = torch.randn(1, 4, 32, 32), torch.full((1,), 1.0)
    mask = torch.zeros(1, 32, 32)
    mask[:, 4:20, 8:18] = 1.0
    entry = cond(2.0, mask=mask, set_area_to_bounds=True)
    guided = CFGDenoiser(model, cond(0.0) + entry, cond(0.0), cfg=1.0)
    out = guided(x, sigma)
    area = (16, 10, 4, 8)
    d0, d2 = predict(model, x, sigma, 0.0), predict(model, x, sigma, 2.0, area)
    torch.testing.assert_close(out[:, :, 4:20, 8:18], (d0[:, :, 4:20, 8:18] + d2) / 2, atol=1e-5, rtol=0)
    assert guided.calls == 2 and model.unet.shapes[:2] == [(1, 4, 32, 32), (1, 4, 16, 10)]


def test_timestep_range_switches_entries_at_the_percent_sigma():
    model = toy_model()
    boundary = model.sampling.percent_to_sigma(0.5)
    late_only = cond(5.0, timestep_start=0.5, timestep_end=1.0)
    guided = CFGDenoiser(model, cond(0.0) + late_only, cond(0.0), cfg=1.0)
    x = torch.randn(1, 4, 4, 4)
    before, after = torch.tensor([boundary * 1.01]), torch.tensor([boundary * 0.99])
    torch.testing.assert_close(guided(x, before), predict(model, x, before, 0.0), atol=1e-6, rtol=0)
    expected = (predict(model, x, after, 0.0) + predict(model, x, after, 5.0)) / 2
    torch.testing.assert_close(guided(x, after), expected, atol=1e-6, rtol=0)


def test_entries_are_not_modified():
    positive = cond(1.0, area=(4, 4, 0, 0), mask=torch.ones(1, 8, 8), set_area_to_bounds=True)
    before = dict(positive[0][1])
    CFGDenoiser(toy_model(), positive, cond(0.0), cfg=2.0)(torch.randn(1, 4, 8, 8), torch.full((1,), 1.0))
    assert positive[0][1].keys() == before.keys() and positive[0][1]["area"] == (4, 4, 0, 0)


def control_effect(hook, sigma_value):
    """Guided output minus the output without control: the residual the toy U-Net adds."""
    model = toy_model()
    x, sigma = torch.randn(1, 4, 4, 4), torch.tensor([sigma_value])
    with_hook = CFGDenoiser(model, cond(1.0, control=hook), cond(0.0), cfg=1.0)(x, sigma)
    plain = CFGDenoiser(model, cond(1.0), cond(0.0), cfg=1.0)(x, sigma)
    # eps gains the residual; denoised = x - sigma * eps
    return float(((plain - with_hook) / sigma_value).mean())


def test_control_hooks_strength_range_and_stacking():
    assert abs(control_effect(ConstantHook(0.3, strength=0.5), 2.0) - 0.15) < 1e-5
    first = ConstantHook(0.3, strength=0.5)
    second = ConstantHook(-0.05, strength=2.0, previous=first)
    assert abs(control_effect(second, 2.0) - (0.15 - 0.1)) < 1e-5  # chained hooks add up
    model = toy_model()
    middle = model.sampling.percent_to_sigma(0.5)
    late = ConstantHook(1.0, start_percent=0.5, end_percent=1.0)
    assert control_effect(late, middle * 1.05) == 0.0  # before its start: no residual
    assert abs(control_effect(late, middle * 0.95) - 1.0) < 1e-5
    early = ConstantHook(1.0, start_percent=0.0, end_percent=0.5)
    assert abs(control_effect(early, middle * 1.05) - 1.0) < 1e-5
    assert control_effect(early, middle * 0.95) == 0.0  # after its end


def test_control_applied_to_positive_only_is_shared_with_the_negative_when_asked():
    hook = ConstantHook(0.2)
    guided = CFGDenoiser(toy_model(), cond(1.0, control=hook, control_apply_to_uncond=True), cond(0.0), cfg=2.0)
    _, negative = guided.entries(4, 4)
    assert negative[0].control is hook
    guided = CFGDenoiser(toy_model(), cond(1.0, control=hook, control_apply_to_uncond=False), cond(0.0), cfg=2.0)
    assert guided.entries(4, 4)[1][0].control is None


class RecordingUNet(torch.nn.Module):
    """Returns a constant output and records what it was given."""

    def __init__(self, value: float, dtype=torch.float32):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.tensor(value, dtype=dtype))
        self.seen = []

    def forward(self, x, timesteps, context, control=None):
        self.seen.append((x, timesteps, context))
        return torch.full_like(x, float(self.weight))


def test_model_eps_and_v_parameterisations_and_casting():
    from dataclasses import replace

    from nodeflow.sampling.model import DiffusionModel, LatentFormat
    from nodeflow.sampling.model_sampling import ModelSampling

    x = torch.randn(2, 4, 3, 3, dtype=torch.float32)
    sigma = torch.tensor([2.0, 0.5])
    s = sigma.view(2, 1, 1, 1)
    eps_model = DiffusionModel(RecordingUNet(0.3), ModelSampling.sd1(), LatentFormat(), torch.device("cpu"),
                               torch.float32)
    out = eps_model.predict_denoised(x, sigma, torch.zeros(1, 77, 8).expand(2, -1, -1))
    torch.testing.assert_close(out, x - 0.3 * s)  # Karras et al. 2022: D = x - sigma eps
    given_x, given_t, _ = eps_model.unet.seen[0]
    torch.testing.assert_close(given_x, x / (s**2 + 1) ** 0.5)  # c_in = 1 / sqrt(sigma^2 + 1)
    assert torch.equal(given_t, eps_model.sampling.timestep(sigma))

    v_sampling = replace(ModelSampling.sd1(), parameterization="v")
    v_model = eps_model.clone_with(sampling=v_sampling, patches=("lora",))
    assert v_model.unet is eps_model.unet and eps_model.patches == () and v_model.patches == ("lora",)
    out = v_model.predict_denoised(x, sigma, torch.zeros(2, 77, 8))
    torch.testing.assert_close(out, x / (s**2 + 1) - 0.3 * s / (s**2 + 1) ** 0.5)  # Salimans & Ho 2022

    half = DiffusionModel(RecordingUNet(0.25, torch.bfloat16), ModelSampling.sd1(), LatentFormat(),
                          torch.device("cpu"), torch.bfloat16)
    out = half.predict_denoised(x, sigma, torch.zeros(2, 77, 8))
    assert out.dtype == torch.float32 and half.unet.seen[0][0].dtype == torch.bfloat16
    assert half.unet.seen[0][2].dtype == torch.bfloat16
    torch.testing.assert_close(out, x - 0.25 * s)


def test_max_batch_splits_the_forward_with_the_same_result():
    x, sigma = torch.randn(2, 4, 8, 8), torch.full((2,), 3.0)
    together = CFGDenoiser(toy_model(), cond(1.0), cond(-1.0), cfg=5.0)
    model = toy_model()
    apart = CFGDenoiser(model, cond(1.0), cond(-1.0), cfg=5.0, max_batch=2)
    torch.testing.assert_close(apart(x, sigma), together(x, sigma), atol=1e-6, rtol=0)
    assert apart.calls == 2 and model.unet.calls == [2, 2]


def test_control_hooks_see_the_scaled_latent_without_concat_channels():
    seen = []

    class RecordingHook(ConstantHook):
        def residuals(self, x, timesteps, context, sigma, model, halves=1):
            seen.append((x.clone(), timesteps.clone()))
            return super().residuals(x, timesteps, context, sigma, model)

    model = toy_model(in_channels=9)
    x, sigma = torch.randn(1, 4, 4, 4), torch.tensor([2.0])
    concat = torch.randn(1, 5, 4, 4)
    model.predict_denoised(x, sigma, context(1.0), control=RecordingHook(0.1), concat=concat)
    hook_x, hook_t = seen[0]
    torch.testing.assert_close(hook_x, x / (2.0**2 + 1) ** 0.5)
    assert torch.equal(hook_t, model.sampling.timestep(sigma))
    assert model.unet.shapes == [(1, 9, 4, 4)]


CPU_OUT_OF_MEMORY = ("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
                     "you tried to allocate 17179869184 bytes. Error code 12 (Cannot allocate memory)")


class SmallMemoryUNet(ToyUNet):
    """The toy U-Net, but a forward of more than ``limit`` images raises ``error``; every
    attempted batch size is recorded in ``attempts``."""

    def __init__(self, error: Exception, limit: int = 1) -> None:
        super().__init__()
        self.error, self.limit, self.attempts = error, limit, []

    def forward(self, x, timesteps, context, control=None):
        self.attempts.append(x.shape[0])
        if x.shape[0] > self.limit:
            raise self.error
        return super().forward(x, timesteps, context, control)


@pytest.mark.parametrize("error", [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
                                   RuntimeError(CPU_OUT_OF_MEMORY)], ids=["cuda", "cpu"])
def test_out_of_memory_falls_back_to_separate_forwards_for_the_rest_of_sampling(error):
    sigmas = karras(toy_model().sampling, 4)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * sigmas[0]
    batched_model = toy_model()
    batched = SAMPLERS["euler"](CFGDenoiser(batched_model, cond(1.0), cond(-1.0), cfg=6.0), x.clone(), sigmas)
    small = SmallMemoryUNet(error)
    guided = CFGDenoiser(toy_model(unet=small), cond(1.0), cond(-1.0), cfg=6.0)
    got = SAMPLERS["euler"](guided, x.clone(), sigmas)
    assert batched_model.unet.calls == [2] * 4  # uncond and cond in one forward per step
    assert small.attempts == [2] + [1, 1] * 4  # one failed batched try, then two forwards a step
    assert guided.separate and guided.calls == 8
    torch.testing.assert_close(got, batched, atol=1e-6, rtol=0)


def test_errors_other_than_out_of_memory_and_single_forwards_are_not_retried():
    x, sigma = torch.randn(2, 4, 8, 8), torch.full((2,), 3.0)
    shape_error = SmallMemoryUNet(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    with pytest.raises(RuntimeError, match="shapes"):
        CFGDenoiser(toy_model(unet=shape_error), cond(1.0), cond(-1.0), cfg=6.0)(x, sigma)
    assert shape_error.attempts == [4]
    too_small = SmallMemoryUNet(RuntimeError(CPU_OUT_OF_MEMORY), limit=1)  # even one entry is 2 images
    with pytest.raises(RuntimeError, match="can't allocate memory"):
        CFGDenoiser(toy_model(unet=too_small), cond(1.0), cond(-1.0), cfg=6.0)(x, sigma)
    assert too_small.attempts == [4, 2]


def test_is_out_of_memory():
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert is_out_of_memory(RuntimeError(CPU_OUT_OF_MEMORY))
    assert is_out_of_memory(RuntimeError("HIP out of memory. Tried to allocate 20.00 MiB"))
    assert not is_out_of_memory(RuntimeError("Expected all tensors to be on the same device"))
    assert not is_out_of_memory(ValueError("out of memory"))
