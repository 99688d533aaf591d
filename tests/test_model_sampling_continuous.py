"""ModelSamplingContinuousEDM / ModelSamplingContinuousV (issue 15): continuous-time models.

The preconditioning is checked against diffusers' EDMEulerScheduler (its "epsilon" is EDM's F,
ComfyUI's EDM type; its "v_prediction" the negated F), the sigma table against diffusers'
exponential EDM schedule, the timesteps against the papers' formulas, and the nodes through a
KSampler run whose U-Net records what it is given.
"""

from __future__ import annotations

import math

import pytest
import torch

from nodeflow.errors import NodeInputError
from nodeflow.sampling.model import LatentFormat
from nodeflow.sampling.ksampler import sample
from nodeflow.sampling.model_sampling_continuous import ContinuousModelSampling
from nodeflow.sampling.schedulers import compute_sigmas
from nodeflow_nodes.model_advanced import (model_sampling_continuous_edm, model_sampling_continuous_v,
                                           model_sampling_discrete)
from tests.toy_models import ToyUNet, cond, toy_model


def diffusers_edm(prediction_type: str, sigma_data: float):
    from diffusers import EDMEulerScheduler

    return EDMEulerScheduler(sigma_min=0.002, sigma_max=120.0, sigma_data=sigma_data, sigma_schedule="exponential",
                             prediction_type=prediction_type)


@pytest.mark.parametrize(("parameterization", "prediction_type", "sigma_data"),
                         [("edm", "epsilon", 0.5), ("v", "v_prediction", 1.0), ("v", "v_prediction", 0.5)])
def test_preconditioning_equals_diffusers_edm(parameterization, prediction_type, sigma_data):
    ours = ContinuousModelSampling.continuous("edm", parameterization, 0.002, 120.0, sigma_data)
    reference = diffusers_edm(prediction_type, sigma_data)
    generator = torch.Generator().manual_seed(0)
    x, output = torch.randn(3, 4, 8, 8, generator=generator), torch.randn(3, 4, 8, 8, generator=generator)
    for value in (0.01, 1.0, 37.0):
        sigma = torch.full((3,), value)
        assert torch.allclose(ours.calculate_input(sigma, x), reference.precondition_inputs(x, value), rtol=1e-6)
        expected = reference.precondition_outputs(x, output, value)
        assert torch.allclose(ours.calculate_denoised(sigma, output, x), expected, rtol=1e-5, atol=1e-6)
        assert torch.allclose(ours.timestep(sigma), reference.precondition_noise(torch.tensor(value)), rtol=1e-6)


def test_sigma_table_is_diffusers_exponential_edm_schedule():
    ours = ContinuousModelSampling.continuous("edm", "eps", 0.002, 120.0)
    reference = diffusers_edm("epsilon", 0.5)
    reference.set_timesteps(1000)
    assert torch.allclose(ours.sigmas, reference.sigmas[:-1].flip(0), rtol=1e-4)


def test_v_time_is_the_angle_and_inverts():
    sampling = ContinuousModelSampling.continuous("v", "v", 0.03, 500.0)
    sigma = torch.tensor([0.03, 1.0, 500.0])
    assert torch.allclose(sampling.timestep(sigma), torch.atan(sigma) * 2 / math.pi)
    assert float(sampling.timestep(torch.tensor(1.0))) == pytest.approx(0.5)
    assert torch.allclose(sampling.sigma(sampling.timestep(sigma)), sigma, rtol=1e-4)
    edm = ContinuousModelSampling.continuous("edm", "eps", 0.002, 120.0)
    assert torch.allclose(edm.sigma(edm.timestep(sigma)), sigma, rtol=1e-5)


def test_percent_to_sigma_is_log_linear_between_the_bounds():
    sampling = ContinuousModelSampling.continuous("edm", "eps", 0.002, 120.0)
    assert sampling.percent_to_sigma(0.5) == pytest.approx(math.sqrt(0.002 * 120.0), rel=1e-5)
    assert sampling.percent_to_sigma(0.25) == pytest.approx(120.0 ** 0.75 * 0.002 ** 0.25, rel=1e-5)
    assert sampling.percent_to_sigma(1.0) == 0.0 and sampling.percent_to_sigma(0.0) > 1e8


def test_normal_schedule_is_log_linear_and_karras_spans_the_bounds():
    sampling = ContinuousModelSampling.continuous("edm", "eps", 0.002, 120.0)
    normal = compute_sigmas(sampling, "normal", 4)
    expected = torch.exp(torch.linspace(math.log(120.0), math.log(0.002), 4))
    assert torch.allclose(normal[:-1], expected, rtol=1e-4) and normal[-1] == 0
    karras = compute_sigmas(sampling, "karras", 6)
    assert float(karras[0]) == pytest.approx(120.0, rel=1e-5) and float(karras[-2]) == pytest.approx(0.002, rel=1e-4)


class TimestepSpy(ToyUNet):
    def __init__(self):
        super().__init__()
        self.timesteps = []

    def forward(self, x, timesteps, context, control=None):
        self.timesteps.append(timesteps.clone())
        return super().forward(x, timesteps, context, control)


def run(model, steps=3, scheduler="karras"):
    return sample(model, seed=3, steps=steps, cfg=4.0, sampler_name="euler", scheduler=scheduler,
                  positive=cond(1.0), negative=cond(-1.0), latent={"samples": torch.zeros(1, 4, 8, 8)})


def test_edm_node_gives_the_unet_edm_timesteps_and_leaves_the_input_model_alone():
    spy = TimestepSpy()
    model = toy_model(unet=spy)
    [patched] = model_sampling_continuous_edm(model, "edm", 120.0, 0.002)
    assert model.sampling.parameterization == "eps" and type(model.sampling).__name__ == "ModelSampling"
    assert patched.sampling.parameterization == "edm" and patched.sampling.sigma_data == 0.5
    run(patched)
    sigmas = compute_sigmas(patched.sampling, "karras", 3)[:-1]
    assert torch.allclose(torch.cat([t[:1] for t in spy.timesteps]), 0.25 * sigmas.log(), rtol=1e-5)


def test_v_node_gives_the_unet_angle_timesteps_with_comfyuis_defaults():
    spy = TimestepSpy()
    [patched] = model_sampling_continuous_v(toy_model(unet=spy), "v_prediction", 500.0, 0.03)
    assert patched.sampling.parameterization == "v"
    run(patched, scheduler="normal")
    first = float(spy.timesteps[0][0])
    assert first == pytest.approx(math.atan(500.0) * 2 / math.pi, rel=1e-5)


def test_playground_latent_format_normalises_per_channel_and_round_trips():
    model = toy_model()
    [patched] = model_sampling_continuous_edm(model, "edm_playground_v2.5", 120.0, 0.002)
    form = patched.latent_format
    assert form == LatentFormat.playground_v25() and model.latent_format == LatentFormat()
    latent = torch.randn(2, 4, 3, 5)
    scaled = form.process_in(latent)
    mean = torch.tensor([-1.6574, 1.886, -1.383, 2.5155]).view(1, 4, 1, 1)
    std = torch.tensor([8.4927, 5.9022, 6.5498, 5.2299]).view(1, 4, 1, 1)
    assert torch.allclose(scaled, (latent - mean) * 0.5 / std)
    assert torch.allclose(form.process_out(scaled), latent, atol=1e-5)


def test_discrete_after_continuous_rebuilds_the_training_schedule():
    model = toy_model()
    [edm] = model_sampling_continuous_edm(model, "v_prediction", 120.0, 0.002)
    [back] = model_sampling_discrete(edm, "eps", False)
    assert torch.equal(back.sampling.sigmas, model.sampling.sigmas)
    assert float(back.sampling.timestep(model.sampling.sigmas[10:11])) == 10.0


def test_bad_sigma_range_names_the_input():
    with pytest.raises(NodeInputError, match="sigma_min"):
        model_sampling_continuous_edm(toy_model(), "eps", 1.0, 0.0)
    with pytest.raises(NodeInputError, match="sigma_min"):
        model_sampling_continuous_v(toy_model(), "v_prediction", 1.0, 2.0)
